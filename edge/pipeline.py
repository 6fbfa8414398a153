"""One window through the model: quality gate, images, inference, smoothing.

:class:`WindowProcessor` is the part of the monitor between the windower
(:mod:`edge.windows`) and the result store (:mod:`edge.storage`):

1. ``quality``: :func:`edge.quality.window_quality` on every channel, with
   the device flags (lead-off, saturation) raised during the window;
2. ``represent``: missing samples filled (:func:`edge.quality.signal_fill`),
   the bundle's fusion rows picked, turned into images by the ``images_for``
   callable (the monitor passes one built on :mod:`edge.representations`);
3. ``infer``: class probabilities from the bundle's backend; a bundle
   that reads physiological scalars (:mod:`edge.scalars`) gets them too, and
   a bundle calibrated to the patient (:mod:`edge.calibration`) first spends
   its ``calibration.windows`` reliable windows learning the patient's rest
   baseline of those scalars, and of the embeddings when the bundle says so
   (those results carry ``skip_reason="calibrating"`` and no label), then sees
   every window's features minus that baseline;
4. ``smooth``: the smoother, fed only reliable windows (every channel ok);

each stage timed into the result's ``latency_ms``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from edge.backends import Backend
from edge.budget import StageTimer
from edge.bundle import Bundle
from edge.calibration import Baseline
from edge.quality import ChannelSpec, DeviceFlags, signal_fill, window_quality
from edge.scalars import scalar_names, window_scalars
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
    baseline : Baseline, optional
        A patient baseline already learnt (e.g. by an earlier session); default:
        learn it from the first reliable windows when the bundle asks for one.
    on_baseline : callable, optional
        ``on_baseline(baseline)`` once a baseline is learnt (the monitor stores it).
    baseline_windows : int, optional
        Reliable windows the baseline averages; default the bundle's ``calibration.windows``.
    """

    def __init__(
        self,
        bundle: Bundle,
        backend: Backend,
        smoother: Smoother,
        images_for: Callable[[np.ndarray], np.ndarray],
        device_flags: DeviceFlags | None = None,
        quality_thresholds: dict | None = None,
        baseline: Baseline | None = None,
        on_baseline: Callable[[Baseline], None] | None = None,
        baseline_windows: int | None = None,
    ):
        self.bundle = bundle
        self.backend = backend
        self.smoother = smoother
        self.images_for = images_for
        self.device_flags = device_flags
        self.quality_thresholds = dict(quality_thresholds or {})
        self._rows = [bundle.channel_names.index(entry.modality) for entry in bundle.fusion]
        self._scalar_channels = tuple(dict.fromkeys(name.split(".")[0] for name in bundle.scalars))
        self._scalar_rows = [bundle.channel_names.index(channel) for channel in self._scalar_channels]
        computed = scalar_names(self._scalar_channels)
        self._scalar_pick = [computed.index(name) for name in bundle.scalars]
        calibrated = bundle.calibration["method"] == "baseline"
        self.baseline_windows = (baseline_windows or bundle.calibration["windows"]) if calibrated else 0
        self.baseline = baseline
        self.on_baseline = on_baseline
        self._rest: list[np.ndarray] = []

    def recalibrate(self) -> None:
        """Forget the patient's baseline: the next reliable windows learn a new one."""
        self.baseline, self._rest = None, []

    def process(
        self, window: Window, wall_time: float | None = None, device_flags: Mapping[str, Iterable[str]] | None = None,
        channel_specs: Sequence[ChannelSpec] | None = None,
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
        channel_specs : sequence of ChannelSpec, optional
            What each channel should look like, in the window's order; default
            the bundle's. The monitor passes them with the ADC limits the
            device announced (:func:`edge.quality.channel_spec_with_adc`).

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
                window.data, window.sampling_rate, channel_specs or self.bundle.channels, flags,
                **self.quality_thresholds,
            )
        reliable = all(verdict["ok"] for verdict in quality.values())
        with timer.stage("represent"):
            filled = signal_fill(window.data)
            images = self.images_for(filled[self._rows])
            scalars = None
            if self._scalar_rows:
                every = window_scalars(filled[self._scalar_rows], self._scalar_channels, window.sampling_rate)
                scalars = every[self._scalar_pick]
        with timer.stage("infer"):
            if self.baseline_windows:
                probabilities = self._calibrated(images, scalars, reliable)
            else:
                probabilities = self.backend.predict(images, scalars)
        if probabilities is None:
            return WindowResult(
                window_index=window.index, start_time=window.start_time, end_time=window.end_time,
                wall_time=time.time() if wall_time is None else wall_time, quality=quality,
                latency_ms=timer.latency_ms(), skipped=True, skip_reason="calibrating",
                bundle_id=self.bundle.bundle_id, placeholder=self.bundle.placeholder,
            )
        with timer.stage("smooth"):
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

    def _calibrated(self, images: np.ndarray, scalars: np.ndarray, reliable: bool) -> np.ndarray | None:
        """Probabilities of the features minus the patient's baseline; None while the baseline is being learnt.

        The baseline covers the scalars, and the embeddings too when the
        bundle's ``calibration.embeddings`` says so.
        """
        embeddings = self.backend.embed(images[np.newaxis])[0] if self.bundle.calibration["embeddings"] else None
        features = scalars if embeddings is None else np.concatenate([embeddings.ravel(), scalars])
        if self.baseline is None:  # every window until the baseline is complete is part of calibration
            if reliable:
                self._rest.append(features)
            if len(self._rest) == self.baseline_windows:
                self.baseline = Baseline.fit(np.stack(self._rest))
                self._rest = []
                if self.on_baseline is not None:
                    self.on_baseline(self.baseline)
            return None
        relative = self.baseline.apply(features)
        if embeddings is None:
            return self.backend.predict(images, relative)
        width = embeddings.size
        return self.backend.classify(relative[np.newaxis, :width].reshape((1,) + embeddings.shape),
                                     relative[np.newaxis, width:])[0]

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
