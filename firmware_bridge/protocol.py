"""The biomoe serial wire protocol, version 1: frames, COBS, CRC-32, encoder, decoder.

The byte-level specification is ``firmware_bridge/PROTOCOL.md``; this module is
its reference implementation (the C encoder in ``firmware_bridge/c`` is the
other one, and both reproduce ``firmware_bridge/test_vectors.json``).

A frame is ``header (12 B) | payload | CRC-32 (4 B)``, COBS-encoded and
followed by one ``0x00`` delimiter. Three frame types exist: ``Hello`` (the
device description: channels, units, sample rates, ADC scaling), ``SampleBlock``
(one block of samples of every channel) and ``Status`` (battery, lead-off and
saturation flags).

:class:`FrameDecoder` is incremental: feed it any chunk of bytes and it returns
the whole frames completed so far. It never raises on bad input: corrupted,
truncated, oversize, duplicated or unknown frames are dropped and counted in
:attr:`FrameDecoder.stats`, and lost sample blocks are reported as
:class:`BlocksLost` events, so that for every channel
``delivered + lost == sent``.
"""

from __future__ import annotations

import enum
import logging
import struct
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar, Union

import numpy as np

__all__ = [
    "PROTOCOL_VERSION",
    "HEADER_SIZE",
    "CRC_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_CHANNELS",
    "FrameType",
    "SampleFormat",
    "ChannelSpec",
    "DeviceConfig",
    "Hello",
    "SampleBlock",
    "Status",
    "Frame",
    "BlocksLost",
    "SessionStarted",
    "DecoderEvent",
    "DecoderStats",
    "FrameDecoder",
    "crc32",
    "cobs_encode",
    "cobs_decode",
    "pack_frame",
    "encode_frame",
]

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
_HEADER = struct.Struct("<BBHHHI")  # version, type, device_id, boot_id, seq, timestamp_ms
HEADER_SIZE = _HEADER.size  # 12
CRC_SIZE = 4
MAX_FRAME_SIZE = 8192  # bytes of header + payload + CRC, before COBS
MAX_CHANNELS = 16  # the status masks are 16 bits wide
NAME_SIZE = 8  # channel name and unit: ASCII, NUL-padded

_HELLO_FIXED = struct.Struct("<IIHBB")  # block_period_us, next_block_index, firmware_version, n_channels, reserved
_CHANNEL = struct.Struct("<8s8sHBBiiff")  # 36 bytes, see PROTOCOL.md
_STATUS = struct.Struct("<HBBHH")  # battery_mv, battery_percent, flags, lead_off_mask, saturated_mask
_BLOCK_INDEX = struct.Struct("<I")
_CRC = struct.Struct("<I")
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF


class FrameType(enum.IntEnum):
    """Frame type codes (header byte 1)."""

    HELLO = 1
    SAMPLES = 2
    STATUS = 3


class SampleFormat(enum.IntEnum):
    """How one raw sample is stored in a sample block (little-endian, signed)."""

    INT16 = 1
    INT32 = 2

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of one raw sample on the wire."""
        return _DTYPES[self]


_DTYPES = {SampleFormat.INT16: np.dtype("<i2"), SampleFormat.INT32: np.dtype("<i4")}


def _check_int(name: str, value: int, low: int, high: int) -> None:
    if type(value) is int or isinstance(value, np.integer):  # not bool, a subclass of int
        if low <= value <= high:
            return
    raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _check_label(name: str, value: str, allow_empty: bool) -> None:
    ok = isinstance(value, str) and len(value) <= NAME_SIZE and all(33 <= ord(c) <= 126 for c in value)
    if not ok or (not value and not allow_empty):
        raise ValueError(
            f"{name} must be 1 to {NAME_SIZE} printable ASCII characters without spaces, got {value!r}"
        )


@dataclass(frozen=True)
class ChannelSpec:
    """One channel of the device description (36 bytes in a hello frame).

    Parameters
    ----------
    name : str
        Channel name, 1-8 printable ASCII characters (``"EDA"``, ``"BVP"``...).
    unit : str
        Physical unit after scaling, 0-8 printable ASCII characters (``"uS"``).
    samples_per_block : int
        Samples of this channel in every sample block (1-65535). With the
        block period it fixes the sampling rate.
    sample_format : SampleFormat
        ``INT16`` or ``INT32`` raw samples. Default ``INT16``.
    raw_min, raw_max : int
        The ADC's valid range; a raw value at either end means saturation.
        Default the int16 range.
    scale, offset : float
        ``physical = raw * scale + offset``. Sent as float32, so the values kept
        here are rounded to float32. Default 1 and 0.
    """

    name: str
    unit: str
    samples_per_block: int
    sample_format: SampleFormat = SampleFormat.INT16
    raw_min: int = -32768
    raw_max: int = 32767
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self):
        _check_label("channel name", self.name, allow_empty=False)
        _check_label(f"unit of channel {self.name}", self.unit, allow_empty=True)
        _check_int(f"samples_per_block of channel {self.name}", self.samples_per_block, 1, _U16)
        try:
            fmt = SampleFormat(self.sample_format)
        except ValueError:
            raise ValueError(
                f"sample_format of channel {self.name} must be one of {[f.name for f in SampleFormat]}, "
                f"got {self.sample_format!r}"
            ) from None
        info = np.iinfo(fmt.dtype)
        _check_int(f"raw_min of channel {self.name}", self.raw_min, int(info.min), int(info.max))
        _check_int(f"raw_max of channel {self.name}", self.raw_max, int(self.raw_min), int(info.max))
        scale32, offset32 = float(np.float32(self.scale)), float(np.float32(self.offset))
        if not (np.isfinite(scale32) and scale32 != 0.0 and np.isfinite(offset32)):
            raise ValueError(
                f"scale and offset of channel {self.name} must be finite float32 values and scale non-zero, "
                f"got scale={self.scale!r}, offset={self.offset!r}"
            )
        object.__setattr__(self, "sample_format", fmt)
        object.__setattr__(self, "scale", scale32)
        object.__setattr__(self, "offset", offset32)

    def to_physical(self, raw: np.ndarray) -> np.ndarray:
        """Raw ADC values to physical units (float64): ``raw * scale + offset``."""
        return raw * self.scale + self.offset

    @property
    def physical_range(self) -> tuple[float, float]:
        """``(low, high)``: ``raw_min`` and ``raw_max`` in physical units, lowest first (a negative
        ``scale`` swaps them). A sample exactly at either limit is saturated."""
        ends = self.to_physical(np.array([self.raw_min, self.raw_max], dtype=np.int64))
        return float(ends.min()), float(ends.max())

    def to_raw(self, physical: np.ndarray) -> np.ndarray:
        """Physical values to raw ADC values, rounded and clipped to ``[raw_min, raw_max]``."""
        raw = np.rint((np.asarray(physical, dtype=np.float64) - self.offset) / self.scale)
        return np.clip(raw, self.raw_min, self.raw_max).astype(self.sample_format.dtype)


@dataclass(frozen=True)
class DeviceConfig:
    """What a hello frame tells about the device: block period and channels.

    Every sample block covers ``block_period_us`` microseconds of every
    channel, starting together, so channel ``c`` is sampled at
    ``samples_per_block * 1e6 / block_period_us`` Hz.

    Parameters
    ----------
    block_period_us : int
        Duration of one sample block in microseconds (1 to 2**32 - 1).
    channels : tuple of ChannelSpec
        1 to 16 channels with distinct names, in sample-block order.
    firmware_version : int
        Free for the firmware's own version number (u16). Default 0.

    Examples
    --------
    >>> cfg = DeviceConfig(1_000_000, (ChannelSpec("EDA", "uS", 100), ChannelSpec("SpO2", "%", 1)))
    >>> cfg.sampling_rate("EDA"), cfg.sampling_rate("SpO2")
    (100.0, 1.0)
    """

    block_period_us: int
    channels: tuple[ChannelSpec, ...]
    firmware_version: int = 0

    def __post_init__(self):
        _check_int("block_period_us", self.block_period_us, 1, _U32)
        _check_int("firmware_version", self.firmware_version, 0, _U16)
        channels = tuple(self.channels)
        if not 1 <= len(channels) <= MAX_CHANNELS:
            raise ValueError(f"a device has 1 to {MAX_CHANNELS} channels, got {len(channels)}")
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be distinct, got {names}")
        object.__setattr__(self, "channels", channels)
        frame_size = HEADER_SIZE + _BLOCK_INDEX.size + self.sample_payload_size + CRC_SIZE
        if frame_size > MAX_FRAME_SIZE:
            raise ValueError(
                f"a sample block of this configuration takes {frame_size} bytes, more than the "
                f"{MAX_FRAME_SIZE}-byte frame limit; shorten block_period_us or use fewer samples per block"
            )

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Channel names in sample-block order."""
        return tuple(c.name for c in self.channels)

    @property
    def block_duration_s(self) -> float:
        """Duration of one sample block in seconds."""
        return self.block_period_us / 1e6

    @property
    def sample_payload_size(self) -> int:
        """Bytes of samples in one sample block (without the block index)."""
        return sum(c.samples_per_block * c.sample_format.dtype.itemsize for c in self.channels)

    def channel(self, name: str) -> ChannelSpec:
        """The channel called ``name``; ``KeyError`` naming the known channels otherwise."""
        for spec in self.channels:
            if spec.name == name:
                return spec
        raise KeyError(f"no channel {name!r}; this device has {list(self.channel_names)}")

    def sampling_rate(self, name: str) -> float:
        """Sampling rate of channel ``name`` in Hz."""
        return self.channel(name).samples_per_block * 1e6 / self.block_period_us

    def mask_names(self, mask: int) -> tuple[str, ...]:
        """Names of the channels whose bit is set in a status mask (bit ``i`` = channel ``i``)."""
        return tuple(c.name for i, c in enumerate(self.channels) if mask >> i & 1)


@dataclass(frozen=True)
class _FrameBase:
    """Header fields every frame carries."""

    device_id: int
    boot_id: int
    seq: int
    timestamp_ms: int

    def _check_header(self) -> None:
        _check_int("device_id", self.device_id, 0, _U16)
        _check_int("boot_id", self.boot_id, 0, _U16)
        _check_int("seq", self.seq, 0, _U16)
        _check_int("timestamp_ms", self.timestamp_ms, 0, _U32)


@dataclass(frozen=True)
class Hello(_FrameBase):
    """The device description, sent at boot, after every (re)connection and periodically.

    ``next_block_index`` is the index the device's next sample block will carry,
    so a hello also tells a reader how many blocks were sent so far.
    """

    next_block_index: int
    config: DeviceConfig
    frame_type: ClassVar[FrameType] = FrameType.HELLO

    def __post_init__(self):
        self._check_header()
        _check_int("next_block_index", self.next_block_index, 0, _U32)


@dataclass(frozen=True, eq=False)
class SampleBlock(_FrameBase):
    """One block of raw samples of every channel.

    ``samples[i]`` holds the raw values of channel ``i`` of the device
    configuration (int16 or int32). The header timestamp is the device time of
    the first sample of the block, the same for every channel; sample ``k`` of
    a channel sampled at ``fs`` Hz was taken ``k / fs`` seconds later. The
    first sample of channel ``i`` has index ``block_index * samples_per_block[i]``
    since the device booted. ``config`` is not sent: the decoder sets it to
    the session's description the block was decoded with (None when a block
    is built for encoding).
    """

    block_index: int
    samples: tuple[np.ndarray, ...]
    config: DeviceConfig | None = field(default=None, repr=False)
    frame_type: ClassVar[FrameType] = FrameType.SAMPLES

    def __post_init__(self):
        self._check_header()
        _check_int("block_index", self.block_index, 0, _U32)
        for i, values in enumerate(self.samples):
            if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype.kind != "i" or (
                values.dtype.itemsize not in (2, 4)
            ):
                raise ValueError(f"samples[{i}] must be a 1-D int16 or int32 numpy array, got {values!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SampleBlock):
            return NotImplemented
        return (
            (self.device_id, self.boot_id, self.seq, self.timestamp_ms, self.block_index)
            == (other.device_id, other.boot_id, other.seq, other.timestamp_ms, other.block_index)
            and len(self.samples) == len(other.samples)
            and all(np.array_equal(a, b) for a, b in zip(self.samples, other.samples))
        )

    __hash__ = None  # mutable arrays inside


@dataclass(frozen=True)
class Status(_FrameBase):
    """Battery and per-channel flags. Bit ``i`` of a mask is channel ``i`` of the configuration.

    ``battery_mv`` 0 and ``battery_percent`` 255 mean unknown; ``flags`` bit 0 is
    "charging", the other bits are reserved (0).
    """

    battery_mv: int = 0
    battery_percent: int = 255
    flags: int = 0
    lead_off_mask: int = 0
    saturated_mask: int = 0
    frame_type: ClassVar[FrameType] = FrameType.STATUS

    def __post_init__(self):
        self._check_header()
        _check_int("battery_mv", self.battery_mv, 0, _U16)
        if not (0 <= self.battery_percent <= 100 or self.battery_percent == 255):
            raise ValueError(f"battery_percent must be 0-100 or 255 (unknown), got {self.battery_percent!r}")
        _check_int("flags", self.flags, 0, 0xFF)
        _check_int("lead_off_mask", self.lead_off_mask, 0, _U16)
        _check_int("saturated_mask", self.saturated_mask, 0, _U16)

    @property
    def charging(self) -> bool:
        """Whether the battery is charging (flags bit 0)."""
        return bool(self.flags & 1)


Frame = Union[Hello, SampleBlock, Status]


@dataclass(frozen=True)
class BlocksLost:
    """Sample blocks the device sent that never arrived (found from block indices).

    Channel ``c`` lost ``n_blocks * samples_per_block[c]`` samples, starting at
    sample index ``first_block_index * samples_per_block[c]``.
    """

    device_id: int
    boot_id: int
    first_block_index: int
    n_blocks: int
    config: DeviceConfig


@dataclass(frozen=True)
class SessionStarted:
    """The first frame of a new device session (device id, boot id) was accepted.

    ``restarted`` is true when another session was seen before: the device
    rebooted (or another device took its place), so its sequence numbers and
    block indices started again.
    """

    device_id: int
    boot_id: int
    restarted: bool


DecoderEvent = Union[BlocksLost, SessionStarted]


@dataclass
class DecoderStats:
    """Counters of a :class:`FrameDecoder`. Every input byte ends in exactly one
    of: a delivered frame, a counted error, or the partial frame still buffered.

    Attributes
    ----------
    bytes : int
        Bytes fed.
    frames_ok : int
        Frames delivered (after removing duplicates).
    cobs_errors, crc_errors, oversize, malformed : int
        Frames dropped as invalid COBS, CRC mismatch (or too short to hold
        a header and a CRC), longer than ``MAX_FRAME_SIZE``, or a valid CRC
        but a bad length or field.
    unknown_version, unknown_type : int
        Valid frames of another protocol version or an unknown type, skipped.
    duplicates : int
        Frames received twice (same sequence number and timestamp) or sample
        blocks older than the last delivered one.
    frames_lost : int
        Frames missing from the sequence numbers (any type, modulo 2**16).
    gaps : int
        :class:`BlocksLost` events (runs of missing sample blocks).
    blocks_lost : int
        Sample blocks missing in total.
    unconfigured_dropped : int
        Sample blocks dropped because no hello arrived to decode them.
    jumps_refused : int
        Frames whose block index jumped more than ``max_jump_blocks`` ahead
        and that the next frame did not confirm (a stray index), dropped.
    sessions : int
        Device sessions seen (the first one included).
    restarts_same_boot_id : int
        Of those, restarts recognised although the boot id stayed the same
        (block index, clock and sequence number all started again).
    samples_ok, samples_lost : dict of str to int
        Per channel: samples delivered and samples reported lost.
    """

    bytes: int = 0
    frames_ok: int = 0
    cobs_errors: int = 0
    crc_errors: int = 0
    oversize: int = 0
    malformed: int = 0
    unknown_version: int = 0
    unknown_type: int = 0
    duplicates: int = 0
    frames_lost: int = 0
    gaps: int = 0
    blocks_lost: int = 0
    unconfigured_dropped: int = 0
    jumps_refused: int = 0
    sessions: int = 0
    restarts_same_boot_id: int = 0
    samples_ok: dict[str, int] = field(default_factory=dict)
    samples_lost: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- CRC and COBS


def crc32(data: bytes, value: int = 0) -> int:
    """CRC-32/ISO-HDLC (the zlib/Ethernet CRC): poly 0x04C11DB7 reflected, init and
    final XOR 0xFFFFFFFF. ``crc32(b"123456789") == 0xCBF43926``."""
    return zlib.crc32(data, value)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: ``data`` without any 0x00 byte.

    Blocks are ``code, code - 1 data bytes``; ``code < 0xFF`` stands for a zero
    after the block (except after the last block), ``0xFF`` for a full
    254-byte run with no zero. A full run that ends the data gets no empty
    block after it. The result is at most ``len(data) + len(data) // 254 + 1``
    bytes; the delimiter that follows a frame on the wire is not added here.
    """
    data = bytes(data)
    out = bytearray()
    start, n = 0, len(data)
    while True:
        zero = data.find(0, start, start + 254)
        if zero < 0:
            end = min(start + 254, n)
            out.append(end - start + 1)
            out += data[start:end]
            if end == n:
                return bytes(out)
            start = end
        else:
            out.append(zero - start + 1)
            out += data[start:zero]
            start = zero + 1


def cobs_decode(data: bytes) -> bytes:
    """Inverse of :func:`cobs_encode`; ``ValueError`` on a zero code byte or a
    block that runs past the end."""
    out = bytearray()
    n = len(data)
    i = 0
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise ValueError("invalid COBS data")
        out += data[i + 1 : end]
        if code != 0xFF and end < n:
            out.append(0)
        i = end
    return bytes(out)


# --------------------------------------------------------------------------- encoder


def _payload(frame: Frame) -> bytes:
    if isinstance(frame, Hello):
        cfg = frame.config
        parts = [
            _HELLO_FIXED.pack(cfg.block_period_us, frame.next_block_index, cfg.firmware_version, len(cfg.channels), 0)
        ]
        for c in cfg.channels:
            parts.append(
                _CHANNEL.pack(
                    c.name.encode("ascii"),
                    c.unit.encode("ascii"),
                    c.samples_per_block,
                    int(c.sample_format),
                    0,
                    c.raw_min,
                    c.raw_max,
                    c.scale,
                    c.offset,
                )
            )
        return b"".join(parts)
    if isinstance(frame, SampleBlock):
        parts = [_BLOCK_INDEX.pack(frame.block_index)]
        parts += [values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes() for values in frame.samples]
        return b"".join(parts)
    if isinstance(frame, Status):
        return _STATUS.pack(
            frame.battery_mv, frame.battery_percent, frame.flags, frame.lead_off_mask, frame.saturated_mask
        )
    raise TypeError(f"expected a Hello, SampleBlock or Status frame, got {type(frame).__name__}")


def pack_frame(frame: Frame) -> bytes:
    """The raw frame: header, payload and CRC-32, before COBS."""
    body = (
        _HEADER.pack(PROTOCOL_VERSION, int(frame.frame_type), frame.device_id, frame.boot_id, frame.seq, frame.timestamp_ms)
        + _payload(frame)
    )
    if len(body) + CRC_SIZE > MAX_FRAME_SIZE:
        raise ValueError(f"frame of {len(body) + CRC_SIZE} bytes exceeds MAX_FRAME_SIZE={MAX_FRAME_SIZE}")
    return body + _CRC.pack(zlib.crc32(body))


def encode_frame(frame: Frame) -> bytes:
    """The frame as sent on the wire: ``COBS(pack_frame(frame)) + b"\\x00"``."""
    return cobs_encode(pack_frame(frame)) + b"\x00"


# --------------------------------------------------------------------------- decoder

_MAX_ENCODED_SIZE = MAX_FRAME_SIZE + MAX_FRAME_SIZE // 254 + 1
_MIN_FRAME_SIZE = HEADER_SIZE + CRC_SIZE
_MAX_HELD_BACK = 8  # frames held while the decoder waits to know whether the device restarted


@dataclass
class _HeldBack:
    """A frame that went back in block index, clock and sequence number, and the status frames behind it."""

    following: int  # the lowest index a frame carrying on from it may have
    seq: int
    timestamp: int
    frames: list[bytes]


class FrameDecoder:
    """Incremental, never-raising decoder of a byte stream from one device.

    Feed it chunks of any size; it returns the frames the chunk completed, in
    wire order, together with the events they reveal (:class:`SessionStarted`,
    :class:`BlocksLost`, placed before the frame that revealed them).

    Lost-sample accounting: every sample block carries its index since the
    device booted and the hello gives the samples per block of each channel,
    so a jump in block index is an exact count of lost samples for every
    channel. Accounting starts at the first frame of a session that arrives
    (a reader cannot know about frames lost before it joined), or at block 0
    when the session is a restart of a device already seen. A hello says
    which block comes next, so losses just before a hello (including the last
    blocks before the stream ends, which the device closes with a hello) are
    reported too.

    A jump of more than ``max_jump_blocks`` ahead is taken only once the next
    index-carrying frame (sample block or hello) carries on from it: one stray
    index (a firmware glitch, a frame forged with a valid CRC) is dropped and
    counted in ``stats.jumps_refused`` instead of turning every later block
    into a duplicate. A confirmed jump is an ordinary loss, counted in O(1).

    Backward steps are confirmed the same way: a device that restarts but
    keeps its boot id (firmware passing a constant) sends block indices,
    timestamps and sequence numbers that all start again. A frame behind the
    session in all three is held until the next index-carrying frame; if that
    one carries on from it, the device restarted: a new session, warned about
    once and counted in ``stats.restarts_same_boot_id``. Otherwise the held
    frame was a repeat, dropped and counted in ``stats.duplicates``.

    Parameters
    ----------
    max_pending_blocks : int
        Sample blocks kept while waiting for the first hello of a session
        (their layout is unknown until then). Older ones are dropped, counted
        in ``stats.unconfigured_dropped`` and reported lost once the hello
        arrives. Default 64.
    duplicate_window : int
        How many recent (sequence number, timestamp) pairs are remembered to
        drop repeated frames. Default 64.
    max_jump_blocks : int
        Largest forward jump of the block index taken without waiting for
        the next frame to confirm it. Default 64.

    Examples
    --------
    >>> cfg = DeviceConfig(100_000, (ChannelSpec("EDA", "uS", 10),))
    >>> wire = encode_frame(Hello(1, 7, 0, 0, next_block_index=0, config=cfg))
    >>> wire += encode_frame(SampleBlock(1, 7, 1, 0, 0, (np.arange(10, dtype=np.int16),)))
    >>> decoder = FrameDecoder()
    >>> [type(item).__name__ for item in decoder.feed(wire[:5]) + decoder.feed(wire[5:])]
    ['SessionStarted', 'Hello', 'SampleBlock']
    >>> decoder.stats.samples_ok
    {'EDA': 10}
    """

    def __init__(self, max_pending_blocks: int = 64, duplicate_window: int = 64, max_jump_blocks: int = 64):
        _check_int("max_pending_blocks", max_pending_blocks, 0, 1 << 20)
        _check_int("duplicate_window", duplicate_window, 1, 1 << 20)
        _check_int("max_jump_blocks", max_jump_blocks, 1, _U32)
        self.stats = DecoderStats()
        self._max_pending = max_pending_blocks
        self._window = duplicate_window
        self._max_jump = max_jump_blocks
        self._buffer = b""
        self._discarding = False  # inside an oversize frame: drop bytes up to the next delimiter
        self._warned: set[tuple[str, int]] = set()
        self._session: tuple[int, int] | None = None
        self._config: DeviceConfig | None = None
        self._layout: list[tuple[np.dtype, int, int]] = []  # per channel: dtype, samples, payload offset
        self._payload_size = 0
        self._per_block: list[tuple[str, int]] = []  # per channel: name, samples per block
        self._expected_block: int | None = None
        self._last_seq: int | None = None
        self._recent: set[tuple[int, int]] = set()
        self._recent_order: deque[tuple[int, int]] = deque()
        self._pending: deque[tuple[int, int, int, int, int, bytes]] = deque()
        self._first_pending_block: int | None = None
        self._jump: tuple[int, int, Hello | tuple] | None = None  # held frame: its first index, next index, itself
        self._last_ms: int | None = None  # timestamp of the last sample block or hello taken in this session
        self._back: _HeldBack | None = None  # a frame that went back in index, clock and seq: a restart?

    @property
    def config(self) -> DeviceConfig | None:
        """The configuration of the current session, once its hello arrived."""
        return self._config

    @property
    def session(self) -> tuple[int, int] | None:
        """``(device_id, boot_id)`` of the current session."""
        return self._session

    def feed(self, data: bytes) -> list[Frame | DecoderEvent]:
        """Decode the frames completed by ``data``; keep the unfinished tail for later."""
        self.stats.bytes += len(data)
        buffer = self._buffer + bytes(data) if self._buffer else bytes(data)
        parts = buffer.split(b"\x00")
        tail = parts.pop()
        out: list[Frame | DecoderEvent] = []
        for part in parts:
            if self._discarding:
                self._discarding = False
            elif part:
                self._process(part, out)
        if self._discarding or len(tail) > _MAX_ENCODED_SIZE:
            if not self._discarding:
                self.stats.oversize += 1
            self._discarding = True
            tail = b""
        self._buffer = tail
        return out

    def flush(self) -> list[Frame | DecoderEvent]:
        """End the frame being received, as if a delimiter arrived.

        Call it when the link breaks, so that the start of a frame cut off by a
        disconnection is not glued to the bytes of the next connection.
        """
        out: list[Frame | DecoderEvent] = []
        if self._buffer and not self._discarding:
            self._process(self._buffer, out)
        self._buffer = b""
        self._discarding = False
        return out

    # -- one frame

    def _process(self, encoded: bytes, out: list) -> None:
        stats = self.stats
        if len(encoded) > _MAX_ENCODED_SIZE:
            stats.oversize += 1
            return
        try:
            frame = cobs_decode(encoded)
        except ValueError:
            stats.cobs_errors += 1
            return
        if len(frame) < _MIN_FRAME_SIZE:
            stats.crc_errors += 1  # too short to carry a header and a CRC
            return
        if len(frame) > MAX_FRAME_SIZE:
            stats.oversize += 1
            return
        body = memoryview(frame)[:-CRC_SIZE]
        if zlib.crc32(body) != _CRC.unpack_from(frame, len(frame) - CRC_SIZE)[0]:
            stats.crc_errors += 1
            return
        self._frame(frame, out)

    def _frame(self, frame: bytes, out: list) -> None:
        """One frame with a valid CRC: version, restarts, then its type."""
        stats = self.stats
        version, type_code, device_id, boot_id, seq, timestamp = _HEADER.unpack_from(frame)
        if version != PROTOCOL_VERSION:
            stats.unknown_version += 1
            self._warn_once("version", version, f"skipping frames of unknown protocol version {version}")
            return
        payload = frame[HEADER_SIZE:-CRC_SIZE]
        key = (device_id, boot_id)
        if self._went_back(frame, type_code, key, seq, timestamp, payload, out):
            return
        if type_code == FrameType.SAMPLES:
            if len(payload) < _BLOCK_INDEX.size:
                stats.malformed += 1
            elif self._accept(key, seq, timestamp, out):
                block_index = _BLOCK_INDEX.unpack_from(payload)[0]
                self._samples(device_id, boot_id, seq, timestamp, block_index, payload, out)
        elif type_code == FrameType.HELLO:
            hello = _parse_hello(device_id, boot_id, seq, timestamp, payload)
            if isinstance(hello, str):
                stats.malformed += 1
                self._warn_once("description", 0, f"refusing a device description: {hello}")
            elif key == self._session and self._expected_block is not None and (
                hello.next_block_index < self._expected_block
            ):
                # An older hello of this boot, repeated or overtaken on the way: only a
                # new boot id starts a new session (PROTOCOL.md section 4).
                stats.duplicates += 1
                self._warn_once("stale hello", 0, "dropping a repeated hello of the current device session")
            elif self._accept(key, seq, timestamp, out):
                self._hello(hello, out)
        elif type_code == FrameType.STATUS:
            status = _parse_status(device_id, boot_id, seq, timestamp, payload)
            if status is None:
                stats.malformed += 1
            elif self._accept(key, seq, timestamp, out):
                stats.frames_ok += 1
                out.append(status)
        else:
            stats.unknown_type += 1
            self._warn_once("type", type_code, f"skipping frames of unknown type {type_code}")
            self._accept(key, seq, timestamp, out)  # it still used a sequence number

    def _warn_once(self, kind: str, value: int, message: str) -> None:
        if (kind, value) in self._warned:
            logger.debug(message)
        else:
            self._warned.add((kind, value))
            logger.warning("%s (counted in FrameDecoder.stats; further ones are logged at debug level)", message)

    # -- session, duplicates, sequence numbers

    def _accept(self, key: tuple[int, int], seq: int, timestamp: int, out: list) -> bool:
        """Session change, duplicate and sequence-gap bookkeeping; False for a duplicate."""
        if key != self._session:
            self._start_session(key, out)
        elif (seq, timestamp) in self._recent:
            self.stats.duplicates += 1
            return False
        elif self._last_seq is not None:
            self.stats.frames_lost += (seq - self._last_seq - 1) & _U16
        self._remember(seq, timestamp)
        return True

    def _remember(self, seq: int, timestamp: int) -> None:
        self._last_seq = seq
        pair = (seq, timestamp)
        self._recent.add(pair)
        self._recent_order.append(pair)
        if len(self._recent_order) > self._window:
            self._recent.discard(self._recent_order.popleft())

    def _start_session(self, key: tuple[int, int], out: list) -> None:
        restarted = self._session is not None
        if restarted and key != self._session:
            logger.info("device session changed from %s to %s (device restarted)", self._session, key)
        self.stats.unconfigured_dropped += len(self._pending)
        self.stats.sessions += 1
        self._session = key
        self._config = None
        self._expected_block = 0 if restarted else None
        self._last_seq = None
        self._recent.clear()
        self._recent_order.clear()
        self._pending.clear()
        self._first_pending_block = None
        self._jump = None
        self._last_ms = None
        self._back = None
        out.append(SessionStarted(key[0], key[1], restarted))

    # -- restarts that keep their boot id

    def _went_back(self, frame: bytes, type_code: int, key: tuple[int, int], seq: int, timestamp: int,
                   payload: bytes, out: list) -> bool:
        """Hold a frame behind this session in block index, clock and sequence number; True when it was taken.

        The device may have restarted keeping its boot id (PROTOCOL.md section 4):
        the next index-carrying frame decides. If it carries on from the held one
        while still behind this session, a new session starts with the held
        frames; otherwise the held frame was a repeat (:meth:`_drop_back`).
        """
        held = self._back
        if key != self._session:
            if held is not None:
                self._drop_back(out)
            return False
        if (seq, timestamp) in self._recent:  # a repeated frame: dropped as such
            return False
        if held is None:
            if not self._behind(None, timestamp) or (seq - self._last_seq) & _U16 < 0x8000:
                return False
            index = self._frame_index(type_code, key, seq, timestamp, payload)
            if index is None or not self._behind(index[0], timestamp):
                return False
            self._back = _HeldBack(index[1], seq, timestamp, [frame])
            return True
        index = self._frame_index(type_code, key, seq, timestamp, payload)
        if index is None:
            if self._behind(None, timestamp) and len(held.frames) < _MAX_HELD_BACK:
                held.frames.append(frame)
                return True
            return False
        if not (held.following <= index[0] <= held.following + self._max_jump and held.timestamp <= timestamp
                and 0 < (seq - held.seq) & _U16 < 0x8000 and self._behind(index[0], timestamp)):
            self._drop_back(out)
            return self._went_back(frame, type_code, key, seq, timestamp, payload, out)
        self.stats.restarts_same_boot_id += 1
        self._warn_once("same boot id", key[1], f"the device restarted without changing its boot id {key[1]} "
                                                "(block index, clock and sequence number started again): taken "
                                                "as a new session; its firmware should change boot_id at every boot")
        self._start_session(key, out)
        for waiting in held.frames + [frame]:
            self._frame(waiting, out)
        return True

    @staticmethod
    def _frame_index(type_code: int, key: tuple[int, int], seq: int, timestamp: int,
                     payload: bytes) -> tuple[int, int] | None:
        """A valid sample block's (index, index + 1), a valid hello's (next index, next index); None otherwise."""
        if type_code == FrameType.SAMPLES and len(payload) >= _BLOCK_INDEX.size:
            block_index = _BLOCK_INDEX.unpack_from(payload)[0]
            return block_index, block_index + 1
        if type_code == FrameType.HELLO:
            hello = _parse_hello(key[0], key[1], seq, timestamp, payload)
            if isinstance(hello, Hello):
                return hello.next_block_index, hello.next_block_index
        return None

    def _behind(self, index: int | None, timestamp: int) -> bool:
        """Whether a frame is before this session's expected block (None: any) and its last timestamp."""
        if self._expected_block is None or self._last_ms is None or timestamp >= self._last_ms:
            return False
        return index is None or index < self._expected_block

    def _drop_back(self, out: list) -> None:
        """The held frame was a repeat: count it; the status frames held behind it go on as usual."""
        held, self._back = self._back, None
        self.stats.duplicates += 1
        if held.frames[0][1] == FrameType.HELLO:
            self._warn_once("stale hello", 0, "dropping a repeated hello of the current device session")
        for waiting in held.frames[1:]:
            self._frame(waiting, out)

    # -- frame types

    def _hello(self, hello: Hello, out: list) -> None:
        if not self._in_reach(hello.next_block_index, hello.next_block_index, hello, out):
            return
        if self._config is not None and self._expected_block is not None and (
            hello.next_block_index > self._expected_block
        ):  # blocks sent before this hello, under the description in force then (a hello may change the rates)
            self._lost(self._expected_block, hello.next_block_index - self._expected_block, out)
            self._expected_block = hello.next_block_index
        if hello.config != self._config:
            self._config = config = hello.config
            offset = _BLOCK_INDEX.size
            self._layout = []
            for spec in config.channels:
                self._layout.append((spec.sample_format.dtype, spec.samples_per_block, offset))
                offset += spec.samples_per_block * spec.sample_format.dtype.itemsize
            self._payload_size = offset
            self._per_block = [(spec.name, spec.samples_per_block) for spec in config.channels]
        if self._pending:
            if self._expected_block is None:
                self._expected_block = self._first_pending_block
            for pending in self._pending:
                self._deliver(*pending, out)
            self._pending.clear()
            self._first_pending_block = None
        if self._expected_block is None:
            self._expected_block = hello.next_block_index
        elif hello.next_block_index > self._expected_block:
            self._lost(self._expected_block, hello.next_block_index - self._expected_block, out)
            self._expected_block = hello.next_block_index
        self._last_ms = hello.timestamp_ms
        self.stats.frames_ok += 1
        out.append(hello)

    def _samples(self, device_id, boot_id, seq, timestamp, block_index, payload, out) -> None:
        if self._config is not None:
            self._deliver(device_id, boot_id, seq, timestamp, block_index, payload, out)
            return
        if self._first_pending_block is None:
            self._first_pending_block = block_index
        self._pending.append((device_id, boot_id, seq, timestamp, block_index, payload))
        if len(self._pending) > self._max_pending:
            self._pending.popleft()
            self.stats.unconfigured_dropped += 1

    def _deliver(self, device_id, boot_id, seq, timestamp, block_index, payload, out) -> None:
        if len(payload) != self._payload_size:
            self.stats.malformed += 1
            return
        expected = self._expected_block
        if expected is not None and block_index < expected:
            self.stats.duplicates += 1
            return
        frame = (device_id, boot_id, seq, timestamp, block_index, payload)
        if not self._in_reach(block_index, block_index + 1, frame, out):
            return
        expected = self._expected_block
        if expected is not None and block_index > expected:
            self._lost(expected, block_index - expected, out)
        self._expected_block = block_index + 1
        self._last_ms = timestamp
        samples = tuple(np.frombuffer(payload, dtype, count, offset) for dtype, count, offset in self._layout)
        counts = self.stats.samples_ok
        for name, per_block in self._per_block:
            counts[name] = counts.get(name, 0) + per_block
        self.stats.frames_ok += 1
        out.append(SampleBlock(device_id, boot_id, seq, timestamp, block_index, samples, self._config))

    def _in_reach(self, first: int, following: int, frame: Hello | tuple, out: list) -> bool:
        """Whether a frame whose block index is ``first`` can be taken now.

        A frame more than ``max_jump_blocks`` ahead of the expected index is
        held (False) until the next one: if that one carries on from it
        (``following``, the index after the held frame), the jump was real and
        the held frame is taken; if it carries on from the expected index, the
        held frame was a stray and is dropped.
        """
        held, self._jump = self._jump, None
        expected = self._expected_block
        if held is not None:
            held_first, held_following, held_frame = held
            if held_following <= first <= held_following + self._max_jump:
                self._lost(expected, held_first - expected, out)
                self._expected_block = held_first
                if isinstance(held_frame, Hello):
                    self._hello(held_frame, out)
                else:
                    self._deliver(*held_frame, out)
                return True
            self.stats.jumps_refused += 1
            self._warn_once("jump", 0, f"dropping a frame whose block index {held_first} jumps far ahead of "
                                       f"{expected} without the next frame following it")
        if expected is not None and first - expected > self._max_jump:
            self._jump = (first, following, frame)
            return False
        return True

    def _lost(self, first_block: int, n_blocks: int, out: list) -> None:
        config = self._config
        self.stats.gaps += 1
        self.stats.blocks_lost += n_blocks
        lost = self.stats.samples_lost
        for spec in config.channels:
            lost[spec.name] = lost.get(spec.name, 0) + n_blocks * spec.samples_per_block
        device_id, boot_id = self._session
        out.append(BlocksLost(device_id, boot_id, first_block, n_blocks, config))


def _parse_hello(device_id: int, boot_id: int, seq: int, timestamp: int, payload: bytes) -> Hello | str:
    """A hello frame from its payload, or what is wrong with it when a length or a field is invalid."""
    if len(payload) < _HELLO_FIXED.size:
        return f"a hello payload has at least {_HELLO_FIXED.size} bytes, got {len(payload)}"
    block_period_us, next_block, firmware, n_channels, _ = _HELLO_FIXED.unpack_from(payload)
    size = _HELLO_FIXED.size + n_channels * _CHANNEL.size
    if len(payload) != size:
        return f"a hello of {n_channels} channel(s) has {size} bytes, got {len(payload)}"
    try:
        channels = []
        for i in range(n_channels):
            name, unit, per_block, fmt, _, raw_min, raw_max, scale, offset = _CHANNEL.unpack_from(
                payload, _HELLO_FIXED.size + i * _CHANNEL.size
            )
            channels.append(
                ChannelSpec(
                    name.rstrip(b"\x00").decode("ascii"),
                    unit.rstrip(b"\x00").decode("ascii"),
                    per_block,
                    fmt,
                    raw_min,
                    raw_max,
                    scale,
                    offset,
                )
            )
        config = DeviceConfig(block_period_us, tuple(channels), firmware)
    except UnicodeDecodeError:
        return "a channel name or unit is not ASCII"
    except ValueError as exc:
        return str(exc)
    return Hello(device_id, boot_id, seq, timestamp, next_block, config)


def _parse_status(device_id: int, boot_id: int, seq: int, timestamp: int, payload: bytes) -> Status | None:
    """A status frame from its payload, or None when its length or a field is invalid."""
    if len(payload) != _STATUS.size:
        return None
    try:
        return Status(device_id, boot_id, seq, timestamp, *_STATUS.unpack(payload))
    except ValueError:
        return None
