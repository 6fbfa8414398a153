"""``biomoe monitor``: continuous pain monitoring from a sensor hub, or the simulated one.

Running it
----------
::

    biomoe monitor --simulate                        # built-in simulated hub, no hardware
    biomoe monitor --simulate --speed 10 --windows 12 --conditions flat:RESP:20-40,disconnect:60-65
    biomoe monitor --port /dev/ttyACM0 --bundle /opt/biomoe/bundle --db results.sqlite
    biomoe monitor --config /etc/biomoe/monitor.toml # the systemd service (biomoe install-service)
    biomoe history results.sqlite --csv out.csv      # read back what was stored

``--simulate`` starts :class:`firmware_bridge.SimulatedDevice` on a
pseudo-terminal inside the process and reads it through the same
:class:`firmware_bridge.SensorReader` as a real port, so every serial byte
takes the real path. ``--speed`` runs it faster than real time and
``--conditions`` injects faults at known stream seconds (see
``biomoe simulate-device --help``).

Pipeline
--------
``reader thread -> ingest thread -> SkippingQueue -> processing loop (main thread)``

1. The reader (its own thread) decodes frames into per-channel blocks,
   gap notices, device status flags and link events.
2. The ingest thread places blocks in the per-channel ring buffers of a
   :class:`~edge.windows.Windower` (resampling channels whose rate differs
   from the bundle's), which cuts windows aligned across channels by device
   time, every ``--hop`` seconds. Gap notices mark samples missing; status
   frames become lead-off and saturation intervals
   (:class:`~edge.quality.DeviceFlags`); a device restart resets the
   buffers. A cut window is held until the device has reported past its end
   (the next block), so a flag raised during its last block is known, then
   its device flags are looked up and it enters the queue.
3. The queue holds at most ``budgets.max_pending_windows`` windows. When
   processing falls behind, the oldest waiting window is *skipped*: stored
   and printed as a row with ``skipped: true`` and counted, never queued
   without bound.
4. The processing loop runs each window through
   :class:`~edge.pipeline.WindowProcessor`: signal-quality gate per channel,
   the bundle's representations (:class:`~edge.bundle_images.FusionImages`), inference through
   the backend the bundle names (ONNX Runtime, or LiteRT for TFLite), class
   probabilities, temporal smoothing (:mod:`edge.smoothing`: ``ema`` by
   default; windows with a bad channel do not move the smoothed label).

Outputs
-------
One line per window on stdout: on a terminal a readable line (level, class
probabilities as bars, flagged channels; :class:`edge.console.WindowLines`),
into a pipe or a file (or with ``--format jsonl``) one JSON line
(:meth:`edge.storage.WindowResult.to_json`:
device time span, probabilities, raw and smoothed label, per-channel quality,
``latency_ms`` per stage: ``quality``, ``represent``, ``infer``, ``smooth``,
``total`` (their sum) and ``queue`` (time waiting for the processor)). The
same record is committed first to the SQLite database (WAL, one transaction
per window, :class:`~edge.storage.ResultStore`), so every printed line is on
disk. The default database is ``biomoe-results.sqlite`` in the working
directory (``/var/lib/biomoe`` for the systemd service); set ``--db`` or
``database`` in the config file. Link changes, device restarts, periodic
status and a final summary go to the database's events table.

Only the main thread writes to the database. When it refuses writes
(another program holds its lock, the disk is full, an I/O error), one
warning line says which, the results made so far wait in memory and are
tried again with backoff (0.25 s, doubling to 4 s) while new windows wait in
the bounded queue; windows beyond it are skipped with reason ``database
unavailable``. Everything that waited is stored, in window order, as soon as
the database takes writes again. On a stop signal the monitor keeps trying
for ``_FINAL_STORE_S`` seconds, then names what it could not store and exits 1.

A device whose stream jumps (a gap longer than the windower's
``resync_seconds``, e.g. a block index far ahead, or its clock jumping)
restarts the window grid, with a warning and a ``resync`` event; a device
clock that stops or steps back while the blocks keep coming is said once (a
``clock_lag`` event) and its blocks are placed by their sample index
(:mod:`edge.windows`); a device description whose channel rates windows
cannot be cut from is refused with one warning and the monitor waits for a
usable one. An open link that brings no sample data for ``stale_after_seconds``
(default three windows' worth, wall clock) is warned about once, stored as a
``link`` event (``no_data``, then ``data_resumed``) and shown as ``no data``
in the status line and on the dashboard until samples come again.

The device's description (its hello) sets the rates, followed as they
change: a board reconfigured mid-session (a channel from 100 to 250 Hz, same
boot, block indices going on) is one warning and a ``rate_change`` event, and
the windows go on, on the same grid, ``window_index`` counting on, the window
across the change whole (:meth:`edge.windows.Windower.reconfigure`). Its block
length: a channel is counted missing from a window only once the others
have run a block plus ``_MAX_LAG_SECONDS`` past what the window needs of it
(a block's channels reach the windower one after another), so blocks of any
length give complete windows. Its ADC ranges: a sample at a channel's
``raw_min`` or ``raw_max`` counts as saturated in the quality gate
(:func:`edge.quality.channel_spec_with_adc`), whether or not the device
raises its saturation flag. Its names and units: a board that calls EDA
``GSR`` in ``kOhm`` or SpO2 a ratio is read as the protocol's channels, its
samples and ADC limits converted, said on one line and stored
(:class:`edge.device_channels.DeviceChannels`); a unit that cannot be
converted is refused at start, and in a later description leaves the channel
missing, like an unplugged sensor. Its channels: once monitoring has started, a
description without a channel the bundle needs (a sensor unplugged, in the
same boot or after a reboot) is one warning and a ``channels_stopped``
event; the windows go on with that channel missing (the quality gate's
``missing`` flag, so they do not move the level) until a description lists
it again (``channels_resumed``).

``--dashboard [HOST:]PORT`` serves the live bedside page from this process
(:mod:`edge.dashboard`): :attr:`Monitor.observers` are told of each stored
window and event.

Every ``--status-every`` seconds (default ``budgets.status_interval_seconds``)
a human status line goes to stderr: windows processed and skipped, samples
lost on the link (per channel), samples the windows dropped (late or
repeated) or placed by index (a lagging device clock), times the windows were
re-anchored to the device clock (a sample clock off its rate), link state,
latency against the time budget (``budgets.window_ms``, default the hop) and
resident memory against ``budgets.memory_mb``.

Stopping
--------
``--windows N`` or ``--duration S`` (wall seconds) stop on their own;
SIGTERM or SIGINT stop cleanly: the reader stops, the window being processed
and those already queued are finished and committed, the database is
closed, exit status 0. A second signal aborts.

Errors
------
A missing or corrupt bundle, a device whose first description lacks a
channel the bundle needs (a sensor never connected, or a bundle for another
board: a mistake to fix before monitoring, not a sensor that came loose), a
port that cannot be opened or a device that never says hello, and bad
settings are each reported on one line naming the problem and the fix, with
exit status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
import signal
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.backends import create_backend
from edge.calibration import Baseline
from edge.budget import BudgetTracker, SkippingQueue, peak_memory_mb, process_memory_mb
from edge.bundle import PLACEHOLDER_NOTICE, Bundle, default_bundle_path, load_bundle
from edge.bundle_images import FusionImages, bundle_representation_spec
from edge.config import MonitorConfig, add_config_arguments, config_from_args
from edge.device_channels import DeviceChannels
from edge.console import OUTPUT_FORMATS, WindowLines, output_format
from edge.errors import EdgeError
from edge.pipeline import WindowProcessor
from edge.ports import explain_port_error, port_problem
from edge.quality import DeviceFlags, channel_spec_with_adc
from edge.recording import Recorder, bytes_per_hour
from edge.recording.replay import add_replay_arguments, recording_from_args, replay_windows
from edge.representations import REPRESENTATIONS
from edge.service import GracefulShutdown
from edge.smoothing import create_smoother
from edge.storage import ResultStore, StoreUnavailable, WindowResult
from edge.windows import Window, Windower, check_channel_rate
from firmware_bridge import (
    BridgeError,
    BridgeParams,
    ChannelBlock,
    DeviceConfig,
    DeviceEvent,
    GapEvent,
    LinkEvent,
    SensorReader,
    SimulatedDevice,
    SimulatorParams,
    StatusEvent,
)
from firmware_bridge.simulator import ReplayRecording

__all__ = [
    "RunLimits",
    "SensorSource",
    "Monitor",
    "configure_parser",
    "run",
]

logger = logging.getLogger(__name__)

#: Seconds to wait for the device's description (hello frame) after opening the port.
DEFAULT_CONNECT_TIMEOUT_S = 15.0
#: How far past one sample block a channel may lag behind the others before a window is cut without it
#: (device s). A block carries every channel, but the windower takes them one after another, so the
#: channel that comes last in a block trails the first by up to the block's length: the windower waits
#: a block plus this (2 s with the usual 1 s blocks).
_MAX_LAG_SECONDS = 1.0
#: Seconds between attempts to store while the database refuses writes: the first, doubling up to the second.
_STORE_RETRY_S = (0.25, 4.0)
#: How long the monitor keeps trying to store the last results once asked to stop (s).
_FINAL_STORE_S = 10.0
#: Events (link changes, status, restarts) that may wait for the database; later ones are counted and dropped.
_MAX_WAITING_EVENTS = 1000


def _resync_seconds(window_seconds: float, max_wait: float) -> float:
    """A stream jump past which the windows start again: 30 s, or twice a window and the wait when longer."""
    return max(30.0, 2 * (window_seconds + max_wait))


# --------------------------------------------------------------------------- the sensor


class SensorSource:
    """The reader of a port, or of the simulated hub on a pseudo-terminal.

    ``open()`` starts reading (for the simulator: the reader first, then the
    device, so the reader gets its first frame) and returns the device
    description; ``close()`` stops both.

    Parameters
    ----------
    port : str or None
        pyserial URL of the hub; ignored with ``simulator``.
    simulator : SimulatorParams, optional
        Run the simulated hub on a pty; ``link`` is filled in (a temporary
        symlink, so the reader reconnects after a simulated disconnection).
    connect_timeout_s : float
        How long to wait for the device description (hello frame).
    recording : ReplayRecording, optional
        What the simulated hub replays (``--replay FILE``) instead of its generator.
    """

    def __init__(self, port: str | None, simulator: SimulatorParams | None = None,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S, recording: ReplayRecording | None = None):
        self._folder: str | None = None
        self.device: SimulatedDevice | None = None
        if simulator is not None:
            self._folder = tempfile.mkdtemp(prefix="biomoe-sim-")
            simulator = dataclasses.replace(simulator, link=os.path.join(self._folder, "hub"))
            self.device = SimulatedDevice(simulator, recording=recording)  # checks the conditions before anything opens
            port = simulator.link
            # Retry at the pace of a real hub (0.1-5 s) scaled by the simulation speed, so a
            # simulated disconnection costs the same stream time as a real one.
            speed = max(simulator.speed, 1.0)
            bridge = BridgeParams(port=port, reconnect_min_s=0.1 / speed, reconnect_max_s=5.0 / speed)
        else:
            bridge = BridgeParams(port=port)
        self.port = port
        self.reader = SensorReader(bridge)
        self.connect_timeout_s = connect_timeout_s

    @property
    def description(self) -> str:
        """What is being read, for logs."""
        if self.device is None:
            return f"port {self.port}"
        speed = self.device.params.speed
        return f"the simulated hub at {speed:g}x real time on {self.device.pty_path}"

    def open(self) -> DeviceConfig:
        """Open and start reading; return the device description once it arrived.

        Raises
        ------
        EdgeError
            For a port that does not exist, that this user may not open, that
            another program holds, or that sends no hello frame within
            ``connect_timeout_s``: one line with the fix (:mod:`edge.ports`).
        BridgeError
            Other failures to open the port (``port_open_failed``).
        """
        if self.device is not None:
            self.device.open()
        else:
            problem = port_problem(self.port)  # missing, or not this user's: one line with the fix
            if problem is not None:
                raise problem
        try:
            self.reader.open()  # locks the port: a second monitor on it is refused
            self.reader.start()
            if self.device is not None:
                self.device.start()
            return self.reader.wait_for_config(timeout=self.connect_timeout_s)
        except BridgeError as exc:
            raise explain_port_error(exc, self.port, self.connect_timeout_s) from None

    def close(self) -> None:
        """Stop the reader, then the simulated device; remove the temporary link folder."""
        self.reader.stop()
        if self.device is not None:
            self.device.close()
        self.reader.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


# --------------------------------------------------------------------------- the monitor


@dataclass(frozen=True)
class RunLimits:
    """When the monitor stops on its own (besides SIGTERM/SIGINT).

    Attributes
    ----------
    windows : int or None
        Stop once this many windows (processed or skipped) were written.
    duration_s : float or None
        Stop after this many wall-clock seconds.
    """

    windows: int | None = None
    duration_s: float | None = None


@dataclass
class _Queued:
    window: Window
    device_flags: dict
    channel_specs: tuple
    queued_at: float


class Monitor:
    """The running monitor: ingest thread, bounded window queue, processing loop.

    Parameters
    ----------
    bundle : Bundle
        The model bundle (channel order, labels).
    processor : WindowProcessor
        Quality gate, images, inference and smoothing of one window.
    reader : SensorReader
        A started reader whose device description is known.
    device : DeviceConfig
        That description (channel rates, block length, ADC ranges); it sends
        every channel the bundle needs (:meth:`Bundle.require_channels`).
    store : ResultStore
        Where every window goes; a session is started by :meth:`run`.
    config : MonitorConfig
        Window, hop and budgets.
    limits : RunLimits
        When to stop on its own.
    out : text stream or None
        Where the JSON lines go (None: nowhere, ``--quiet``).
    line_format : callable, optional
        ``line_format(result) -> str``: the line written to ``out`` per window;
        default :meth:`WindowResult.to_json` (``biomoe monitor`` on a terminal
        passes :class:`edge.console.WindowLines`).
    status_every_s : float
        Seconds between status lines.
    session_info : dict
        Stored with the session (settings, source).
    recorder : edge.recording.Recorder, optional
        Gets every reader event and every stored window (``--record``).
    """

    def __init__(self, bundle: Bundle, processor: WindowProcessor, reader: SensorReader, device: DeviceConfig,
                 store: ResultStore, config: MonitorConfig, limits: RunLimits = RunLimits(), out=sys.stdout,
                 status_every_s: float = 60.0, session_info: dict | None = None, scripted_truth=None,
                 line_format=None, recorder=None):
        self.bundle = bundle
        self.recorder = recorder  # edge.recording.Recorder: every event and stored window, or None
        self.line_format = line_format or WindowResult.to_json
        self.scripted_truth = scripted_truth  # window -> true label, for a simulated hub with scripted pain
        self.scripted_agreement = [0, 0]  # labelled windows that agree, labelled windows
        self.processor = processor
        self.reader = reader
        self.store = store
        self.limits = limits
        self.out = out
        self.status_every_s = status_every_s
        self.session_info = dict(session_info or {})
        self.channels = bundle.channel_names
        self.window_seconds = config.window_seconds or bundle.window_seconds
        self.hop_seconds = config.hop_seconds or self.window_seconds
        budgets = config.budgets
        self.budget = BudgetTracker(budgets.window_ms or self.hop_seconds * 1000.0, budgets.memory_mb)
        self.queue = SkippingQueue(budgets.max_pending_windows)
        # Counters; the ingest thread writes its own, the main thread reads them for the status line.
        self.windows_cut = 0
        self.rows_written = 0
        self.windows_processed = 0
        self.windows_skipped = 0
        self.link_losses = 0
        self.device_restarts = 0
        self.resyncs = 0
        self.clock_lags = 0
        self.rate_changes = 0
        self.events_dropped = 0
        self.link_state = "up"  # "down" while disconnected, "no data" while open but silent
        self.stale_after_s = config.stale_after_seconds or 3 * self.window_seconds
        self._last_data = time.monotonic()  # when samples last came, or the link (or the run) started
        self._events: deque[tuple[str, dict, float]] = deque()  # (kind, detail, wall time) waiting to be stored
        self._rates: dict[str, float] = {}
        self._max_wait = 0.0  # the windower's, from the device's block length
        self._absent: tuple[str, ...] = ()  # bundle channels the device's description lacks (sensor unplugged)
        self._board: DeviceChannels | None = None  # how the description's channels are read (names, units)
        self._specs = tuple(bundle.channels)  # quality specs with the ADC limits the device announces
        self.windower: Windower | None = None  # None until the device describes channels windows can be cut from
        self._refused = False  # the device's last description could not be used: its samples are ignored
        self.device_flags = DeviceFlags()
        # Cut, waiting for the device to report past their end; each with the quality specs of the description
        # its samples came under.
        self._held: deque[tuple[Window, tuple]] = deque()
        self._device_time = -math.inf
        self._skipped: deque[WindowResult] = deque()  # dropped by the queue, to be written in order
        self._order_lock = threading.Lock()  # a drop and its skipped record are one step for the main loop
        self._stage_ms: dict[str, deque] = {}
        self._stop_ingest = threading.Event()
        self._ingest_thread: threading.Thread | None = None
        self._ingest_error: BaseException | None = None
        self._unwritten: list[Window] = []  # taken from the queue when a limit was reached
        self._unstored: deque[WindowResult] = deque()  # made, waiting for the database, in window order
        self._store_problem: str | None = None  # why the database refuses writes, while it does
        self._store_down_since = 0.0
        self._store_retry_at = 0.0
        self._store_delay_s = _STORE_RETRY_S[0]
        self._output_closed = False
        # Told of each stored window (``window_stored(result, window)``, window None when not processed) and
        # event (``event_stored(kind, detail, wall_time)``), on this thread: the dashboard (edge.dashboard).
        self.observers: list = []
        self._processed: dict[int, Window] = {}  # window index -> its samples, until the result is stored
        self._use_device(device)
        self.memory_start_mb = process_memory_mb()

    # -- ingest thread

    def _use_device(self, device: DeviceConfig, wall_time: float | None = None) -> None:
        """Follow the device's description: its channels, their ADC limits, rates and block length.

        Its channels are read as the protocol's, under their names and in
        their units (:class:`~edge.device_channels.DeviceChannels`). A bundle
        channel the description lacks, or announces in a way that cannot be
        read, stays in the windows at its last rate, missing, until a
        description lists it again. New rates or a new block length keep the
        windows going (:meth:`_follow_rates`). A description windows cannot be
        cut from is refused (its samples are ignored) until a usable one
        comes; the windows start again then.
        """
        board = DeviceChannels(device)
        self._follow_channels(board, wall_time)
        self._follow_reading(board, wall_time)
        self._board = board
        sent = board.channel_names
        self._specs = tuple(channel_spec_with_adc(spec, board.adc_range(spec.name))
                            if spec.name in sent else spec for spec in self.bundle.channels)
        rates = {name: board.sampling_rate(name) if name in sent else self._rates[name] for name in self.channels}
        max_wait = device.block_duration_s + _MAX_LAG_SECONDS
        if (rates, max_wait) == (self._rates, self._max_wait):
            return
        self._rates, self._max_wait = rates, max_wait
        try:
            for name, rate in rates.items():
                check_channel_rate(name, rate, self.window_seconds)
        except ValueError as exc:
            self._release(everything=True)
            if self.windower is not None:
                self.windower.reset()
            self._refused = True
            logger.warning("refusing the device's description: %s; waiting for one windows can be cut from", exc)
            self._event("device_refused", {"rates": rates, "reason": str(exc)}, wall_time)
            return
        if self._refused:
            self._refused = False
            logger.info("the device's description can be followed again; windows start again")
        if self.windower is None:
            self.windower = self._windower(rates, max_wait)
        else:
            self._follow_rates(device.block_duration_s, wall_time)

    def _follow_rates(self, block_seconds: float, wall_time: float | None) -> None:
        """Carry the windows on at the device's new rates or block length (firmware reconfigured, in the same
        session or after a reboot): same grid, window indices counting on, the samples held resampled, so the
        window across the change is whole (:meth:`Windower.reconfigure`); said and stored."""
        windower, rates = self.windower, self._rates
        before, waited = windower.channel_rates, windower.max_wait_seconds
        windower.reconfigure(rates, max_wait_seconds=self._max_wait,
                             resync_seconds=_resync_seconds(self.window_seconds, self._max_wait))
        changed = {name: {"from_hz": before[name], "to_hz": rate} for name, rate in rates.items()
                   if rate != before[name]}
        if changed:
            self.rate_changes += 1
            logger.warning("the device changed the sampling rate of %s; the windows go on, resampled to the "
                           "bundle's %g Hz", ", ".join(f"{name} from {change['from_hz']:g} to {change['to_hz']:g} Hz"
                                                       for name, change in changed.items()),
                           self.bundle.sampling_rate)
            self._event("rate_change", {"channels": changed, "rates": rates}, wall_time)
        if self._max_wait != waited:
            logger.info("the device's sample blocks are now %g s long", block_seconds)
            self._event("device_config", {"rates": rates, "block_seconds": block_seconds}, wall_time)

    def _follow_channels(self, board: DeviceChannels, wall_time: float | None) -> None:
        """Say (and store) when the device stops sending a channel the bundle needs, or announces it so that it
        cannot be read, and when it sends it again."""
        absent = tuple(name for name in self.channels if name not in board.channel_names)
        stopped = [name for name in absent if name not in self._absent]
        resumed = [name for name in self._absent if name not in absent]
        self._absent = absent
        unplugged = [name for name in stopped if name not in board.unreadable]
        unreadable = {name: board.unreadable[name] for name in stopped if name in board.unreadable}
        if unplugged:
            logger.warning("the device stopped sending %s (a sensor unplugged?); windows carry it as missing until "
                           "it is back", ", ".join(unplugged))
        for name, reason in unreadable.items():
            logger.warning("%s; windows carry %s as missing until the device describes it so it can be read",
                           reason, name)
        if stopped:
            detail = {"channels": stopped, "device_channels": list(board.device.channel_names)}
            self._event("channels_stopped", {**detail, "unreadable": unreadable} if unreadable else detail, wall_time)
        if resumed:
            logger.info("the device sends %s again", ", ".join(resumed))
            self._event("channels_resumed", {"channels": resumed}, wall_time)

    def _follow_reading(self, board: DeviceChannels, wall_time: float | None) -> None:
        """Say (and store) which of the device's channels are read under another name or unit, when that changes."""
        notes, before = board.notes(), self._board.notes() if self._board is not None else []
        if notes == before:
            return
        if notes:
            logger.info("%s", "; ".join(notes))
        else:
            logger.info("the device now announces its channels under the protocol's names and units")
        self._event("channels_read", {"channels": board.describe()}, wall_time)

    def _windower(self, rates: dict[str, float], max_wait: float) -> Windower:
        try:
            return Windower(
                rates, self.bundle.sampling_rate, self.window_seconds, self.hop_seconds,
                max_wait_seconds=max_wait,
                resync_seconds=_resync_seconds(self.window_seconds, max_wait),
            )
        except ValueError as exc:
            raise EdgeError(
                f"cannot cut windows of {self.window_seconds:g} s every {self.hop_seconds:g} s: {exc}"
            ) from None

    def _ingest(self) -> None:
        try:
            while not self._stop_ingest.is_set():
                for event in self.reader.read(timeout=0.1):
                    self._handle(event)
                self._release()
                self._watch_data()
        except BaseException as exc:  # surfaced by the main loop
            self._ingest_error = exc

    def _handle(self, event) -> None:
        if self.recorder is not None:
            self.recorder.on_event(event)
        if isinstance(event, ChannelBlock):
            self._data_came(event)
        if isinstance(event, (ChannelBlock, GapEvent)):
            self._advance(event.device_time_s)
            read = self._board.block(event)  # under the protocol's name, in its unit
            # A channel the bundle does not use is ignored, and so is everything while the device is refused.
            if not self._refused and read is not None and read.channel in self.channels:
                self._place(read)
        elif isinstance(event, StatusEvent):
            at = event.device_time_s
            if self.windower is not None and self.windower.clock_lagging:  # its clock says nothing: the last block's
                at = self._device_time
            lead_off = self._board.protocol_names(event.lead_off)
            saturated = self._board.protocol_names(event.saturated)
            for name in self.channels:
                active = {flag for flag, flagged in (("lead_off", lead_off), ("saturation", saturated))
                          if name in flagged}
                self.device_flags.update(name, at, active)
            self._advance(event.device_time_s)
        elif isinstance(event, DeviceEvent):
            self._device_event(event)
        elif isinstance(event, LinkEvent):
            self.link_state = "up" if event.kind == "connected" else "down"
            self._last_data = time.monotonic()
            if event.kind == "disconnected":  # the reader logs it as a warning
                self.link_losses += 1
            elif self.link_losses:
                logger.info("link to %s back", event.port)
            self._event("link", {"kind": event.kind, "port": event.port, "detail": event.detail}, event.received_at)

    def _place(self, event: ChannelBlock | GapEvent) -> None:
        """Samples, or a gap, into the windower; a jump that restarts its grid is said and stored."""
        windower = self.windower
        resyncs, clock_lags = windower.resyncs, windower.clock_lags
        if isinstance(event, ChannelBlock):
            self._hold(windower.push(event.channel, event.device_time_s, event.samples, event.first_sample_index))
            what = f"the device clock jumped to {event.device_time_s:.3f} s"
        else:
            self._hold(windower.mark_lost(event.channel, event.n_samples, event.device_time_s,
                                          event.first_sample_index))
            what = f"{event.n_samples} samples of {event.channel} lost at once"
        placed = windower.block_time(event.channel)
        if placed is not None:  # the windows' time, which a lagging device clock falls behind
            self._advance(placed)
        if windower.clock_lags > clock_lags:
            self.clock_lags += 1
            logger.warning("the device clock stopped advancing (or went back) at %.3f s while its blocks kept "
                           "coming; placing them by their sample index", event.device_time_s)
            self._event("clock_lag", {"channel": event.channel, "device_time_s": event.device_time_s},
                        event.received_at)
        if windower.resyncs > resyncs:
            self.resyncs += 1
            logger.warning("the device stream jumped (%s); windows start again", what)
            self._event("resync", {"channel": event.channel, "device_time_s": event.device_time_s, "what": what},
                        event.received_at)

    def _device_event(self, event: DeviceEvent) -> None:
        if event.kind == "session" and event.restarted:
            # Sample indices and the device clock start again: finish what was cut, forget the rest.
            self._release(everything=True)
            if self.windower is not None:
                self.windower.reset()
            self.device_flags = DeviceFlags()
            self._device_time = -math.inf
            self.device_restarts += 1
            logger.warning("the device restarted (boot id %d); windows start again", event.boot_id)
            self._event("device_restart", {"device_id": event.device_id, "boot_id": event.boot_id},
                        event.received_at)
        elif event.kind == "config" and event.config is not None:
            self._use_device(event.config, event.received_at)

    def _advance(self, device_time_s: float) -> None:
        self._device_time = max(self._device_time, device_time_s)

    def _data_came(self, event: ChannelBlock) -> None:
        """Samples arrived: a link that had gone quiet is said to be back."""
        if self.link_state == "no data":
            silent = time.monotonic() - self._last_data
            self.link_state = "up"
            logger.info("sample data from %s again after %.0f s without", self.reader.params.port, silent)
            self._event("link", {"kind": "data_resumed", "port": self.reader.params.port,
                                 "detail": f"after {silent:.0f} s without sample data"}, event.received_at)
        self._last_data = time.monotonic()

    def _watch_data(self) -> None:
        """An open link without sample data for ``stale_after_s``: said once, stored, shown as ``no data``."""
        silent = time.monotonic() - self._last_data
        if self.link_state == "up" and silent > self.stale_after_s:
            self.link_state = "no data"
            logger.warning("no sample data from %s for %.0f s although the port is open; is the sensor board "
                           "streaming?", self.reader.params.port, silent)
            self._event("link", {"kind": "no_data", "port": self.reader.params.port,
                                 "detail": f"no sample data for {silent:.0f} s"})

    def _hold(self, windows: list[Window]) -> None:
        self.windows_cut += len(windows)
        self._held.extend((window, self._specs) for window in windows)

    def _release(self, everything: bool = False) -> None:
        """Queue the held windows the device has reported past (all of them with ``everything``)."""
        while self._held and (everything or self._held[0][0].end_time <= self._device_time + 1e-9):
            window, specs = self._held.popleft()
            flags = self._flags_during(window)
            self.device_flags.prune(before=window.start_time)
            with self._order_lock:
                dropped = self.queue.put(_Queued(window, flags, specs, time.perf_counter()))
                if dropped is not None:
                    reason = "behind" if self._store_problem is None else "database unavailable"
                    self._skipped.append(self.processor.skipped(dropped.window, reason=reason))

    def _flags_during(self, window: Window) -> dict[str, set[str]]:
        return {name: self.device_flags.during(name, window.start_time, window.end_time) for name in self.channels}

    # -- processing loop (main thread)

    def run(self, shutdown: GracefulShutdown | None = None) -> int:
        """Monitor until a limit is reached or a stop signal arrives; return the exit status.

        0, or 1 when the database still refused the last results
        ``_FINAL_STORE_S`` seconds after the stop (they are named on stderr).

        Raises
        ------
        EdgeError, BridgeError
            A problem found while reading.
        """
        started = time.monotonic()
        next_status = started + self.status_every_s
        self._last_data = started
        self._ingest_thread = threading.Thread(target=self._ingest, name="biomoe-ingest", daemon=True)
        self._ingest_thread.start()
        stopped_by = "limit"
        try:
            while True:
                if shutdown is not None and shutdown.requested:
                    stopped_by = shutdown.signal_name or "signal"
                    break
                if self._output_closed:
                    stopped_by = "stdout closed"
                    break
                if self._limit_reached(started):
                    break
                if self._ingest_error is not None:
                    raise self._ingest_error
                if not self._store():  # the database refuses writes: windows wait in the bounded queue
                    time.sleep(0.1)
                else:
                    try:
                        item = self.queue.get(timeout=0.2)
                    except TimeoutError:
                        item = None
                    self._write_skipped()  # windows dropped before this one come first
                    if item is not None and self._limit_reached(started):
                        self._unwritten.append(item.window)
                    elif item is not None:
                        self._write(self._process(item))
                if time.monotonic() >= next_status:
                    self._status()
                    next_status = time.monotonic() + self.status_every_s
        finally:
            self._stop_ingest.set()
            self._ingest_thread.join(5.0)
        if stopped_by not in ("limit", "stdout closed"):
            self._finish_pending()
        self._summary(stopped_by, time.monotonic() - started)
        return self._store_the_rest()

    def _limit_reached(self, started: float) -> bool:
        duration = self.limits.duration_s
        return self._rows_limit_reached() or (duration is not None and time.monotonic() - started >= duration)

    def _rows_limit_reached(self) -> bool:
        return bool(self.limits.windows) and self.rows_written >= self.limits.windows

    def _finish_pending(self) -> None:
        """After a stop signal: write the skipped, queued and held windows (the ingest thread has stopped)."""
        self._write_skipped()
        while True:
            try:
                item = self.queue.get(timeout=0)
            except TimeoutError:
                break
            self._write(self._process(item))
        while self._held:
            window, specs = self._held.popleft()
            self._write(self._process(_Queued(window, self._flags_during(window), specs, time.perf_counter())))

    def _process(self, item: _Queued) -> WindowResult:
        waited_ms = (time.perf_counter() - item.queued_at) * 1000.0
        result = self.processor.process(item.window, device_flags=item.device_flags,
                                        channel_specs=item.channel_specs)
        result.latency_ms["queue"] = round(waited_ms, 3)
        self._processed[result.window_index] = item.window
        return result

    def _write_skipped(self) -> None:
        with self._order_lock:
            self._unstored.extend(self._skipped)
            self._skipped.clear()
        self._store()

    def _write(self, result: WindowResult) -> None:
        """Store one result after those made before it."""
        self._unstored.append(result)
        self._store()

    # -- the database (main thread only)

    def _store(self) -> bool:
        """Store what waits: the session, the results in window order (up to the row limit), the events.

        While the database refuses writes, tries again only when the backoff
        allows. Returns True once no result waits.
        """
        if self._store_problem is not None and time.monotonic() < self._store_retry_at:
            return False
        try:
            if self.store.session_id is None:
                self.store.start_session(self.bundle.bundle_id, self.bundle.placeholder, self.bundle.labels,
                                         self.channels, self.session_info)
            while self._unstored and not self._rows_limit_reached():
                self._commit(self._unstored[0])
                self._unstored.popleft()
            while self._events:
                self.store.append_event(*self._events[0])
                kind, detail, wall_time = self._events.popleft()
                if self.recorder is not None:
                    self.recorder.on_stored_event(kind, detail)
                self._tell("event_stored", kind, detail, wall_time)
        except StoreUnavailable as exc:
            self._store_refused(str(exc))
            return False
        if self._store_problem is not None:
            logger.warning("results database writable again after %.0f s; the windows that waited are stored",
                           time.monotonic() - self._store_down_since)
            self._store_problem = None
        return not self._unstored

    def _store_refused(self, problem: str) -> None:
        """Say it once per problem, and try again later, twice as late each time up to a limit."""
        now = time.monotonic()
        if self._store_problem is None:
            self._store_down_since, self._store_delay_s = now, _STORE_RETRY_S[0]
        else:
            self._store_delay_s = min(2 * self._store_delay_s, _STORE_RETRY_S[1])
        if problem != self._store_problem:
            in_memory = len(self._unstored) + len(self._skipped) + len(self.queue)
            logger.warning("%s; %d window(s) kept in memory, retrying", problem, in_memory)
        self._store_problem = problem
        self._store_retry_at = now + self._store_delay_s

    def _store_the_rest(self) -> int:
        """At the end: keep trying for ``_FINAL_STORE_S``; name what could not be stored. The exit status."""
        deadline = time.monotonic() + _FINAL_STORE_S
        while not self._store() and self._store_problem is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._store_problem is None:
            return 0
        indices = [result.window_index for result in self._unstored]
        logger.error("%s: %d window(s) could not be stored before stopping (indices %s to %s), nor %d event(s)",
                     self._store_problem, len(indices), min(indices, default="-"), max(indices, default="-"),
                     len(self._events))
        return 1

    def _commit(self, result: WindowResult) -> None:
        """Commit one result, then print it: a printed line is always on disk."""
        began = time.perf_counter()
        self.store.append(result)
        if self.recorder is not None:  # its annotation counts as storing
            self.recorder.on_window(result)
        store_ms = (time.perf_counter() - began) * 1000.0
        self.rows_written += 1
        self._tell("window_stored", result, self._processed.pop(result.window_index, None))
        if self.scripted_truth is not None and result.label is not None:
            truth = self.scripted_truth(result.start_time, result.end_time)
            self.scripted_agreement[0] += result.label == truth
            self.scripted_agreement[1] += 1
        if result.skipped and result.skip_reason != "calibrating":  # calibrating windows were processed, unlabelled
            self.windows_skipped += 1
        else:
            self.windows_processed += 1
            self.budget.observe(result.latency_ms["total"] + store_ms)
            for stage, value in {**result.latency_ms, "store": store_ms}.items():
                self._stage_ms.setdefault(stage, deque(maxlen=1000)).append(value)
        if self.out is not None and not self._output_closed:
            try:
                self.out.write(self.line_format(result) + "\n")
                self.out.flush()
            except BrokenPipeError:  # e.g. `biomoe monitor | head`: stop cleanly, keep what is stored
                self._output_closed = True
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.out.fileno())
                os.close(devnull)

    def _tell(self, method: str, *details) -> None:
        """Pass a stored window or event to the observers; one that fails is named, monitoring goes on."""
        for observer in self.observers:
            try:
                getattr(observer, method)(*details)
            except Exception as exc:  # a display must never stop the monitoring
                logger.warning("%s failed on a stored %s: %r", type(observer).__name__, method.split("_")[0], exc)

    def _event(self, kind: str, detail: dict, wall_time: float | None = None) -> None:
        """Queue an event for the database (any thread); past ``_MAX_WAITING_EVENTS`` new ones are counted, dropped."""
        if len(self._events) >= _MAX_WAITING_EVENTS:
            self.events_dropped += 1
            return
        self._events.append((kind, detail, time.time() if wall_time is None else wall_time))

    # -- reporting

    def counters(self) -> dict:
        """Accounting so far: windows cut, written, processed, skipped, waiting; bridge losses; link."""
        stats, board = self.reader.stats, self._board
        sources = {name: board.source(name) if name in board.channel_names else name for name in self.channels}
        lost = {name: stats.samples_lost_link.get(source, 0) + stats.samples_lost_overflow.get(source, 0)
                for name, source in sources.items()}
        placed = self.windower.stats() if self.windower is not None else {}
        return {
            "windows_cut": self.windows_cut,
            "windows_written": self.rows_written,
            "windows_processed": self.windows_processed,
            "windows_skipped": self.windows_skipped,
            # cut but not written when the monitor stopped: windows_cut = windows_written + windows_waiting
            "windows_waiting": len(self._held) + len(self.queue) + len(self._skipped) + len(self._unwritten)
            + len(self._unstored),
            "samples_lost": lost,
            "samples_delivered": {name: stats.samples_delivered.get(source, 0) for name, source in sources.items()},
            # by the windower (the session's): late or repeated samples it dropped, samples it placed by index
            "samples_dropped": {name: placed.get(name, {}).get("dropped", 0) for name in self.channels},
            "samples_retimed": {name: placed.get(name, {}).get("retimed", 0) for name in self.channels},
            "decoder_errors": stats.decoder.crc_errors + stats.decoder.cobs_errors,
            "link": self.link_state,
            "link_losses": self.link_losses,
            "device_restarts": self.device_restarts,
            "resyncs": self.resyncs,
            "clock_lags": self.clock_lags,
            # times the windows' timeline moved to the device clock (a sample clock off its announced rate)
            "reanchors": self.windower.reanchors if self.windower is not None else 0,
            "rate_changes": self.rate_changes,
            "events_dropped": self.events_dropped,
        }

    def stage_medians(self) -> dict[str, float]:
        """Median ms of each stage over the last 1000 processed windows (``store``: the commit)."""
        return {stage: round(float(np.median(values)), 3) for stage, values in self._stage_ms.items() if values}

    def _status(self) -> None:
        counters = self.counters()
        lost = counters["samples_lost"]
        line = self.budget.status_line(self.windows_skipped, sum(lost.values()))
        if any(lost.values()):
            line += "; lost by channel: " + ", ".join(f"{name} {n}" for name, n in lost.items() if n)
        dropped = counters["samples_dropped"]
        if any(dropped.values()):
            line += "; dropped as late or repeated: " + ", ".join(f"{name} {n}" for name, n in dropped.items() if n)
        if self.clock_lags:
            line += (f"; device clock lagged {self.clock_lags} time(s): {sum(counters['samples_retimed'].values())} "
                     "samples placed by their index")
        if counters["reanchors"]:
            line += (f"; windows re-anchored to the device clock {counters['reanchors']} time(s) (sample clock off "
                     "its rate)")
        line += f"; link {counters['link']}"
        if counters["link"] == "no data":
            line += f" for {time.monotonic() - self._last_data:.0f} s"
        line += f" ({self.link_losses} losses)"
        if "total" in self._stage_ms:
            line += f"; median {self.stage_medians()['total']:.0f} ms"
        if self._store_problem is not None:
            line += f"; NOT STORING: {self._store_problem}"
        logger.info("%s", line)
        self._event("status", {**self.budget.status(), **counters})

    def _summary(self, stopped_by: str, seconds: float) -> None:
        counters = self.counters()
        memory = {"start_mb": round(self.memory_start_mb, 1), "end_mb": round(process_memory_mb(), 1),
                  "peak_mb": round(peak_memory_mb(), 1)}
        detail = {"stopped_by": stopped_by, "seconds": round(seconds, 3), **counters,
                  "stage_median_ms": self.stage_medians(), "memory": memory, "budget": self.budget.status()}
        self._events.append(("summary", detail, time.time()))  # past the cap on waiting events: the last word
        medians = self.stage_medians()
        stages = ", ".join(f"{stage} {medians[stage]:.1f}" for stage in
                           ("quality", "represent", "infer", "smooth", "store", "total") if stage in medians)
        lost = sum(counters["samples_lost"].values())
        logger.info(
            "stopped (%s) after %.1f s: %d windows written (%d processed, %d skipped), %d samples lost on the link, "
            "%d link losses; median ms: %s; memory %.0f MiB (start %.0f, peak %.0f)",
            stopped_by, seconds, self.rows_written, self.windows_processed, self.windows_skipped, lost,
            self.link_losses, stages or "none", memory["end_mb"], memory["start_mb"], memory["peak_mb"],
        )
        agree, labelled = self.scripted_agreement
        if self.scripted_truth is not None and labelled:
            print(f"biomoe monitor: scripted pain episodes: {agree} of {labelled} labelled windows agree with the "
                  f"simulated level ({agree / labelled:.0%}; chance {1 / len(self.bundle.labels):.0%})",
                  file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- command line


def scripted_truth(conditions, labels: Sequence[str]):
    """``truth(start, end) -> label``: the pain level a simulated hub was scripted to have over most of a window.

    None when the conditions script no pain (nothing to compare with). Labels
    are matched by level: ``No Pain``, ``Low Pain``, ``High Pain``.
    """
    episodes = [c for c in conditions if c.kind == "pain"]
    if not episodes:
        return None
    names = {"none": labels[0], "low": "Low Pain", "high": "High Pain"}

    def truth(start: float, end: float) -> str:
        middle = (start + end) / 2
        active = [c.target for c in episodes if c.active(middle)]
        return names["high" if "high" in active else "low" if "low" in active else "none"]

    return truth


def _store_baseline(monitor: Monitor, baseline: Baseline) -> None:
    """Keep the patient's baseline with the session (an event, written in order with the windows)."""
    monitor._event("calibration", baseline.to_dict())
    logger.info("calibrated: the patient's rest baseline from %d windows is stored; pain levels follow", baseline.windows)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``biomoe monitor``."""
    parser.description = (
        "Monitor pain continuously: read the sensor hub (--port) or the built-in simulated hub (--simulate), "
        "print one line per window (readable on a terminal, JSON into a pipe or file) and store it in SQLite (--db)."
    )
    add_config_arguments(parser)
    parser.add_argument("--windows", type=int, default=0, metavar="N",
                        help="stop after N windows are written, processed or skipped "
                             "(default 0: run until SIGTERM/Ctrl-C)")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many wall-clock seconds")
    parser.add_argument("--self-check", action="store_true",
                        help="check the bundle (loads, checksums pass) and run one synthetic window, then exit: "
                             "0 when both pass (what install.sh runs before it keeps an upgrade)")
    parser.add_argument("--quiet", action="store_true", help="no lines on stdout (the database gets every window)")
    parser.add_argument("--format", choices=OUTPUT_FORMATS,
                        help="lines on stdout: text (one readable line per window) or jsonl (one JSON object per "
                             "window, as stored); default text on a terminal, jsonl into a pipe or file")
    parser.add_argument("--status-every", type=float, metavar="SECONDS",
                        help="seconds between status lines on stderr (default: budgets.status_interval_seconds, 60)")
    parser.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT_S, metavar="SECONDS",
                        help="how long to wait for the device's hello frame (default: %(default)g)")
    simulated = parser.add_argument_group("simulated hub (with --simulate)")
    simulated.add_argument("--speed", type=float, metavar="X",
                           help="run the simulated hub X times faster than real time (default 1)")
    simulated.add_argument("--conditions", metavar="SCHEDULE",
                           help="faults at stream seconds, e.g. flat:RESP:20-40,saturate:EDA:40-60,disconnect:60-65 "
                                "(see biomoe simulate-device --help)")
    simulated.add_argument("--seed", type=int, metavar="N", help="seed of the simulated signals (default 0)")
    simulated.add_argument("--signal-rate", type=float, metavar="HZ",
                           help="sampling rate of the simulated EDA, BVP and RESP (default 100: the bundle's; "
                                "faster boards are downsampled)")
    replayed = parser.add_argument_group("replay a recording through the serial path (implies --simulate)")
    replayed.add_argument("--replay", metavar="FILE",
                          help="EDF/BDF(+), WFDB (.hea), E4 session folder, CSV, or an AI4PAIN folder with --subject; "
                               "stops after the windows it holds whole unless --windows or --duration says otherwise")
    replayed.add_argument("--subject", metavar="ID", help="AI4PAIN subject to replay from the --replay folder")
    add_replay_arguments(replayed)


def _positive(value: float, flag: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise EdgeError(f"{flag} must be a number > 0, got {value!r}")


def _simulator_params(args: argparse.Namespace, config: MonitorConfig) -> SimulatorParams | None:
    simulator_flags = {"--speed": args.speed, "--conditions": args.conditions, "--seed": args.seed,
                       "--signal-rate": args.signal_rate,
                       "--subject": args.subject, "--map": args.map, "--rate": args.rate}
    if not config.simulate:
        given = [flag for flag, value in simulator_flags.items() if value is not None]
        if given:
            raise EdgeError(f"{given[0]} applies to the simulated hub only; add --simulate or leave it out")
        return None
    for flag, value in (("--speed", args.speed), ("--signal-rate", args.signal_rate)):
        if value is not None:
            _positive(value, flag)
    conditions = (args.conditions,) if args.conditions else ()
    ai4pain = args.replay is not None and args.subject is not None
    if args.subject is not None and args.replay is None:
        raise EdgeError("--subject names the AI4PAIN subject of a --replay folder; add --replay DIR")
    return SimulatorParams(speed=1.0 if args.speed is None else args.speed, conditions=conditions,
                           seed=0 if args.seed is None else args.seed,
                           signal_rate_hz=100.0 if args.signal_rate is None else args.signal_rate,
                           replay_dir=args.replay if ai4pain else None, subject=args.subject)


def _replay_windows(source: SensorSource, config: MonitorConfig, bundle: Bundle, duration: float | None) -> int | None:
    """A replay stops after the windows it holds whole (None: not a replay, or ``--duration`` decides)."""
    device = source.device
    if device is None or device.recording is None or duration is not None:
        return None
    window = config.window_seconds or bundle.window_seconds
    windows = replay_windows(device.recording, device.params.block_ms, window, config.hop_seconds or window)
    if not windows:
        raise EdgeError(f"the replayed recording is shorter than one {window:g} s window (and a block); nothing to "
                        "monitor")
    return windows


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("biomoe monitor: %(message)s"))
    for name in ("edge", "firmware_bridge"):
        named = logging.getLogger(name)
        named.handlers[:] = [handler]
        named.propagate = False
    logging.getLogger("edge").setLevel(level.upper())
    # The reader's own "connected" lines repeat the monitor's; keep its warnings.
    logging.getLogger("firmware_bridge").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


def _self_check(config: MonitorConfig) -> int:
    """The bundle and inference checks of ``biomoe doctor`` without the time budget, printed; 0 when neither
    failed (a slow board is a finding for ``biomoe doctor``, not a broken install)."""
    from edge.doctor import check_bundle, format_check

    checks = list(check_bundle(config, time_budget=False))
    for check in checks:
        print(format_check(check), flush=True)
    return 1 if any(check.status == "fail" for check in checks) else 0


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe monitor``; see the module docstring."""
    config = config_from_args(args)
    if args.replay is not None:
        if config.port and args.config_port:
            raise EdgeError("--replay streams a recording through the simulated hub; leave --port out")
        config = dataclasses.replace(config, simulate=True, port=None)
    _setup_logging(config.log_level)
    if args.self_check:
        return _self_check(config)
    config.require_source()
    config.require_dashboard_access()
    if args.windows < 0:
        raise EdgeError(f"--windows must be 0 (no limit) or a positive number of windows, got {args.windows}")
    if args.duration is not None:
        _positive(args.duration, "--duration")
    status_every = config.budgets.status_interval_seconds if args.status_every is None else args.status_every
    _positive(status_every, "--status-every")
    _positive(args.connect_timeout, "--connect-timeout")
    simulator = _simulator_params(args, config)

    bundle = load_bundle(config.bundle or default_bundle_path())
    bundle.require_representations(REPRESENTATIONS)
    spec = bundle_representation_spec(bundle, config.window_seconds)
    backend = create_backend(bundle, threads=config.threads)
    smoothing = config.smoothing
    smoother = create_smoother(smoothing.method, alpha=smoothing.alpha, windows=smoothing.windows)
    processor = WindowProcessor(bundle, backend, smoother, FusionImages(bundle.fusion, spec),
                                baseline_windows=config.calibration_windows)

    recording = None
    if args.replay is not None and simulator.replay_dir is None:
        recording, dropouts = recording_from_args(args.replay, args, simulator.block_ms)
        simulator = dataclasses.replace(simulator, conditions=simulator.conditions + dropouts)
    source = SensorSource(config.port, simulator, args.connect_timeout, recording)
    recorder = None
    try:
        device = source.open()
        board = DeviceChannels(device)
        board.require(bundle)
        if config.record is not None:
            recorder = Recorder(config.record, device, config.record_rotate_minutes * 60, config.record_min_free_mb)
            logger.info("recording every sample to %s (EDF+, %.1f MiB per hour, a new file every %g min)",
                        config.record, bytes_per_hour(device) / 2**20, config.record_rotate_minutes)
        with ResultStore(config.database) as store, GracefulShutdown() as shutdown:
            monitor = Monitor(
                bundle, processor, source.reader, device, store, config,
                RunLimits(args.windows or _replay_windows(source, config, bundle, args.duration), args.duration),
                out=None if args.quiet else sys.stdout,
                status_every_s=status_every,
                scripted_truth=None if simulator is None else scripted_truth(simulator.conditions, bundle.labels),
                session_info={"settings": config.to_dict(), "source": source.description,
                              "device_channels": {c.name: [device.sampling_rate(c.name), c.unit]
                                                  for c in device.channels},
                              "channels_read": board.describe()},
                recorder=recorder,
            )
            if recorder is not None:  # ties the recordings' clock to the stored windows (biomoe history --export edf)
                recorder.on_file = lambda detail: monitor._event("recording_file", detail)
            if not args.quiet and output_format(args.format, sys.stdout) == "text":
                monitor.line_format = WindowLines.for_stream(
                    sys.stdout, bundle.labels, processor.baseline_windows,
                    lost_samples=lambda: sum(monitor.counters()["samples_lost"].values()))
            if processor.baseline_windows:
                processor.on_baseline = lambda baseline: _store_baseline(monitor, baseline)
                signal.signal(signal.SIGUSR1, lambda *_: processor.recalibrate())
                logger.info("calibrating to the patient: the first %d reliable windows (%g s) learn the rest "
                            "baseline and get no pain level; kill -USR1 %d calibrates again",
                            processor.baseline_windows, processor.baseline_windows * monitor.hop_seconds, os.getpid())
            if bundle.placeholder:  # whatever the log level: the results mean nothing
                print(f"biomoe monitor: {PLACEHOLDER_NOTICE}", file=sys.stderr, flush=True)
            logger.info("%s", bundle.describe())
            if not math.isclose(monitor.window_seconds, bundle.window_seconds):
                logger.warning("windows of %g s differ from the %g s the model was trained on: its outputs may be "
                               "less reliable", monitor.window_seconds, bundle.window_seconds)
            logger.info("reading %s; windows of %g s every %g s into %s", source.description,
                        monitor.window_seconds, monitor.hop_seconds, config.database)
            if not config.dashboard:
                return monitor.run(shutdown)
            from edge.dashboard.live import serve_monitor  # only when asked: no HTTP server loaded otherwise

            with serve_monitor(monitor, config):
                return monitor.run(shutdown)
    finally:
        source.close()
        if recorder is not None:
            recorder.close()
        backend.close()
