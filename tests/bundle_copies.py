"""Broken copies of the shipped bundle, for tests of what refuses them."""

import shutil
from pathlib import Path

from edge.bundle import default_bundle_path, load_bundle


def corrupt_bundle(tmp_path) -> Path:
    """A copy of the shipped bundle whose first model file has its last byte flipped (a checksum mismatch)."""
    copy = Path(shutil.copytree(default_bundle_path(), tmp_path / "corrupt"))
    graph = copy / sorted(load_bundle(copy).files)[0]
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF
    graph.write_bytes(bytes(data))
    return copy
