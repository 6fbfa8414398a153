"""What a head reads for each window: backbone embeddings and physiological scalars, calibrated.

Both come from the device's own code (:mod:`edge.representations` through the
feature cache, :mod:`edge.scalars`) and are calibrated by
:mod:`edge.calibration` exactly as the monitor does it, so a head trained
here sees on the device what it saw in training.

``normalise``:

- ``none``: features as they are;
- ``baseline``: embeddings and scalars minus the subject's baseline, the
  mean of its first ``baseline_windows`` No Pain windows (what the monitor
  learns in the first minute after it is attached; deployable);
- ``baseline-scalars``: only the scalars minus that baseline, embeddings as
  they are (their images are normalised window by window already). Better on
  AI4PAIN-layout data, where every No Pain window is a baseline window, worse
  at telling rest from pain after the calibration minute (training/README.md);
- ``subject``: z-scores over all of the subject's windows, pain included:
  an upper bound that no device can reproduce (it needs the future).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.calibration import Baseline, baseline_rows
from edge.bundle_images import FusionImages, bundle_representation_spec
from edge.scalars import scalar_names, window_scalars
from training.ai4pain import WindowSet

logger = logging.getLogger(__name__)

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
    n = len(features)
    embeddings = features.embeddings.reshape(n, -1)
    calibrated = features.scalars if normalise == "baseline-scalars" else np.concatenate([embeddings, features.scalars], 1)
    out = np.empty(calibrated.shape, dtype=np.float64)
    rest = baseline_rows(windows.labels, windows.subjects, windows=baseline_windows) if normalise != "subject" else None
    for subject in np.unique(windows.subjects):
        rows = windows.subjects == subject
        if rest is None:
            out[rows] = (calibrated[rows] - calibrated[rows].mean(0)) / np.maximum(calibrated[rows].std(0), 1e-6)
        else:
            out[rows] = Baseline.fit(calibrated[rows & rest]).apply(calibrated[rows])
    if normalise == "baseline-scalars":
        return Features(features.embeddings.astype(np.float32), out.astype(np.float32))
    width = features.embeddings[0].size if n else 0
    embeddings = out[:, :width].reshape(features.embeddings.shape).astype(np.float32)
    return Features(embeddings, out[:, width:].astype(np.float32))


def bundle_embeddings(bundle, backend, windows, stored=None, batch: int = 8) -> np.ndarray:
    """Embeddings ``(n, k, D)`` of every window through the bundle's fusion images and backbone.

    The device's own path (:class:`~edge.bundle_images.FusionImages`, the bundle's
    backbone graph). Fusion entries of signals the windows lack are left out,
    so k is the number of entries whose channel the data has. With
    ``stored`` (a ``.npy`` path) they are read from there when it exists and
    holds one row per window, and written there otherwise (minutes of CPU for
    a cohort).
    """
    from tqdm import tqdm

    if stored is not None and Path(stored).is_file():
        kept = np.load(stored)
        if len(kept) == len(windows):
            return kept
        logger.warning("%s holds %d windows' embeddings, the data %d: computing them again", stored, len(kept), len(windows))

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
