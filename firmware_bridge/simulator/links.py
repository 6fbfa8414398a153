"""Where the simulated device's bytes go: a pseudo-terminal, a pyserial URL or a ``write()`` sink.

Disconnection and re-enumeration: a real USB device that is unplugged and
plugged back gets a new device node. On a pty the simulator models this by
closing the pty (the reader's reads fail) and creating a new one at the end of
the window; with ``--link PATH`` it keeps a symlink at PATH pointing to the
current pty, replaced atomically, so a reader that reopens PATH reconnects the
way it would to ``/dev/serial/by-id/...``. On a pyserial URL the port is
closed and reopened; on a ``write()`` sink the link just goes silent.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import time
import tty
from pathlib import Path

import serial

from firmware_bridge.errors import BridgeError

__all__: list[str] = []  # private to SimulatedDevice, which picks one from its params


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

