"""benchmarks.peak_rss: a child's own peak memory, not the parent's it was forked from."""

from __future__ import annotations

from benchmarks.bench import run_child


def test_peak_rss_is_the_childs_own():
    """The probe sees 300 MB allocated in the child, and not this (larger, torch-holding) process's memory."""
    small = run_child("timeit", ["-n1", "-r1", "pass"])
    large = run_child("timeit", ["-n1", "-r1", "b = b'x' * (300 * 2**20)"])
    assert small["returncode"] == large["returncode"] == 0
    assert small["peak_rss_mb"] < 100
    assert large["peak_rss_mb"] > small["peak_rss_mb"] + 290
