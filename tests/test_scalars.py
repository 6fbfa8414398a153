"""Physiological scalars: rates against known tones and pulses, gain invariance, names, bad input."""

import numpy as np
import pytest

from edge.scalars import SCALARS, scalar_names, window_scalars

FS = 100.0
T = np.arange(1000) / FS


def pulse_wave(bpm: float) -> np.ndarray:
    """A finger PPG: systolic peak and a dicrotic wave per beat (strong second harmonic)."""
    beat = (bpm / 60 * T) % 1.0
    return np.exp(-(((beat - 0.18) / 0.07) ** 2)) + 0.35 * np.exp(-(((beat - 0.48) / 0.09) ** 2))


def named(values: np.ndarray, channels) -> dict:
    return dict(zip(scalar_names(channels), values))


@pytest.mark.parametrize("bpm", [48, 60, 72, 95, 120, 150])
def test_pulse_rate_of_a_pulse_wave_is_its_beat_rate(bpm):
    assert named(window_scalars(pulse_wave(bpm)[None], ["BVP"], FS), ["BVP"])["BVP.rate"] == pytest.approx(bpm, abs=1.5)


@pytest.mark.parametrize("per_minute", [8, 12, 18, 24, 30])
def test_breathing_rate_of_a_breathing_wave(per_minute):
    breath = np.sin(2 * np.pi * per_minute / 60 * T) + 0.15 * np.sin(4 * np.pi * per_minute / 60 * T)
    rate = named(window_scalars(breath[None], ["RESP"], FS), ["RESP"])["RESP.rate"]
    assert rate == pytest.approx(per_minute, abs=1.5)


def test_a_sensors_gain_shifts_log_amplitudes_by_its_log_and_leaves_rates_alone():
    rows = np.stack([2 + 0.3 * np.sin(0.3 * T), pulse_wave(75), np.sin(2 * np.pi * 0.25 * T), 97 + 0 * T])
    channels = ["EDA", "BVP", "RESP", "SpO2"]
    gained = rows.copy()
    gained[:3] *= 250
    a, b = named(window_scalars(rows, channels, FS), channels), named(window_scalars(gained, channels, FS), channels)
    for name in ("EDA.level", "EDA.range", "EDA.phasic", "BVP.amplitude", "RESP.amplitude"):
        assert b[name] - a[name] == pytest.approx(np.log(250), abs=1e-6), name
    for name in ("EDA.rise", "BVP.rate", "RESP.rate", "SpO2.level"):
        assert b[name] == pytest.approx(a[name], abs=1e-6), name


def test_a_skin_conductance_response_rises_and_a_flat_level_does_not():
    flat = np.full(1000, 4.0)
    onset = np.clip(T - 3, 0, None)
    response = 4.0 + 1.0 * (np.exp(-onset / 6) - np.exp(-onset / 0.7)) * (T >= 3)
    rest, pain = (named(window_scalars(x[None], ["EDA"], FS), ["EDA"]) for x in (flat, response))
    assert rest["EDA.rise"] == pytest.approx(0) and pain["EDA.rise"] > 0.05
    assert pain["EDA.phasic"] > rest["EDA.phasic"] + 3  # log scale: the response climbs ~0.8 uS, flat 0 (floor 0.001)
    assert rest["EDA.level"] == pytest.approx(np.log(4.0))


def test_spo2_level_and_fall():
    falling = np.linspace(98, 95, 1000)
    values = named(window_scalars(falling[None], ["SpO2"], FS), ["SpO2"])
    assert values["SpO2.level"] == pytest.approx(96.5, abs=0.01) and values["SpO2.rise"] == pytest.approx(-2.1, abs=0.05)


def test_batches_and_names_follow_the_channel_order():
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(3, 2, 1000)) + 5
    batch = window_scalars(windows, ["BVP", "EDA"], FS)
    assert batch.shape == (3, len(SCALARS["BVP"]) + len(SCALARS["EDA"]))
    np.testing.assert_allclose(batch[1], window_scalars(windows[1], ["BVP", "EDA"], FS))
    assert scalar_names(["BVP", "EDA"])[:3] == ("BVP.rate", "BVP.amplitude", "EDA.level")


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="no physiological scalars for channel 'ECG'"):
        scalar_names(["ECG"])
    with pytest.raises(ValueError, match="shape"):
        window_scalars(np.zeros((3, 1000)), ["EDA", "BVP"], FS)
    with pytest.raises(ValueError, match="finite"):
        window_scalars(np.full((1, 1000), np.nan), ["EDA"], FS)
