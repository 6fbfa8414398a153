"""Read a sensor board over any pyserial URL: per-channel sample blocks and events.

:class:`SensorReader` follows BrainFlow's board lifecycle: one parameters
object (:class:`BridgeParams`), then ``open()`` (the port; errors now, naming
it), ``start()`` (a reader thread), ``read()`` (drain what arrived),
``stop()``, ``close()``; or a ``with`` block that does all of it. The port is
opened with :func:`serial.serial_for_url`, so the same code reads a USB CDC or
UART device (``/dev/ttyACM0``), a TCP bridge (``socket://host:8000``,
``rfc2217://host:2217``), ``loop://`` in tests, or the built-in simulated
device ``sim://`` (see :mod:`firmware_bridge.protocol_sim`).

The thread reconnects with exponential backoff when the device disappears
(a USB cable pulled, a pty closed) and comes back under the same name. Every
connection locks the port (pyserial's ``exclusive=True``, an advisory
``flock`` taken before the port is configured or flushed), so a second reader
of the same device is refused instead of splitting the byte stream, and a
reconnection waits while another program holds the port. What
it decodes goes into a bounded queue as :data:`ReaderEvent` items:

* :class:`ChannelBlock`: consecutive samples of one channel, in physical units,
  with the channel name, unit, sampling rate, the index of the first sample
  since the device booted and its device time.
* :class:`GapEvent`: samples of one channel that were sent but will never be
  delivered, with where they were (``first_sample_index``) and why (lost on
  the link, or dropped because the queue was full).
* :class:`StatusEvent`: battery, lead-off and saturation flags by channel name.
* :class:`DeviceEvent`: a new device session (first contact or a restart) or a
  new device description.
* :class:`LinkEvent`: the port was (re)connected or lost.

For every channel of a session, the delivered samples and the samples of the
gap events tile the sample indices without overlap: ``delivered + lost ==
sent``. A full queue never grows: blocks that do not fit become gap events
(``reason="overflow"``), merged per channel, and are queued once there is room.

Examples
--------
>>> params = BridgeParams(port="sim://?speed=0&duration=3&seed=1")
>>> with SensorReader(params) as reader:
...     events = reader.read_until_idle(idle_s=0.5, timeout=10)
>>> eda = [e for e in events if isinstance(e, ChannelBlock) and e.channel == "EDA"]
>>> sum(block.n_samples for block in eda), eda[0].sampling_rate, eda[0].unit
(300, 100.0, 'uS')
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator, Union

import numpy as np
import serial

from firmware_bridge.errors import BridgeError
from firmware_bridge.protocol import (
    BlocksLost,
    DecoderStats,
    DeviceConfig,
    FrameDecoder,
    Hello,
    SampleBlock,
    SessionStarted,
    Status,
)

__all__ = [
    "BridgeParams",
    "SensorReader",
    "StreamAssembler",
    "ChannelBlock",
    "GapEvent",
    "StatusEvent",
    "DeviceEvent",
    "LinkEvent",
    "ReaderEvent",
    "ReaderStats",
]

logger = logging.getLogger(__name__)

# pyserial looks for ``protocol_<scheme>`` modules in these packages: this makes
# ``sim://`` (firmware_bridge/protocol_sim.py) a port like any other.
if "firmware_bridge" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("firmware_bridge")


@dataclass
class BridgeParams:
    """Every setting of a :class:`SensorReader` (like BrainFlow's input params).

    Parameters
    ----------
    port : str
        A pyserial URL: a device (``/dev/ttyACM0``, ``COM3``, a symlink such as
        the simulator's ``--link``), ``socket://host:port``,
        ``rfc2217://host:port``, ``loop://``, or ``sim://`` for the built-in
        simulated device.
    baudrate : int
        Line speed for real UARTs; USB CDC and network ports ignore it.
        Default 115200.
    read_timeout_s : float
        Longest wait of one read; bounds how fast ``stop()`` returns.
        Default 0.05 s.
    queue_blocks : int
        Capacity of the output queue, in events (one event is one channel's
        block, a gap, a status...). Default 4096: about 17 minutes of the
        default 4-channel, 1 s-block device.
    reconnect_min_s, reconnect_max_s : float
        Backoff between reconnection attempts: starts at the minimum, doubles
        after every failure, capped at the maximum. Defaults 0.1 s and 5 s.
    max_pending_blocks : int
        Sample blocks kept while waiting for the first hello of a session.
        Default 64.
    stale_after_s : float or None
        Reopen the port when no byte arrived for this long (a USB device that
        hangs without disconnecting). None, the default, waits forever: a
        quiet UART is not an error.
    """

    port: str
    baudrate: int = 115200
    read_timeout_s: float = 0.05
    queue_blocks: int = 4096
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 5.0
    max_pending_blocks: int = 64
    stale_after_s: float | None = None

    def __post_init__(self):
        if not isinstance(self.port, str) or not self.port.strip():
            raise ValueError(
                f"port must be a pyserial URL such as '/dev/ttyACM0', 'socket://host:8000' or 'sim://', "
                f"got {self.port!r}"
            )
        if not isinstance(self.baudrate, int) or self.baudrate <= 0:
            raise ValueError(f"baudrate must be a positive integer, got {self.baudrate!r}")
        if not 0 < self.read_timeout_s <= 5:
            raise ValueError(f"read_timeout_s must be in (0, 5] seconds, got {self.read_timeout_s!r}")
        if not isinstance(self.queue_blocks, int) or self.queue_blocks < 2:
            raise ValueError(f"queue_blocks must be an integer >= 2, got {self.queue_blocks!r}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError(
                "reconnect_min_s and reconnect_max_s must satisfy 0 < min <= max, "
                f"got {self.reconnect_min_s!r} and {self.reconnect_max_s!r}"
            )
        if not isinstance(self.max_pending_blocks, int) or self.max_pending_blocks < 0:
            raise ValueError(f"max_pending_blocks must be an integer >= 0, got {self.max_pending_blocks!r}")
        if self.stale_after_s is not None and not self.stale_after_s > self.read_timeout_s:
            raise ValueError(
                f"stale_after_s must be None or longer than read_timeout_s ({self.read_timeout_s} s), "
                f"got {self.stale_after_s!r}"
            )


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, eq=False)
class ChannelBlock:
    """Consecutive samples of one channel.

    Attributes
    ----------
    channel, unit : str
        Name and physical unit from the device description.
    sampling_rate : float
        Hz.
    first_sample_index : int
        Index of ``samples[0]`` since the device booted (per session).
    device_time_s : float
        Device clock at ``samples[0]``, seconds since boot (unwrapped).
    received_at : float
        Host wall-clock time (``time.time()``) when the block was decoded.
    samples : numpy.ndarray
        float64, physical units (``raw * scale + offset``).
    raw : numpy.ndarray
        The ADC values (int16 or int32); ``raw_min``/``raw_max`` of the
        channel mean saturation.
    session : tuple of int
        ``(device_id, boot_id)``.
    """

    channel: str
    unit: str
    sampling_rate: float
    first_sample_index: int
    device_time_s: float
    received_at: float
    samples: np.ndarray
    raw: np.ndarray
    session: tuple[int, int]

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return len(self.samples)

    @property
    def end_sample_index(self) -> int:
        """Index one past the last sample."""
        return self.first_sample_index + len(self.samples)


@dataclass(frozen=True)
class GapEvent:
    """``n_samples`` samples of ``channel``, from ``first_sample_index`` on, will never arrive.

    ``reason`` is ``"link"`` (the device sent them, they were lost or
    corrupted on the way), ``"overflow"`` (they arrived but the queue was
    full) or ``"link+overflow"`` (a merged run of both). ``device_time_s`` is
    the device time of the first missing sample, estimated from the block
    period.
    """

    channel: str
    first_sample_index: int
    n_samples: int
    sampling_rate: float
    device_time_s: float
    reason: str
    received_at: float
    session: tuple[int, int]

    @property
    def end_sample_index(self) -> int:
        """Index one past the last missing sample."""
        return self.first_sample_index + self.n_samples


@dataclass(frozen=True)
class StatusEvent:
    """Battery and per-channel flags from a status frame.

    ``lead_off`` and ``saturated`` name the flagged channels (empty until the
    device description is known; the masks are always there). Battery values
    are None when the device does not know them.
    """

    device_time_s: float
    received_at: float
    battery_mv: int | None
    battery_percent: int | None
    charging: bool
    lead_off: tuple[str, ...]
    saturated: tuple[str, ...]
    lead_off_mask: int
    saturated_mask: int
    session: tuple[int, int]


@dataclass(frozen=True)
class DeviceEvent:
    """``kind="session"``: frames of a new device session arrive (first contact,
    or ``restarted`` after a reboot: sample indices start again at 0).
    ``kind="config"``: the session's device description, first known or changed."""

    kind: str
    device_id: int
    boot_id: int
    restarted: bool
    config: DeviceConfig | None
    received_at: float


@dataclass(frozen=True)
class LinkEvent:
    """``kind="connected"`` or ``"disconnected"``, with the port and the reason."""

    kind: str
    port: str
    received_at: float
    detail: str = ""


ReaderEvent = Union[ChannelBlock, GapEvent, StatusEvent, DeviceEvent, LinkEvent]


@dataclass
class ReaderStats:
    """Counters of a :class:`SensorReader` (a snapshot; see ``SensorReader.stats``).

    ``samples_delivered``, ``samples_lost_link`` and ``samples_lost_overflow``
    are per channel; for each channel their sum is every sample the device
    sent while the reader listened.
    """

    bytes_read: int = 0
    connects: int = 0
    disconnects: int = 0
    open_failures: int = 0
    blocks_queued: int = 0
    queue_overflow_blocks: int = 0
    statuses_replaced: int = 0
    events_dropped: int = 0
    samples_delivered: dict[str, int] = field(default_factory=dict)
    samples_lost_link: dict[str, int] = field(default_factory=dict)
    samples_lost_overflow: dict[str, int] = field(default_factory=dict)
    decoder: DecoderStats = field(default_factory=DecoderStats)


def _add(counts: dict[str, int], key: str, n: int) -> None:
    counts[key] = counts.get(key, 0) + n


# --------------------------------------------------------------------------- frames -> events


class StreamAssembler:
    """Turns :class:`FrameDecoder` output into :data:`ReaderEvent` items.

    Splits sample blocks into per-channel :class:`ChannelBlock` in physical
    units, unwraps the 32-bit millisecond device clock, names status flags and
    expands lost blocks into per-channel :class:`GapEvent`. Usable on its own
    to decode a capture file::

        decoder, assembler = FrameDecoder(), StreamAssembler()
        events = assembler.process(decoder.feed(data) + decoder.flush())
    """

    def __init__(self):
        self._config: DeviceConfig | None = None
        self._announced: DeviceConfig | None = None
        self._clock_raw: int | None = None
        self._clock_ms = 0
        self._reference: tuple[int, float] | None = None  # (block index, device time) of the last block

    def process(self, items: list, received_at: float | None = None) -> list[ReaderEvent]:
        """Events for the decoder items, in order."""
        now = time.time() if received_at is None else received_at
        events: list[ReaderEvent] = []
        for item in items:
            if isinstance(item, SampleBlock):
                self._config = item.config
                events.extend(self._blocks(item, now))
            elif isinstance(item, BlocksLost):
                events.extend(self._gaps(item, now))
            elif isinstance(item, Status):
                events.append(self._status(item, now))
            elif isinstance(item, Hello):
                self._device_time(item.timestamp_ms)
                self._config = item.config
                if item.config != self._announced:
                    self._announced = item.config
                    events.append(DeviceEvent("config", item.device_id, item.boot_id, False, item.config, now))
            elif isinstance(item, SessionStarted):
                self._config = self._announced = None
                self._clock_raw, self._clock_ms, self._reference = None, 0, None
                events.append(DeviceEvent("session", item.device_id, item.boot_id, item.restarted, None, now))
        return events

    def _device_time(self, timestamp_ms: int) -> float:
        """Seconds since boot, unwrapping the 32-bit millisecond clock."""
        if self._clock_raw is None:
            self._clock_ms = timestamp_ms
        else:
            step = (timestamp_ms - self._clock_raw) & 0xFFFFFFFF
            self._clock_ms += step if step < 0x80000000 else step - 0x100000000
        self._clock_raw = timestamp_ms
        return self._clock_ms / 1000.0

    def _blocks(self, block: SampleBlock, now: float) -> list[ChannelBlock]:
        config = block.config
        start = self._device_time(block.timestamp_ms)
        self._reference = (block.block_index, start)
        session = (block.device_id, block.boot_id)
        period = config.block_period_us
        return [
            ChannelBlock(
                spec.name,
                spec.unit,
                spec.samples_per_block * 1e6 / period,
                block.block_index * spec.samples_per_block,
                start,
                now,
                spec.to_physical(raw),
                raw,
                session,
            )
            for spec, raw in zip(config.channels, block.samples)
        ]

    def _gaps(self, lost: BlocksLost, now: float) -> list[GapEvent]:
        config = lost.config
        if self._reference is None:
            start = lost.first_block_index * config.block_duration_s
        else:
            block, time_s = self._reference
            start = time_s + (lost.first_block_index - block) * config.block_duration_s
        return [
            GapEvent(
                spec.name,
                lost.first_block_index * spec.samples_per_block,
                lost.n_blocks * spec.samples_per_block,
                spec.samples_per_block * 1e6 / config.block_period_us,
                start,
                "link",
                now,
                (lost.device_id, lost.boot_id),
            )
            for spec in config.channels
        ]

    def _status(self, status: Status, now: float) -> StatusEvent:
        config = self._config
        return StatusEvent(
            self._device_time(status.timestamp_ms),
            now,
            status.battery_mv or None,
            None if status.battery_percent == 255 else status.battery_percent,
            status.charging,
            config.mask_names(status.lead_off_mask) if config else (),
            config.mask_names(status.saturated_mask) if config else (),
            status.lead_off_mask,
            status.saturated_mask,
            (status.device_id, status.boot_id),
        )


# --------------------------------------------------------------------------- bounded queue


@dataclass
class _PendingGap:
    """A run of undeliverable samples of one channel waiting for room in the queue."""

    channel: str
    first_sample_index: int
    n_samples: int
    sampling_rate: float
    device_time_s: float
    reasons: set[str]
    received_at: float
    session: tuple[int, int]

    def event(self) -> GapEvent:
        reason = "+".join(sorted(self.reasons, key=["link", "overflow"].index))
        return GapEvent(self.channel, self.first_sample_index, self.n_samples, self.sampling_rate,
                        self.device_time_s, reason, self.received_at, self.session)


class _EventQueue:
    """A bounded FIFO of reader events that never loses count of a sample.

    When full, incoming events wait in a small backlog, in order: channel
    blocks become gaps (merged with the channel's previous gap while it is
    contiguous), a new status replaces an older waiting one, other events wait
    as they are (at most ``_MAX_WAITING_EVENTS``). The backlog moves into the
    queue as soon as there is room, so gaps stay before the channel's later blocks.
    """

    _MAX_WAITING_EVENTS = 256

    def __init__(self, capacity: int, stats: ReaderStats):
        self._capacity = capacity
        self._items: deque[ReaderEvent] = deque()
        self._backlog: deque[ReaderEvent | _PendingGap] = deque()
        self._open_gaps: dict[tuple[tuple[int, int], str], _PendingGap] = {}
        self._waiting_events = 0
        self._stats = stats
        self.lock = threading.Condition()

    def put(self, events: list[ReaderEvent]) -> None:
        with self.lock:
            for event in events:
                self._put(event)
            if self._items:
                self.lock.notify_all()

    def _put(self, event: ReaderEvent) -> None:
        stats = self._stats
        self._flush()
        if isinstance(event, GapEvent):
            _add(stats.samples_lost_link, event.channel, event.n_samples)
        if not self._backlog and len(self._items) < self._capacity:
            self._items.append(event)
            if isinstance(event, ChannelBlock):
                stats.blocks_queued += 1
                _add(stats.samples_delivered, event.channel, event.n_samples)
        elif isinstance(event, ChannelBlock):
            stats.queue_overflow_blocks += 1
            _add(stats.samples_lost_overflow, event.channel, event.n_samples)
            self._gap(event.channel, event.first_sample_index, event.n_samples, event.sampling_rate,
                      event.device_time_s, "overflow", event.received_at, event.session)
        elif isinstance(event, GapEvent):
            self._gap(event.channel, event.first_sample_index, event.n_samples, event.sampling_rate,
                      event.device_time_s, "link", event.received_at, event.session)
        elif isinstance(event, StatusEvent):
            for waiting in self._backlog:
                if isinstance(waiting, StatusEvent):
                    self._backlog.remove(waiting)
                    stats.statuses_replaced += 1
                    break
            self._backlog.append(event)
        elif self._waiting_events < self._MAX_WAITING_EVENTS:
            self._waiting_events += 1
            self._backlog.append(event)
        else:
            stats.events_dropped += 1

    def _gap(self, channel, first, n, rate, device_time_s, reason, received_at, session) -> None:
        key = (session, channel)
        gap = self._open_gaps.get(key)
        if gap is not None and gap.first_sample_index + gap.n_samples == first:
            gap.n_samples += n
            gap.reasons.add(reason)
            return
        gap = _PendingGap(channel, first, n, rate, device_time_s, {reason}, received_at, session)
        self._open_gaps[key] = gap
        self._backlog.append(gap)

    def _flush(self) -> None:
        while self._backlog and len(self._items) < self._capacity:
            waiting = self._backlog.popleft()
            if isinstance(waiting, _PendingGap):
                self._open_gaps.pop((waiting.session, waiting.channel), None)
                waiting = waiting.event()
            elif not isinstance(waiting, StatusEvent):
                self._waiting_events -= 1
            self._items.append(waiting)

    def get(self, timeout: float | None, max_items: int | None) -> list[ReaderEvent]:
        with self.lock:
            if not self._items and not self._backlog and timeout != 0:
                self.lock.wait(timeout)
            self._flush()
            n = len(self._items) if max_items is None else min(max_items, len(self._items))
            out = [self._items.popleft() for _ in range(n)]
            self._flush()
            return out

    def __len__(self) -> int:
        with self.lock:
            return len(self._items) + len(self._backlog)


# --------------------------------------------------------------------------- reader


class SensorReader:
    """Reads a sensor board on its own thread; see the module docstring.

    Parameters
    ----------
    params : BridgeParams
        Port and tuning. ``SensorReader(BridgeParams(port="/dev/ttyACM0"))``.

    Examples
    --------
    >>> reader = SensorReader(BridgeParams(port="sim://?speed=0&duration=2"))
    >>> reader.open(); reader.start()
    >>> config = reader.wait_for_config(timeout=5)
    >>> config.channel_names, config.sampling_rate("SpO2")
    (('EDA', 'BVP', 'RESP', 'SpO2'), 1.0)
    >>> reader.stop(); reader.close()
    """

    def __init__(self, params: BridgeParams):
        if not isinstance(params, BridgeParams):
            raise TypeError(f"params must be a BridgeParams, got {type(params).__name__}")
        self.params = params
        self._port: serial.SerialBase | None = None
        self._port_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._stats = ReaderStats()
        self._decoder = FrameDecoder(max_pending_blocks=params.max_pending_blocks)
        self._assembler = StreamAssembler()
        self._queue = _EventQueue(params.queue_blocks, self._stats)
        self._decode_lock = threading.Lock()  # the decoder's counters are read from other threads
        self._config_ready = threading.Condition()
        self._opened = False

    # -- lifecycle

    def open(self) -> None:
        """Open the port; :class:`BridgeError` (code ``"port_open_failed"``) naming it if it cannot be."""
        if self._opened:
            raise BridgeError(f"the reader of {self.params.port} is already open", "already_open")
        self._connect()
        self._opened = True

    def start(self) -> None:
        """Start the reader thread (after :meth:`open`)."""
        if not self._opened:
            raise BridgeError(f"call open() before start() (port {self.params.port})", "not_open")
        if self.is_running:
            raise BridgeError(f"the reader of {self.params.port} is already running", "already_running")
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name=f"SensorReader({self.params.port})", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the reader thread; the port stays open and queued events stay readable."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise BridgeError(f"the reader thread of {self.params.port} did not stop within {timeout} s",
                                  "stop_timeout")
            self._thread = None

    def close(self) -> None:
        """Stop if running and close the port. Safe to call twice."""
        self.stop()
        self._disconnect(reason="closed", emit=False)
        self._opened = False

    def __enter__(self) -> SensorReader:
        self.open()
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` succeeded and :meth:`close` was not called."""
        return self._opened

    @property
    def is_running(self) -> bool:
        """Whether the reader thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def is_connected(self) -> bool:
        """Whether the port is open right now (False while reconnecting)."""
        return self._port is not None

    # -- data

    def read(self, timeout: float | None = 0.0, max_items: int | None = None) -> list[ReaderEvent]:
        """Take the queued events, oldest first.

        Waits up to ``timeout`` seconds (None: until something arrives) when
        the queue is empty; returns ``[]`` if nothing came.
        """
        return self._queue.get(timeout, max_items)

    def read_until_idle(self, idle_s: float = 0.5, timeout: float = 30.0) -> list[ReaderEvent]:
        """Collect events until none arrived for ``idle_s`` seconds (or ``timeout`` passed)."""
        events: list[ReaderEvent] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = self.read(timeout=min(idle_s, max(0.0, deadline - time.monotonic())))
            if not batch:
                break
            events.extend(batch)
        return events

    def __iter__(self) -> Iterator[ReaderEvent]:
        """Yield events as they come until the reader is stopped and the queue is empty."""
        while True:
            batch = self.read(timeout=self.params.read_timeout_s)
            if not batch and not self.is_running and len(self._queue) == 0:
                return
            yield from batch

    @property
    def config(self) -> DeviceConfig | None:
        """The current device description (channels, units, rates), once a hello arrived."""
        return self._decoder.config

    def wait_for_config(self, timeout: float = 10.0) -> DeviceConfig:
        """Block until the device description is known; :class:`BridgeError` ``"no_config"`` otherwise."""
        with self._config_ready:
            self._config_ready.wait_for(lambda: self._decoder.config is not None, timeout)
        config = self._decoder.config
        if config is None:
            raise BridgeError(
                f"no device description (hello frame) arrived from {self.params.port} within {timeout} s; "
                "is a device streaming on this port?",
                "no_config",
            )
        return config

    @property
    def stats(self) -> ReaderStats:
        """A consistent snapshot of the counters."""
        with self._queue.lock:
            snapshot = copy.deepcopy(self._stats)
        with self._decode_lock:
            snapshot.decoder = copy.deepcopy(self._decoder.stats)
        return snapshot

    @property
    def port(self) -> serial.SerialBase | None:
        """The open pyserial port (for tests that talk to ``loop://``); None while disconnected."""
        return self._port

    # -- thread

    def _run(self) -> None:
        params = self.params
        delay = params.reconnect_min_s
        last_data = time.monotonic()
        while not self._stop_event.is_set():
            if self._port is None:
                try:
                    self._connect()
                except BridgeError as exc:
                    logger.debug("%s", exc)
                    self._stop_event.wait(delay)
                    delay = min(delay * 2, params.reconnect_max_s)
                    continue
                delay = params.reconnect_min_s
                last_data = time.monotonic()
            try:
                port = self._port
                data = port.read(max(1, min(port.in_waiting, 1 << 16)))
            except (serial.SerialException, OSError) as exc:
                if self._stop_event.is_set():
                    break
                self._disconnect(reason=str(exc) or type(exc).__name__, emit=True)
                self._stop_event.wait(delay)
                continue
            if data:
                last_data = time.monotonic()
                self._ingest(data)
            elif params.stale_after_s is not None and time.monotonic() - last_data > params.stale_after_s:
                self._disconnect(reason=f"no data for {params.stale_after_s:g} s", emit=True)

    def _ingest(self, data: bytes) -> None:
        had_config = self._decoder.config is not None
        with self._decode_lock:
            events = self._assembler.process(self._decoder.feed(data))
        if events:
            self._queue.put(events)
        self._stats.bytes_read += len(data)  # after the events are queued: a reader that saw the count sees them
        if not had_config and self._decoder.config is not None:
            with self._config_ready:
                self._config_ready.notify_all()

    def _connect(self) -> None:
        url = self.params.port
        try:
            port = serial.serial_for_url(url, baudrate=self.params.baudrate, timeout=self.params.read_timeout_s,
                                         exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._stats.open_failures += 1
            raise BridgeError(
                f"cannot open serial port {url!r}: {exc}. Check that the device is plugged in and that no "
                "other program holds the port (list ports with: python -m serial.tools.list_ports); for the "
                "simulator, start 'biomoe simulate-device' first and use the path it prints.",
                "port_open_failed",
            ) from exc
        with self._port_lock:
            self._port = port
        self._stats.connects += 1
        logger.info("connected to %s", url)
        self._queue.put([LinkEvent("connected", url, time.time())])

    def _disconnect(self, reason: str, emit: bool) -> None:
        with self._port_lock:
            port, self._port = self._port, None
        if port is None:
            return
        try:
            port.close()
        except (serial.SerialException, OSError):
            pass
        # A frame cut by the disconnection must not be glued to the next connection's bytes.
        with self._decode_lock:
            tail = self._assembler.process(self._decoder.flush())
        if emit:
            self._stats.disconnects += 1
            logger.warning("lost %s (%s); reconnecting", self.params.port, reason)
            self._queue.put(tail + [LinkEvent("disconnected", self.params.port, time.time(), reason)])
