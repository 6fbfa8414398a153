"""The hand-feature baseline: nine statistics per window, for logistic regression.

What a careful analyst computes first, and what the pipeline has to beat
(issue: "pain levels that hold outside our own generator"): for BVP and RESP
the dominant frequency (FFT peak) and the standard deviation; for EDA the
range, the rise (mean of the last second minus the first) and the mean
level; for SpO2 the mean and the standard deviation. Signals a data set lacks
are left out (an E4 wrist recording gives five).
"""

from __future__ import annotations

import numpy as np

from training.ai4pain import WindowSet

__all__ = ["hand_feature_names", "hand_features"]

_PER_MODALITY = {
    "Bvp": ("dominant_hz", "std"),
    "Resp": ("dominant_hz", "std"),
    "Eda": ("range", "rise", "mean"),
    "SpO2": ("mean", "std"),
}


def hand_feature_names(modalities) -> tuple[str, ...]:
    """``"Modality.statistic"`` names of :func:`hand_features`, in its column order."""
    return tuple(f"{m}.{name}" for m in modalities for name in _PER_MODALITY[m])


def hand_features(windows: WindowSet) -> np.ndarray:
    """float64 (n_windows, n_features): the statistics of every window, by modality."""
    columns = []
    rate = windows.sampling_rate
    for row, modality in enumerate(windows.modalities):
        x = windows.signals[:, row].astype(np.float64)
        if modality in ("Bvp", "Resp"):
            spectrum = np.abs(np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1))
            frequencies = np.fft.rfftfreq(x.shape[1], d=1 / rate)
            columns += [frequencies[1 + np.argmax(spectrum[:, 1:], axis=1)], x.std(axis=1)]
        elif modality == "Eda":
            second = int(round(rate))
            columns += [x.max(axis=1) - x.min(axis=1), x[:, -second:].mean(axis=1) - x[:, :second].mean(axis=1),
                        x.mean(axis=1)]
        else:
            columns += [x.mean(axis=1), x.std(axis=1)]
    return np.stack(columns, axis=1)
