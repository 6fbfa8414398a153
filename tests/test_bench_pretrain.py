"""benchmarks.bench_pretrain: the commands it times and its model-alone rate."""

import argparse
import sys

from benchmarks.bench_pretrain import _command, model_images_per_second


def _args(**overrides) -> argparse.Namespace:
    settings = dict(global_batch=2, threads=2, device="cpu", trainable="late", workers=0, steps=1)
    return argparse.Namespace(**{**settings, **overrides})


def test_one_process_runs_biomoe_pretrain_with_every_thread(tmp_path):
    command = _command(1, tmp_path / "run", _args(threads=4), steps=3)
    assert command[:4] == [sys.executable, "-m", "edge.cli", "pretrain"]
    options = dict(zip(command[4::2], command[5::2]))
    assert options["--steps"] == "3" and options["--threads"] == "4" and options["--global-batch"] == "2"


def test_several_processes_go_through_torchrun_and_share_the_threads(tmp_path):
    command = _command(2, tmp_path / "run", _args(threads=4, workers=3), steps=5)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    tail = command[command.index("pretrain") + 1:]
    options = dict(zip(tail[::2], tail[1::2]))
    assert options["--threads"] == "2" and options["--workers"] == "3" and options["--steps"] == "5"


def test_model_alone_rate_is_a_positive_number_of_images_per_second():
    rate = model_images_per_second(_args(threads=1), repeats=1)
    assert 0 < rate < 10_000
