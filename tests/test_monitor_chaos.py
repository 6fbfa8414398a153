"""Chaos: biomoe monitor on the simulated hub through a hostile link, a locked database and SIGKILL.

One run takes all of it at once: the first hello repeated after block 3, the
hello of block 10 held back until block 12 has passed, the device's block
counter jumping by 2**32 - 300 at block 30, and the database locked by another
program for longer than the window queue lasts. A second run on the same
database is killed with SIGKILL. Nothing may crash, be counted twice or be
lost without being counted.
"""

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge.config import BudgetConfig
from edge.storage import ResultStore
from firmware_bridge import SimulatedDevice, SimulatorParams
from firmware_bridge.protocol import FrameType
from tests.hostile_link import HostileLink, block_index, frame_type, rewrite_block_index, wait_until_port_open

ROOT = Path(__file__).resolve().parents[1]
JUMP, JUMP_AT = 2**32 - 300, 30  # from block 30 on, every index (and hello) is 2**32 - 300 higher
SPEED, STREAM_S, HOP_S, LOCK_S = 10, 80, 5, 3.0  # a window every 0.5 s into a queue of 2, locked for 3 s


class Chaos:
    """``tamper`` of the link: repeat the first hello, hold one back, jump the block counter."""

    def __init__(self):
        self.first_hello: bytes | None = None
        self.held_hello: bytes | None = None

    def __call__(self, wire: bytes) -> list[bytes]:
        kind, index = frame_type(wire), block_index(wire)
        if kind == FrameType.HELLO and self.first_hello is None:
            self.first_hello = wire
        if index is not None and index >= JUMP_AT:
            wire = rewrite_block_index(wire, JUMP)
        if kind == FrameType.HELLO and index == 10:
            self.held_hello = wire
            return []
        if kind == FrameType.SAMPLES and index == 3:
            return [wire, self.first_hello]
        if kind == FrameType.SAMPLES and index == 12:
            return [wire, self.held_hello]
        return [wire]


def _monitor(*options):
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "monitor", *map(str, options)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _collect(stream):
    lines = []
    thread = threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")), daemon=True)
    thread.start()
    return lines, thread


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_monitor_survives_a_hostile_link_a_locked_database_and_sigkill(tmp_path):
    database = tmp_path / "results.sqlite"
    budget_mib = BudgetConfig().memory_mb

    # Run 1: hostile link and a locked database, stopped with SIGTERM once the stream has ended.
    link = HostileLink(Chaos())
    device = SimulatedDevice(SimulatorParams(speed=SPEED, duration_s=STREAM_S, seed=13), sink=link)
    process = _monitor("--port", link.path, "--hop", HOP_S, "--db", database)
    try:
        (printed, _), (errors, stderr_done) = _collect(process.stdout), _collect(process.stderr)
        wait_until_port_open(process.pid, link.path)
        device.open()
        device.start()
        _wait_for(lambda: len(printed) >= 2)
        locker = sqlite3.connect(database, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        time.sleep(LOCK_S)
        locker.execute("ROLLBACK")
        locker.close()
        assert device.wait(timeout=60)
        time.sleep(1.0)  # the closing hello reaches the reader
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, "".join(errors)
        stderr_done.join(10)
    finally:
        process.kill()
        device.close()
        link.close()
    stderr = "".join(errors)
    assert "Traceback" not in stderr
    for warning in ("dropping a repeated hello of the current device session", "the device stream jumped",
                    "is locked by another program", "results database writable again"):
        assert sum(warning in line for line in errors) == 1, (warning, stderr)
    first_run = [json.loads(line) for line in printed]
    with ResultStore(database, readonly=True) as store:
        assert [r.to_dict() for r in store.windows()] == first_run  # every printed line is a row, in order
        summary = store.events("summary")[-1]["detail"]
        assert store.events("device_restart") == [] and len(store.events("resync")) == 1
    starts = [record["start_time"] for record in first_run]
    assert starts == sorted(set(starts)) and len(first_run) >= 10  # no window stored again
    assert "database unavailable" in {record["skip_reason"] for record in first_run}
    assert summary["device_restarts"] == 0 and summary["resyncs"] == 1
    assert summary["memory"]["peak_mb"] < budget_mib
    blocks_sent = device.stats.blocks_generated + JUMP  # what the device's block indices say it sent
    for spec in device.config.channels:
        name = spec.name
        assert summary["samples_delivered"][name] + summary["samples_lost"][name] == blocks_sent * spec.samples_per_block

    # Run 2: killed outright while it works.
    process = _monitor("--simulate", "--speed", 20, "--hop", HOP_S, "--db", database)
    try:
        printed, _ = _collect(process.stdout)
        _wait_for(lambda: len(printed) >= 2)
        peak_mib = _peak_rss_mib(process.pid)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        process.kill()
    assert peak_mib < budget_mib
    connection = sqlite3.connect(database)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        keys = connection.execute("SELECT session_id, window_index FROM windows").fetchall()
    finally:
        connection.close()
    assert len(keys) == len(set(keys))  # no row twice
    with ResultStore(database, readonly=True) as store:
        stored = [r.to_dict() for r in store.windows()]
    second_run = [json.loads(line) for line in printed if line.endswith("\n")]
    assert all(record in stored for record in second_run)
    assert stored[: len(first_run)] == first_run
