"""Pretraining corpus generators and the multi-task pretraining run (a few steps on a handful of images)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from training.errors import TrainingError
from training.models import load_backbone
from training.pretrain import PretrainConfig, pretrain
from training.pretrain_corpus import PARAMETER_RANGES, SIGNAL_TYPES, StreamingCorpus, generate_signal
from training.settings import DEFAULT_SPEC


def _dominant_frequency(signal: np.ndarray, low_hz: float, fs: float = 100.0) -> float:
    """Frequency of the spectral peak above ``low_hz`` (below it: baseline drift)."""
    spectrum = np.abs(np.fft.rfft(signal - signal.mean())) ** 2
    frequencies = np.fft.rfftfreq(len(signal), 1 / fs)
    band = frequencies >= low_hz
    return float(frequencies[band][np.argmax(spectrum[band])])


@pytest.mark.parametrize("kind", SIGNAL_TYPES)
def test_signals_are_finite_windows_with_parameters_in_range(kind):
    rng = np.random.default_rng(1)
    for _ in range(3):
        signal, parameter, _ = generate_signal(kind, rng)
        assert signal.shape == (1000,) and np.isfinite(signal).all() and np.ptp(signal) > 0
        low, high = PARAMETER_RANGES[kind]
        assert low <= parameter <= high


@pytest.mark.parametrize("kind, per_minute", [("ppg", True), ("ecg", True), ("resp", True), ("eeg", False)])
def test_the_parameter_sets_the_rhythm(kind, per_minute):
    """Heart rate, breathing rate and EEG peak frequency show as the spectral peak (within 15 %),
    in windows without a planted event (a heart-rate step or a pause moves the peak)."""
    rng = np.random.default_rng(2)
    low_hz = PARAMETER_RANGES[kind][0] / (60 if per_minute else 1) * 0.8
    windows = (generate_signal(kind, rng, n_samples=6000) for _ in range(100))
    plain = [(signal, parameter) for signal, parameter, events in windows if not events][:5]
    for signal, parameter in plain:
        expected = parameter / 60 if per_minute else parameter
        peak = _dominant_frequency(signal, low_hz)
        if kind == "ecg":  # the narrow QRS puts the power in harmonics of the heart rate
            assert peak / expected == pytest.approx(round(peak / expected), rel=0.15)
        else:
            assert peak == pytest.approx(expected, rel=0.15)


def test_more_skin_conductance_responses_for_a_higher_eda_rate():
    """Response onsets (the 0.5 s slope of the smoothed signal rising past 5 % of the level per second)."""
    rng = np.random.default_rng(3)

    def onsets(rate):
        signal = _signal_near(rng, "eda", rate)
        smooth = np.convolve(signal / np.median(signal), np.ones(50) / 50, mode="valid")
        rising = (smooth[50:] - smooth[:-50]) / 0.5 > 0.05
        return int(np.sum(rising[1:] & ~rising[:-1]))

    assert np.mean([onsets(13.0) for _ in range(10)]) > 3 * np.mean([onsets(1.5) for _ in range(10)])


def _signal_near(rng, kind, value):
    """A 30 s window whose drawn parameter is within 1 of ``value`` (the generator draws it uniformly)."""
    while True:
        signal, parameter, events = generate_signal(kind, rng, n_samples=3000)
        if abs(parameter - value) < 1.0 and not events:
            return signal


def test_corpus_layout_and_determinism():
    corpus = StreamingCorpus(2 * len(SIGNAL_TYPES) * 2, ("waveform", "recurrence"), DEFAULT_SPEC, seed=5)
    samples = [corpus[i] for i in range(len(corpus))]
    assert samples[0]["image"].shape == (224, 224, 3) and samples[0]["image"].dtype == np.uint8
    assert [int(s["representation"]) for s in samples] == [0, 1] * (len(corpus) // 2)
    assert [int(s["signal_type"]) for s in samples][:4] == [0, 0, 1, 1]
    assert all(0 <= s["parameter"] <= 1 for s in samples)
    again = StreamingCorpus(len(corpus), ("waveform", "recurrence"), DEFAULT_SPEC, seed=5)[len(corpus) - 1]
    np.testing.assert_array_equal(again["image"], samples[-1]["image"])
    assert again["parameter"] == samples[-1]["parameter"]
    with pytest.raises(ValueError, match="representations"):
        StreamingCorpus(1, ("sonogram",), DEFAULT_SPEC)
    with pytest.raises(IndexError):
        corpus[len(corpus)]


TINY = PretrainConfig(representations=("waveform",), corpus_size=10, holdout_size=2, steps=2, global_batch=3,
                      warmup_steps=1, checkpoint_every=1)


def test_pretrain_writes_a_release_format_backbone_and_resumes(tmp_path):
    metrics = pretrain(TINY, tmp_path, device="cpu")
    assert metrics["steps"] == 2 and len(metrics["history"]) == 2
    assert np.isfinite([h["loss"] for h in metrics["history"]]).all()
    assert set(metrics["holdout"]) >= {"signal_type_accuracy", "representation_accuracy", "parameter_mae"}
    load_backbone(tmp_path / "backbone.pth")  # strict load into a fresh Tiny-BioMoE
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["steps"] == 2 and saved["representation_spec"] == DEFAULT_SPEC.to_dict()
    assert saved["world_size"] == 1 and saved["global_batch"] == 3
    for name in ("heads.pt", "state.pt", "metrics.json"):
        assert (tmp_path / name).is_file()

    with pytest.raises(TrainingError, match="--resume"):
        pretrain(TINY, tmp_path, device="cpu")
    with pytest.raises(TrainingError, match="only --steps may change"):
        pretrain(dataclasses.replace(TINY, learning_rate=1e-3), tmp_path, device="cpu", resume=True)
    resumed = pretrain(TINY, tmp_path, device="cpu", resume=True)
    assert resumed["history"] == metrics["history"]  # finished: no step is repeated
    extended = pretrain(dataclasses.replace(TINY, steps=3), tmp_path, device="cpu", resume=True)
    assert extended["history"][:2] == metrics["history"] and len(extended["history"]) == 3
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 3


def test_config_validation():
    with pytest.raises(ValueError, match="steps"):
        PretrainConfig(steps=0)
    with pytest.raises(ValueError, match="trainable"):
        PretrainConfig(trainable="some")
    with pytest.raises(ValueError, match="unknown representation settings"):
        PretrainConfig(representation_spec={"image_sise": 224})


def test_set_trainable_lets_gradients_reach_only_the_named_layers():
    from training.models import tiny_biomoe
    from training.settings import TRAINABLE_PREFIXES, set_trainable

    model = tiny_biomoe()
    set_trainable(model, "late")
    trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trained and all(name.startswith(TRAINABLE_PREFIXES["late"]) for name in trained)
    assert any(name.startswith("enc1.patch_embed1.") for name, _ in model.named_parameters())
    set_trainable(model, "all")
    assert all(parameter.requires_grad for parameter in model.parameters())
