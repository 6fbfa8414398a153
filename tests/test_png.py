import struct
import zlib

import numpy as np
import pytest
from conftest import require_module

from edge.png import encode_png, write_png


def decode_png(data: bytes) -> np.ndarray:
    """Independent minimal decoder for what encode_png writes: checks every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, chunks = 8, []
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        payload = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + payload), kind
        chunks.append((kind, payload))
        position += 12 + length
    assert [kind for kind, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, compression, filtering, interlace) == (8, 0, 0, 0)
    channels = {0: 1, 2: 3, 6: 4}[colour]
    raw = zlib.decompress(b"".join(payload for kind, payload in chunks if kind == b"IDAT"))
    scanlines = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * channels)
    assert (scanlines[:, 0] == 0).all()  # filter type "none"
    return scanlines[:, 1:].reshape(height, width, channels)


@pytest.mark.parametrize("channels", [None, 3, 4])
def test_round_trip(channels):
    rng = np.random.default_rng(channels or 1)
    shape = (17, 23) if channels is None else (17, 23, channels)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    decoded = decode_png(encode_png(image))
    np.testing.assert_array_equal(decoded.reshape(shape), image)


def test_matplotlib_reads_it_back(tmp_path):
    image_module = require_module("matplotlib.image")
    image = np.random.default_rng(2).integers(0, 256, size=(31, 9, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    write_png(path, image)
    np.testing.assert_array_equal(np.rint(image_module.imread(path) * 255).astype(np.uint8), image)


def test_write_png_writes_encode_png_bytes(tmp_path):
    image = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    write_png(tmp_path / "a.png", image, compress_level=9)
    assert (tmp_path / "a.png").read_bytes() == encode_png(image, compress_level=9)


def test_compression_level_changes_size_not_pixels():
    image = np.tile(np.arange(224, dtype=np.uint8), (224, 1))[..., None].repeat(3, axis=-1)
    fast, small = encode_png(image, compress_level=0), encode_png(image, compress_level=9)
    assert len(small) < len(fast)
    np.testing.assert_array_equal(decode_png(fast), decode_png(small))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4, 3), dtype=np.float32),  # not uint8
        np.zeros((4, 4, 2), dtype=np.uint8),  # grey+alpha not supported
        np.zeros((4,), dtype=np.uint8),
        np.zeros((0, 4, 3), dtype=np.uint8),
    ],
)
def test_rejects_what_it_cannot_encode(image):
    with pytest.raises(ValueError, match="image must"):
        encode_png(image)


def test_rejects_bad_compress_level():
    with pytest.raises(ValueError, match="compress_level"):
        encode_png(np.zeros((2, 2), dtype=np.uint8), compress_level=10)
