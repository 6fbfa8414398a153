"""Distributed, streaming pretraining: torchrun with two CPU ranks (gloo), the ranks' shares of the
images, samples that do not depend on who makes them, and the planted events' targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from torch.utils.data import DataLoader

from edge.cli import main
from training.models import load_backbone
from training.pretrain_corpus import EVENTS, SIGNAL_TYPES, StreamingCorpus, generate_signal
from training.pretrain_sampler import StepSampler, step_indices
from training.settings import DEFAULT_SPEC

ROOT = Path(__file__).resolve().parents[1]
# two waveform images, each rank's share of every step: the same two images all along, so the loss must fall
TINY_RUN = ["--corpus-size", "2", "--holdout-size", "2", "--global-batch", "2", "--representations", "waveform",
            "--learning-rate", "1e-3", "--device", "cpu"]


def _torchrun_pretrain(*options) -> subprocess.CompletedProcess:
    """``biomoe pretrain OPTIONS`` on two CPU ranks under torchrun, clear of any launcher variables around us."""
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "edge.cli", "pretrain", *map(str, options), *TINY_RUN],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=240,
    )


def test_torchrun_two_ranks_then_resume_alone(tmp_path, capsys):
    out = tmp_path / "run"
    launched = _torchrun_pretrain("--out", out, "--steps", 4, "--workers", 1)
    log = launched.stdout + launched.stderr
    assert launched.returncode == 0, log[-3000:]
    assert "rank 0 of 2 on cpu" in log and "rank 1 of 2 on cpu" in log
    assert log.count("backbone.pth: 4 steps on 2 x cpu") == 1  # the summary: rank 0 only
    load_backbone(out / "backbone.pth")  # strict load into a fresh Tiny-BioMoE
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch"] == 2 and config["batch_size_per_rank"] == 1
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]

    assert main(["pretrain", "--out", str(out), "--steps", "5", "--resume", *TINY_RUN]) == 0
    assert "rank 0 of 1 on cpu, 2 images per forward x 1 accumulated, from step 4" in capsys.readouterr().err
    resumed = json.loads((out / "metrics.json").read_text())["history"]
    assert resumed[:4] == history and [h["step"] for h in resumed] == [1, 2, 3, 4, 5]
    assert json.loads((out / "config.json").read_text())["world_size"] == 1
    load_backbone(out / "backbone.pth")


def test_torchrun_two_ranks_with_real_recordings(tiny_cohort, tmp_path):
    """The contrastive objective under DistributedDataParallel: one forward pass per step with both batches."""
    out = tmp_path / "run"
    launched = _torchrun_pretrain("--out", out, "--steps", 2, "--real", tiny_cohort, "--real-batch", 4)
    assert launched.returncode == 0, (launched.stdout + launched.stderr)[-3000:]
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2] and all(h["contrastive"] > 0 for h in history)
    assert json.loads((out / "config.json").read_text())["real"] == [str(tiny_cohort)]
    load_backbone(out / "backbone.pth")


@pytest.mark.parametrize("world_size, batch_size", [(2, 3), (3, 2), (4, 3)])
def test_ranks_see_disjoint_shares_of_the_same_global_sequence(world_size, batch_size):
    size, global_batch, steps = 50, 12, 8  # 96 images: the second epoch starts inside step 4
    shares = [list(StepSampler(size, global_batch=global_batch, batch_size=batch_size, rank=rank,
                               world_size=world_size, seed=3, steps=steps)) for rank in range(world_size)]
    accumulation = global_batch // (batch_size * world_size)
    for step in range(steps):
        seen = [sum(share[step * accumulation : (step + 1) * accumulation], []) for share in shares]
        assert sorted(sum(seen, [])) == sorted(step_indices(step, global_batch, size, seed=3).tolist())
        assert all(not set(a) & set(b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    first_epoch = np.concatenate([step_indices(step, global_batch, size, seed=3) for step in range(steps)])[:size]
    assert sorted(first_epoch.tolist()) == list(range(size))  # no image twice within an epoch
    resumed = list(StepSampler(size, global_batch=global_batch, batch_size=batch_size, rank=0,
                               world_size=world_size, seed=3, start_step=5, steps=steps))
    assert resumed == shares[0][5 * accumulation :]
    with pytest.raises(ValueError, match="multiple"):
        StepSampler(size, global_batch=10, batch_size=3, rank=0, world_size=2, seed=0)


def test_sample_i_is_the_same_whoever_makes_it():
    corpus = StreamingCorpus(12, ("waveform", "recurrence"), DEFAULT_SPEC, seed=7)
    order = [9, 2, 11, 4, 0, 7]
    by_workers = DataLoader(corpus, batch_sampler=[order[:3], order[3:]], num_workers=2)
    images = np.concatenate([batch["image"].numpy() for batch in by_workers])
    fresh = StreamingCorpus(12, ("waveform", "recurrence"), DEFAULT_SPEC, seed=7)
    for position, index in enumerate(order):
        alone = fresh[index]
        np.testing.assert_array_equal(images[position], alone["image"])
        for name, value in corpus[index].items():
            np.testing.assert_array_equal(value, alone[name])
    holdout = StreamingCorpus(4, ("waveform", "recurrence"), DEFAULT_SPEC, seed=7, first=10)
    np.testing.assert_array_equal(holdout[1]["image"], corpus[11]["image"])


def test_planted_events_have_exact_targets():
    rng = np.random.default_rng(4)
    planted = {name: 0 for name in EVENTS}
    for _ in range(12):
        signal, rate, events = generate_signal("resp", rng)
        if events:
            onset_s, duration_s = events["breathing_pause"]
            start, stop = round(onset_s * 100), min(1000, round((onset_s + duration_s) * 100))
            assert 2 <= duration_s <= 6 and np.ptp(signal[start:stop]) == 0  # the belt is held
            assert np.ptp(signal[stop - 1 : stop + 100]) > 0 or stop == 1000  # and breathing resumes
    corpus = StreamingCorpus(6 * 16, ("waveform",), DEFAULT_SPEC, seed=1)
    for index in range(len(corpus)):  # one representation: image i is window i
        sample = generate_signal(SIGNAL_TYPES[index % len(SIGNAL_TYPES)], np.random.default_rng([1, index]))[2]
        targets = corpus[index]
        for k, name in enumerate(EVENTS):
            assert targets["event_present"][k] == (name in sample)
            assert targets["event_present"][k] <= targets["event_applicable"][k]
            if name in sample:
                planted[name] += 1
                assert 0 <= targets["event_onset"][k] <= 1 and 0 <= targets["event_amplitude"][k] <= 1
    assert planted["heart_rate_step"] == planted["pulse_amplitude_change"] > 0
    assert planted["scr"] > 0 and planted["breathing_pause"] > 0 and planted["desaturation"] > 0


def test_a_desaturation_shows_in_the_oximeter():
    """A planted fall of 1.5 % points or more, starting in the first 4 s, lowers the last 2 s below the
    SpO2 before it (whole percents at 1 Hz, so by at least one step)."""
    rng = np.random.default_rng(6)
    checked = 0
    while checked < 6:
        signal, saturation, events = generate_signal("spo2", rng)
        onset_s, fall = events.get("desaturation", (10.0, 0.0))
        if fall >= 1.5 and onset_s <= 4:
            assert np.mean(signal[: round(onset_s * 100)]) - np.mean(signal[-200:]) >= 0.5
            checked += 1


def test_a_heart_rate_step_shows_in_the_pulse():
    """The pulse rate (PPG peaks) 3 s after a planted step of 10 bpm or more is above the resting rate."""
    rng = np.random.default_rng(5)
    checked = 0
    while checked < 3:
        signal, rate, events = generate_signal("ppg", rng, n_samples=1000)
        if not events or rate > 100 or events["heart_rate_step"][0] > 4 or events["heart_rate_step"][1] < 10:
            continue
        onset_s, step_bpm = events["heart_rate_step"]
        peaks, _ = scipy.signal.find_peaks(signal, distance=int(100 * 60 / (rate + 45)),
                                           prominence=0.3 * np.ptp(signal))
        intervals = np.diff(peaks) / 100
        after = intervals[peaks[1:] > (onset_s + 3) * 100]
        assert 60 / np.median(after) > rate + 0.3 * step_bpm
        checked += 1
