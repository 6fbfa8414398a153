"""What a head reads for each window: backbone embeddings and physiological scalars, calibrated.

Both come from the device's own code (:mod:`edge.representations` through the
feature cache, :mod:`edge.scalars`) and are calibrated by
:mod:`edge.calibration` exactly as the monitor does it, so a head trained
here sees on the device what it saw in training.

``normalise``:

- ``none``: features as they are;
- ``baseline``: the scalars minus the subject's baseline, the mean of its
  first ``baseline_windows`` No Pain windows (what the monitor learns in the
  first minute after it is attached; deployable). Embeddings stay as they
  are: their images are normalised window by window already, and subtracting
  a one-minute mean of 192-wide embeddings cost 0.05 macro-F1 on the
  synthetic cohort and 0.03-0.08 on a held-out generator setting
  (``python -m training.transfer_table``, rows "embeddings" none/baseline);
- ``subject``: z-scores over all of the subject's windows, pain included:
  an upper bound that no device can reproduce (it needs the future).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.calibration import Baseline, baseline_rows
from edge.monitor import FusionImages, bundle_representation_spec
from edge.scalars import scalar_names, window_scalars
from training.ai4pain import WindowSet

__all__ = ["DEVICE_CHANNELS", "Features", "bundle_embeddings", "calibrate", "device_channels", "window_scalar_features"]

DEVICE_CHANNELS = {"Eda": "EDA", "Bvp": "BVP", "Resp": "RESP", "SpO2": "SpO2"}
"""AI4PAIN folder name -> the device's channel name."""


def device_channels(modalities) -> tuple[str, ...]:
    """Device channel names of data-set modalities (``Eda`` -> ``EDA``)."""
    return tuple(DEVICE_CHANNELS[m] for m in modalities)


@dataclass
class Features:
    """Per-window head inputs: embeddings (n, k, D), k may be 0; scalars (n, d), d may be 0."""

    embeddings: np.ndarray
    scalars: np.ndarray

    def __len__(self) -> int:
        return len(self.embeddings)

    def take(self, rows) -> Features:
        return Features(np.ascontiguousarray(self.embeddings[rows]), np.ascontiguousarray(self.scalars[rows]))


def window_scalar_features(windows: WindowSet) -> tuple[np.ndarray, tuple[str, ...]]:
    """:func:`edge.scalars.window_scalars` of every window, and their names."""
    channels = device_channels(windows.modalities)
    return window_scalars(windows.signals, channels, windows.sampling_rate), scalar_names(channels)


def calibrate(features: Features, windows: WindowSet, normalise: str, baseline_windows: int) -> Features:
    """Features relative to each subject's baseline (or z-scored per subject); see the module docstring."""
    if normalise == "none":
        return Features(features.embeddings.astype(np.float32), features.scalars.astype(np.float32))
    if normalise == "baseline":
        rest = baseline_rows(windows.labels, windows.subjects, windows=baseline_windows)
        scalars = np.empty(features.scalars.shape, dtype=np.float32)
        for subject in np.unique(windows.subjects):
            rows = windows.subjects == subject
            scalars[rows] = Baseline.fit(features.scalars[rows & rest]).apply(features.scalars[rows])
        return Features(features.embeddings.astype(np.float32), scalars)
    n = len(features)
    flat = np.concatenate([features.embeddings.reshape(n, -1), features.scalars], axis=1).astype(np.float64)
    out = np.empty_like(flat)
    for subject in np.unique(windows.subjects):
        rows = windows.subjects == subject
        out[rows] = (flat[rows] - flat[rows].mean(0)) / np.maximum(flat[rows].std(0), 1e-6)
    width = features.embeddings[0].size if n else 0
    embeddings = out[:, :width].reshape(features.embeddings.shape).astype(np.float32)
    return Features(embeddings, out[:, width:].astype(np.float32))


def bundle_embeddings(bundle, backend, windows, stored=None, batch: int = 8) -> np.ndarray:
    """Embeddings ``(n, k, D)`` of every window through the bundle's fusion images and backbone.

    The device's own path (:class:`~edge.monitor.FusionImages`, the bundle's
    backbone graph). Fusion entries of signals the windows lack are left out,
    so k is the number of entries whose channel the data has. With
    ``stored`` (a ``.npy`` path) they are read from there when it exists and
    written there otherwise (minutes of CPU for a cohort).
    """
    from tqdm import tqdm

    if stored is not None and Path(stored).is_file():
        return np.load(stored)

    modality_of = {DEVICE_CHANNELS[m]: i for i, m in enumerate(windows.modalities)}
    entries = [entry for entry in bundle.fusion if entry.modality in modality_of]
    rows = [modality_of[entry.modality] for entry in entries]
    images_for = FusionImages(entries, bundle_representation_spec(bundle))
    out = []
    for start in tqdm(range(0, len(windows), batch), desc="embeddings", unit="batch"):
        images = np.stack([images_for(signals[rows]) for signals in windows.signals[start:start + batch]])
        flat = images.reshape((-1,) + images.shape[2:])
        embedded = backend.embed(flat[:, np.newaxis])  # one image per "window": any k
        out.append(embedded.reshape(len(images), len(entries), -1))
    embeddings = np.concatenate(out).astype(np.float32)
    if stored is not None:
        Path(stored).parent.mkdir(parents=True, exist_ok=True)
        np.save(stored, embeddings)
    return embeddings
