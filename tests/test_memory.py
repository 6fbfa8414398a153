"""edge.memory: large blocks freed while a model loads go back to the system; the threshold stays fixed after."""

import json
import subprocess
import sys
import textwrap

import pytest

# Run in a fresh interpreter: a long-lived test process's heap has free chunks large enough to serve
# any block, which glibc prefers to a new mapping whatever the threshold.
PROBE = textwrap.dedent("""
    import ctypes, json, sys
    import numpy as np
    from edge.memory import large_blocks_unmapped

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                         "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2

    def mmapped_while_alive(nbytes):
        before = libc.mallinfo2().hblkhd
        block = np.ones(nbytes, dtype=np.uint8)
        during = libc.mallinfo2().hblkhd - before
        del block
        return during

    found = {}
    if sys.argv[1] == "ours":
        with large_blocks_unmapped():
            found["256k_during_load"] = mmapped_while_alive(256 << 10)
    found["8m"] = mmapped_while_alive(8 << 20)
    found["6m_after_8m_freed"] = mmapped_while_alive(6 << 20)
    found["2m"] = mmapped_while_alive(2 << 20)
    print(json.dumps(found))
""")


def _probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "mallinfo2" in done.stderr:
        pytest.fail("this test needs glibc >= 2.33 (mallinfo2), as the device's Debian has")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_glibc_by_default_keeps_a_freed_large_block_on_the_heap():
    found = _probe("default")  # the behaviour edge.memory corrects
    assert found["8m"] >= 8 << 20 and found["6m_after_8m_freed"] == 0


def test_blocks_are_unmapped_during_a_load_and_above_4_mb_after():
    found = _probe("ours")
    assert found["256k_during_load"] >= 256 << 10
    assert found["8m"] >= 8 << 20
    assert found["6m_after_8m_freed"] >= 6 << 20  # the freed 8 MB block did not raise the threshold
    assert found["2m"] == 0  # a window's arrays reuse heap memory
