"""One window through the model: quality gate, images, inference, smoothing.

:class:`WindowProcessor` is the part of the monitor between the windower
(:mod:`edge.windows`) and the result store (:mod:`edge.storage`):

1. ``quality``: :func:`edge.quality.window_quality` on every channel, with
   the device flags (lead-off, saturation) raised during the window;
2. ``represent``: missing samples filled (:func:`edge.quality.signal_fill`),
   the bundle's fusion rows picked, turned into images by the ``images_for``
   callable (the monitor passes one built on :mod:`edge.representations`);
3. ``infer``: class probabilities from the bundle's backend;
4. ``smooth``: the smoother, fed only reliable windows (every channel ok);

each stage timed into the result's ``latency_ms``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from edge.backends import Backend
from edge.budget import StageTimer
from edge.bundle import Bundle
from edge.quality import DeviceFlags, signal_fill, window_quality
from edge.smoothing import Smoother
from edge.storage import WindowResult
from edge.windows import Window

__all__ = ["WindowProcessor"]


class WindowProcessor:
    """Turn aligned windows into stored-ready :class:`~edge.storage.WindowResult` records.

    Parameters
    ----------
    bundle : Bundle
        The loaded bundle (labels, channels, fusion order).
    backend : Backend
        Its inference backend (:func:`edge.backends.create_backend`).
    smoother : Smoother
        Temporal smoothing (:func:`edge.smoothing.create_smoother`).
    images_for : callable
        ``images_for(signals) -> images``: ``signals`` is float64
        ``(k, n_samples)``, one filled row per fusion entry in the bundle's
        order; ``images`` must be float32 ``(k, 3, S, S)`` in [0, 1].
    device_flags : DeviceFlags, optional
        Device status flags, consulted per window and pruned as windows pass.
    quality_thresholds : dict, optional
        Passed to :func:`edge.quality.signal_quality`.
    """

    def __init__(
        self,
        bundle: Bundle,
        backend: Backend,
        smoother: Smoother,
        images_for: Callable[[np.ndarray], np.ndarray],
        device_flags: DeviceFlags | None = None,
        quality_thresholds: dict | None = None,
    ):
        self.bundle = bundle
        self.backend = backend
        self.smoother = smoother
        self.images_for = images_for
        self.device_flags = device_flags
        self.quality_thresholds = dict(quality_thresholds or {})
        self._rows = [bundle.channel_names.index(entry.modality) for entry in bundle.fusion]

    def process(
        self, window: Window, wall_time: float | None = None, device_flags: Mapping[str, Iterable[str]] | None = None
    ) -> WindowResult:
        """Run one window through the model.

        Parameters
        ----------
        window : Window
            Cut by a :class:`~edge.windows.Windower` over the bundle's channels, in its order.
        wall_time : float, optional
            Unix time of the result; default now.
        device_flags : mapping of str to iterable of str, optional
            The device flags raised on each channel during the window, already
            looked up. A monitor that records status events on another thread
            than the one processing windows reads them there (a
            :class:`~edge.quality.DeviceFlags` is not shared between threads).
            Default: ask the processor's ``device_flags``.

        Returns
        -------
        WindowResult
        """
        if tuple(window.channels) != self.bundle.channel_names:
            raise ValueError(
                f"window channels {list(window.channels)} differ from the bundle's {list(self.bundle.channel_names)}; "
                "build the Windower from bundle.channel_names"
            )
        timer = StageTimer()
        with timer.stage("quality"):
            flags = {}
            if device_flags is not None:
                flags = {name: set(device_flags.get(name, ())) for name in window.channels}
            elif self.device_flags is not None:
                flags = {name: self.device_flags.during(name, window.start_time, window.end_time)
                         for name in window.channels}
                self.device_flags.prune(before=window.start_time)
            quality = window_quality(
                window.data, window.sampling_rate, self.bundle.channels, flags, **self.quality_thresholds
            )
        with timer.stage("represent"):
            images = self.images_for(signal_fill(window.data)[self._rows])
        with timer.stage("infer"):
            probabilities = self.backend.predict(images)
        with timer.stage("smooth"):
            reliable = all(verdict["ok"] for verdict in quality.values())
            smoothed, smoothed_index = self.smoother.update(probabilities, reliable=reliable)
        labels = self.bundle.labels
        return WindowResult(
            window_index=window.index,
            start_time=window.start_time,
            end_time=window.end_time,
            wall_time=time.time() if wall_time is None else wall_time,
            probabilities=_by_label(labels, probabilities),
            label=labels[int(np.argmax(probabilities))],
            smoothed_probabilities=_by_label(labels, smoothed),
            smoothed_label=labels[smoothed_index],
            quality=quality,
            latency_ms=timer.latency_ms(),
            bundle_id=self.bundle.bundle_id,
            placeholder=self.bundle.placeholder,
        )

    def skipped(self, window: Window, reason: str = "behind", wall_time: float | None = None) -> WindowResult:
        """The record of a window that was not processed (e.g. dropped by :class:`~edge.budget.SkippingQueue`)."""
        return WindowResult(
            window_index=window.index,
            start_time=window.start_time,
            end_time=window.end_time,
            wall_time=time.time() if wall_time is None else wall_time,
            skipped=True,
            skip_reason=reason,
            bundle_id=self.bundle.bundle_id,
            placeholder=self.bundle.placeholder,
        )


def _by_label(labels, values) -> dict[str, float]:
    return {label: float(value) for label, value in zip(labels, values)}
