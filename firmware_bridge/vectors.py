"""Shared test vectors: inputs and the exact bytes both encoders must produce.

``firmware_bridge/test_vectors.json`` was written once by
``python -m firmware_bridge.vectors --write`` and is frozen: the Python codec
(``tests/test_protocol.py``) and the C encoder (``tests/test_c_encoder.py``,
through ``c/vector_main.c``) must both reproduce it byte for byte. Run
``python -m firmware_bridge.vectors`` to check that the Python side still
does; rewrite the file only with a protocol version change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from firmware_bridge.protocol import (
    PROTOCOL_VERSION,
    ChannelSpec,
    DeviceConfig,
    Frame,
    Hello,
    SampleBlock,
    SampleFormat,
    Status,
    cobs_encode,
    crc32,
    encode_frame,
    pack_frame,
)

__all__ = ["VECTORS_PATH", "load_vectors", "frame_from_inputs", "config_for_samples", "build_vectors"]

VECTORS_PATH = Path(__file__).with_name("test_vectors.json")

_HEADER_KEYS = ("device_id", "boot_id", "seq", "timestamp_ms")

# The default channel set of the simulator: three 100 Hz channels and SpO2 at 1 Hz.
_DEFAULT_CHANNELS = [
    {"name": "EDA", "unit": "uS", "samples_per_block": 100, "sample_format": "int16",
     "raw_min": -32768, "raw_max": 32767, "scale": 0.0005, "offset": 16.384},
    {"name": "BVP", "unit": "a.u.", "samples_per_block": 100, "sample_format": "int16",
     "raw_min": -32768, "raw_max": 32767, "scale": 0.0001, "offset": 0.0},
    {"name": "RESP", "unit": "a.u.", "samples_per_block": 100, "sample_format": "int16",
     "raw_min": -32768, "raw_max": 32767, "scale": 0.0001, "offset": 0.0},
    {"name": "SpO2", "unit": "%", "samples_per_block": 1, "sample_format": "int16",
     "raw_min": 0, "raw_max": 10000, "scale": 0.01, "offset": 0.0},
]

_FRAME_CASES = [
    {"name": "hello_default_channels", "type": "hello", "device_id": 1, "boot_id": 0x2A17, "seq": 0,
     "timestamp_ms": 0, "next_block_index": 0, "block_period_us": 1_000_000, "firmware_version": 3,
     "channels": _DEFAULT_CHANNELS},
    {"name": "hello_limits", "type": "hello", "device_id": 0xFFFF, "boot_id": 0xFFFF, "seq": 0xFFFF,
     "timestamp_ms": 0xFFFFFFFF, "next_block_index": 0xFFFFFFFF, "block_period_us": 0xFFFFFFFF,
     "firmware_version": 0xFFFF,
     "channels": [{"name": "ABCDEFGH", "unit": "", "samples_per_block": 3, "sample_format": "int32",
                   "raw_min": -2147483648, "raw_max": 2147483647, "scale": -1.5e-7, "offset": -273.15}]},
    {"name": "samples_worked_example", "type": "samples", "device_id": 1, "boot_id": 0x2A17, "seq": 5,
     "timestamp_ms": 1000, "block_index": 50,
     "channels": [{"sample_format": "int16", "values": [3000, 3010]},
                  {"sample_format": "int16", "values": [-200, 0]}]},
    {"name": "samples_int32_extremes", "type": "samples", "device_id": 7, "boot_id": 1, "seq": 65535,
     "timestamp_ms": 4_294_967_295, "block_index": 4_294_967_295,
     "channels": [{"sample_format": "int32", "values": [-2147483648, 2147483647, 0, -1]},
                  {"sample_format": "int16", "values": [-32768, 32767]}]},
    {"name": "samples_long_run_without_zeros", "type": "samples", "device_id": 0x0101, "boot_id": 0x0101,
     "seq": 0x0101, "timestamp_ms": 0x01010101, "block_index": 0x01010101,
     "channels": [{"sample_format": "int16", "values": [257] * 300}]},
    {"name": "samples_all_zero", "type": "samples", "device_id": 0, "boot_id": 0, "seq": 0,
     "timestamp_ms": 0, "block_index": 0,
     "channels": [{"sample_format": "int16", "values": [0] * 20}]},
    {"name": "samples_sixteen_channels", "type": "samples", "device_id": 2, "boot_id": 99, "seq": 12,
     "timestamp_ms": 123456, "block_index": 1234,
     "channels": [{"sample_format": "int16", "values": [1000 * i - 8000]} for i in range(16)]},
    {"name": "status_unknown_battery", "type": "status", "device_id": 1, "boot_id": 0x2A17, "seq": 6,
     "timestamp_ms": 1100, "battery_mv": 0, "battery_percent": 255, "flags": 0, "lead_off_mask": 0,
     "saturated_mask": 0},
    {"name": "status_worked_example", "type": "status", "device_id": 1, "boot_id": 0x2A17, "seq": 7,
     "timestamp_ms": 2000, "battery_mv": 3710, "battery_percent": 64, "flags": 1, "lead_off_mask": 0b0100,
     "saturated_mask": 0b0001},
]

_BYTE_CASES = [
    "",
    "00",
    "0000",
    "11220033",
    "11223344",
    "1100002200",
    bytes([1] * 254).hex(),
    bytes(range(1, 256)).hex(),
    (bytes([7] * 254) + b"\x00").hex(),
    (b"\x00" + bytes([7] * 254)).hex(),
    bytes([7] * 253 + [0]).hex(),
    bytes((i * 7) % 256 for i in range(600)).hex(),
    b"123456789".hex(),
]


def _channel_spec(entry: dict) -> ChannelSpec:
    return ChannelSpec(
        entry["name"],
        entry["unit"],
        entry["samples_per_block"],
        SampleFormat[entry["sample_format"].upper()],
        entry["raw_min"],
        entry["raw_max"],
        entry["scale"],
        entry["offset"],
    )


def frame_from_inputs(inputs: dict) -> Frame:
    """The frame a vector's inputs describe."""
    header = [inputs[key] for key in _HEADER_KEYS]
    kind = inputs["type"]
    if kind == "hello":
        config = DeviceConfig(
            inputs["block_period_us"], tuple(_channel_spec(c) for c in inputs["channels"]), inputs["firmware_version"]
        )
        return Hello(*header, inputs["next_block_index"], config)
    if kind == "samples":
        samples = tuple(
            np.asarray(c["values"], dtype=SampleFormat[c["sample_format"].upper()].dtype) for c in inputs["channels"]
        )
        return SampleBlock(*header, inputs["block_index"], samples)
    if kind == "status":
        return Status(
            *header,
            inputs["battery_mv"],
            inputs["battery_percent"],
            inputs["flags"],
            inputs["lead_off_mask"],
            inputs["saturated_mask"],
        )
    raise ValueError(f"vector type must be hello, samples or status, got {kind!r}")


def config_for_samples(inputs: dict) -> DeviceConfig:
    """A configuration under which a sample-block vector decodes (names are made up)."""
    channels = tuple(
        ChannelSpec(
            f"CH{i}",
            "",
            len(c["values"]),
            SampleFormat[c["sample_format"].upper()],
            int(np.iinfo(SampleFormat[c["sample_format"].upper()].dtype).min),
            int(np.iinfo(SampleFormat[c["sample_format"].upper()].dtype).max),
        )
        for i, c in enumerate(inputs["channels"])
    )
    return DeviceConfig(1000, channels)


def build_vectors() -> dict:
    """All vectors, with the bytes the Python codec produces."""
    frames = []
    for case in _FRAME_CASES:
        frame = frame_from_inputs(case)
        frames.append({"name": case["name"], "inputs": case, "raw_hex": pack_frame(frame).hex(),
                       "wire_hex": encode_frame(frame).hex()})
    return {
        "protocol_version": PROTOCOL_VERSION,
        "about": "Inputs and exact bytes of the biomoe serial protocol; see PROTOCOL.md. raw_hex is the "
        "frame before COBS (header, payload, CRC-32), wire_hex what goes on the line (COBS + 0x00).",
        "crc32": [{"input_hex": h, "crc32_hex": f"{crc32(bytes.fromhex(h)):08x}"} for h in _BYTE_CASES],
        "cobs": [{"input_hex": h, "encoded_hex": cobs_encode(bytes.fromhex(h)).hex()} for h in _BYTE_CASES],
        "frames": frames,
    }


def load_vectors(path: Path = VECTORS_PATH) -> dict:
    """The frozen vectors from ``test_vectors.json``."""
    return json.loads(Path(path).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"(re)write {VECTORS_PATH.name}")
    args = parser.parse_args(argv)
    vectors = build_vectors()
    if args.write:
        VECTORS_PATH.write_text(json.dumps(vectors, indent=1) + "\n")
        print(f"wrote {VECTORS_PATH}")
        return 0
    if load_vectors() != vectors:
        print(f"the Python codec no longer reproduces {VECTORS_PATH}", file=sys.stderr)
        return 1
    print(f"{VECTORS_PATH.name}: the Python codec reproduces every vector")
    return 0


if __name__ == "__main__":
    sys.exit(main())
