"""A simulated sensor board: ``biomoe simulate-device`` and :class:`SimulatedDevice`.

It speaks the real protocol (PROTOCOL.md) on a pseudo-terminal, any pyserial
URL or any object with ``write(bytes)``, at the real rate or faster, so the
reader, the monitor and their tests run without hardware. Signals come from
the project's physiology model (:mod:`firmware_bridge.physiology`, one seeded
subject streamed block by block: EDA, BVP and respiration at 100 Hz, SpO2 at
1 Hz, as the ``finger-lab`` device) or from an AI4PAIN-format recording
(``--replay DIR --subject ID``, all four at 100 Hz).

Two kinds of trouble can be injected, both reproducible with ``--seed``:

* **Wire faults**, random: flipped bytes (``--flip-rate``, per byte), dropped
  or duplicated frames (``--drop-rate``, ``--duplicate-rate``, per frame), and
  periodic stalls and disconnections (``--stall-every``, ``--disconnect-every``).
* **Scheduled conditions** at known stream times, ``KIND[:ARG]:START-END``
  in seconds since the stream started (``--conditions``, repeatable,
  comma-separated):

  ==============================  =================================================
  ``flat:EDA:30-60``              the channel holds its last value (a stuck sensor)
  ``saturate:BVP:10-20``          the ADC reads full scale (``raw_max``); the status
                                  frames flag the channel as saturated
  ``leadoff:RESP:40-50``          the status frames flag a lead off; the signal is
                                  low noise around the middle of the ADC range
  ``disconnect:70-75``            the link goes away and comes back (see below)
  ``reboot:80-82``                the device is off, then boots with a new boot id
  ``stall:90-95``                 nothing is sent, then the frames come in a burst
  ``pain:high:100-160``           generator only: a pain episode of low or high level
                                  (responses 1-3 s after the start, fading after the end)
  ==============================  =================================================

A window covers the blocks that start inside it.

Disconnection and re-enumeration: a real USB device that is unplugged and
plugged back gets a new device node. On a pty the simulator models this by
closing the pty (the reader's reads fail) and creating a new one at the end of
the window; with ``--link PATH`` it keeps a symlink at PATH pointing to the
current pty, replaced atomically, so a reader that reopens PATH reconnects the
way it would to ``/dev/serial/by-id/...``. The device keeps sampling while the
link is down (blocks are counted by their index, so the reader reports them
lost) and sends a hello as soon as the link is back. On a pyserial URL the port
is closed and reopened; on a ``write()`` sink the link just goes silent.

Accounting for tests: :attr:`SimulatedDevice.stats` counts every sample the
device generated per channel; a reader that was listening from the first frame
delivers or reports lost exactly that many. Faults spare two frames that anchor
this accounting (a reader cannot count what it never learned was sent): the
hello sent at boot and the hello that ends the stream.
"""

from __future__ import annotations

import argparse
import copy
import csv
import errno
import fcntl
import logging
import os
import re
import select
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import serial

from firmware_bridge.errors import BridgeError
from firmware_bridge.physiology import PAIN_LEVELS
from firmware_bridge.physiology import PhysiologyStream as SignalGenerator  # the name before the shared model
from firmware_bridge.protocol import ChannelSpec, DeviceConfig, Hello, SampleBlock, SampleFormat, Status, encode_frame

__all__ = [
    "Condition",
    "parse_condition",
    "SimulatorParams",
    "SimulatorStats",
    "SimulatedDevice",
    "SignalGenerator",
    "Segment",
    "Ai4PainRecording",
    "generator_config",
    "params_from_options",
    "configure_parser",
    "run",
]

logger = logging.getLogger(__name__)

CHANNELS = ("EDA", "BVP", "RESP", "SpO2")
SIGNAL_KINDS = ("flat", "saturate", "leadoff")
LINK_KINDS = ("disconnect", "reboot", "stall")


# --------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Condition:
    """One scheduled condition: ``kind`` during stream seconds ``[start_s, end_s)``.

    ``target`` is the channel name for flat/saturate/leadoff, the level
    (``low``/``high``) for pain, and empty for disconnect/reboot/stall.
    """

    kind: str
    target: str
    start_s: float
    end_s: float

    def active(self, t: float) -> bool:
        """Whether stream time ``t`` (s) is inside the window."""
        return self.start_s <= t < self.end_s


_CONDITION_FORMS = (
    "KIND:CHANNEL:START-END with KIND flat, saturate or leadoff (e.g. flat:EDA:30-60), "
    "pain:LEVEL:START-END with LEVEL low or high, or disconnect|reboot|stall:START-END"
)


def parse_condition(spec: str) -> Condition:
    """Parse ``"flat:EDA:30-60"``, ``"pain:high:10-20"`` or ``"disconnect:70-75"``.

    Channel names are checked later, against the device's channels.
    """
    parts = spec.strip().split(":")
    kind = parts[0].lower() if parts else ""
    window = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*", parts[-1]) if len(parts) > 1 else None
    expected_parts = 2 if kind in LINK_KINDS else 3
    if kind not in SIGNAL_KINDS + LINK_KINDS + ("pain",) or len(parts) != expected_parts or window is None:
        raise ValueError(f"condition {spec!r} is not of the form {_CONDITION_FORMS}")
    start, end = float(window.group(1)), float(window.group(2))
    if end <= start:
        raise ValueError(f"condition {spec!r}: the window must end after it starts, got {start:g}-{end:g} s")
    target = parts[1] if expected_parts == 3 else ""
    if kind == "pain" and target.lower() not in ("low", "high"):
        raise ValueError(f"condition {spec!r}: the pain level must be low or high, got {target!r}")
    return Condition(kind, target.lower() if kind == "pain" else target, start, end)


def _parse_conditions(specs) -> tuple[Condition, ...]:
    out = []
    for spec in specs or ():
        if isinstance(spec, Condition):
            out.append(spec)
        else:
            out.extend(parse_condition(part) for part in str(spec).split(",") if part.strip())
    return tuple(out)


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
        Scheduled conditions (see the module docstring).
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


# --------------------------------------------------------------------------- signal sources


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


@dataclass(frozen=True)
class Segment:
    """One replayed AI4PAIN segment: its column name, label and place in the stream (s)."""

    name: str
    label: str
    start_s: float
    end_s: float


_MODALITY_FOLDERS = {"EDA": "eda", "BVP": "bvp", "RESP": "resp", "SpO2": "spo2"}
_SEGMENT_LABELS = {"baseline": "no_pain", "low": "low_pain", "high": "high_pain", "rest": "rest"}


class Ai4PainRecording:
    """One subject of an AI4PAIN-format data set, as four continuous 100 Hz signals.

    Layout (``/work/shared/reference/ai4pain/FORMAT.md``): ``ROOT/[split/]Eda/ID.csv``
    and the same for ``Bvp``, ``Resp``, ``SpO2``; one header row, one column
    per segment, NaN- or empty-padded. The segments present in all four files
    are concatenated in file order; trailing padding is removed and isolated
    missing values repeat the previous sample.

    Parameters
    ----------
    root : str or Path
        The data set root or one split folder.
    subject : str
        Subject id, the CSV file name without ``.csv``.
    """

    sampling_rate = 100.0

    def __init__(self, root: str | os.PathLike, subject: str):
        files = self._find(Path(root), str(subject))
        columns = {name: self._read_csv(path) for name, path in files.items()}
        common = [c for c in columns["EDA"] if all(c in columns[m] for m in CHANNELS)]
        pieces: dict[str, list[np.ndarray]] = {m: [] for m in CHANNELS}
        self.timeline: list[Segment] = []
        position = 0
        for column in common:
            length = min(len(columns[m][column]) for m in CHANNELS)
            if length == 0:
                continue
            for m in CHANNELS:
                pieces[m].append(columns[m][column][:length])
            kind = re.search(r"baseline|low|high|rest", column, re.IGNORECASE)
            label = _SEGMENT_LABELS[kind.group(0).lower()] if kind else "unknown"
            self.timeline.append(
                Segment(column, label, position / self.sampling_rate, (position + length) / self.sampling_rate)
            )
            position += length
        if position == 0:
            raise BridgeError(f"subject {subject} in {root} has no segment with data in all four signals",
                              "replay_empty")
        self.signals = {m: np.concatenate(pieces[m]) for m in CHANNELS}

    @staticmethod
    def _find(root: Path, subject: str) -> dict[str, Path]:
        if not root.is_dir():
            raise BridgeError(f"replay folder {root} does not exist", "replay_not_found")
        tried = []
        for folder in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
            subfolders = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
            found = {}
            for channel, wanted in _MODALITY_FOLDERS.items():
                path = subfolders.get(wanted, folder / wanted) / f"{subject}.csv"
                tried.append(str(path))
                if path.is_file():
                    found[channel] = path
            if len(found) == len(CHANNELS):
                return found
        raise BridgeError(
            f"no AI4PAIN files for subject {subject!r} under {root}: expected Eda/, Bvp/, Resp/ and SpO2/ "
            f"folders holding {subject}.csv (tried e.g. {', '.join(tried[:4])})",
            "replay_not_found",
        )

    @staticmethod
    def _read_csv(path: Path) -> dict[str, np.ndarray]:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            raise BridgeError(f"{path} is empty; expected a header row and one column per segment", "replay_bad_file")
        header = [name.strip() for name in rows[0]]
        data = np.full((len(rows) - 1, len(header)), np.nan)
        for i, row in enumerate(rows[1:]):
            for j, cell in enumerate(row[: len(header)]):
                cell = cell.strip()
                if cell and cell.lower() != "nan":
                    try:
                        data[i, j] = float(cell)
                    except ValueError:
                        raise BridgeError(f"{path}, row {i + 2}: {cell!r} is not a number", "replay_bad_file") from None
        columns = {}
        for j, name in enumerate(header):
            values = data[:, j]
            valid = np.flatnonzero(np.isfinite(values))
            if len(valid) == 0:
                columns[name] = values[:0]
                continue
            values = values[: valid[-1] + 1]
            index = np.where(np.isfinite(values), np.arange(len(values)), 0)
            np.maximum.accumulate(index, out=index)
            values = values[index]
            values[: valid[0]] = values[valid[0]]
            columns[name] = values
        return columns

    def config(self, block_ms: int, firmware_version: int = 1) -> DeviceConfig:
        """A device description for these signals: 100 Hz, int16 scaled to each signal's range."""
        per_block = self.sampling_rate * block_ms / 1000
        if abs(per_block - round(per_block)) > 1e-9 or per_block < 1:
            raise ValueError(f"block_ms must be a multiple of 10 for a 100 Hz replay, got {block_ms}")
        units = {"EDA": "uS", "BVP": "a.u.", "RESP": "a.u.", "SpO2": "%"}
        specs = []
        for name in CHANNELS:
            low, high = float(np.min(self.signals[name])), float(np.max(self.signals[name]))
            if high - low < 1e-6:
                low, high = low - 1.0, high + 1.0
            # +-30000 of the int16 range: only the saturate condition reaches full scale
            specs.append(ChannelSpec(name, units[name], int(round(per_block)), SampleFormat.INT16, -32768, 32767,
                                     (high - low) / 60000, (low + high) / 2))
        return DeviceConfig(block_ms * 1000, tuple(specs), firmware_version)

    def __len__(self) -> int:
        return len(self.signals["EDA"])


# --------------------------------------------------------------------------- links


class _Link:
    """Where the bytes go. ``write`` returns False when the bytes could not all be sent."""

    path = ""
    reconnectable = False

    def open(self) -> None:
        pass

    def write(self, data: bytes) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _PtyLink(_Link):
    """A pseudo-terminal in raw mode; the reader opens its slave side (or ``link``)."""

    reconnectable = True

    def __init__(self, link: str | None, write_timeout_s: float = 0.2):
        self.link = Path(link) if link else None
        self.pty_path = ""
        self._master = self._slave = -1
        self._write_timeout_s = write_timeout_s
        self._cut = False  # the last frame was cut short: start the next one with a delimiter

    @property
    def path(self) -> str:
        return str(self.link) if self.link else self.pty_path

    def open(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing: bytes pass unchanged
        flags = fcntl.fcntl(self._master, fcntl.F_GETFL)
        fcntl.fcntl(self._master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.pty_path = os.ttyname(self._slave)
        if self.link:
            temporary = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            temporary.unlink(missing_ok=True)
            os.symlink(self.pty_path, temporary)
            os.replace(temporary, self.link)  # atomic: a reader never sees a missing link

    def write(self, data: bytes) -> bool:
        if self._cut:
            data = b"\x00" + data
            self._cut = False
        view = memoryview(data)
        deadline = time.monotonic() + self._write_timeout_s
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self._master], [], remaining)[1]:
                break
            try:
                view = view[os.write(self._master, view) :]
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                break
        if view and len(view) < len(data):
            self._cut = True
        return not view

    def close(self) -> None:
        """Close the pty; its symlink goes too, like a by-id link of an unplugged device."""
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        if self.link and self.link.is_symlink() and os.readlink(self.link) == self.pty_path:
            self.link.unlink()


class _SerialLink(_Link):
    """A pyserial URL (a UART towards the hub, ``socket://`` ...)."""

    reconnectable = True

    def __init__(self, url: str, baudrate: int):
        self.path = url
        self._baudrate = baudrate
        self._port = None

    def open(self) -> None:
        try:
            self._port = serial.serial_for_url(self.path, baudrate=self._baudrate, write_timeout=0.5)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise BridgeError(f"cannot open serial port {self.path!r} to simulate a device on: {exc}",
                              "port_open_failed") from exc

    def write(self, data: bytes) -> bool:
        try:
            return self._port.write(data) == len(data)
        except (serial.SerialException, OSError):
            return False

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None


class _SinkLink(_Link):
    """Any object with ``write(bytes)``; a disconnection is silence."""

    def __init__(self, sink, path: str = ""):
        self._sink = sink
        self.path = path

    def write(self, data: bytes) -> bool:
        written = self._sink.write(data)
        return written is None or written == len(data)


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

    def __init__(self, params: SimulatorParams | None = None, sink=None):
        self.params = params = params if params is not None else SimulatorParams()
        seeds = np.random.SeedSequence(params.seed).spawn(3)
        self._signal_rng = np.random.default_rng(seeds[0])
        self._fault_rng = np.random.default_rng(seeds[1])
        self._boot_rng = np.random.default_rng(seeds[2])
        self.recording: Ai4PainRecording | None = None
        if params.replay_dir is not None:
            self.recording = Ai4PainRecording(params.replay_dir, params.subject)
            self.config = self.recording.config(params.block_ms)
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
            blocks = len(self.recording) // self.config.channels[0].samples_per_block
            length = blocks * self.config.block_duration_s
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
            n = config.channels[0].samples_per_block
            length = len(self.recording)
            index = (k * n + np.arange(n)) % length
            physical = {name: self.recording.signals[name][index] for name in config.channel_names}
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


# --------------------------------------------------------------------------- options, CLI


# (option, params field, type, help). Shared by the CLI and the sim:// URL
# (firmware_bridge.protocol_sim), where an option is a query key without dashes.
_OPTIONS: list[tuple[str, str, Callable, str]] = [
    ("--speed", "speed", float, "multiple of real time; 0 = as fast as possible (default 1)"),
    ("--duration", "duration_s", float, "stream seconds to send (default: forever; a replay: its length)"),
    ("--block-ms", "block_ms", int, "duration of one sample block in ms (default 1000)"),
    ("--signal-rate", "signal_rate_hz", float, "generator rate of EDA, BVP, RESP in Hz (default 100)"),
    ("--spo2-rate", "spo2_rate_hz", float, "generator rate of SpO2 in Hz (default 1)"),
    ("--replay", "replay_dir", str, "replay an AI4PAIN-format folder (root or split) instead of the generator"),
    ("--subject", "subject", str, "subject id to replay (the CSV name without .csv)"),
    ("--loop", "loop_replay", bool, "start the replay again when it ends"),
    ("--device-id", "device_id", int, "device id in the frame headers (default 1)"),
    ("--boot-id", "boot_id", int, "first boot id (default: drawn from the seed)"),
    ("--seed", "seed", int, "seed of the signals, the faults and the boot ids (default 0)"),
    ("--flip-rate", "flip_rate", float, "probability to flip each byte on the wire (default 0)"),
    ("--drop-rate", "drop_rate", float, "probability to drop each frame (default 0)"),
    ("--duplicate-rate", "duplicate_rate", float, "probability to send a frame twice (default 0)"),
    ("--stall-every", "stall_every_s", float, "stall the link every S stream seconds"),
    ("--stall-duration", "stall_s", float, "length of each stall, s (default 2)"),
    ("--disconnect-every", "disconnect_every_s", float, "disconnect the link every S stream seconds"),
    ("--disconnect-duration", "disconnect_s", float, "length of each disconnection, s (default 2)"),
    ("--conditions", "conditions", str,
     "scheduled conditions, repeatable and comma-separated: flat|saturate|leadoff:CHANNEL:START-END, "
     "pain:low|high:START-END, disconnect|reboot|stall:START-END (stream seconds)"),
    ("--hello-every", "hello_every_s", float, "seconds between hello frames (default 5)"),
    ("--status-every", "status_every_s", float, "seconds between status frames (default 1)"),
]


def params_from_options(options: dict[str, object], **extra) -> SimulatorParams:
    """:class:`SimulatorParams` from option names (``"flip-rate"``) and text or typed values.

    Unknown names raise ``ValueError`` listing the known ones. Used for the
    ``sim://?flip-rate=0.001&conditions=flat:EDA:3-6`` URL.
    """
    known = {option.lstrip("-"): (name, kind) for option, name, kind, _ in _OPTIONS}
    values: dict[str, object] = dict(extra)
    for key, value in options.items():
        if key not in known:
            raise ValueError(f"unknown simulator option {key!r}; known options: {', '.join(sorted(known))}")
        name, kind = known[key]
        if name == "conditions":
            values[name] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        elif kind is bool:
            values[name] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "")
        else:
            try:
                values[name] = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"simulator option {key!r} expects {kind.__name__}, got {value!r}") from None
    return SimulatorParams(**values)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``biomoe simulate-device``."""
    parser.description = (
        "Stream simulated sensor frames (biomoe protocol) on a new pseudo-terminal, whose path is printed, "
        "or on --port. Faults and conditions make the link and the signals misbehave at known times."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", help="write to this pyserial URL instead of a new pty (a UART, socket://...)")
    where.add_argument("--link", help="keep a symlink at this path pointing to the current pty "
                                      "(readers reconnect through it after a simulated disconnection)")
    parser.add_argument("--baudrate", type=int, default=115200, help="baud rate for --port (default 115200)")
    for option, name, kind, help_text in _OPTIONS:
        if kind is bool:
            parser.add_argument(option, dest=name, action="store_true", help=help_text)
        elif name == "conditions":
            parser.add_argument(option, dest=name, action="append", default=[], metavar="SPEC", help=help_text)
        else:
            default = getattr(SimulatorParams, name)
            parser.add_argument(option, dest=name, type=kind, default=default, help=help_text)
    parser.add_argument("--quiet", action="store_true", help="print only the path")


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe simulate-device``: stream until the duration is over or Ctrl-C."""
    fields = {name: getattr(args, name) for _, name, _, _ in _OPTIONS}
    params = SimulatorParams(port=args.port, link=args.link, baudrate=args.baudrate, **fields)
    device = SimulatedDevice(params)
    path = device.open()
    try:
        if args.quiet:
            print(path, flush=True)
        else:
            channels = ", ".join(
                f"{c.name} {device.config.sampling_rate(c.name):g} Hz [{c.unit}]" for c in device.config.channels
            )
            source = f"replay of subject {params.subject}" if params.replay_dir else "built-in generator"
            print(f"biomoe simulate-device: streaming on {path}", flush=True)
            if params.link:
                print(f"  (currently {device.pty_path})", flush=True)
            pace = f"{params.speed:g}x real time" if params.speed else "as fast as the link takes it"
            print(f"  {source}: {channels}; {pace}", flush=True)
        device.start()
        while not device.wait(timeout=0.5):
            pass
    finally:
        device.close()
        stats = device.snapshot()
        if not args.quiet:
            print(
                f"sent {stats.frames_sent} frames ({stats.bytes_sent} bytes), {stats.blocks_generated} blocks; "
                f"faults: {stats.frames_dropped} dropped, {stats.frames_duplicated} duplicated, "
                f"{stats.bytes_flipped} bytes flipped, {stats.frames_unsent} unsent, {stats.stalls} stalls, "
                f"{stats.disconnects} disconnections, {stats.reboots} reboots",
                flush=True,
            )
    return 0
