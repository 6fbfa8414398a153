"""Patient calibration: features relative to the patient's own rest baseline.

People differ more from each other than pain changes any one of them (a
resting heart rate of 55 or 95, skin conductance of 0.5 or 20 uS), and
sensors differ in gain and offset. A bedside device can see the patient at
rest when it is attached, so it learns a baseline from the first windows
(default six: one minute) and subtracts it from every later window's
physiological scalars (:mod:`edge.scalars`) and, where the bundle says so,
embeddings. Training does the same
with each subject's first No Pain windows (``biomoe finetune --normalise
baseline``), never with pain windows, so the head learns *changes from rest*.

Only the mean is removed: six windows are too few for a stable per-feature
spread (a z-score against them inflates any feature that happened to be
still during that minute); the head's own input scaling is learned over all
training subjects.

Examples
--------
>>> import numpy as np
>>> rest = np.array([[70.0, 1.0], [72.0, 1.2], [71.0, 1.1]])
>>> baseline = Baseline.fit(rest)
>>> baseline.apply(np.array([86.0, 1.1])).round(3).tolist()
[15.0, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CALIBRATIONS", "DEFAULT_BASELINE_WINDOWS", "Baseline", "baseline_rows"]

CALIBRATIONS = ("none", "baseline")
"""``none``: features as they are; ``baseline``: minus the patient's rest baseline."""

DEFAULT_BASELINE_WINDOWS = 6
"""Windows of rest a baseline averages: one minute of 10 s windows."""


@dataclass(frozen=True)
class Baseline:
    """The mean of a patient's rest windows, per feature.

    Attributes
    ----------
    mean : ndarray of float64, shape (..., n_features)
        Feature means over the rest windows (any trailing shape, e.g. (k, 192)
        for embeddings).
    windows : int
        How many windows it averages.
    """

    mean: np.ndarray
    windows: int

    @classmethod
    def fit(cls, rows) -> Baseline:
        """The baseline of rest windows ``rows`` (shape ``(n_windows, ...)``, n >= 1, finite)."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim < 2 or len(rows) == 0:
            raise ValueError(f"a baseline needs at least one window of features (n_windows, ...), got {rows.shape}")
        if not np.isfinite(rows).all():
            raise ValueError("baseline windows must have finite features")
        return cls(mean=rows.mean(axis=0), windows=len(rows))

    def apply(self, features) -> np.ndarray:
        """``features`` (one window or a batch, same trailing shape) minus the baseline."""
        features = np.asarray(features, dtype=np.float64)
        if features.shape[-self.mean.ndim:] != self.mean.shape:
            raise ValueError(f"features of shape {features.shape} do not end in the baseline's {self.mean.shape}")
        return features - self.mean

    def to_dict(self) -> dict:
        """JSON-ready form (stored with the monitoring session)."""
        return {"windows": self.windows, "shape": list(self.mean.shape), "mean": self.mean.ravel().tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Baseline:
        """Inverse of :meth:`to_dict`."""
        return cls(mean=np.asarray(data["mean"], dtype=np.float64).reshape(data["shape"]), windows=int(data["windows"]))


def baseline_rows(labels, subjects, order=None, windows: int = DEFAULT_BASELINE_WINDOWS) -> np.ndarray:
    """Boolean mask of each subject's first ``windows`` No Pain (label 0) windows: its calibration minute.

    Parameters
    ----------
    labels, subjects : array_like, shape (n,)
        Per-window label (0 = No Pain) and subject id.
    order : array_like, shape (n,), optional
        Session position of each window (e.g. its start sample within the
        subject's recording); default: the given order.
    windows : int
        Rest windows per subject (0: all of them).

    Raises
    ------
    ValueError
        When a subject has no No Pain window to calibrate on.
    """
    labels, subjects = np.asarray(labels), np.asarray(subjects)
    order = np.arange(len(labels)) if order is None else np.asarray(order)
    mask = np.zeros(len(labels), dtype=bool)
    for subject in np.unique(subjects):
        rest = np.flatnonzero((subjects == subject) & (labels == 0))
        if len(rest) == 0:
            raise ValueError(f"subject {str(subject)!r} has no No Pain window to calibrate on")
        rest = rest[np.argsort(order[rest], kind="stable")]
        mask[rest if windows == 0 else rest[:windows]] = True
    return mask
