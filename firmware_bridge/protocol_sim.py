"""pyserial URL handler for ``sim://``: the simulated device behind the ordinary port API.

Like BrainFlow's synthetic board, it lets everything above the serial port
(the reader, the monitor) run unchanged without hardware::

    serial.serial_for_url("sim://?speed=10&seed=3&flip-rate=0.0005&conditions=flat:EDA:30-60")

pyserial finds this module because :mod:`firmware_bridge.reader` adds
``firmware_bridge`` to ``serial.protocol_handler_packages``. The query keys are
the options of ``biomoe simulate-device`` without the leading dashes
(``speed``, ``duration``, ``seed``, ``replay``, ``subject``, ``flip-rate``,
``drop-rate``, ``conditions`` (repeatable), ...). The device starts
streaming when the port opens and stops when it closes; what the host writes
is ignored. A simulated disconnection is silence here (the port stays open);
use a pty (``biomoe simulate-device --link``) to exercise reconnection.
"""

from __future__ import annotations

import threading
import urllib.parse

from serial.serialutil import PortNotOpenError, SerialBase, SerialException, Timeout

from firmware_bridge.errors import BridgeError
from firmware_bridge.simulator import SimulatedDevice, SimulatorParams, params_from_options

__all__ = ["Serial"]

_FORM = '"sim://[?option=value[&option=value...]]" (options of biomoe simulate-device without dashes)'


class _Buffer:
    """What the device has sent and the host has not read yet, bounded like a driver's buffer."""

    capacity = 1 << 20

    def __init__(self):
        self.data = bytearray()
        self.ready = threading.Condition()

    def write(self, data: bytes) -> int:
        with self.ready:
            if len(self.data) + len(data) > self.capacity:
                return 0  # nobody reads: the bytes are lost, as on a real line
            self.data += data
            self.ready.notify_all()
        return len(data)


class Serial(SerialBase):
    """A port whose other end is a :class:`~firmware_bridge.simulator.SimulatedDevice`."""

    def open(self) -> None:
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        params = self.from_url(self.portstr)
        self._buffer = _Buffer()
        try:
            self.device = SimulatedDevice(params, sink=self._buffer)
        except (ValueError, BridgeError) as exc:
            raise SerialException(f"cannot start the simulated device of {self.portstr!r}: {exc}") from exc
        self.is_open = True
        self.device.open()
        self.device.start()

    def from_url(self, url: str) -> SimulatorParams:
        """Parse the URL into simulator parameters; unknown options are an error quoting the form."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme.lower() != "sim" or parts.netloc or parts.path not in ("", "/"):
            raise SerialException(f"expected a string in the form {_FORM}, got {url!r}")
        options: dict[str, object] = {}
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if key == "conditions":
                options.setdefault(key, []).append(value)
            else:
                options[key] = value
        try:
            return params_from_options(options)
        except ValueError as exc:
            raise SerialException(f"expected a string in the form {_FORM}: {exc}") from None

    def close(self) -> None:
        if self.is_open:
            self.device.close()
            self.is_open = False
            with self._buffer.ready:
                self._buffer.ready.notify_all()

    def _reconfigure_port(self) -> None:
        """Nothing to configure: baud rate and framing do not apply to a simulated line."""

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        return len(self._buffer.data)

    def read(self, size: int = 1) -> bytes:
        if not self.is_open:
            raise PortNotOpenError()
        timeout = Timeout(self._timeout)
        buffer = self._buffer
        with buffer.ready:
            while len(buffer.data) < size and self.is_open and not timeout.expired():
                buffer.ready.wait(timeout.time_left())
            data = bytes(buffer.data[:size])
            del buffer.data[:size]
        return data

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        return len(data)  # the simulated device takes no commands

    def reset_input_buffer(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()
        with self._buffer.ready:
            self._buffer.data.clear()

    def reset_output_buffer(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()
