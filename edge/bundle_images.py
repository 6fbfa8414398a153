"""A bundle's images: its representation settings and the model input of one window.

The monitor, ``biomoe doctor``, the benchmarks and training's feature cache
all draw a window's images here, so they see exactly what the device sees.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from edge.bundle import Bundle, FusionEntry
from edge.errors import EdgeError
from edge.representations import RepresentationSpec, represent, to_model_input

__all__ = ["bundle_representation_spec", "FusionImages"]


def bundle_representation_spec(bundle: Bundle, window_seconds: float | None = None) -> RepresentationSpec:
    """The representation settings a bundle was built with, checked against the bundle.

    Parameters
    ----------
    bundle : Bundle
        Its ``representation_spec`` is read with :meth:`RepresentationSpec.from_dict`;
        the sampling rate, window length and image size it leaves out are the bundle's.
    window_seconds : float, optional
        Window length to draw (``--window``); default the bundle's.

    Returns
    -------
    RepresentationSpec

    Raises
    ------
    EdgeError
        When the settings are invalid or contradict the bundle, or the window
        length does not suit them.
    """
    settings = {
        "sampling_rate": bundle.sampling_rate,
        "window_seconds": bundle.window_seconds,
        "image_size": bundle.image_size,
        **bundle.representation_spec,
    }
    try:
        spec = RepresentationSpec.from_dict(settings)
    except (TypeError, ValueError) as exc:
        raise EdgeError(
            f"bundle {bundle.name}: representation_spec is not valid ({exc}); re-export the bundle"
        ) from None
    for key, expected in (("sampling_rate", bundle.sampling_rate), ("window_seconds", bundle.window_seconds),
                          ("image_size", bundle.image_size)):
        if not math.isclose(getattr(spec, key), expected):
            raise EdgeError(
                f"bundle {bundle.name}: representation_spec.{key} = {getattr(spec, key):g} contradicts the bundle's "
                f"{expected:g}; re-export the bundle"
            )
    if window_seconds is not None and not math.isclose(window_seconds, spec.window_seconds):
        try:
            spec = dataclasses.replace(spec, window_seconds=float(window_seconds))
        except ValueError as exc:
            raise EdgeError(
                f"window_seconds = {window_seconds:g} does not suit the bundle's representations ({exc}); "
                f"use the bundle's {bundle.window_seconds:g} s (leave --window out)"
            ) from None
    return spec


class FusionImages:
    """The model input of one window: the bundle's fusion images, in its order.

    The ``images_for`` callable of :class:`~edge.pipeline.WindowProcessor`.
    Entries of one modality are drawn in one :func:`~edge.representations.represent`
    call, so the three spectrogram kinds of a channel share one STFT.

    Parameters
    ----------
    fusion : sequence of FusionEntry
        The bundle's fusion list.
    spec : RepresentationSpec
        From :func:`bundle_representation_spec`.

    Examples
    --------
    >>> import numpy as np
    >>> from edge.bundle import FusionEntry
    >>> spec = RepresentationSpec(image_size=32)
    >>> images_for = FusionImages([FusionEntry("EDA", "scalogram"), FusionEntry("BVP", "waveform"),
    ...                            FusionEntry("EDA", "recurrence")], spec)
    >>> rows = np.random.default_rng(0).normal(size=(3, spec.n_samples))
    >>> images_for(rows).shape
    (3, 3, 32, 32)
    """

    def __init__(self, fusion: Sequence[FusionEntry], spec: RepresentationSpec):
        self.spec = spec
        self.n_images = len(fusion)
        groups: dict[str, list[int]] = {}
        for position, entry in enumerate(fusion):
            groups.setdefault(entry.modality, []).append(position)
        # (row of the modality's first entry, its kinds, their positions in the output)
        self._plan = [
            (positions[0], tuple(fusion[p].representation for p in positions), np.asarray(positions))
            for positions in groups.values()
        ]

    def __call__(self, signals) -> np.ndarray:
        """Float32 images ``(k, 3, S, S)`` in [0, 1] of ``signals`` ``(k, n_samples)`` (one row per entry)."""
        signals = np.asarray(signals, dtype=np.float64)
        if signals.shape != (self.n_images, self.spec.n_samples):
            raise ValueError(
                f"signals must have shape ({self.n_images}, {self.spec.n_samples}) (one row per fusion entry), "
                f"got {signals.shape}"
            )
        size = self.spec.image_size
        images = np.empty((self.n_images, 3, size, size), dtype=np.float32)
        for row, kinds, positions in self._plan:
            drawn = represent(signals[row], self.spec, kinds, sampling_rate=self.spec.sampling_rate)
            images[positions] = to_model_input(drawn)
        return images
