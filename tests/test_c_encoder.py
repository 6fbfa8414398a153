"""The C99 encoder (firmware_bridge/c): builds without warnings and matches the shared vectors."""

from __future__ import annotations

import os
import shlex
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from firmware_bridge.vectors import load_vectors

C_DIR = Path(__file__).resolve().parents[1] / "firmware_bridge" / "c"
FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
FORMATS = {"int16": 1, "int32": 2}


def _compiler() -> list[str]:
    """The system C compiler (``$CC`` if set), as a command line."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler:
        if os.environ.get("CI"):
            pytest.fail("no C compiler found (set CC); the C encoder must be checked in CI")
        pytest.skip("no C compiler found (set CC)")
    return [compiler]


@pytest.fixture(scope="module")
def vector_main(tmp_path_factory) -> Path:
    binary = tmp_path_factory.mktemp("c") / "vector_main"
    proc = subprocess.run(
        [*_compiler(), *FLAGS, "-O2", "-o", str(binary), str(C_DIR / "biomoe_frame.c"), str(C_DIR / "vector_main.c")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    return binary


def _hex(data_hex: str) -> str:
    return data_hex or "-"


def _float_bits(value: float) -> str:
    return f"0x{struct.unpack('<I', struct.pack('<f', value))[0]:08x}"


def _record(inputs: dict) -> str:
    """One vector_main record (see the comment at the top of vector_main.c)."""
    header = f"{inputs['device_id']} {inputs['boot_id']} {inputs['seq']} {inputs['timestamp_ms']}"
    kind = inputs["type"]
    if kind == "hello":
        parts = [
            f"hello {header} {inputs['block_period_us']} {inputs['next_block_index']} "
            f"{inputs['firmware_version']} {len(inputs['channels'])}"
        ]
        for c in inputs["channels"]:
            parts.append(
                f"{_hex(c['name'].encode('ascii').hex())} {_hex(c['unit'].encode('ascii').hex())} "
                f"{c['samples_per_block']} {FORMATS[c['sample_format']]} {c['raw_min']} {c['raw_max']} "
                f"{_float_bits(c['scale'])} {_float_bits(c['offset'])}"
            )
        return " ".join(parts)
    if kind == "samples":
        parts = [f"samples {header} {inputs['block_index']} {len(inputs['channels'])}"]
        for c in inputs["channels"]:
            parts.append(f"{len(c['values'])} {FORMATS[c['sample_format']]} " + " ".join(map(str, c["values"])))
        return " ".join(parts)
    return (
        f"status {header} {inputs['battery_mv']} {inputs['battery_percent']} {inputs['flags']} "
        f"{inputs['lead_off_mask']} {inputs['saturated_mask']}"
    )


def _run(binary: Path, records: list[str]) -> list[str]:
    proc = subprocess.run([str(binary)], input="\n".join(records) + "\n", capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_library_compiles_on_its_own_without_warnings(tmp_path):
    proc = subprocess.run(
        [*_compiler(), *FLAGS, "-O0", "-c", "-o", str(tmp_path / "biomoe_frame.o"), str(C_DIR / "biomoe_frame.c")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_c_crc_and_cobs_match_the_vectors(vector_main):
    vectors = load_vectors()
    records = [f"crc {_hex(c['input_hex'])}" for c in vectors["crc32"]]
    records += [f"cobs {_hex(c['input_hex'])}" for c in vectors["cobs"]]
    expected = [c["crc32_hex"] for c in vectors["crc32"]] + [c["encoded_hex"] for c in vectors["cobs"]]
    assert _run(vector_main, records) == expected


def test_c_frames_match_the_vectors_byte_for_byte(vector_main):
    frames = load_vectors()["frames"]
    assert len(frames) >= 5
    got = _run(vector_main, [_record(case["inputs"]) for case in frames])
    for case, line in zip(frames, got, strict=True):
        assert line == case["wire_hex"], case["name"]


def test_c_encoder_refuses_a_buffer_one_byte_too_small(vector_main):
    records, expected = [], []
    for case in load_vectors()["frames"]:
        size = len(case["wire_hex"]) // 2
        records += [f"limit {size}", _record(case["inputs"]), f"limit {size - 1}", _record(case["inputs"])]
        expected += [case["wire_hex"], "-"]
    assert _run(vector_main, records) == expected


def test_c_encoder_refuses_invalid_input(vector_main):
    bad = [
        "status 1 2 3 4 3700 101 0 0 0",  # battery_percent above 100 and not 255
        "samples 1 2 3 4 0 1 1 9 5",  # sample format 9
        "hello 1 2 3 4 0 0 0 1 414243 - 1 1 0 1 0x3f800000 0x00000000",  # block period 0
    ]
    assert _run(vector_main, bad) == ["-", "-", "-"]
