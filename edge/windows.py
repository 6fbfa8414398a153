"""Aligned multi-channel windows cut from the device's sample stream.

The sensor board sends each channel in blocks at the channel's own rate, with
the device time of the block's first sample. :class:`Windower` keeps one ring
buffer per channel (fixed capacity: memory does not grow over days), places
every block by device time, and cuts windows on one grid shared by all
channels, at the bundle's rate, as soon as every channel has covered the
window's end.

Missing samples are NaN all the way to the quality gate:

- a block that starts later than the channel's last sample leaves a gap;
- a gap notice from the bridge (:meth:`Windower.mark_lost`) marks its samples;
- a channel that lags more than ``max_wait_seconds`` behind the others (a
  sensor unplugged, a stalled stream) does not hold the monitor up: the
  window is cut anyway with the lagging part missing (``Window.forced``), and
  its samples for that span are dropped if they arrive later.

A jump of the device clock larger than ``resync_seconds`` (the board was
reset, or the link was down for long), or a gap notice longer than that,
restarts the window grid instead of producing hours of empty windows: a gap
costs constant memory however long the device says it was.

A device clock that stops (or steps back) while the blocks keep coming would
make every later block look like a repeat of samples already held, and the
windows would stall. Given the device's sample index of each block
(``first_index``, exact: from the block index), a block whose timestamp did
not advance past the channel's previous block but whose index follows on is
placed by its index instead, and so are the channel's next blocks for as long
as their timestamps stay behind; counted per channel (``retimed``) and in
:attr:`Windower.clock_lags`. Placing by index rather than dropping the late
part and resyncing keeps every sample and the windows contiguous; the windows'
times then run ahead of the device's clock. A clock that merely runs slow
still advances, and stays the reference.

A board's sample clock is never exactly its announced rate, and its block
timestamps jitter: a block of 100 samples announced at 100 Hz may be stamped
1.02 s after the previous one. Placing every block by its timestamp would cut
a hole (or drop an overlap) at every block. So a block is placed right after
the channel's last sample, by sample count, when its timestamp lies within
``timestamp_tolerance_seconds`` plus :data:`RATE_TOLERANCE` of the time since
the channel's last block from where the device clock puts the next sample:
the channel's end plus its ``skew`` (device time minus placed time, as of the
last block). Farther off it is a gap or an overlap as before, sized against
that skew, or exactly by the block's sample index when it has one that the
timestamp agrees with. A block covers the same span on every channel whatever
its rate (one block index, one timestamp), so sample count keeps channels at
different rates aligned exactly; to keep the windows on the device's clock
(status flags, stored times), when a channel's skew exceeds
:data:`REANCHOR_SECONDS` every channel's timeline and the window grid move by
it at once, which moves no sample relative to another: windows then start a
little more or less than a hop apart (counted in :attr:`Windower.reanchors`).
This rather than stretching each channel's rate: nothing is interpolated,
dropped or invented. A channel whose rate measured by the device clock over
:data:`RATE_BASELINE_SECONDS` differs from the announced one by more than
1 % is warned about once (one line, with the rate).

A device may change a channel's rate mid-stream (firmware reconfigured
without a reboot; it says so in a new description): :meth:`Windower.reconfigure`
keeps the window grid, the window indices and every sample held, the changed
channel's resampled to its new rate (:meth:`ChannelBuffer.resampled`), so the
window across the change is cut whole and the next ones from the new rate.

Resampling to the bundle's rate (channels may differ, e.g. SpO2 at 1 Hz,
BVP at 64 Hz, EDA at 4 Hz on a wristband):

- *same rate*: samples are copied (linear interpolation only when the
  channel's sample times are offset from the grid by a fraction of a sample);
- *slower channel* (upsampling): linear interpolation in time. Slow channels
  are step-like (SpO2 updates once a second) or smooth (EDA); band-limited
  interpolation would ring at every step and need samples from the future;
- *faster channel* (downsampling): an anti-aliasing low-pass at the
  channel's own rate (:func:`antialias_taps`: the Kaiser-windowed sinc that
  ``scipy.signal.resample_poly`` designs by default, cut off at the grid's
  Nyquist frequency) on the window plus a margin of the filter's half length
  on each side, then read on the grid by linear interpolation. In NumPy, not
  ``resample_poly``: importing :mod:`scipy.signal` adds about 48 MB to the
  monitor's memory (a fifth of the 250 MB budget of the smallest hub) for
  any board whose sensors run faster than the bundle (``biomoe bench``,
  rows ``peak_rss_monitor`` and ``peak_rss_monitor_250hz``). Missing samples are
  bridged for the filter and marked missing again afterwards (an output
  sample is missing when its nearest input sample is).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge.quality import signal_fill

__all__ = ["MAX_CHANNEL_RATE_HZ", "Window", "ChannelBuffer", "Windower", "antialias_taps", "check_channel_rate"]

_EPS = 1e-6  # fraction of a sample below which a position counts as on a sample
_CHUNK_SECONDS = 1.0  # blocks are written in pieces of at most this much signal
#: Fastest channel a windower takes, Hz. Its ring buffer holds about (window + wait + 1 s) of
#: samples, so this bounds memory (about 1 MB a channel for 10 s windows); far above any biosignal.
MAX_CHANNEL_RATE_HZ = 10_000.0
#: Sample clock error accepted between consecutive blocks, as a fraction of the time between them.
RATE_TOLERANCE = 0.06
#: Skew between sample count and device clock at which the windows' timeline moves to the device clock, s.
REANCHOR_SECONDS = 0.25
#: Device time over which a channel's rate is measured before it is warned about, s.
RATE_BASELINE_SECONDS = 60.0
_RATE_WARNING = 0.01  # a measured rate off the announced one by more than this fraction is warned about

logger = logging.getLogger(__name__)


def check_channel_rate(name: str, rate, window_seconds: float) -> None:
    """Refuse a channel rate windows cannot be cut from.

    Parameters
    ----------
    name : str
        Channel name, for the message.
    rate : float
        The channel's sampling rate, Hz: at most :data:`MAX_CHANNEL_RATE_HZ`
        and at least one sample per window.
    window_seconds : float
        Window length, s.

    Raises
    ------
    ValueError
        Naming the channel, the allowed range and the rate got.

    Examples
    --------
    >>> check_channel_rate("EDA", 1e6, 10.0)
    Traceback (most recent call last):
    ...
    ValueError: sampling rate of channel 'EDA' must be 0.1 to 10000 Hz (a sample per window at least), got 1e+06
    """
    _require_positive(f"sampling rate of channel {name!r}", rate)
    if not 1.0 / window_seconds <= rate <= MAX_CHANNEL_RATE_HZ:
        raise ValueError(
            f"sampling rate of channel {name!r} must be {1.0 / window_seconds:g} to {MAX_CHANNEL_RATE_HZ:g} Hz "
            f"(a sample per window at least), got {rate:g}"
        )


@dataclass(frozen=True)
class Window:
    """One aligned multi-channel window.

    Attributes
    ----------
    index : int
        Sequence number of the window since the windower started (counts on
        across clock resyncs, resets and rate changes).
    start_time, end_time : float
        Device time span ``[start_time, end_time)`` in seconds.
    channels : tuple of str
        Channel names, in row order.
    data : numpy.ndarray, shape (n_channels, n_samples)
        float64 samples at ``sampling_rate``; NaN marks a missing sample.
    sampling_rate : float
        Rate of ``data`` in Hz.
    forced : bool
        True when cut before every channel had arrived (a lagging channel's
        missing part is NaN).
    """

    index: int
    start_time: float
    end_time: float
    channels: tuple
    data: np.ndarray
    sampling_rate: float
    forced: bool = False


class ChannelBuffer:
    """Fixed-capacity ring buffer of one channel, indexed by absolute sample number.

    Sample ``i`` was taken at device time ``origin + i / sampling_rate``.
    Only the last ``capacity`` samples are held.

    Parameters
    ----------
    name : str
        Channel name.
    sampling_rate : float
        The channel's own rate in Hz.
    capacity : int
        Samples held.
    """

    def __init__(self, name: str, sampling_rate: float, capacity: int):
        self.name = name
        self.sampling_rate = float(sampling_rate)
        self.capacity = int(capacity)
        self._data = np.full(self.capacity, np.nan)
        self.origin: float | None = None
        self.end = 0  # absolute index of the next sample to write
        self.received = 0  # samples received from the device
        self.lost = 0  # samples marked missing (gaps, gap notices, lagging)
        self.dropped = 0  # samples received too late or twice, discarded
        self.retimed = 0  # samples placed by their index because the device clock lagged
        self.next_index: int | None = None  # device sample index after the last block's, when blocks carry it
        self.index_base = 0  # buffer index minus device sample index, as the last block was placed
        self.last_start: float | None = None  # timestamp of the last block
        self.skew = 0.0  # device time minus placed time of the last block placed by its timestamp, s
        self.rate_anchor: tuple[float, int] | None = None  # (timestamp, placed index) the rate is measured from
        self.rate_warned = False
        self.block_time: float | None = None  # where the last block starts on this buffer's timeline
        self.by_index = False  # placing by sample index while the device clock lags

    @property
    def end_time(self) -> float:
        """Device time just after the last written sample (seconds)."""
        return self.origin + self.end / self.sampling_rate

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def reset(self) -> None:
        """Forget all samples, the time origin and where the device's sample indices were."""
        self._data.fill(np.nan)
        self.origin, self.end = None, 0
        self.next_index = self.last_start = self.block_time = self.rate_anchor = None
        self.by_index = False
        self.skew = 0.0

    def append(self, values: np.ndarray) -> None:
        """Write ``values`` (NaN for missing samples) after the last sample."""
        n = len(values)
        kept = values[-self.capacity:]
        start = (self.end + n - len(kept)) % self.capacity
        first = min(len(kept), self.capacity - start)
        self._data[start:start + first] = kept[:first]
        self._data[:len(kept) - first] = kept[first:]
        self.end += n

    def read(self, start: int, stop: int) -> np.ndarray:
        """Copy of samples ``[start, stop)``; NaN where not held (evicted or not yet written)."""
        out = np.full(stop - start, np.nan)
        lo, hi = max(start, self.end - self.capacity, 0), min(stop, self.end)
        if lo < hi:
            positions = np.arange(lo, hi) % self.capacity
            out[lo - start:hi - start] = self._data[positions]
        return out

    def resampled(self, sampling_rate: float, capacity: int) -> ChannelBuffer:
        """This channel at another rate (the device changed it) and capacity, ending at the same device time.

        The samples held are read at the new rate's sample times: linear
        interpolation, low-passed first when the new rate is slower; new
        sample times after the last sample (less than one old sample) hold its
        value. Counters and placement carry over; the device's next sample
        index is scaled by the rate ratio, as it counts blocks times samples
        per block. At the same rate, a copy.
        """
        out = ChannelBuffer(self.name, sampling_rate, capacity)
        for carried in ("received", "lost", "dropped", "retimed", "last_start", "skew", "block_time", "by_index"):
            setattr(out, carried, getattr(self, carried))
        if self.origin is None:
            return out
        ratio = out.sampling_rate / self.sampling_rate
        out.end = math.ceil(self.end * ratio - _EPS)
        out.origin = self.end_time - out.end / out.sampling_rate
        if self.next_index is not None:
            out.next_index = round(self.next_index * ratio)
            out.index_base = out.end - out.next_index
        held = min(out.capacity, math.floor(min(self.end, self.capacity) * ratio + _EPS))
        if held:
            positions = self.end - np.arange(held, 0, -1) / ratio  # the new sample times, in this buffer's indices
            taps = antialias_taps(1 / ratio) if ratio < 1 - _EPS else None
            out.end -= held
            out.append(_read_at(self, np.minimum(positions, self.end - 1), taps))
        return out


class Windower:
    """Cut aligned windows from per-channel sample blocks.

    Parameters
    ----------
    channel_rates : mapping of str to float
        Channel name -> the channel's sampling rate from the device (Hz), in
        the row order of the windows (the bundle's channel order).
    sampling_rate : float
        Rate of the windows (the bundle's), Hz.
    window_seconds : float
        Window length; ``sampling_rate * window_seconds`` must be whole.
    hop_seconds : float, optional
        Start-to-start distance of consecutive windows; default
        ``window_seconds`` (no overlap). Less overlaps, more leaves gaps.
    max_wait_seconds : float
        How far the most advanced channel may run past a window's end (or
        past the last sample a lagging channel needs for it, when later: a
        slow channel's next sample, a downsampled one's filter margin) before
        the window is cut without the lagging channels. Longer than the
        device's sample block: the channels of a block are pushed one after
        another, so the last trails the first by up to a block.
    resync_seconds : float
        A timestamp that jumps by more than this from a channel's expected
        next sample time restarts the window grid.
    timestamp_tolerance_seconds : float
        Difference between consecutive blocks' timestamp errors accepted as
        contiguous (default 0.1: jitter of +-50 ms), on top of
        :data:`RATE_TOLERANCE` of the time between them; larger forward jumps
        are gaps (NaN), larger backward ones duplicates (dropped), unless the
        block's sample index says it is new (the device clock lagged). Lost
        blocks shorter than this are only seen by their sample index.

    Examples
    --------
    >>> import numpy as np
    >>> windower = Windower({"EDA": 100.0, "SpO2": 1.0}, 100.0, 10.0, hop_seconds=5.0)
    >>> windows = windower.push("SpO2", 0.0, np.full(11, 97.0))
    >>> windows = windower.push("EDA", 0.0, np.ones(1200))
    >>> [(w.start_time, w.end_time, w.data.shape) for w in windows]
    [(0.0, 10.0, (2, 1000))]
    """

    def __init__(
        self,
        channel_rates: Mapping[str, float],
        sampling_rate: float,
        window_seconds: float,
        hop_seconds: float | None = None,
        *,
        max_wait_seconds: float = 2.0,
        resync_seconds: float = 30.0,
        timestamp_tolerance_seconds: float = 0.1,
    ):
        if not channel_rates:
            raise ValueError("channel_rates must name at least one channel, got none")
        _require_positive("sampling_rate", sampling_rate)
        _require_positive("window_seconds", window_seconds)
        hop_seconds = window_seconds if hop_seconds is None else hop_seconds
        _require_positive("hop_seconds", hop_seconds)
        _require_positive("timestamp_tolerance_seconds", timestamp_tolerance_seconds)
        n_samples = sampling_rate * window_seconds
        if abs(n_samples - round(n_samples)) > _EPS:
            raise ValueError(
                f"sampling_rate x window_seconds must be a whole number of samples, got {n_samples}; "
                "choose a window length in whole samples"
            )
        self.channels = tuple(channel_rates)
        self.sampling_rate = float(sampling_rate)
        self.window_seconds = float(window_seconds)
        self.hop_seconds = float(hop_seconds)
        self.n_samples = int(round(n_samples))
        self.timestamp_tolerance_seconds = float(timestamp_tolerance_seconds)
        self.resyncs = 0
        self.clock_lags = 0  # times a channel started being placed by sample index
        self.reanchors = 0  # times the timeline moved to the device clock (a sample clock off its rate)
        self._buffers: dict[str, ChannelBuffer] = {}
        self._antialias: dict[str, np.ndarray] = {}  # name -> low-pass taps, for channels faster than the grid
        self._chunks: dict[str, int] = {}
        self._start: float | None = None  # device time of grid window 0
        self._next = 0  # grid index of the next window
        self._emitted = 0
        self.reconfigure(channel_rates, max_wait_seconds=max_wait_seconds, resync_seconds=resync_seconds)

    def reconfigure(self, channel_rates: Mapping[str, float], *, max_wait_seconds: float | None = None,
                    resync_seconds: float | None = None) -> None:
        """Follow a device that changed its channel rates (or its block length, hence the wait) mid-stream.

        The window grid and the window indices go on, and no sample held is
        lost: a channel whose rate changed has its samples resampled to the
        new rate (see :meth:`ChannelBuffer.resampled`), so the window that
        straddles the change is cut whole, from samples of both rates, and
        the next ones from the new rate's alone.

        Parameters
        ----------
        channel_rates : mapping of str to float
            The windower's :attr:`channels`, in their order, at their rates now (Hz).
        max_wait_seconds, resync_seconds : float, optional
            New values (see the class); default: unchanged.

        Raises
        ------
        ValueError
            Other channels, or a rate or setting the class refuses (then nothing changes).
        """
        if tuple(channel_rates) != self.channels:
            raise ValueError(f"channel_rates must name the windower's channels {list(self.channels)} in that "
                             f"order, got {list(channel_rates)}")
        for name, rate in channel_rates.items():
            check_channel_rate(name, rate, self.window_seconds)
        max_wait = self.max_wait_seconds if max_wait_seconds is None else max_wait_seconds
        resync = self.resync_seconds if resync_seconds is None else resync_seconds
        _require_positive("max_wait_seconds", max_wait)
        if not resync > self.window_seconds + max_wait:
            raise ValueError(
                f"resync_seconds must exceed window_seconds + max_wait_seconds "
                f"({self.window_seconds + max_wait}), got {resync!r}"
            )
        rates = {name: float(rate) for name, rate in channel_rates.items()}
        self.max_wait_seconds, self.resync_seconds = float(max_wait), float(resync)
        self._antialias = {name: antialias_taps(rate / self.sampling_rate) for name, rate in rates.items()
                           if rate > self.sampling_rate * (1 + _EPS)}
        self._chunks = {name: max(1, math.ceil(rate * _CHUNK_SECONDS)) for name, rate in rates.items()}
        # A window may need a channel's samples up to a sample (and a filter margin) past its end, and the
        # leader runs max_wait_seconds past that before the window is cut: hold that much of every channel.
        overhang = max((self._margin(name) + 1) / rate for name, rate in rates.items())
        span = self.window_seconds + overhang + self.max_wait_seconds + _CHUNK_SECONDS
        for name, rate in rates.items():
            capacity = math.ceil(span * rate) + 2 * self._margin(name) + 4
            held = self._buffers.get(name)
            self._buffers[name] = (ChannelBuffer(name, rate, capacity) if held is None
                                   else held.resampled(rate, capacity))

    @property
    def nbytes(self) -> int:
        """Bytes held by the sample buffers (constant for the windower's life)."""
        return sum(buffer.nbytes for buffer in self._buffers.values())

    @property
    def next_window_start(self) -> float | None:
        """Device time the next window starts at, once the grid is known."""
        return None if self._start is None else self._start + self._next * self.hop_seconds

    @property
    def channel_rates(self) -> dict[str, float]:
        """Channel name -> the rate its samples are taken at now, Hz (as last :meth:`reconfigure`-d)."""
        return {name: buffer.sampling_rate for name, buffer in self._buffers.items()}

    def stats(self) -> dict[str, dict[str, int]]:
        """Per channel: samples ``received``, ``lost`` (missing), ``dropped`` (late or repeated) and
        ``retimed`` (placed by their sample index while the device clock lagged)."""
        return {
            name: {"received": b.received, "lost": b.lost, "dropped": b.dropped, "retimed": b.retimed}
            for name, b in self._buffers.items()
        }

    @property
    def clock_lagging(self) -> bool:
        """Whether some channel's blocks are being placed by sample index (the device clock lags)."""
        return any(buffer.by_index for buffer in self._buffers.values())

    def block_time(self, channel: str) -> float | None:
        """Device time the channel's last block starts at on the windows' timeline (None before one).

        Its timestamp, or where its sample index put it while the device clock lagged.
        """
        return self._buffer(channel).block_time

    def push(self, channel: str, start_time: float, samples, first_index: int | None = None) -> list[Window]:
        """Add a block of samples and return the windows it completes.

        Parameters
        ----------
        channel : str
            One of :attr:`channels`.
        start_time : float
            Device time of ``samples[0]`` (seconds).
        samples : array_like, shape (n,)
            Samples at the channel's rate; NaN for samples the device marked bad.
        first_index : int, optional
            The device's index of ``samples[0]`` (since it booted); places the
            block when the device clock lags (see the module docstring).

        Returns
        -------
        list of Window
            Windows completed by this block, oldest first (often empty).
        """
        values = np.asarray(samples, dtype=np.float64).ravel()
        buffer = self._buffer(channel)
        buffer.received += len(values)
        return self._ingest(buffer, float(start_time), values, first_index)

    def mark_lost(self, channel: str, n_samples: int, start_time: float | None = None,
                  first_index: int | None = None) -> list[Window]:
        """Record samples lost on the link (a gap notice) and return the windows this completes.

        A gap longer than ``resync_seconds`` restarts the window grid (counted
        in :attr:`resyncs`) without holding its samples: the windows the
        samples before it reach the end of are cut (lagging channels missing),
        and the windows start again with the channels' next blocks.

        Parameters
        ----------
        channel : str
            One of :attr:`channels`.
        n_samples : int
            Samples lost, at the channel's rate.
        start_time : float, optional
            Device time of the first lost sample; default: right after the
            channel's last sample.
        first_index : int, optional
            The device's index of the first lost sample, as in :meth:`push`.
        """
        if not (isinstance(n_samples, (int, np.integer)) and n_samples >= 0):
            raise ValueError(f"n_samples must be an integer >= 0, got {n_samples!r}")
        buffer = self._buffer(channel)
        if n_samples > self.resync_seconds * buffer.sampling_rate:
            buffer.lost += int(n_samples)
            return self._resync()
        if start_time is None:
            if buffer.origin is None:  # nothing to place the loss against yet
                buffer.lost += int(n_samples)
                return []
            start_time = buffer.end_time + buffer.skew
        return self._ingest(buffer, float(start_time), np.full(int(n_samples), np.nan), first_index)

    def reset(self) -> None:
        """Drop every buffered sample and restart the window grid."""
        for buffer in self._buffers.values():
            buffer.reset()
        self._start, self._next = None, 0

    def _buffer(self, channel: str) -> ChannelBuffer:
        try:
            return self._buffers[channel]
        except KeyError:
            raise ValueError(f"unknown channel {channel!r}; this windower cuts {list(self.channels)}") from None

    def _ingest(self, buffer: ChannelBuffer, start_time: float, values: np.ndarray,
                first_index: int | None) -> list[Window]:
        if buffer.origin is None:
            buffer.origin = start_time
        offset = stamped = (start_time - buffer.end_time - buffer.skew) * buffer.sampling_rate  # in samples
        since = 0.0 if buffer.last_start is None else max(0.0, start_time - buffer.last_start)
        tolerance = (self.timestamp_tolerance_seconds + RATE_TOLERANCE * since) * buffer.sampling_rate
        indexed, lags = first_index is not None and buffer.next_index is not None, False
        if indexed and first_index < buffer.next_index:  # sent before: placed by its timestamp, as without an index
            first_index = None
        elif indexed and offset < -tolerance and (buffer.by_index or start_time <= buffer.last_start):
            # The clock says these samples are held already, their index says they are new.
            offset, lags = float(first_index + buffer.index_base - buffer.end), True
        elif indexed and abs(first_index + buffer.index_base - buffer.end - offset) <= tolerance:
            offset = float(first_index + buffer.index_base - buffer.end)  # the clock agrees: the index is exact
        emitted = []
        if abs(offset) > self.resync_seconds * buffer.sampling_rate:
            emitted = self._resync()
            buffer.origin, offset, stamped, lags = start_time, 0.0, 0.0, False
        if lags:
            buffer.retimed += len(values)
            if not self.clock_lagging:  # a new episode: no channel was placed by index until now
                self.clock_lags += 1
        if first_index is not None:
            buffer.by_index = lags
        shift = 0 if abs(offset) <= tolerance else round(offset)
        buffer.block_time = buffer.origin + (buffer.end + shift) / buffer.sampling_rate
        if first_index is not None:
            buffer.index_base = buffer.end + shift - first_index
            buffer.next_index = first_index + len(values)
        buffer.last_start = start_time
        if lags:
            buffer.rate_anchor = None  # the device clock says nothing about the rate meanwhile
        elif shift >= 0:  # placed by its timestamp (a repeat says nothing new about the clocks)
            buffer.skew += (stamped - shift) / buffer.sampling_rate
            self._check_rate(buffer, start_time, buffer.end + shift)
            if abs(buffer.skew) > REANCHOR_SECONDS:
                self._reanchor(buffer.skew)
        if shift < 0:  # overlaps samples already written: keep only the new part
            buffer.dropped += _count_present(values[:-shift])
            values = values[-shift:]
        elif shift > 0:
            values = np.concatenate([np.full(shift, np.nan), values])
        return emitted + self._append(buffer, values)

    def _check_rate(self, buffer: ChannelBuffer, start_time: float, index: int) -> None:
        """Measure the channel's rate by the device clock; warn once when it is off the announced one."""
        if buffer.rate_anchor is None:
            buffer.rate_anchor = (start_time, index)
            return
        seconds = start_time - buffer.rate_anchor[0]
        if buffer.rate_warned or seconds < RATE_BASELINE_SECONDS:
            return
        measured = (index - buffer.rate_anchor[1]) / seconds
        if abs(measured / buffer.sampling_rate - 1) > _RATE_WARNING:
            buffer.rate_warned = True
            logger.warning("channel %s runs at %.4g Hz by the device clock, not the announced %g Hz; its blocks "
                           "are placed by sample count", buffer.name, measured, buffer.sampling_rate)

    def _reanchor(self, seconds: float) -> None:
        """Move every channel's timeline and the window grid by ``seconds``: no sample moves relative to another."""
        for buffer in self._buffers.values():
            if buffer.origin is not None:
                buffer.origin += seconds
                buffer.skew -= seconds
                if buffer.block_time is not None:
                    buffer.block_time += seconds
        if self._start is not None:
            self._start += seconds
        self.reanchors += 1

    def _resync(self) -> list[Window]:
        """The stream breaks off: cut what the samples held reach, then restart the grid (counted)."""
        if all(b.origin is None for b in self._buffers.values()):
            return []
        emitted = self._cut_ready(before_resync=True)
        self.resyncs += 1
        self.reset()
        return emitted

    def _append(self, buffer: ChannelBuffer, values: np.ndarray) -> list[Window]:
        """Write in pieces, cutting windows between them, so no piece evicts samples a window needs.

        A window cut without this channel (it lagged) marks the channel missing
        up to the window's end; the part of ``values`` it overtook is dropped.
        """
        emitted: list[Window] = []
        chunk = self._chunks[buffer.name]
        first_index, done = buffer.end, 0
        while done < len(values):
            overtaken = buffer.end - (first_index + done)
            if overtaken > 0:
                buffer.dropped += _count_present(values[done:done + overtaken])
                done += overtaken
                continue
            piece = values[done:done + chunk]
            buffer.lost += int(np.isnan(piece).sum())
            buffer.append(piece)
            done += len(piece)
            emitted += self._cut_ready()
        return emitted

    def _cut_ready(self, before_resync: bool = False) -> list[Window]:
        """Cut the windows every channel covers, or that the leading channel passed ``max_wait_seconds`` ago.

        ``before_resync``: the stream breaks off here, so also cut, without the
        lagging channels, every window the leading channel reaches the end of.
        """
        started = [b for b in self._buffers.values() if b.origin is not None]
        if not started:
            return []
        leader = max(b.end_time for b in started)
        wait = 0.0 if before_resync else self.max_wait_seconds
        if self._start is None:
            waited = leader - min(b.origin for b in started)
            if len(started) < len(self._buffers) and waited < self.window_seconds + wait:
                return []
            self._start = max(b.origin for b in started)
        windows = []
        while True:
            start = self._start + self._next * self.hop_seconds
            end = start + self.window_seconds
            needs = {name: self._needed_end(b, start) for name, b in self._buffers.items()}
            lagging = [b for name, b in self._buffers.items() if b.origin is None or b.end < needs[name]]
            # Wait from the window's end, or from the last sample a lagging channel needs if that is later
            # (a slow channel's next sample, a downsampled channel's filter margin).
            due = max([end] + [b.origin + (needs[b.name] - 1) / b.sampling_rate for b in lagging if b.origin is not None])
            if lagging and leader < due + wait:
                break
            for buffer in lagging:
                if buffer.origin is not None:
                    missing = needs[buffer.name] - buffer.end
                    buffer.lost += missing
                    buffer.append(np.full(missing, np.nan))
            data = np.stack([self._extract(b, start) for b in self._buffers.values()])
            windows.append(
                Window(self._emitted, start, end, self.channels, data, self.sampling_rate, forced=bool(lagging))
            )
            self._emitted += 1
            self._next += 1
        return windows

    def _positions(self, buffer: ChannelBuffer, start: float) -> np.ndarray:
        """Fractional sample indices of the channel at the window's grid times."""
        step = buffer.sampling_rate / self.sampling_rate
        return (start - buffer.origin) * buffer.sampling_rate + np.arange(self.n_samples) * step

    def _needed_end(self, buffer: ChannelBuffer, start: float) -> int:
        """Index one past the last sample the window needs from the channel."""
        if buffer.origin is None:
            return 0
        last = (start - buffer.origin) * buffer.sampling_rate
        last += (self.n_samples - 1) * buffer.sampling_rate / self.sampling_rate
        return math.ceil(last - _EPS) + 1 + self._margin(buffer.name)

    def _margin(self, name: str) -> int:
        """Samples the channel's downsampling filter reads on each side of a window (0 when not downsampled)."""
        return _filter_margin(self._antialias.get(name))

    def _extract(self, buffer: ChannelBuffer, start: float) -> np.ndarray:
        if buffer.origin is None:
            return np.full(self.n_samples, np.nan)
        return _read_at(buffer, self._positions(buffer, start), self._antialias.get(buffer.name))


def antialias_taps(ratio: float, zero_crossings: int = 10, beta: float = 5.0) -> np.ndarray:
    """Low-pass FIR for a signal read at ``1 / ratio`` of its rate: cut off at the slower rate's Nyquist frequency.

    A sinc with ``zero_crossings`` zero crossings on each side, Kaiser window
    ``beta`` (the design :func:`scipy.signal.resample_poly` uses by default),
    odd length so that it is centred on a sample, taps summing to 1 (a
    constant or a ramp passes unchanged).
    """
    half = math.ceil(zero_crossings * ratio)
    taps = np.sinc(np.arange(-half, half + 1) / ratio) * np.kaiser(2 * half + 1, beta)
    return taps / taps.sum()


def _read_at(buffer: ChannelBuffer, positions: np.ndarray, taps: np.ndarray | None) -> np.ndarray:
    """The channel's samples at fractional ``positions`` (its sample indices), in order.

    Linear interpolation (NaN where a neighbour used is missing) or, with
    ``taps`` (read slower than the channel's rate), the same on the samples
    low-passed by them, missing samples bridged for the filter and the result
    missing where the nearest sample is.
    """
    margin = _filter_margin(taps)
    low = math.floor(positions[0] + _EPS) - margin
    native = buffer.read(low, math.ceil(positions[-1] - _EPS) + 1 + margin)
    if taps is None:
        return _interpolate(native, positions - low)
    filtered = np.convolve(signal_fill(native), taps, mode="same")  # centred: aligned
    out = _interpolate(filtered, positions - low)
    nearest = np.clip(np.rint(positions - low).astype(np.int64), 0, len(native) - 1)
    out[np.isnan(native[nearest])] = np.nan
    return out


def _filter_margin(taps: np.ndarray | None) -> int:
    """Samples a low-pass of ``taps`` reads on each side (0 without one)."""
    return 0 if taps is None else len(taps) // 2 + 1


def _interpolate(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` at fractional ``positions``; NaN where a neighbour used is NaN."""
    index = np.clip(np.floor(positions + _EPS).astype(np.int64), 0, len(values) - 1)
    fraction = positions - index
    on_sample = fraction <= _EPS
    following = values[np.minimum(index + 1, len(values) - 1)]
    mixed = values[index] + (following - values[index]) * fraction
    return np.where(on_sample, values[index], mixed)


def _count_present(values: np.ndarray) -> int:
    return int(np.count_nonzero(~np.isnan(values)))


def _require_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
