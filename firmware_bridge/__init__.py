"""Serial bridge of Tiny-BioMoE Edge: the wire protocol between a sensor board and
the hub, a robust reader, a simulated device and the MCU-side C encoder.

See ``firmware_bridge/PROTOCOL.md`` for the bytes, :class:`SensorReader` to read a
device (or ``sim://``), :class:`SimulatedDevice` / ``biomoe simulate-device`` to
stand in for one.
"""

from firmware_bridge.errors import BridgeError
from firmware_bridge.protocol import ChannelSpec, DeviceConfig, FrameDecoder, encode_frame
from firmware_bridge.reader import (
    BridgeParams,
    ChannelBlock,
    DeviceEvent,
    GapEvent,
    LinkEvent,
    ReaderEvent,
    SensorReader,
    StatusEvent,
)
from firmware_bridge.simulator import SimulatedDevice, SimulatorParams

__all__ = [
    "BridgeError",
    "BridgeParams",
    "SensorReader",
    "ChannelBlock",
    "GapEvent",
    "StatusEvent",
    "DeviceEvent",
    "LinkEvent",
    "ReaderEvent",
    "SimulatedDevice",
    "SimulatorParams",
    "ChannelSpec",
    "DeviceConfig",
    "FrameDecoder",
    "encode_frame",
]
