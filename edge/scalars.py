"""Physiological scalars of a window: the numbers the images throw away.

Every image is min-max normalised per window, so a window's level, amplitude
and rate (most of a pain response: skin conductance rising, the heart
speeding up, the pulse narrowing, breathing quickening) never reach the
backbone. These scalars carry them, a few per channel, computed with NumPy
alone, the same code in training and on the device.

Levels and amplitudes are natural logarithms, so a sensor's gain becomes a
constant offset that the patient's baseline (:mod:`edge.calibration`)
removes along with the person's own level; rates are in events per minute.

==============  ===========================================================
``EDA.level``   log median skin conductance (floor 0.01)
``EDA.rise``    log(level over the last 2 s) - log(level over the first 2 s)
``EDA.range``   log(max - min) of the window (floor 0.001)
``EDA.phasic``  log of the summed rises of the 1 Hz low-passed signal: how
                much skin-conductance responses climbed (floor 0.001)
``BVP.rate``    pulse rate, beats/min: the 42-180 /min frequency whose
                harmonics carry the most power
``BVP.amplitude`` log(95th - 5th percentile) of the 0.5-8 Hz pulse wave
``RESP.rate``   breathing rate, breaths/min: the spectral peak in 6-48 /min
``RESP.amplitude`` log(95th - 5th percentile) of the 0.05-1 Hz signal
``SpO2.level``  median oxygen saturation, %
``SpO2.rise``   mean of the last 3 s - mean of the first 3 s, %
==============  ===========================================================

Examples
--------
>>> import numpy as np
>>> t = np.arange(1000) / 100.0
>>> bvp = np.sin(2 * np.pi * 1.25 * t)                    # 75 beats per minute
>>> round(float(window_scalars(bvp[None], ["BVP"], 100.0)[0]))
75
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SCALARS", "scalar_names", "window_scalars"]

SCALARS: dict[str, tuple[str, ...]] = {
    "EDA": ("level", "rise", "range", "phasic"),
    "BVP": ("rate", "amplitude"),
    "RESP": ("rate", "amplitude"),
    "SpO2": ("level", "rise"),
}
"""The scalars of each device channel, in output order."""

_LEVEL_FLOOR = 0.01
_SPAN_FLOOR = 0.001
_PADDED_FFT = 8192  # zero padding: rate resolution ~0.7 /min at 100 Hz


def scalar_names(channels: Sequence[str]) -> tuple[str, ...]:
    """``"CHANNEL.scalar"`` names of :func:`window_scalars` for these channels, in its order.

    Raises
    ------
    ValueError
        For a channel without scalars (known: EDA, BVP, RESP, SpO2).
    """
    names = []
    for channel in channels:
        if channel not in SCALARS:
            raise ValueError(f"no physiological scalars for channel {channel!r}; known: {', '.join(SCALARS)}")
        names.extend(f"{channel}.{scalar}" for scalar in SCALARS[channel])
    return tuple(names)


def window_scalars(signals, channels: Sequence[str], sampling_rate: float) -> np.ndarray:
    """The scalars of windows, channel by channel (see the module docstring).

    Parameters
    ----------
    signals : array_like of float, shape (..., len(channels), n_samples)
        Finite samples in physical units (fill gaps first, e.g. with
        :func:`edge.quality.signal_fill`); any leading dimensions (windows).
    channels : sequence of str
        Device channel name of each row.
    sampling_rate : float
        Hz; windows of at least 4 s are needed for the breathing rate.

    Returns
    -------
    ndarray of float64, shape (..., len(scalar_names(channels)))
    """
    signals = np.asarray(signals, dtype=np.float64)
    if signals.ndim < 2 or signals.shape[-2] != len(channels):
        raise ValueError(f"signals must have shape (..., {len(channels)}, n_samples), got {signals.shape}")
    if not np.isfinite(signals).all():
        raise ValueError("signals must be finite; fill missing samples first (edge.quality.signal_fill)")
    scalar_names(channels)
    parts = [_CHANNEL_SCALARS[channel](signals[..., row, :], float(sampling_rate))
             for row, channel in enumerate(channels)]
    return np.concatenate(parts, axis=-1)


def _eda(x: np.ndarray, fs: float) -> np.ndarray:
    edge = max(1, int(round(2 * fs)))
    level = np.log(np.maximum(np.median(x, axis=-1), _LEVEL_FLOOR))
    start = np.log(np.maximum(x[..., :edge].mean(axis=-1), _LEVEL_FLOOR))
    end = np.log(np.maximum(x[..., -edge:].mean(axis=-1), _LEVEL_FLOOR))
    span = np.log(np.maximum(x.max(axis=-1) - x.min(axis=-1), _SPAN_FLOOR))
    smooth = _band(x, fs, 0.0, 1.0)
    climbed = np.log(np.maximum(np.clip(np.diff(smooth, axis=-1), 0, None).sum(axis=-1), _SPAN_FLOOR))
    return np.stack([level, end - start, span, climbed], axis=-1)


def _bvp(x: np.ndarray, fs: float) -> np.ndarray:
    pulse = _band(x, fs, 0.5, 8.0)
    rate = 60 * _dominant_frequency(pulse, fs, 0.7, 3.0, harmonics=3)
    return np.stack([rate, _log_spread(pulse)], axis=-1)


def _resp(x: np.ndarray, fs: float) -> np.ndarray:
    breathing = _band(x, fs, 0.05, 1.0)
    rate = 60 * _dominant_frequency(breathing, fs, 0.1, 0.8, harmonics=1)
    return np.stack([rate, _log_spread(breathing)], axis=-1)


def _spo2(x: np.ndarray, fs: float) -> np.ndarray:
    edge = max(1, int(round(3 * fs)))
    return np.stack([np.median(x, axis=-1), x[..., -edge:].mean(axis=-1) - x[..., :edge].mean(axis=-1)], axis=-1)


_CHANNEL_SCALARS = {"EDA": _eda, "BVP": _bvp, "RESP": _resp, "SpO2": _spo2}


def _band(x: np.ndarray, fs: float, low_hz: float, high_hz: float) -> np.ndarray:
    """``x`` with the mean removed and only ``[low_hz, high_hz]`` kept (an FFT mask; no SciPy on the device).

    A low edge of 0 keeps the mean (a low-pass filter).
    """
    spectrum = np.fft.rfft(x - x.mean(axis=-1, keepdims=True), axis=-1)
    frequencies = np.fft.rfftfreq(x.shape[-1], d=1 / fs)
    spectrum[..., (frequencies > high_hz) | ((frequencies < low_hz) & (frequencies > 0))] = 0
    filtered = np.fft.irfft(spectrum, x.shape[-1], axis=-1)
    return filtered + x.mean(axis=-1, keepdims=True) if low_hz == 0 else filtered


def _dominant_frequency(x: np.ndarray, fs: float, low_hz: float, high_hz: float, harmonics: int) -> np.ndarray:
    """Hz in ``[low_hz, high_hz]`` whose first ``harmonics`` multiples carry the most power.

    Summing the harmonics (weighted 1, 1/2, 1/3) keeps a pulse wave's strong
    second harmonic (its dicrotic wave) from being read as twice the rate.
    """
    n_fft = max(_PADDED_FFT, x.shape[-1])
    power = np.abs(np.fft.rfft(x * np.hanning(x.shape[-1]), n_fft, axis=-1)) ** 2
    frequencies = np.fft.rfftfreq(n_fft, d=1 / fs)
    candidates = np.flatnonzero((frequencies >= low_hz) & (frequencies <= high_hz))
    score = np.zeros(x.shape[:-1] + (len(candidates),))
    for k in range(1, harmonics + 1):
        score += power[..., np.minimum(candidates * k, len(frequencies) - 1)] / k
    return frequencies[candidates[np.argmax(score, axis=-1)]]


def _log_spread(x: np.ndarray) -> np.ndarray:
    high, low = np.percentile(x, [95, 5], axis=-1)
    return np.log(np.maximum(high - low, _SPAN_FLOOR))
