"""Rates of rhythms in a signal, by the FFT peak: the simple estimators of the physiology tests (imported, not collected)."""

from __future__ import annotations

import numpy as np


def rate_per_min(signal: np.ndarray, low_hz: float, high_hz: float, sampling_rate: float = 100.0) -> float:
    """The dominant rhythm (spectral peak between ``low_hz`` and ``high_hz``), per minute."""
    centred = (signal - signal.mean()) * np.hanning(len(signal))
    frequencies = np.fft.rfftfreq(len(signal), 1 / sampling_rate)
    band = (frequencies > low_hz) & (frequencies < high_hz)
    return 60 * float(frequencies[band][np.argmax(np.abs(np.fft.rfft(centred))[band])])


def heart_rate(bvp: np.ndarray, sampling_rate: float = 100.0) -> float:
    """Beats per minute of a PPG (42-210 bpm)."""
    return rate_per_min(bvp, 0.7, 3.5, sampling_rate)


def breathing_rate(resp: np.ndarray, sampling_rate: float = 100.0) -> float:
    """Breaths per minute of a belt signal (6-42 /min)."""
    return rate_per_min(resp, 0.1, 0.7, sampling_rate)
