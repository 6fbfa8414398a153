"""The simulated sensor board: :class:`SimulatedDevice`, its :class:`SimulatorParams` and :class:`SimulatorStats`.

The device streams the real protocol (PROTOCOL.md) block by block from the
physiology model (:func:`generator_config` describes its channels) or from an
AI4PAIN replay (:mod:`firmware_bridge.simulator.replay`), applies the
scheduled conditions (:mod:`firmware_bridge.simulator.conditions`) and
writes through a link (:mod:`firmware_bridge.simulator.links`).

Wire faults are random and reproducible with ``--seed``: flipped bytes
(``--flip-rate``, per byte), dropped or duplicated frames (``--drop-rate``,
``--duplicate-rate``, per frame), and periodic stalls and disconnections
(``--stall-every``, ``--disconnect-every``).

The device keeps sampling while the link is down (blocks are counted by their
index, so the reader reports them lost) and sends a hello as soon as the link
is back.

Accounting for tests: :attr:`SimulatedDevice.stats` counts every sample the
device generated per channel; a reader that was listening from the first frame
delivers or reports lost exactly that many. Faults spare two frames that anchor
this accounting (a reader cannot count what it never learned was sent): the
hello sent at boot and the hello that ends the stream.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.errors import BridgeError
from firmware_bridge.physiology import PAIN_LEVELS
from firmware_bridge.physiology import PhysiologyStream as SignalGenerator  # the name before the shared model
from firmware_bridge.protocol import ChannelSpec, DeviceConfig, Hello, SampleBlock, SampleFormat, Status, encode_frame
from firmware_bridge.simulator.conditions import SIGNAL_KINDS, Condition, _parse_conditions
from firmware_bridge.simulator.links import _Link, _PtyLink, _SerialLink, _SinkLink
from firmware_bridge.simulator.replay import CHANNELS, Ai4PainRecording, ReplayRecording, Segment

__all__ = ["SimulatorParams", "SimulatorStats", "SimulatedDevice", "SignalGenerator", "generator_config"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- parameters


@dataclass
class SimulatorParams:
    """Every setting of a :class:`SimulatedDevice` (the CLI options map onto it one to one).

    Parameters
    ----------
    port : str or None
        pyserial URL to write to (a UART wired to the hub, ``socket://``); None
        creates a pseudo-terminal. Default None.
    link : str or None
        With a pty: keep a symlink at this path pointing to the current pty.
    baudrate : int
        For ``port``. Default 115200.
    speed : float
        Multiple of real time; 0 sends as fast as the link takes it. Default 1.
    duration_s : float or None
        Stream seconds to send; None: forever (a replay: its length).
    block_ms : int
        Duration of one sample block, ms. Default 1000 (so SpO2 at 1 Hz fits).
    signal_rate_hz, spo2_rate_hz : float
        Generator rates: EDA, BVP and RESP; SpO2. Defaults 100 and 1 Hz.
    replay_dir, subject : str or None
        Replay AI4PAIN CSVs of this subject instead of the generator.
    loop_replay : bool
        Start the recording again when it ends. Default False.
    device_id : int
        Header device id. Default 1.
    boot_id : int or None
        First boot id; None draws it from the seed.
    seed : int
        Seeds the signals, the faults and the boot ids. Default 0.
    flip_rate, drop_rate, duplicate_rate : float
        Probability per byte to flip it; per frame to drop it or send it twice.
    stall_every_s, stall_s : float
        Every ``stall_every_s`` stream seconds, send nothing for ``stall_s``.
    disconnect_every_s, disconnect_s : float
        Every ``disconnect_every_s`` stream seconds, drop the link for ``disconnect_s``.
    conditions : sequence of Condition or str
        Scheduled conditions (see :mod:`firmware_bridge.simulator.conditions`).
    hello_every_s, status_every_s : float
        Periods of the hello and status frames. Defaults 5 and 1 s.
    """

    port: str | None = None
    link: str | None = None
    baudrate: int = 115200
    speed: float = 1.0
    duration_s: float | None = None
    block_ms: int = 1000
    signal_rate_hz: float = 100.0
    spo2_rate_hz: float = 1.0
    replay_dir: str | None = None
    subject: str | None = None
    loop_replay: bool = False
    device_id: int = 1
    boot_id: int | None = None
    seed: int = 0
    flip_rate: float = 0.0
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    stall_every_s: float | None = None
    stall_s: float = 2.0
    disconnect_every_s: float | None = None
    disconnect_s: float = 2.0
    conditions: tuple = ()
    hello_every_s: float = 5.0
    status_every_s: float = 1.0

    def __post_init__(self):
        self.conditions = _parse_conditions(self.conditions)
        if not 0 <= self.speed < float("inf"):
            raise ValueError(f"speed must be >= 0 (0: as fast as possible), got {self.speed!r}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration_s must be > 0 seconds or None (forever), got {self.duration_s!r}")
        if not isinstance(self.block_ms, int) or not 1 <= self.block_ms <= 10_000:
            raise ValueError(f"block_ms must be an integer in [1, 10000], got {self.block_ms!r}")
        for name in ("flip_rate", "drop_rate", "duplicate_rate"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        for name in ("stall_every_s", "disconnect_every_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 seconds or None, got {value!r}")
        for name in ("stall_s", "disconnect_s", "hello_every_s", "status_every_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)!r}")
        if (self.replay_dir is None) != (self.subject is None):
            raise ValueError("replay needs both replay_dir (--replay DIR) and subject (--subject ID)")
        if self.link is not None and self.port is not None:
            raise ValueError("link (--link) is for the pty the simulator creates; it cannot be used with port (--port)")
        if self.boot_id is not None and not 0 <= self.boot_id <= 0xFFFF:
            raise ValueError(f"boot_id must be in [0, 65535], got {self.boot_id!r}")
        if not 0 <= self.device_id <= 0xFFFF:
            raise ValueError(f"device_id must be in [0, 65535], got {self.device_id!r}")


@dataclass
class SimulatorStats:
    """What the device did. ``samples_generated`` counts every sample per channel,
    sent or not; a reader listening from the first frame accounts for all of them."""

    blocks_generated: int = 0
    samples_generated: dict[str, int] = field(default_factory=dict)
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_dropped: int = 0
    frames_duplicated: int = 0
    bytes_flipped: int = 0
    frames_unsent: int = 0
    stalls: int = 0
    disconnects: int = 0
    reboots: int = 0
    boot_ids: list[int] = field(default_factory=list)
    finished: bool = False



# --------------------------------------------------------------------------- the built-in generator's channels


def generator_config(block_ms: int = 1000, signal_rate_hz: float = 100.0, spo2_rate_hz: float = 1.0,
                     firmware_version: int = 1) -> DeviceConfig:
    """The device description of the built-in generator (the ``finger-lab`` device of the physiology model).

    EDA in microsiemens (0-32.77 uS), BVP and RESP in arbitrary units
    (+-16.4, 0.0005 steps: a pulse or breath is about 1, motion shakes it a
    few times that), int16; SpO2 in percent (0.01 % steps; full scale far
    above 100 %, so a 100 % reading is not flagged as saturated).
    """
    per_block = {}
    for name, rate in (("signal_rate_hz", signal_rate_hz), ("spo2_rate_hz", spo2_rate_hz)):
        samples = rate * block_ms / 1000
        if samples < 1 or abs(samples - round(samples)) > 1e-9:
            raise ValueError(
                f"{name}={rate:g} Hz gives {samples:g} samples per {block_ms} ms block; it must be a whole "
                "number >= 1: choose block_ms (--block-ms) so that rate * block_ms / 1000 is an integer"
            )
        per_block[name] = int(round(samples))
    signal, spo2 = per_block["signal_rate_hz"], per_block["spo2_rate_hz"]
    return DeviceConfig(
        block_ms * 1000,
        (
            ChannelSpec("EDA", "uS", signal, SampleFormat.INT16, -32768, 32767, 0.0005, 16.384),
            ChannelSpec("BVP", "a.u.", signal, SampleFormat.INT16, -32768, 32767, 0.0005, 0.0),
            ChannelSpec("RESP", "a.u.", signal, SampleFormat.INT16, -32768, 32767, 0.0005, 0.0),
            ChannelSpec("SpO2", "%", spo2, SampleFormat.INT16, 0, 32767, 0.01, 0.0),
        ),
        firmware_version,
    )



# --------------------------------------------------------------------------- the device


class SimulatedDevice:
    """A sensor board streaming the biomoe protocol, on its own thread.

    Lifecycle: :meth:`open` (creates the pty or opens the port; returns the
    path a reader should open), :meth:`start` (streams on a thread), then
    :meth:`wait` (until ``duration_s`` is done), :meth:`stop`, :meth:`close`.
    ``with SimulatedDevice(params) as device:`` opens and closes; call
    ``device.start()`` once the reader is listening, so that it gets the first
    frame.

    Parameters
    ----------
    params : SimulatorParams, optional
        Defaults: a pty, real time, forever, the built-in generator.
    sink : object with ``write(bytes)``, optional
        Write here instead of a pty or port (tests; the ``sim://`` port).
    recording : ReplayRecording, optional
        Replay these signals instead of the generator (``edge.recording``
        reads them from EDF+, WFDB, E4 or CSV files); not with ``replay_dir``.

    Examples
    --------
    >>> from firmware_bridge.reader import BridgeParams, SensorReader
    >>> device = SimulatedDevice(SimulatorParams(speed=0, duration_s=5, drop_rate=0.2, seed=3))
    >>> path = device.open()
    >>> with SensorReader(BridgeParams(port=path)) as reader:
    ...     device.start()
    ...     finished = device.wait(timeout=30)
    ...     events = reader.read_until_idle(idle_s=0.5)
    >>> device.close()
    >>> stats = reader.stats
    >>> stats.samples_delivered["EDA"] + stats.samples_lost_link["EDA"] == device.stats.samples_generated["EDA"]
    True
    """

    def __init__(self, params: SimulatorParams | None = None, sink=None, recording: ReplayRecording | None = None):
        self.params = params = params if params is not None else SimulatorParams()
        seeds = np.random.SeedSequence(params.seed).spawn(3)
        self._signal_rng = np.random.default_rng(seeds[0])
        self._fault_rng = np.random.default_rng(seeds[1])
        self._boot_rng = np.random.default_rng(seeds[2])
        if recording is not None and params.replay_dir is not None:
            raise ValueError("give either a recording or replay_dir (--replay DIR --subject ID), not both")
        if params.replay_dir is not None:
            recording = Ai4PainRecording(params.replay_dir, params.subject)
        self.recording = recording
        if recording is not None:
            self.config = recording.config(params.block_ms)
            self._generator = None
            if any(c.kind == "pain" for c in params.conditions):
                raise ValueError("pain conditions drive the built-in generator; a replay carries its own pain")
        else:
            self.config = generator_config(params.block_ms, params.signal_rate_hz, params.spo2_rate_hz)
            self._generator = SignalGenerator(
                {name: self.config.sampling_rate(name) for name in CHANNELS}, self._signal_rng
            )
        for condition in params.conditions:
            if condition.kind in SIGNAL_KINDS and condition.target not in self.config.channel_names:
                raise ValueError(
                    f"condition {condition.kind}:{condition.target}: no channel {condition.target!r}; "
                    f"the channels are {', '.join(self.config.channel_names)}"
                )
        if sink is not None:
            self._link: _Link = _SinkLink(sink, getattr(sink, "name", "") or getattr(sink, "port", "") or "")
        elif params.port is not None:
            self._link = _SerialLink(params.port, params.baudrate)
        else:
            self._link = _PtyLink(params.link)
        self.stats = SimulatorStats(samples_generated={name: 0 for name in self.config.channel_names})
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._opened = False
        self._held: dict[str, float] = {}

    # -- lifecycle

    @property
    def path(self) -> str:
        """What a reader should open: the ``link`` symlink, the pty, or the port URL."""
        return self._link.path

    @property
    def pty_path(self) -> str | None:
        """The pseudo-terminal in use right now (it changes after a disconnection); None without a pty."""
        return self._link.pty_path if isinstance(self._link, _PtyLink) else None

    @property
    def duration_s(self) -> float | None:
        """Stream seconds this device will send (None: until stopped).

        A replay without ``loop_replay`` ends with its last whole block.
        """
        if self.recording is not None and not self.params.loop_replay:
            length = self.recording.blocks(self.params.block_ms) * self.config.block_duration_s
            return length if self.params.duration_s is None else min(length, self.params.duration_s)
        return self.params.duration_s

    @property
    def timeline(self) -> list[Segment]:
        """Replayed segments and their stream times (empty for the generator)."""
        return list(self.recording.timeline) if self.recording is not None else []

    def open(self) -> str:
        """Create the pty (or open the port) and return the path for the reader."""
        if not self._opened:
            self._link.open()
            self._opened = True
        return self.path

    def start(self) -> None:
        """Stream on a thread (after :meth:`open`)."""
        if not self._opened:
            raise BridgeError("call open() before start() on the simulated device", "not_open")
        if self._thread is not None:
            raise BridgeError("the simulated device is already streaming", "already_running")
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run_safely, name="SimulatedDevice", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the stream to end; True if it did."""
        if self._thread is None:
            return self.stats.finished
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Stop streaming (the pty stays open until :meth:`close`)."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def close(self) -> None:
        """Stop and close the pty or port; remove the symlink if it is ours."""
        self.stop()
        if self._opened:
            self._link.close()
            self._opened = False

    def __enter__(self) -> SimulatedDevice:
        self.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def snapshot(self) -> SimulatorStats:
        """A consistent copy of :attr:`stats`."""
        with self._lock:
            return copy.deepcopy(self.stats)

    # -- streaming

    def _run_safely(self) -> None:
        try:
            self._run()
        except Exception:  # a crash of the thread must show up, not vanish
            logger.exception("the simulated device stopped on an error")
            raise

    def _periodic(self, every: float | None, length: float, t: float) -> bool:
        return every is not None and t >= every and (t % every) < length

    def _active(self, kind: str, t: float) -> list[Condition]:
        return [c for c in self.params.conditions if c.kind == kind and c.active(t)]

    def _run(self) -> None:
        params, config = self.params, self.config
        period_s = config.block_duration_s
        total_blocks = None if self.duration_s is None else int(np.ceil(self.duration_s / period_s - 1e-9))
        boot = None  # {"id", "seq", "block", "t0", "hello_t", "status_t", "masks"} of the running boot
        link_up, stalled = True, False
        stall_buffer: list[bytes] = []
        wall_start = time.monotonic()
        next_boot_id = params.boot_id if params.boot_id is not None else int(self._boot_rng.integers(1, 0x10000))

        def send_now(data: bytes) -> None:
            if link_up:
                self._write(data)
            else:
                with self._lock:
                    self.stats.frames_unsent += 1

        def send(frame, faults: bool = True) -> None:
            for data in (self._faulted(encode_frame(frame)) if faults else [encode_frame(frame)]):
                if stalled and link_up:
                    stall_buffer.append(data)
                else:
                    send_now(data)

        def header(t: float) -> tuple[int, int, int, int]:
            values = (params.device_id, boot["id"], boot["seq"], int(round((t - boot["t0"]) * 1000)) & 0xFFFFFFFF)
            boot["seq"] = (boot["seq"] + 1) & 0xFFFF
            return values

        def hello(t: float, faults: bool = True) -> None:
            send(Hello(*header(t), next_block_index=boot["block"], config=config), faults)
            boot["hello_t"] = t

        k = 0
        while total_blocks is None or k < total_blocks:
            t = k * period_s
            self._pace(wall_start, t + period_s)  # a block goes out once it is complete
            if self._stop_event.is_set():
                break
            off = bool(self._active("reboot", t))
            down = bool(self._active("disconnect", t)) or self._periodic(
                params.disconnect_every_s, params.disconnect_s, t
            )
            stall = bool(self._active("stall", t)) or self._periodic(params.stall_every_s, params.stall_s, t)
            if down != (not link_up):
                link_up = self._set_link(up=not down)
                if link_up and boot is not None:
                    self._write(b"\x00", frame=False)
                    hello(t)
            if stall != stalled:
                stalled = stall
                if stalled:
                    with self._lock:
                        self.stats.stalls += 1
                else:
                    for data in stall_buffer:
                        send_now(data)
                    stall_buffer.clear()
            if off and boot is not None:
                boot = None
                with self._lock:
                    self.stats.reboots += 1
            if not off:
                if boot is None:
                    boot = {"id": next_boot_id, "seq": 0, "block": 0, "t0": t, "hello_t": t, "status_t": None,
                            "masks": None}
                    next_boot_id = next_boot_id % 0xFFFF + 1
                    with self._lock:
                        self.stats.boot_ids.append(boot["id"])
                    if link_up and not stalled:
                        self._write(b"\x00", frame=False)
                    hello(t, faults=False)  # the anchor of the reader's accounting
                elif t - boot["hello_t"] >= params.hello_every_s - 1e-9:
                    hello(t)
                samples, lead_off, saturated = self._block(k, t, period_s)
                send(SampleBlock(*header(t), boot["block"], samples))
                boot["block"] += 1
                masks = (lead_off, saturated)
                if boot["status_t"] is None or masks != boot["masks"] or (
                    t - boot["status_t"] >= params.status_every_s - 1e-9
                ):
                    percent = max(0, 100 - int(t // 300))
                    send(Status(*header(t), 3300 + 9 * percent, percent, 0, lead_off, saturated))
                    boot["status_t"], boot["masks"] = t, masks
            k += 1
        for data in stall_buffer:
            send_now(data)
        if boot is not None and link_up and not self._stop_event.is_set():
            hello(k * period_s, faults=False)  # lets the reader count losses up to the very end
        with self._lock:
            self.stats.finished = not self._stop_event.is_set()

    def _pace(self, wall_start: float, stream_time_s: float) -> None:
        if self.params.speed > 0:
            delay = wall_start + stream_time_s / self.params.speed - time.monotonic()
            if delay > 0:
                self._stop_event.wait(delay)

    def _set_link(self, up: bool) -> bool:
        if not self._link.reconnectable:
            return up  # a write() sink: the link is just silent
        if up:
            self._link.open()
        else:
            self._link.close()
            with self._lock:
                self.stats.disconnects += 1
        return up

    def _write(self, data: bytes, frame: bool = True) -> None:
        ok = self._link.write(data)
        if not frame:
            return
        with self._lock:
            if ok:
                self.stats.frames_sent += 1
                self.stats.bytes_sent += len(data)
            else:
                self.stats.frames_unsent += 1

    def _faulted(self, wire: bytes) -> list[bytes]:
        """The copies of one frame that go on the wire, after drop/duplicate/flip faults."""
        params, rng = self.params, self._fault_rng
        if params.drop_rate and rng.random() < params.drop_rate:
            with self._lock:
                self.stats.frames_dropped += 1
            return []
        copies = 2 if params.duplicate_rate and rng.random() < params.duplicate_rate else 1
        out = []
        for _ in range(copies):
            data = wire
            if params.flip_rate:
                where = np.flatnonzero(rng.random(len(wire)) < params.flip_rate)
                if len(where):
                    buffer = np.frombuffer(wire, dtype=np.uint8).copy()
                    buffer[where] ^= rng.integers(1, 256, len(where), dtype=np.uint8)
                    data = buffer.tobytes()
                    with self._lock:
                        self.stats.bytes_flipped += len(where)
            out.append(data)
        with self._lock:
            self.stats.frames_duplicated += copies - 1
        return out

    def _block(self, k: int, t: float, period_s: float) -> tuple[tuple[np.ndarray, ...], int, int]:
        """Raw samples of block ``k`` (stream time ``t``) with the conditions applied, and the status masks."""
        config = self.config
        if self.recording is not None:
            physical = self.recording.block(k, self.params.block_ms)
        else:
            pain = max((PAIN_LEVELS[c.target] for c in self._active("pain", t)), default=0)
            physical = self._generator.block(t, period_s, pain)
        raw_blocks = []
        lead_off = saturated = 0
        for i, spec in enumerate(config.channels):
            rate = config.sampling_rate(spec.name)
            times = t + np.arange(spec.samples_per_block) / rate
            values = np.asarray(physical[spec.name], dtype=np.float64)
            windows = [
                (c.kind, (times >= c.start_s) & (times < c.end_s))
                for c in self.params.conditions
                if c.kind in SIGNAL_KINDS and c.target == spec.name and c.start_s < t + period_s and t < c.end_s
            ]
            for kind, inside in windows:
                if kind == "flat" and inside.any():
                    first = int(np.argmax(inside))
                    held = values[first - 1] if first > 0 else self._held.get(spec.name, values[0])
                    values = np.where(inside, held, values)
                elif kind == "leadoff" and inside.any():
                    middle = spec.offset + spec.scale * (spec.raw_min + spec.raw_max) / 2
                    noise = self._signal_rng.normal(0, 0.002 * spec.scale * (spec.raw_max - spec.raw_min), len(values))
                    values = np.where(inside, middle + noise, values)
                    lead_off |= 1 << i
            self._held[spec.name] = float(values[-1])
            raw = spec.to_raw(values)
            for kind, inside in windows:
                if kind == "saturate":
                    raw = np.where(inside, spec.raw_max, raw).astype(spec.sample_format.dtype)
            if np.any(raw <= spec.raw_min) or np.any(raw >= spec.raw_max):
                saturated |= 1 << i
            raw_blocks.append(raw)
        with self._lock:
            self.stats.blocks_generated += 1
            for spec in config.channels:
                self.stats.samples_generated[spec.name] += spec.samples_per_block
        return tuple(raw_blocks), lead_off, saturated

