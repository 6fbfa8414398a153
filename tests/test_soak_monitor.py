"""benchmarks/soak_monitor.py: window arithmetic, memory sampling, and the soak itself (slow)."""

import os

import pytest

from benchmarks.soak_monitor import expected_windows, format_report, read_memory_kib, soak


def test_expected_windows_tile_the_stream():
    assert expected_windows(7200, 10, 5) == 1439  # starts 0, 5, ..., 7190
    assert expected_windows(7200, 10, 10) == 720
    assert expected_windows(9.9, 10, 5) == 0
    assert expected_windows(10, 10, 5) == 1


def test_memory_of_a_running_process_and_of_a_gone_one():
    memory = read_memory_kib(os.getpid())
    assert 0 < memory["VmRSS"] <= memory["VmHWM"]
    assert read_memory_kib(2**22 + 12345) is None  # above the kernel's pid limit: never a process


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_soak_two_simulated_hours_every_window_accounted_for_and_memory_flat():
    # 30x: a window every 167 ms of wall time; the default bundle needs ~120 ms (benchmarks/RESULTS.md)
    report = soak(hours=2.0, speed=30.0, window=10.0, hop=5.0, progress=None)
    accounting = report["accounting"]
    print(format_report(report))
    assert report["returncode"] == 0, report["stderr_tail"]
    assert accounting["stored"] == accounting["expected"] == 1439
    # a window cut after the limit was reached waits in the queue when the monitor stops; none vanish
    assert accounting["windows_cut"] == accounting["stored"] + accounting["windows_waiting"]
    assert accounting["tiled"]
    assert accounting["skipped"] == 0  # this machine keeps up at 30x
    rss = [mib for _, _, mib in report["memory_mib"]["samples"]]
    half = len(rss) // 2
    assert max(rss[half:]) - max(rss[:half]) < 16.0  # no growth beyond allocator noise
