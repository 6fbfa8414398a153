"""glibc's allocator settings around a model load, so its temporary buffers go back to the system.

Loading an ONNX graph allocates and frees tens of MB (the parsed model,
weights dequantized and re-laid out). glibc serves large blocks with
``mmap`` until a freed one raises its threshold (up to 32 MB), after which
such blocks come from the heap and stay resident once freed. Measured with
the default bundle, ``biomoe monitor --simulate --windows 20``: peak RSS
157-169 MB with glibc's defaults, 143 MB when the threshold is held at
128 kB during the load and fixed at 4 MB afterwards (``python -m
benchmarks.peak_rss``). Above 4 MB the threshold lets a window's arrays reuse
heap memory instead of faulting in fresh pages for every image drawn.

Only glibc has these settings; on other C libraries nothing is changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

__all__ = ["LOAD_MMAP_THRESHOLD", "RUN_MMAP_THRESHOLD", "large_blocks_unmapped"]

#: glibc's ``mallopt`` parameter number (malloc.h).
_M_MMAP_THRESHOLD = -3
#: Blocks at least this large are mmap-ed while a model loads (glibc's initial value).
LOAD_MMAP_THRESHOLD = 128 * 1024
#: ... and afterwards: above a window's largest arrays, so they reuse heap memory.
RUN_MMAP_THRESHOLD = 4 * 1024 * 1024


def _glibc_mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (musl)
        return None
    return getattr(libc, "mallopt", None)


@contextlib.contextmanager
def large_blocks_unmapped():
    """Inside: blocks of 128 kB and more are returned to the system when freed; after: the 4 MB threshold."""
    mallopt = _glibc_mallopt()
    if mallopt is None:
        yield
        return
    mallopt(_M_MMAP_THRESHOLD, LOAD_MMAP_THRESHOLD)
    try:
        yield
    finally:
        mallopt(_M_MMAP_THRESHOLD, RUN_MMAP_THRESHOLD)
