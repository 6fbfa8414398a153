"""benchmarks.budgets: the shipped budgets file and its checks."""

from __future__ import annotations

import platform

import pytest

from benchmarks.budgets import DEFAULT_BUDGETS, get_target, load_targets
from edge.errors import EdgeError


def test_default_budgets_cover_the_boards():
    targets = load_targets()
    assert {"rpi4", "rpi5", "rpi-zero-2w", "jetson-orin-nano", "dev-x86"} <= set(targets)
    assert targets["rpi-zero-2w"].peak_rss_mb < targets["rpi4"].peak_rss_mb  # 512 MB board
    assert all(target.window_ms < 5000 for target in targets.values())  # well under the 5 s hop
    assert targets["rpi4"].latency_factor() == (1.0 if platform.machine() == "aarch64" else 8.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "defines no [targets.NAME] table"),
        ('[targets.x]\nmachine = "x86_64"\nx86_slowdown = 1\nwindow_ms = -5', "'window_ms' must be a number > 0, got -5"),
        ("[targets.x]\nwindow_ms = 5", "'x86_slowdown' must be a number > 0, got None"),
        ("[targets", "cannot be read"),
    ],
)
def test_bad_budgets_file(tmp_path, text, message):
    path = tmp_path / "budgets.toml"
    path.write_text(text)
    with pytest.raises(EdgeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_targets(path)


def test_budgets_file_is_package_data():
    assert DEFAULT_BUDGETS.name == "budgets.toml" and DEFAULT_BUDGETS.is_file()


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(EdgeError, match=r"unknown target 'pi4'; known targets: rpi4, rpi5, rpi-zero-2w"):
        get_target("pi4")
