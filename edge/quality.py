"""Signal-quality gate: is each channel of a window fit to be read by the model?

Each channel of a window gets a verdict ``{"ok": bool, "flags": [...], ...}``
from five checks (NeuroKit2-style, one function per job, ``sampling_rate``
always explicit):

``missing``
    more than ``max_missing_fraction`` of the samples are NaN (lost on the
    serial link, or the channel lagged; see :mod:`edge.windows`).
``flat_line``
    the standard deviation is at most the channel's ``flat_std``, or a run of
    identical consecutive samples lasts ``max_constant_seconds`` or more
    (a disconnected electrode or a stuck ADC); each check only where the
    channel's spec sets it.
``saturation``
    more than ``max_saturated_fraction`` of the samples sit at the ADC limits
    ``adc_range`` (the bundle's, narrowed to the range the device announces:
    :func:`channel_spec_with_adc`), or the device raised its saturation flag.
``out_of_range``
    more than ``max_out_of_range_fraction`` of the samples fall outside the
    physiological range ``valid_range`` (EDA in uS, SpO2 in %).
``lead_off``
    the device reported the electrode off during the window.

Policy for a window with a bad channel (the monitor follows it): the window is
still inferred, so a brief artefact never silences the monitor, and the result
is stored with its quality so every reading can be judged later. Before the
representations, missing samples are filled by :func:`signal_fill` (linear
interpolation between the nearest present samples, edges held; a channel with
no sample at all becomes zeros). A window whose channels are not all ``ok`` is
*unreliable*: it does not move the smoothed label (see
:mod:`edge.smoothing`), so the reported pain level keeps its last reliable
value and the quality flags say why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

__all__ = [
    "QUALITY_FLAGS",
    "DEVICE_FLAGS",
    "ChannelSpec",
    "DEFAULT_CHANNEL_SPECS",
    "channel_spec",
    "channel_spec_with_adc",
    "signal_quality",
    "window_quality",
    "signal_fill",
    "DeviceFlags",
]

#: Every flag a channel verdict can carry, in report order.
QUALITY_FLAGS = ("missing", "flat_line", "saturation", "out_of_range", "lead_off")
#: The flags a device can raise itself (status events of the sensor board).
DEVICE_FLAGS = ("lead_off", "saturation")


@dataclass(frozen=True)
class ChannelSpec:
    """What a channel's samples should look like.

    Parameters
    ----------
    name : str
        Channel name as the device sends it (``"EDA"``, ``"BVP"``, ...).
    unit : str or None
        Unit of the samples (``"uS"``, ``"%"``); None for arbitrary units.
    valid_range : (float, float) or None
        Physiologically plausible values, inclusive; None disables the check.
    adc_range : (float, float) or None
        The sensor's measuring limits in the same unit: a sample at or beyond
        them is saturated. None leaves saturation to the device flag.
    flat_std : float or None
        A window whose standard deviation is at most this is a flat line;
        None disables the check.
    max_constant_seconds : float or None
        A run of identical samples this long is a flat line; None disables
        the check.
    """

    name: str
    unit: str | None = None
    valid_range: tuple[float, float] | None = None
    adc_range: tuple[float, float] | None = None
    flat_std: float | None = 0.0
    max_constant_seconds: float | None = None

    def __post_init__(self):
        for field_name in ("valid_range", "adc_range"):
            bounds = getattr(self, field_name)
            if bounds is None:
                continue
            low, high = (float(v) for v in bounds)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(
                    f"channel {self.name!r}: {field_name} must be two finite numbers [low, high] "
                    f"with low < high, got {list(bounds)!r}"
                )
            object.__setattr__(self, field_name, (low, high))
        if self.flat_std is not None and not self.flat_std >= 0:
            raise ValueError(f"channel {self.name!r}: flat_std must be >= 0, got {self.flat_std!r}")
        if self.max_constant_seconds is not None and not self.max_constant_seconds > 0:
            raise ValueError(
                f"channel {self.name!r}: max_constant_seconds must be > 0 or None, "
                f"got {self.max_constant_seconds!r}"
            )


#: Defaults for the AI4PAIN channels; a bundle manifest may override any field.
#: EDA below 0.05 uS means no skin contact, above 100 uS no human skin;
#: SpO2 below 50 % on a conscious patient is a sensor fault, and SpO2 holds one
#: whole-percent value for minutes, so it has no flat-line check. BVP and RESP are
#: in arbitrary units, so only flatness is checked: a pulse wave never holds
#: one value for 1 s, breathing not for 8 s (longer than a held breath at rest).
DEFAULT_CHANNEL_SPECS: dict[str, ChannelSpec] = {
    "EDA": ChannelSpec("EDA", "uS", valid_range=(0.05, 100.0), flat_std=1e-4, max_constant_seconds=5.0),
    "BVP": ChannelSpec("BVP", None, flat_std=1e-6, max_constant_seconds=1.0),
    "RESP": ChannelSpec("RESP", None, flat_std=1e-6, max_constant_seconds=8.0),
    "SpO2": ChannelSpec("SpO2", "%", valid_range=(50.0, 100.0), flat_std=None),
}


def channel_spec(name: str, **overrides) -> ChannelSpec:
    """The default spec of channel ``name`` with ``overrides`` applied.

    A channel without defaults gets a spec that checks only missing samples,
    an exactly flat line and device flags.

    Examples
    --------
    >>> channel_spec("EDA", adc_range=(0.0, 25.0)).unit
    'uS'
    """
    base = DEFAULT_CHANNEL_SPECS.get(name, ChannelSpec(name))
    return replace(base, **overrides)


def channel_spec_with_adc(spec: ChannelSpec, adc_range: tuple[float, float]) -> ChannelSpec:
    """``spec`` that also counts samples at the device's ADC limits as saturated.

    A sensor board announces its ADC's range (the hello's ``raw_min`` and
    ``raw_max``): a sample at either limit is clipped, whether or not the
    board raises its saturation flag. With an ``adc_range`` of its own (a
    sensor that saturates before its ADC), the narrower of the two applies, so
    a sample at the limits of either counts. Two ranges with nothing between
    them (an ADC of one value, or one wholly outside ``spec``'s range, which
    then flags every sample already) leave ``spec`` as it is.

    Parameters
    ----------
    spec : ChannelSpec
        The channel's spec (the bundle's).
    adc_range : (float, float)
        The device's ADC limits in physical units, lowest first
        (:attr:`firmware_bridge.protocol.ChannelSpec.physical_range`).

    Returns
    -------
    ChannelSpec

    Examples
    --------
    >>> channel_spec_with_adc(channel_spec("BVP"), (-0.15, 0.15)).adc_range
    (-0.15, 0.15)
    >>> channel_spec_with_adc(channel_spec("EDA", adc_range=(0.0, 25.0)), (0.0, 32.7675)).adc_range
    (0.0, 25.0)
    """
    low, high = (float(v) for v in adc_range)
    if spec.adc_range is not None:
        low, high = max(low, spec.adc_range[0]), min(high, spec.adc_range[1])
    return replace(spec, adc_range=(low, high)) if low < high else spec


def signal_quality(
    signal,
    sampling_rate: float,
    spec: ChannelSpec,
    device_flags: Iterable[str] = (),
    *,
    max_missing_fraction: float = 0.1,
    max_saturated_fraction: float = 0.01,
    max_out_of_range_fraction: float = 0.05,
) -> dict:
    """Quality verdict of one channel of one window.

    Parameters
    ----------
    signal : array_like, shape (n_samples,)
        The channel's samples; NaN marks a missing sample.
    sampling_rate : float
        Sampling rate of ``signal`` in Hz.
    spec : ChannelSpec
        What the channel should look like (see :func:`channel_spec`).
    device_flags : iterable of str
        Flags the device raised on this channel during the window, among
        :data:`DEVICE_FLAGS`.
    max_missing_fraction, max_saturated_fraction, max_out_of_range_fraction : float
        Fractions of the window above which the flag is raised.

    Returns
    -------
    dict
        ``ok`` (bool, no flag raised), ``flags`` (list of :data:`QUALITY_FLAGS`
        in that order), ``missing`` (fraction of NaN samples), ``std`` (of the
        present samples, NaN when none), ``longest_constant_seconds``,
        ``saturated`` and ``out_of_range`` (fractions of the present samples).
        Plain Python types, ready for JSON.

    Examples
    --------
    >>> import numpy as np
    >>> signal_quality(np.full(1000, 3.0), 100.0, channel_spec("EDA"))["flags"]
    ['flat_line']
    """
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 1 or signal.size == 0:
        raise ValueError(f"signal must be a non-empty 1-D array, got shape {signal.shape}")
    if not sampling_rate > 0:
        raise ValueError(f"sampling_rate must be > 0 Hz, got {sampling_rate!r}")
    device_flags = set(device_flags)
    unknown = device_flags.difference(DEVICE_FLAGS)
    if unknown:
        raise ValueError(f"unknown device flags {sorted(unknown)}; allowed: {list(DEVICE_FLAGS)}")

    present_mask = np.isfinite(signal)
    present = signal[present_mask]
    missing = 1.0 - present.size / signal.size
    flags = set(device_flags)
    if missing > max_missing_fraction:
        flags.add("missing")

    std = float(np.std(present)) if present.size else math.nan
    longest_constant = _longest_constant_run(signal) / sampling_rate
    saturated = out_of_range = 0.0
    if present.size:
        if spec.flat_std is not None and present.size > 1 and std <= spec.flat_std:
            flags.add("flat_line")
        if spec.max_constant_seconds is not None and longest_constant >= spec.max_constant_seconds:
            flags.add("flat_line")
        if spec.adc_range is not None:
            low, high = spec.adc_range
            saturated = float(np.mean((present <= low) | (present >= high)))
            if saturated > max_saturated_fraction:
                flags.add("saturation")
        if spec.valid_range is not None:
            low, high = spec.valid_range
            out_of_range = float(np.mean((present < low) | (present > high)))
            if out_of_range > max_out_of_range_fraction:
                flags.add("out_of_range")

    ordered = [flag for flag in QUALITY_FLAGS if flag in flags]
    return {
        "ok": not ordered,
        "flags": ordered,
        "missing": round(missing, 6),
        "std": std,
        "longest_constant_seconds": round(longest_constant, 6),
        "saturated": round(saturated, 6),
        "out_of_range": round(out_of_range, 6),
    }


def window_quality(
    window,
    sampling_rate: float,
    specs: Iterable[ChannelSpec],
    device_flags: Mapping[str, Iterable[str]] | None = None,
    **thresholds,
) -> dict[str, dict]:
    """Quality verdict of every channel of a window.

    Parameters
    ----------
    window : array_like, shape (n_channels, n_samples)
        Aligned channels, in the order of ``specs``; NaN marks missing samples.
    sampling_rate : float
        Sampling rate in Hz.
    specs : iterable of ChannelSpec
        One spec per row of ``window``.
    device_flags : mapping of str to iterable of str, optional
        Device flags raised during the window, by channel name
        (e.g. from :meth:`DeviceFlags.during`).
    **thresholds
        Passed to :func:`signal_quality`.

    Returns
    -------
    dict of str to dict
        Channel name -> :func:`signal_quality` verdict, in channel order.
    """
    window = np.asarray(window, dtype=np.float64)
    specs = list(specs)
    if window.ndim != 2 or window.shape[0] != len(specs):
        raise ValueError(
            f"window must have shape (n_channels={len(specs)}, n_samples), got {window.shape}"
        )
    device_flags = device_flags or {}
    return {
        spec.name: signal_quality(row, sampling_rate, spec, device_flags.get(spec.name, ()), **thresholds)
        for spec, row in zip(specs, window)
    }


def signal_fill(signal) -> np.ndarray:
    """Fill missing (NaN) samples so the representations can be drawn.

    Linear interpolation between the nearest present samples; leading and
    trailing gaps hold the nearest present value; a signal with no present
    sample becomes zeros.

    Parameters
    ----------
    signal : array_like, shape (..., n_samples)
        Signal(s); NaN marks a missing sample. Rows are filled independently.

    Returns
    -------
    numpy.ndarray
        A filled float64 copy, same shape.

    Examples
    --------
    >>> signal_fill([1.0, float("nan"), 3.0]).tolist()
    [1.0, 2.0, 3.0]
    """
    filled = np.array(signal, dtype=np.float64)
    rows = filled.reshape(-1, filled.shape[-1])
    positions = np.arange(rows.shape[-1])
    for row in rows:
        present = np.isfinite(row)
        if present.all():
            continue
        if not present.any():
            row[:] = 0.0
            continue
        row[~present] = np.interp(positions[~present], positions[present], row[present])
    return filled


def _longest_constant_run(signal: np.ndarray) -> int:
    """Length in samples of the longest run of identical present samples."""
    if signal.size < 2:
        return int(np.isfinite(signal).sum())
    same = signal[1:] == signal[:-1]  # NaN never equals anything: a gap breaks a run
    if not same.any():
        return int(np.isfinite(signal).any())
    # Lengths of the runs of True in `same`, each +1 for the run's first sample.
    edges = np.diff(np.concatenate(([0], same.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((stops - starts).max()) + 1


class DeviceFlags:
    """When the device raised each flag on each channel, for the quality gate.

    The sensor board reports its state in status events ("lead off on EDA",
    "BVP saturated"); the windows are cut later. This keeps the intervals
    during which each flag was active so a window can ask which flags touched
    it. Memory stays bounded: :meth:`prune` forgets intervals that ended before
    the oldest window still to come.

    Examples
    --------
    >>> flags = DeviceFlags()
    >>> flags.update("EDA", 12.0, {"lead_off"})
    >>> flags.update("EDA", 14.0, set())
    >>> flags.during("EDA", 10.0, 20.0), flags.during("EDA", 15.0, 25.0)
    ({'lead_off'}, set())
    """

    def __init__(self):
        # (channel, flag) -> list of [start, end] device times; end None while active.
        self._intervals: dict[tuple[str, str], list[list]] = {}

    def update(self, channel: str, time: float, active: Iterable[str]) -> None:
        """Record the full set of flags active on ``channel`` from device time ``time`` (s)."""
        active = set(active)
        unknown = active.difference(DEVICE_FLAGS)
        if unknown:
            raise ValueError(f"unknown device flags {sorted(unknown)}; allowed: {list(DEVICE_FLAGS)}")
        for flag in DEVICE_FLAGS:
            intervals = self._intervals.setdefault((channel, flag), [])
            is_open = bool(intervals) and intervals[-1][1] is None
            if flag in active and not is_open:
                intervals.append([time, None])
            elif flag not in active and is_open:
                intervals[-1][1] = time

    def during(self, channel: str, start: float, end: float) -> set[str]:
        """Flags active on ``channel`` at any time in ``[start, end)`` (device seconds)."""
        found = set()
        for flag in DEVICE_FLAGS:
            for began, ended in self._intervals.get((channel, flag), ()):
                if began < end and (ended is None or ended > start):
                    found.add(flag)
                    break
        return found

    def prune(self, before: float) -> None:
        """Forget intervals that ended at or before device time ``before`` (s)."""
        for key, intervals in self._intervals.items():
            self._intervals[key] = [iv for iv in intervals if iv[1] is None or iv[1] > before]
