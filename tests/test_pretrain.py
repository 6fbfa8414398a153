"""Pretraining corpus generators and the multi-task pretraining run (a few steps on a handful of images)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from training.errors import TrainingError
from training.models import load_backbone
from training.pretrain import PretrainConfig, pretrain
from training.pretrain_corpus import PARAMETER_RANGES, SIGNAL_TYPES, generate_corpus, generate_signal
from training.settings import DEFAULT_SPEC


def _dominant_frequency(signal: np.ndarray, fs: float = 100.0) -> float:
    spectrum = np.abs(np.fft.rfft(signal - signal.mean())) ** 2
    frequencies = np.fft.rfftfreq(len(signal), 1 / fs)
    return float(frequencies[1:][np.argmax(spectrum[1:])])


@pytest.mark.parametrize("kind", SIGNAL_TYPES)
def test_signals_are_finite_windows_with_parameters_in_range(kind):
    rng = np.random.default_rng(1)
    for _ in range(3):
        signal, parameter = generate_signal(kind, rng)
        assert signal.shape == (1000,) and np.isfinite(signal).all() and np.ptp(signal) > 0
        low, high = PARAMETER_RANGES[kind]
        assert low <= parameter <= high


@pytest.mark.parametrize("kind, per_minute", [("ppg", True), ("resp", True), ("eeg", False)])
def test_the_parameter_sets_the_rhythm(kind, per_minute):
    """Heart rate, breathing rate and EEG peak frequency show as the spectral peak (within 15 %)."""
    rng = np.random.default_rng(2)
    for _ in range(5):
        signal, parameter = generate_signal(kind, rng, n_samples=6000)
        expected = parameter / 60 if per_minute else parameter
        if kind == "ppg":  # the pulse's fundamental or, for slow rates, a harmonic may dominate
            ratio = _dominant_frequency(signal) / expected
            assert abs(ratio - round(ratio)) < 0.15 * round(ratio) and round(ratio) >= 1
        else:
            assert _dominant_frequency(signal) == pytest.approx(expected, rel=0.15)


def test_more_scrs_for_a_higher_eda_rate():
    rng = np.random.default_rng(3)
    low_rate = [np.sum(np.diff(generate_signal_at("eda", rng, 1.0)) > 0.001) for _ in range(5)]
    high_rate = [np.sum(np.diff(generate_signal_at("eda", rng, 14.0)) > 0.001) for _ in range(5)]
    assert np.mean(high_rate) > np.mean(low_rate)


def generate_signal_at(kind, rng, value):
    """A window whose parameter is ``value`` (redraw until close; the generator draws it uniformly)."""
    while True:
        signal, parameter = generate_signal(kind, rng, n_samples=3000)
        if abs(parameter - value) < 1.0:
            return signal / np.median(signal)


def test_corpus_layout_and_determinism(tmp_path):
    corpus = generate_corpus(2, ("waveform", "recurrence"), DEFAULT_SPEC, seed=5, path=tmp_path / "images.npy")
    n = 2 * len(SIGNAL_TYPES) * 2
    assert corpus.images.shape == (n, 224, 224, 3) and isinstance(corpus.images, np.memmap)
    assert corpus.representations.tolist() == [0, 1] * (n // 2)
    assert corpus.signal_types.tolist()[:4] == [0, 0, 1, 1]
    assert ((corpus.parameters >= 0) & (corpus.parameters <= 1)).all()
    again = generate_corpus(2, ("waveform", "recurrence"), DEFAULT_SPEC, seed=5)
    np.testing.assert_array_equal(again.images, corpus.images)
    np.testing.assert_array_equal(again.parameters, corpus.parameters)
    with pytest.raises(ValueError, match="representations"):
        generate_corpus(1, ("sonogram",), DEFAULT_SPEC)


TINY = PretrainConfig(representations=("waveform",), n_per_type=2, steps=2, batch_size=3, warmup_steps=1,
                      checkpoint_every=1, holdout_fraction=0.2)


def test_pretrain_writes_a_release_format_backbone_and_resumes(tmp_path):
    metrics = pretrain(TINY, tmp_path, device="cpu")
    assert metrics["steps"] == 2 and len(metrics["history"]) == 2
    assert np.isfinite([h["loss"] for h in metrics["history"]]).all()
    assert set(metrics["holdout"]) >= {"signal_type_accuracy", "representation_accuracy", "parameter_mae"}
    load_backbone(tmp_path / "backbone.pth")  # strict load into a fresh Tiny-BioMoE
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["steps"] == 2 and saved["spec"] == DEFAULT_SPEC.to_dict()
    for name in ("heads.pt", "state.pt", "metrics.json", "corpus/images.npy", "corpus/targets.npz"):
        assert (tmp_path / name).is_file()

    with pytest.raises(TrainingError, match="--resume"):
        pretrain(TINY, tmp_path, device="cpu")
    with pytest.raises(TrainingError, match="other settings"):
        pretrain(dataclasses.replace(TINY, learning_rate=1e-3), tmp_path, device="cpu", resume=True)
    corpus_time = (tmp_path / "corpus" / "images.npy").stat().st_mtime_ns
    resumed = pretrain(TINY, tmp_path, device="cpu", resume=True)
    assert resumed["history"] == metrics["history"]  # finished: no step is repeated
    assert (tmp_path / "corpus" / "images.npy").stat().st_mtime_ns == corpus_time  # corpus reused


def test_config_validation():
    with pytest.raises(ValueError, match="steps"):
        PretrainConfig(steps=0)
    with pytest.raises(ValueError, match="trainable"):
        PretrainConfig(trainable="some")
    with pytest.raises(ValueError, match="unknown representation settings"):
        PretrainConfig(spec={"image_sise": 224})
