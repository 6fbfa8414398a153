"""Representation images for calibration and validation of an export.

The int8 ranges must come from what the device will feed the model: images
of real windows drawn with the bundle's own :class:`RepresentationSpec`, one
per fusion entry. :func:`load_window_images` reads either an AI4PAIN-layout
folder (``training.ai4pain.load_split``, then ``edge.representations.represent``)
or a ``.npz`` of ready images, and refuses anything of the wrong shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.representations import RepresentationSpec, represent, to_model_input

from .errors import ExportError

__all__ = ["DEVICE_CHANNELS", "WindowImages", "device_channel", "load_window_images", "window_images"]

#: AI4PAIN modality folder name (lower case) -> channel name the device sends.
DEVICE_CHANNELS = {"eda": "EDA", "bvp": "BVP", "resp": "RESP", "spo2": "SpO2"}


def device_channel(modality: str) -> str:
    """The device's name of a modality (``"Eda"`` -> ``"EDA"``); device names map to themselves."""
    try:
        return DEVICE_CHANNELS[modality.lower()]
    except KeyError:
        raise ExportError(
            f"unknown modality {modality!r}; known: {', '.join(DEVICE_CHANNELS.values())} "
            "(or the AI4PAIN folder names Eda, Bvp, Resp, SpO2)"
        ) from None


@dataclass(frozen=True)
class WindowImages:
    """Model inputs of labelled (or unlabelled) windows.

    Attributes
    ----------
    images : ndarray of float32, shape (n_windows, k, 3, S, S)
        One image per fusion entry, in fusion order, values in [0, 1].
    labels : ndarray of int64, shape (n_windows,), or None
        Class indices when known.
    source : str
        Where they came from, as the last two parts of the path (for the parity report).
    """

    images: np.ndarray
    labels: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.images)

    def flat(self, limit: int | None = None, seed: int = 0) -> np.ndarray:
        """All images as one (n, 3, S, S) batch, or ``limit`` of them drawn evenly at random."""
        flat = self.images.reshape((-1,) + self.images.shape[2:])
        if limit is not None and limit < len(flat):
            chosen = np.sort(np.random.default_rng(seed).choice(len(flat), size=limit, replace=False))
            flat = flat[chosen]
        return flat


def window_images(signals: np.ndarray, modalities, fusion, spec: RepresentationSpec, sampling_rate: float) -> np.ndarray:
    """Images (n, k, 3, S, S) of windows ``signals`` (n, n_modalities, n_samples), one per fusion entry."""
    by_channel = {device_channel(name): row for row, name in enumerate(modalities)}
    images = []
    for entry in fusion:
        channel = device_channel(entry["modality"])
        if channel not in by_channel:
            raise ExportError(
                f"the fusion needs modality {entry['modality']!r} but the data has {', '.join(modalities)}"
            )
        drawn = represent(signals[:, by_channel[channel]], spec, [entry["representation"]], sampling_rate=sampling_rate)
        images.append(to_model_input(drawn)[:, 0])
    return np.stack(images, axis=1)


def load_window_images(
    source,
    fusion,
    spec: RepresentationSpec,
    *,
    split: str,
    max_windows: int | None = None,
    seed: int = 0,
    what: str = "calibration",
) -> WindowImages:
    """Images of real windows from an AI4PAIN-layout folder or a ``.npz`` file.

    Parameters
    ----------
    source : str or Path
        A folder holding ``train/``, ``validation/``... (AI4PAIN layout), or a
        ``.npz`` with ``images`` float32 in [0, 1] of shape (n, k, 3, S, S)
        (windows, for validation and calibration) or (n, 3, S, S) (loose
        images, calibration only), and optionally ``labels`` (n,).
    fusion : sequence of dict
        ``{"modality", "representation"}`` per image, in model-input order.
    spec : RepresentationSpec
        How to draw the images (from the head file / run config).
    split : str
        Split folder to read from a data set folder (``"train"`` for
        calibration, ``"validation"`` for the parity report).
    max_windows : int, optional
        Keep at most this many windows, drawn at random (``seed``) across subjects.
    what : str
        ``"calibration"`` or ``"validation"``, for messages.

    Raises
    ------
    ExportError
        Missing source, wrong shape, dtype or value range, or a data set
        without the fusion's modalities.
    """
    from training.ai4pain import MODALITIES, load_split

    path = Path(source)
    k, size = len(fusion), spec.image_size
    if path.suffix == ".npz" and path.is_file():
        images, labels = _read_npz(path, k, size, what)
    elif path.is_dir():
        windows = load_split(path, split, MODALITIES, window_seconds=spec.window_seconds, sampling_rate=spec.sampling_rate)
        if max_windows is not None and len(windows) > max_windows:
            chosen = np.sort(np.random.default_rng(seed).choice(len(windows), size=max_windows, replace=False))
            windows = windows.take(chosen)
        images = window_images(windows.signals, windows.modalities, fusion, spec, windows.sampling_rate)
        labels = windows.labels
        path = path / split
    else:
        raise ExportError(
            f"{what} data {path} is neither an AI4PAIN-layout folder nor a .npz file; pass the data set folder "
            "(holding train/ and validation/) or a .npz with 'images'"
        )
    if max_windows is not None and len(images) > max_windows:
        chosen = np.sort(np.random.default_rng(seed).choice(len(images), size=max_windows, replace=False))
        images, labels = images[chosen], None if labels is None else labels[chosen]
    if len(images) == 0:
        raise ExportError(f"{what} data {path} holds no windows")
    # The folder and file name only: a manifest must not carry the build machine's absolute paths.
    return WindowImages(images, labels, "/".join(path.parts[-2:]))


def _read_npz(path: Path, k: int, size: int, what: str):
    try:
        with np.load(path) as data:
            if "images" not in data:
                raise ExportError(f"{what} file {path} has no 'images' array (it has {', '.join(data.files) or 'none'})")
            images = data["images"]
            labels = data["labels"] if "labels" in data else None
    except (OSError, ValueError) as error:
        raise ExportError(f"{what} file {path} is not a readable .npz ({error})") from None
    window_shape, image_shape = (k, 3, size, size), (3, size, size)
    if images.ndim == 4 and images.shape[1:] == image_shape and what == "calibration":
        images = images[:, np.newaxis]
    elif not (images.ndim == 5 and images.shape[1:] == window_shape):
        allowed = f"(n, {k}, 3, {size}, {size})" + (f" or (n, 3, {size}, {size})" if what == "calibration" else "")
        raise ExportError(
            f"{what} images in {path} have shape {images.shape}; expected {allowed} float32 in [0, 1] "
            f"(k = {k} fusion images of {size}x{size}), as edge.representations.to_model_input returns"
        )
    if images.dtype != np.float32 or not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ExportError(
            f"{what} images in {path} must be finite float32 in [0, 1] (to_model_input output), got {images.dtype} "
            f"in [{float(np.nanmin(images)):g}, {float(np.nanmax(images)):g}]"
        )
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64)
        if labels.shape != (len(images),):
            raise ExportError(f"labels in {path} have shape {labels.shape}, expected ({len(images)},)")
    return images, labels
