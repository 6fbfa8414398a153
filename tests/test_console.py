"""Output for people and programs: readable lines on a terminal, JSON lines into a pipe (edge.console)."""

import doctest
import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edge.console
from edge.bundle import default_bundle_path, load_bundle
from edge.console import WindowLines, device_clock, output_format, probability_bar
from edge.storage import ResultStore, WindowResult

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["No Pain", "Low Pain", "High Pain"]
OK = {"EDA": {"ok": True, "flags": []}, "RESP": {"ok": True, "flags": []}}
FLAT = {"EDA": {"ok": True, "flags": []}, "RESP": {"ok": False, "flags": ["flat_line"]}}


def _monitor(*options):
    return [sys.executable, "-m", "edge.cli", "monitor", *map(str, options)]


def _run_on_a_terminal(command, timeout=90.0):
    """Run ``command`` with its stdout on a pseudo-terminal; (exit status, what the terminal showed, stderr)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(command, cwd=ROOT, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))[1]
    finally:
        process.kill()
        os.close(master)
    return process.returncode, shown.decode("utf-8").replace("\r\n", "\n"), stderr.decode()


def _result(index, probabilities=None, quality=OK, skip_reason=None, placeholder=False):
    label = max(probabilities, key=probabilities.get) if probabilities else None
    return WindowResult(index, 10.0 * index, 10.0 * index + 10.0, 1.7e9, probabilities, label, probabilities, label,
                        quality, {"total": 1.0}, skipped=skip_reason is not None, skip_reason=skip_reason,
                        placeholder=placeholder)


# --------------------------------------------------------------------------- the choice of format


class _Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_a_terminal_gets_text_a_pipe_gets_json_lines_unless_asked():
    assert output_format(None, _Stream(True)) == "text"
    assert output_format(None, _Stream(False)) == "jsonl"
    assert output_format("jsonl", _Stream(True)) == "jsonl"
    assert output_format("text", _Stream(False)) == "text"
    assert output_format(None, object()) == "jsonl"  # no isatty at all


# --------------------------------------------------------------------------- the lines


def test_lines_are_aligned_and_say_level_probabilities_flags_and_losses():
    lost = [0]
    lines = WindowLines(LABELS, calibration_windows=2, lost_samples=lambda: lost[0])
    calibrating = [lines(_result(0, skip_reason="calibrating")),
                   lines(_result(1, quality=FLAT, skip_reason="calibrating")),
                   lines(_result(2, skip_reason="calibrating"))]
    header, first = calibrating[0].split("\n")
    assert header.split()[:3] == ["device", "time", "level"] and "High" in header and header.endswith("notes")
    assert re.match(r"^ +0:00:10  calibrating 1/2 \(learning the patient's rest baseline\)$", first)
    assert "calibrating 1/2 (window not counted)" in calibrating[1] and calibrating[1].endswith("RESP flat_line")
    assert "calibrating 2/2" in calibrating[2]
    lost[0] = 500
    labelled = lines(_result(3, {"No Pain": 0.1, "Low Pain": 0.25, "High Pain": 0.65}, quality=FLAT))
    assert labelled.split()[:3] == ["0:00:40", "High", "Pain"]
    assert " 10%" in labelled and " 25%" in labelled and " 65%" in labelled and "██████▊" not in labelled
    assert labelled.endswith("RESP flat_line, level held, 500 samples lost")
    quiet = lines(_result(4, {"No Pain": 1.0, "Low Pain": 0.0, "High Pain": 0.0}))
    assert "samples lost" not in quiet and "████████ 100%" in quiet  # losses only on the line after them
    skipped = lines(_result(5, skip_reason="behind"))
    assert "skipped" in skipped and "processing fell behind (1 so far)" in skipped
    # Columns line up: every bar starts under its class name in the header.
    column = header.index("Low")
    assert quiet[column - 1] == " " and quiet[column:column + 8].strip() == ""  # an empty Low bar at 0 %
    assert labelled.index(" 25%") < header.index("High") <= labelled.index(" 65%")


def test_channels_with_the_same_flags_are_named_together():
    missing = {name: {"ok": False, "flags": ["missing"]} for name in ("EDA", "BVP", "RESP")}
    lines = WindowLines(LABELS)
    assert lines.line(_result(0, {"No Pain": 1.0, "Low Pain": 0.0, "High Pain": 0.0}, quality=missing)).endswith(
        "all channels missing, level held")
    mixed = {**missing, "SpO2": {"ok": True, "flags": []}, "RESP": {"ok": False, "flags": ["flat_line"]}}
    assert lines.line(_result(1, skip_reason="calibrating", quality=mixed)).endswith("EDA BVP missing, RESP flat_line")


def test_a_new_baseline_counts_from_one_again():
    lines = WindowLines(LABELS, calibration_windows=2)
    lines(_result(0, skip_reason="calibrating"))
    lines(_result(1, {"No Pain": 1.0, "Low Pain": 0.0, "High Pain": 0.0}))
    assert "calibrating 1/2" in lines(_result(2, skip_reason="calibrating"))  # kill -USR1 calibrates again


def test_bars_without_block_characters_and_helpers():
    assert probability_bar(1.0) == "████████" and probability_bar(0.0) == " " * 8
    assert probability_bar(0.5, blocks=False) == "####...."
    assert probability_bar(float("nan")) == " " * 8
    assert device_clock(3725.2) == "1:02:05" and device_clock(float("inf")) == "-:--:--"
    lines = WindowLines(["Relaxed", "Relaxed too"], blocks=False)  # first words do not tell them apart
    assert "Relaxed too" in lines.header()
    placeholder = WindowLines(LABELS).line(_result(0, {"No Pain": 1.0, "Low Pain": 0.0, "High Pain": 0.0},
                                                   placeholder=True))
    assert placeholder.endswith("PLACEHOLDER model")


def test_an_ascii_terminal_gets_ascii_bars():
    class Ascii:
        encoding = "ascii"

    lines = WindowLines.for_stream(Ascii(), LABELS)
    text = lines(_result(0, {"No Pain": 0.5, "Low Pain": 0.5, "High Pain": 0.0}))
    text.encode("ascii")
    assert "####...." in text


def test_docstring_examples_run():
    results = doctest.testmod(edge.console)
    assert results.attempted > 0 and results.failed == 0


# --------------------------------------------------------------------------- biomoe monitor, end to end


def test_monitor_on_a_terminal_prints_readable_lines(tmp_path):
    code, shown, stderr = _run_on_a_terminal(
        _monitor("--simulate", "--windows", 3, "--speed", 20, "--db", tmp_path / "r.sqlite"))
    assert code == 0, stderr
    assert "Traceback" not in stderr
    lines = [line for line in shown.splitlines() if line.strip()]
    assert len(lines) == 4, shown  # a header and one line per window
    assert lines[0].split()[:3] == ["device", "time", "level"]
    assert "{" not in shown  # no JSON
    calibration = load_bundle(default_bundle_path()).calibration["windows"]
    for index, line in enumerate(lines[1:]):  # the shipped bundle learns the baseline first
        assert re.match(rf"^ +0:00:{10 * (index + 1)}  calibrating {index + 1}/{calibration} ", line), line


def test_monitor_into_a_pipe_prints_json_lines_equal_to_the_database_rows(tmp_path):
    database = tmp_path / "r.sqlite"
    done = subprocess.run(_monitor("--simulate", "--windows", 3, "--speed", 20, "--db", database), cwd=ROOT,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 3
    with ResultStore(database, readonly=True) as store:
        stored = [result.to_dict() for result in store.windows()]
    assert [row | {"session_id": None} for row in stored] == [row | {"session_id": None} for row in records]


@pytest.mark.parametrize("format_, json_expected", [("jsonl", True), ("text", False)])
def test_format_overrides_the_choice(tmp_path, format_, json_expected):
    done = subprocess.run(_monitor("--simulate", "--windows", 1, "--speed", 20, "--db", tmp_path / "r.sqlite",
                                   "--format", format_), cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert done.stdout.lstrip().startswith("{") == json_expected


def test_quiet_prints_nothing_on_a_terminal(tmp_path):
    code, shown, stderr = _run_on_a_terminal(
        _monitor("--simulate", "--windows", 1, "--speed", 20, "--db", tmp_path / "r.sqlite", "--quiet"))
    assert code == 0, stderr
    assert shown.strip() == ""
