"""benchmarks.bench_model: runs end to end and rejects bad settings (no timing asserted)."""

from __future__ import annotations

import torch

from benchmarks.bench_model import main


def test_prints_one_row_per_batch_size(capsys):
    threads = torch.get_num_threads()
    assert main(["--no-onnx", "--batch-sizes", "1", "2", "--repeats", "1", "--warmup", "0", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].split() == ["batch", "eager", "export", "eager/export"]
    assert [line.split()[0] for line in lines[2:]] == ["1", "2"]
    assert all(float(value) > 0 for line in lines[2:] for value in line.split()[1:])
    assert torch.get_num_threads() == threads


def test_bad_setting_is_a_one_line_error(capsys):
    assert main(["--repeats", "0"]) == 1
    assert capsys.readouterr().err.strip() == "bench_model: error: --repeats must be >= 1, got 0"
