"""``biomoe evaluate --bundle``: how a deployable bundle labels a data set's windows.

The device's own path, without the serial link: the bundle's fusion images
and backbone graph (:func:`training.features.bundle_embeddings`), the
physiological scalars, the calibration its manifest declares (each subject's
first rest minute, as the monitor learns it after attaching) and its head,
run by :mod:`edge.backends`. The calibration windows are left out of the
score, since the monitor labels no window while it calibrates. This is the
number to compare bundles by on recordings they were not trained on
(another device, generator or site); ``--rest-windows`` also scores the
data's REST segments as No Pain, the minutes after pain ends that a bedside
monitor must call No Pain too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.backends import create_backend
from edge.bundle import load_bundle
from edge.calibration import baseline_rows
from training.ai4pain import LABELS, load_split
from training.errors import TrainingError
from training.features import DEVICE_CHANNELS, Features, bundle_embeddings, calibrate, window_scalar_features
from training.metrics import label_metrics

__all__ = ["evaluate_bundle"]


def _normalise(calibration: dict) -> str:
    """The :func:`training.features.calibrate` setting that does what a manifest's ``calibration`` says."""
    if calibration.get("method", "none") == "none":
        return "none"
    return "baseline" if calibration.get("embeddings", True) else "baseline-scalars"


def evaluate_bundle(bundle_path, data, split: str = "validation", *, rest_windows: bool = False) -> dict[str, Any]:
    """Accuracy, macro-F1, recall and confusion of a bundle on one split (calibration windows left out)."""
    bundle = load_bundle(bundle_path)
    modality_of = {channel: modality for modality, channel in DEVICE_CHANNELS.items()}
    unknown = [name for name in bundle.channel_names if name not in modality_of]
    if unknown:
        raise TrainingError(f"{bundle.path} reads {', '.join(unknown)}, which AI4PAIN-layout data does not hold")
    windows = load_split(data, split, tuple(modality_of[name] for name in bundle.channel_names),
                         rest_as_no_pain=rest_windows)
    calibration = dict(bundle.manifest.get("calibration") or {})
    normalise = _normalise(calibration)
    with create_backend(bundle) as backend:
        embeddings = bundle_embeddings(bundle, backend, windows)
        scalars, names = window_scalar_features(windows) if bundle.scalars else (np.zeros((len(windows), 0)), ())
        if tuple(names) != tuple(bundle.scalars):
            raise TrainingError(f"{bundle.path} expects the scalars {list(bundle.scalars)}, the data gives {list(names)}")
        features = calibrate(Features(embeddings, scalars), windows, normalise, int(calibration.get("windows", 0)))
        probabilities = backend.classify(features.embeddings, features.scalars if bundle.scalars else None)
    predicted = np.array([LABELS.index(name) for name in bundle.labels])[probabilities.argmax(1)]
    scored = np.ones(len(windows), dtype=bool)
    if normalise != "none":
        scored = ~baseline_rows(windows.labels, windows.subjects, windows=int(calibration["windows"]))
    report = label_metrics(windows.labels[scored], predicted[scored], [LABELS.index(name) for name in bundle.labels],
                           LABELS)
    report.update(bundle=str(Path(bundle.path)), data=str(data), split=split, rest_windows=rest_windows,
                  calibration=normalise, windows_scored=int(scored.sum()),
                  calibration_windows_left_out=int((~scored).sum()))
    return report
