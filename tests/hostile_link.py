"""A serial link that mistreats frames on their way to the monitor, for its tests.

:class:`HostileLink` is the ``sink`` of a :class:`firmware_bridge.SimulatedDevice`
(which writes one frame per call) and the far end of a raw pseudo-terminal
that ``biomoe monitor --port`` reads. What it sends is decided by a
``tamper(frame) -> list of frames`` function, so a test can repeat, hold back
or rewrite frames (re-encoded with a correct CRC: the link is hostile, not
noisy). :func:`rewrite_block_index` shifts the block index of sample blocks
and hellos, as a device whose counter jumped would; :func:`frame_timestamp`
and :func:`rewrite_timestamp` read and set the device clock of any frame.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
import tty
import zlib
from pathlib import Path

from firmware_bridge.protocol import HEADER_SIZE, FrameType, cobs_decode, cobs_encode

__all__ = ["HostileLink", "frame_type", "block_index", "rewrite_block_index", "frame_timestamp", "rewrite_timestamp",
           "wait_until_port_open"]

_INDEX = struct.Struct("<I")
_TIMESTAMP = struct.Struct("<I")  # timestamp_ms, the last header field
_TIMESTAMP_OFFSET = HEADER_SIZE - _TIMESTAMP.size
# Where the index sits in a frame: a sample block's block_index, a hello's next_block_index.
_INDEX_OFFSET = {FrameType.SAMPLES: HEADER_SIZE, FrameType.HELLO: HEADER_SIZE + 4}


def frame_type(wire: bytes) -> int:
    """Header byte 1 of an encoded frame (``wire`` = COBS + delimiter)."""
    return cobs_decode(wire[:-1])[1]


def block_index(wire: bytes) -> int | None:
    """The block index a sample block carries, or a hello's next one; None for other frames."""
    raw = cobs_decode(wire[:-1])
    offset = _INDEX_OFFSET.get(raw[1])
    return None if offset is None else _INDEX.unpack_from(raw, offset)[0]


def rewrite_block_index(wire: bytes, shift: int) -> bytes:
    """The frame with its block index (or a hello's next one) moved by ``shift``, CRC recomputed."""
    raw = bytearray(cobs_decode(wire[:-1]))
    offset = _INDEX_OFFSET[raw[1]]
    _INDEX.pack_into(raw, offset, (_INDEX.unpack_from(raw, offset)[0] + shift) & 0xFFFFFFFF)
    return _encoded(raw)


def frame_timestamp(wire: bytes) -> int:
    """The device clock (``timestamp_ms``) in an encoded frame's header."""
    return _TIMESTAMP.unpack_from(cobs_decode(wire[:-1]), _TIMESTAMP_OFFSET)[0]


def rewrite_timestamp(wire: bytes, timestamp_ms: int) -> bytes:
    """The frame stamped ``timestamp_ms`` instead, CRC recomputed."""
    raw = bytearray(cobs_decode(wire[:-1]))
    _TIMESTAMP.pack_into(raw, _TIMESTAMP_OFFSET, timestamp_ms)
    return _encoded(raw)


def _encoded(raw: bytearray) -> bytes:
    body = bytes(raw[:-4])
    return cobs_encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"


class HostileLink:
    """A raw pty whose slave ``path`` the monitor reads; the device writes frames through ``tamper``.

    Parameters
    ----------
    tamper : callable, optional
        ``tamper(wire) -> list of wire frames`` for every frame the device
        writes (delimiter bytes alone pass untouched). Default: unchanged.
    """

    def __init__(self, tamper=None):
        self._tamper = tamper or (lambda wire: [wire])
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        fcntl.fcntl(self._master, fcntl.F_SETFL, fcntl.fcntl(self._master, fcntl.F_GETFL) | os.O_NONBLOCK)
        self.path = os.ttyname(self._slave)
        self.unsent = 0  # bytes the pty had no room for (nobody reading)
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        """What a device writes: one whole frame, or delimiter bytes."""
        frames = [data] if not data.strip(b"\x00") else self._tamper(bytes(data))
        with self._lock:
            for frame in frames:
                self.send(frame)

    def send(self, data: bytes) -> None:
        """Bytes straight onto the pty, bypassing ``tamper``."""
        try:
            self.unsent += len(data) - os.write(self._master, data)
        except BlockingIOError:
            self.unsent += len(data)

    def close(self) -> None:
        for fd in (self._master, self._slave):
            os.close(fd)


def wait_until_port_open(pid: int, path: str, timeout: float = 30.0) -> None:
    """Block until process ``pid`` holds ``path`` open (a device must not talk before the monitor listens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                if os.readlink(fd) == path:
                    return
            except OSError:
                continue
        time.sleep(0.05)
    raise TimeoutError(f"process {pid} did not open {path} within {timeout} s")
