"""biomoe monitor: end to end through the serial path, clean shutdown, skipping, bad input."""

import dataclasses
import doctest
import itertools
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

import edge.bundle_images
from edge.bundle import FusionEntry, default_bundle_path, load_bundle, save_bundle
from edge.cli import main
from edge.errors import EdgeError
from edge.bundle_images import FusionImages, bundle_representation_spec
from edge.representations import RepresentationSpec, represent, to_model_input
from edge.storage import ResultStore
from firmware_bridge import SimulatedDevice, SimulatorParams
from firmware_bridge.protocol import ChannelSpec, DeviceConfig, FrameDecoder, Hello, SampleBlock, Status, encode_frame
from tests.bundle_copies import corrupt_bundle
from tests.hostile_link import HostileLink, frame_timestamp, rewrite_timestamp, wait_until_port_open

ROOT = Path(__file__).resolve().parents[1]
WINDOW, HOP = 10.0, 5.0
FLAT = ("RESP", 20.0, 40.0)
SATURATED = ("EDA", 40.0, 60.0)
DISCONNECT = (65.0, 70.0)
CONDITIONS = (f"flat:{FLAT[0]}:{FLAT[1]:g}-{FLAT[2]:g},saturate:{SATURATED[0]}:{SATURATED[1]:g}-{SATURATED[2]:g},"
              f"disconnect:{DISCONNECT[0]:g}-{DISCONNECT[1]:g}")


def _monitor_command(*options):
    return [sys.executable, "-m", "edge.cli", "monitor", *map(str, options)]


def _run_monitor(*options, timeout=60):
    return subprocess.run(_monitor_command(*options), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _deep_queue(tmp_path):
    """Settings whose window queue absorbs a busy test machine (skipping has its own test)."""
    path = tmp_path / "monitor.toml"
    path.write_text("[budgets]\nmax_pending_windows = 64\n")
    return path


def _lines(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _overlap(record, start, end):
    return max(0.0, min(record["end_time"], end) - max(record["start_time"], start))


def _flags(record, channel):
    return record["quality"][channel]["flags"]


# --------------------------------------------------------------------------- images


def _calibrating(records: list[dict]) -> list[dict]:
    """The leading records of a calibrated bundle's session (the patient's baseline); checked to lead."""
    windows = load_bundle(default_bundle_path()).calibration["windows"]
    calibrating = [r for r in records if r["skip_reason"] == "calibrating"]
    labelled = [i for i, r in enumerate(records) if r["label"] is not None]
    if labelled:  # a pain level only once the baseline is complete
        assert all(i < labelled[0] for i, r in enumerate(records) if r in calibrating)
        assert len(calibrating) >= windows
    return calibrating


def test_fusion_images_match_one_representation_per_entry():
    spec = RepresentationSpec(image_size=48)
    fusion = [FusionEntry("EDA", "scalogram"), FusionEntry("BVP", "spectrogram_psd"), FusionEntry("EDA", "waveform"),
              FusionEntry("BVP", "spectrogram_angle")]
    rows = np.random.default_rng(3).normal(size=(2, spec.n_samples)).cumsum(axis=1)
    signals = rows[[0, 1, 0, 1]]  # one row per fusion entry, as WindowProcessor hands them over
    images = FusionImages(fusion, spec)(signals)
    expected = [to_model_input(represent(signals[i], spec, [entry.representation], sampling_rate=100.0))[0]
                for i, entry in enumerate(fusion)]
    assert images.dtype == np.float32 and images.shape == (4, 3, 48, 48)
    np.testing.assert_array_equal(images, np.stack(expected))
    with pytest.raises(ValueError, match=r"shape \(4, 1000\)"):
        FusionImages(fusion, spec)(rows)


def test_the_default_bundle_carries_representation_settings_for_its_signals():
    bundle = load_bundle(default_bundle_path())
    spec = bundle_representation_spec(bundle)
    assert (spec.sampling_rate, spec.window_seconds, spec.image_size) == (100.0, 10.0, 224)
    assert spec.stft_fmax_hz == 10.0
    assert bundle_representation_spec(bundle, window_seconds=5.0).n_samples == 500
    with pytest.raises(EdgeError, match="window_seconds = 1 does not suit"):
        bundle_representation_spec(bundle, window_seconds=1.0)  # shorter than one STFT segment
    broken = dataclasses.replace(bundle, representation_spec={**bundle.representation_spec, "image_size": 112})
    with pytest.raises(EdgeError, match="image_size = 112 contradicts the bundle's 224"):
        bundle_representation_spec(broken)


# --------------------------------------------------------------------------- end to end


def test_simulated_hub_with_faults_end_to_end(tmp_path):
    """Simulator on a pty -> biomoe monitor for N windows: N lines, N rows, flags where the faults were."""
    n_windows = 18  # windows start every 5 s: the last one is [85, 95)
    database = tmp_path / "results.sqlite"
    done = _run_monitor("--simulate", "--speed", 20, "--windows", n_windows, "--window", WINDOW, "--hop", HOP,
                        "--conditions", CONDITIONS, "--db", database, "--config", _deep_queue(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    placeholder = load_bundle(default_bundle_path()).placeholder
    assert ("PLACEHOLDER MODEL" in done.stderr) == placeholder
    records = _lines(done.stdout)
    assert len(records) == n_windows
    with ResultStore(database, readonly=True) as store:
        assert store.count() == n_windows
        stored = store.windows()
        links = [event["detail"]["kind"] for event in store.events("link")]
        summary = store.events("summary")[-1]["detail"]
    assert [r.to_dict() | {"session_id": None} for r in stored] == [r | {"session_id": None} for r in records]
    assert [r["window_index"] for r in records] == list(range(n_windows))
    assert [r["start_time"] for r in records] == [HOP * i for i in range(n_windows)]

    calibrating = _calibrating(records)
    for record in records:
        assert record["placeholder"] == placeholder
        if record in calibrating:  # learning the patient's baseline: no pain level yet
            assert record["probabilities"] is None and record["label"] is None
            continue
        assert not record["skipped"]
        assert sum(record["probabilities"].values()) == pytest.approx(1.0)
        assert sum(record["smoothed_probabilities"].values()) == pytest.approx(1.0)
        assert set(record["latency_ms"]) >= {"quality", "represent", "infer", "smooth", "total", "queue"}
        flat = _overlap(record, *FLAT[1:])
        saturated = _overlap(record, *SATURATED[1:])
        down = _overlap(record, *DISCONNECT)
        if flat == WINDOW:  # held for the whole window: longer than RESP's 8 s limit
            assert "flat_line" in _flags(record, "RESP")
        elif flat == 0:
            assert "flat_line" not in _flags(record, "RESP")
        # The device flags saturation in its status frames for every window it touches.
        assert ("saturation" in _flags(record, "EDA")) == (saturated > 0), record
        if down >= 2.0:  # > 10 % of the window lost on every channel
            assert all("missing" in _flags(record, name) for name in record["quality"]), record
        # Away from the faults (reconnecting takes a moment: 5 s of margin) every channel is fine.
        if flat == saturated == _overlap(record, DISCONNECT[0], DISCONNECT[1] + 5.0) == 0:
            assert all(v["ok"] for v in record["quality"].values()), record
    assert links[:3] == ["connected", "disconnected", "connected"]
    assert summary["windows_written"] == summary["windows_processed"] == n_windows
    assert summary["windows_skipped"] == 0
    assert summary["samples_lost"]["EDA"] >= 5 * 100  # the five seconds of the disconnection

    exported = tmp_path / "out.csv"
    assert main(["history", str(database), "--csv", str(exported)]) == 0
    assert len(exported.read_text().splitlines()) == n_windows + 1


@pytest.mark.timeout(120)  # the readline below has no timeout of its own: a monitor that prints nothing fails here
def test_sigterm_commits_every_printed_window(tmp_path):
    database = tmp_path / "results.sqlite"
    process = subprocess.Popen(_monitor_command("--simulate", "--speed", 20, "--hop", HOP, "--db", database),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = [process.stdout.readline() for _ in range(3)]
        process.send_signal(signal.SIGTERM)
        rest, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    records = _lines("".join(printed) + rest)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    with ResultStore(database, readonly=True) as store:
        assert store.count() == len(records) >= 3
        summary = store.events("summary")[-1]["detail"]
    assert summary["stopped_by"] == "SIGTERM"
    assert summary["windows_written"] == len(records)
    assert [r["window_index"] for r in records] == list(range(len(records)))


def test_falling_behind_skips_windows_explicitly_and_accounts_for_all(tmp_path, capsys):
    """Windows every 10 ms of wall time (hop 0.5 s at 50x) outrun the processor: the oldest waiting
    windows are stored as skipped, in order, and nothing queues up."""
    database = tmp_path / "results.sqlite"
    assert main(["monitor", "--simulate", "--speed", "50", "--hop", "0.5", "--windows", "60",
                 "--db", str(database)]) == 0
    records = _lines(capsys.readouterr().out)
    assert len(records) == 60
    assert [r["window_index"] for r in records] == list(range(60))
    calibrating = _calibrating(records)
    skipped = [r for r in records if r["skipped"] and r not in calibrating]
    assert skipped and len(skipped) < 60
    assert all(r["skip_reason"] == "behind" and r["probabilities"] is None for r in skipped)
    with ResultStore(database, readonly=True) as store:
        assert store.count(skipped=True) == len(skipped) + len(calibrating)
        summary = store.events("summary")[-1]["detail"]
    assert summary["windows_skipped"] == len(skipped)
    assert summary["windows_cut"] == summary["windows_written"] + summary["windows_waiting"]


def test_monitor_reads_a_device_on_a_pty_given_by_port(tmp_path):
    """The real --port path: a SimulatedDevice on its own pty sampling at 200 Hz (resampled to the
    bundle's 100 Hz) and flagging a lead off on BVP."""
    link = tmp_path / "ttyBIOMOE"
    device = SimulatedDevice(SimulatorParams(link=str(link), speed=20, seed=5, signal_rate_hz=200.0,
                                             conditions=["leadoff:BVP:0-100000"]))
    database = tmp_path / "results.sqlite"
    try:
        device.open()
        device.start()
        done = _run_monitor("--port", link, "--windows", 4, "--hop", HOP, "--db", database,
                            "--config", _deep_queue(tmp_path))
    finally:
        device.close()
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    records = _lines(done.stdout)
    assert len(records) == 4
    for record in records:
        assert _flags(record, "BVP") == ["lead_off"]
        assert all(record["quality"][name]["ok"] for name in ("EDA", "RESP", "SpO2"))
    with ResultStore(database, readonly=True) as store:
        assert store.count() == 4
        info = store.sessions()[-1]["info"]
    assert info["source"] == f"port {link}"
    assert info["device_channels"]["EDA"] == [200.0, "uS"] and info["device_channels"]["SpO2"] == [1.0, "%"]


def test_a_device_restart_starts_the_windows_again(tmp_path, capsys):
    database = tmp_path / "results.sqlite"
    assert main(["monitor", "--simulate", "--speed", "20", "--hop", "5", "--windows", "8",
                 "--conditions", "reboot:30-32", "--db", str(database), "--config", str(_deep_queue(tmp_path))]) == 0
    records = _lines(capsys.readouterr().out)
    assert [r["window_index"] for r in records] == list(range(8))
    starts = [r["start_time"] for r in records]
    restart = next(i for i in range(1, 8) if starts[i] < starts[i - 1])
    assert starts[:restart] == [5.0 * i for i in range(restart)]  # the first boot's clock
    assert starts[restart:] == [5.0 * i for i in range(8 - restart)]  # the new boot's clock starts at 0
    calibrating = _calibrating(records)
    assert all(all(q["ok"] for q in r["quality"].values()) for r in records)
    assert all(not r["skipped"] for r in records if r not in calibrating)
    with ResultStore(database, readonly=True) as store:
        assert len(store.events("device_restart")) == 1


def _lines_as_they_come(stream):
    """The lines of a text stream, in a list a background thread fills as they arrive."""
    lines = []

    def read():
        for line in iter(stream.readline, ""):
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _stored_as_printed(database, printed):
    """The rows of the database are exactly the printed JSON lines, in order."""
    records = _lines("".join(printed))
    with ResultStore(database, readonly=True) as store:
        assert [r.to_dict() for r in store.windows()] == records
    return records


def test_a_database_locked_longer_than_the_queue_lasts_loses_no_window(tmp_path):
    """Another program holds the write lock for 12 s (SQLite alone gave up after 10 s) while windows keep
    coming every 0.5 s into a queue of 2: the monitor warns, waits, and stores every window in order."""
    database = tmp_path / "results.sqlite"
    process = subprocess.Popen(_monitor_command("--simulate", "--speed", 10, "--hop", HOP, "--windows", 30,
                                                "--db", database),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed, errors = _lines_as_they_come(process.stdout), _lines_as_they_come(process.stderr)
        _wait_for(lambda: len(printed) >= 2)
        locker = sqlite3.connect(database, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        _wait_for(lambda: any("locked" in line for line in errors))
        time.sleep(12)
        locker.execute("ROLLBACK")
        locker.close()
        assert process.wait(timeout=60) == 0, "".join(errors)
    finally:
        process.kill()
    stderr = "".join(errors)
    assert "Traceback" not in stderr
    assert len([line for line in errors if "is locked by another program" in line]) == 1
    assert re.search(f"results database {re.escape(str(database))} is locked by another program; "
                     r"\d+ window\(s\) kept in memory, retrying", stderr)
    assert "results database writable again" in stderr
    records = _stored_as_printed(database, printed)
    assert [r["window_index"] for r in records] == list(range(30))
    skipped = [r for r in records if r["skipped"] and r not in _calibrating(records)]
    assert len(skipped) > 2 and {r["skip_reason"] for r in skipped} == {"database unavailable"}


def test_a_disk_that_refuses_writes_is_one_line_and_the_monitor_carries_on(tmp_path):
    """The database's files may not grow past 128 kB (a write fails inside COMMIT, as on a full disk) until
    the limit is lifted: one clear line, no traceback, then every window stored in order, the file intact."""
    database = tmp_path / "results.sqlite"
    limit = 128 * 1024
    process = subprocess.Popen(
        _monitor_command("--simulate", "--speed", 10, "--hop", HOP, "--windows", 20, "--db", database,
                         "--config", _deep_queue(tmp_path)),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY)),
    )
    try:
        printed, errors = _lines_as_they_come(process.stdout), _lines_as_they_come(process.stderr)
        _wait_for(lambda: any("retrying" in line for line in errors))
        time.sleep(2)  # it keeps retrying
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        assert process.wait(timeout=60) == 0, "".join(errors)
    finally:
        process.kill()
    stderr = "".join(errors)
    assert "Traceback" not in stderr and "rollback" not in stderr
    refused = [line for line in errors if "retrying" in line]
    assert len(refused) == 1
    assert re.fullmatch(f"biomoe monitor: cannot write results database {re.escape(str(database))} "
                        r"\(disk I/O error\); \d+ window\(s\) kept in memory, retrying\n", refused[0])
    records = _stored_as_printed(database, printed)
    assert [r["window_index"] for r in records] == list(range(20))
    connection = sqlite3.connect(database)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()


def test_a_device_description_windows_cannot_be_cut_from_is_refused_and_a_sane_one_taken(tmp_path):
    """The device first says its channels run at 1 MHz (block_period_us = 1): one line, and the monitor
    keeps listening until the same boot describes itself sanely."""
    boot_id = 0x3A5
    absurd = DeviceConfig(1, tuple(ChannelSpec(name, "", 1) for name in ("EDA", "BVP", "RESP", "SpO2")))
    link = HostileLink()
    device = SimulatedDevice(SimulatorParams(speed=20, boot_id=boot_id, seed=2), sink=link)
    process = subprocess.Popen(_monitor_command("--port", link.path, "--windows", 3, "--hop", HOP,
                                                "--db", tmp_path / "results.sqlite"),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        errors = _lines_as_they_come(process.stderr)
        wait_until_port_open(process.pid, link.path)
        while not any("refusing the device's description" in line for line in errors):
            assert process.poll() is None, "".join(errors)
            link.send(encode_frame(Hello(1, boot_id, 500, 0, 0, absurd)))
            time.sleep(0.2)
        device.open()
        device.start()
        stdout, _ = process.communicate(timeout=60)
    finally:
        process.kill()
        device.close()
        link.close()
    stderr = "".join(errors)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    refused = [line for line in errors if "refusing" in line]
    assert refused == ["biomoe monitor: refusing the device's description: sampling rate of channel 'EDA' must be "
                       "0.1 to 10000 Hz (a sample per window at least), got 1e+06; waiting for one windows can be "
                       "cut from\n"]
    assert [record["window_index"] for record in _lines(stdout)] == [0, 1, 2]


def _redescribed(change):
    """A HostileLink tamper through which the device describes itself as ``change(frame, config) -> config``
    says, hellos and sample blocks alike: a block keeps the samples of the channels left (a renamed one those at
    its place), linearly resampled to their samples per block and clipped to their raw range, after a hello when
    its description changed (as a board sends one); frames are numbered again."""
    decoder, seq, described = FrameDecoder(), itertools.count(), {}

    def tamper(wire):
        frames = []
        for frame in decoder.feed(wire):
            if isinstance(frame, Hello):
                frame = dataclasses.replace(frame, config=change(frame, frame.config))
                described["config"] = frame.config
            elif isinstance(frame, SampleBlock):
                config, raw = change(frame, frame.config), dict(zip(frame.config.channel_names, frame.samples))
                if config != described.get("config"):
                    frames.append(Hello(frame.device_id, frame.boot_id, 0, frame.timestamp_ms, frame.block_index,
                                        config))
                    described["config"] = config
                kept = [raw.get(c.name, frame.samples[i]) for i, c in enumerate(config.channels)]
                samples = tuple(np.clip(_resampled(values, c.samples_per_block), c.raw_min, c.raw_max)
                                .astype(values.dtype) for c, values in zip(config.channels, kept))
                frame = dataclasses.replace(frame, samples=samples, config=None)
            if isinstance(frame, (Hello, SampleBlock, Status)):
                frames.append(frame)
        return [encode_frame(dataclasses.replace(frame, seq=next(seq) & 0xFFFF)) for frame in frames]

    return tamper


def _resampled(values, n_samples):
    """``values`` read at ``n_samples`` evenly spaced times over the same span (a block at another rate)."""
    return np.interp(np.arange(n_samples) * len(values) / n_samples, np.arange(len(values)), values)


def _without(config, channel):
    return dataclasses.replace(config, channels=tuple(c for c in config.channels if c.name != channel))


def _monitor_from_the_start(tmp_path, tamper, n_windows, options=(), returncode=0, **device):
    """``biomoe monitor --port [options]`` reading a SimulatedDevice at 20x through ``HostileLink(tamper)``,
    started once the monitor listens (device time 0 starts window 0): its records, stderr and database; the
    monitor is checked to exit with ``returncode``."""
    link = HostileLink(tamper)
    simulated = SimulatedDevice(SimulatorParams(speed=20, **device), sink=link)
    database = tmp_path / "results.sqlite"
    process = subprocess.Popen(_monitor_command("--port", link.path, "--windows", n_windows, "--hop", HOP,
                                                "--db", database, "--config", _deep_queue(tmp_path), *options),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_port_open(process.pid, link.path)
        simulated.open()
        simulated.start()
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        simulated.close()
        link.close()
    assert process.returncode == returncode, stderr
    assert "Traceback" not in stderr
    return _lines(stdout), stderr, database


@pytest.mark.parametrize("block_ms", [2000, 10_000])
def test_long_sample_blocks_give_complete_windows(tmp_path, block_ms):
    """A block carries every channel, the windower takes them one after another: SpO2, last in the block,
    trails EDA by up to a block, and the monitor waits that long before it counts SpO2 missing."""
    records, stderr, _ = _monitor_from_the_start(tmp_path, None, 4, block_ms=block_ms)
    assert len(records) == 4
    assert all(verdict["ok"] for record in records for verdict in record["quality"].values()), records


UNPLUGGED = (20.0, 40.0)
BOOT = 0x51


@pytest.mark.parametrize("unplugged", ["same boot", "after a reboot"])
def test_a_sensor_unplugged_mid_session_is_missing_until_it_is_back(tmp_path, unplugged):
    """The board describes itself without SpO2 (a probe unplugged), in the same boot from 20 to 40 s, or from
    a reboot at 30 s on: windows go on, SpO2 missing in them, said on one line and stored; back when listed."""
    if unplugged == "same boot":
        def change(frame, config):
            return _without(config, "SpO2") if UNPLUGGED[0] <= frame.timestamp_ms / 1000 < UNPLUGGED[1] else config
        conditions = []
    else:
        def change(frame, config):
            return _without(config, "SpO2") if frame.boot_id != BOOT else config
        conditions = ["reboot:30-31"]
    records, stderr, database = _monitor_from_the_start(tmp_path, _redescribed(change), 12, boot_id=BOOT,
                                                        conditions=conditions)
    assert len(records) == 12
    restart = next((i for i in range(1, 12) if records[i]["start_time"] < records[i - 1]["start_time"]), 12)
    for i, record in enumerate(records):
        if unplugged == "same boot":
            gone = _overlap(record, *UNPLUGGED) > 0
        else:
            gone = i >= restart
        assert _flags(record, "SpO2") == (["missing"] if gone else []), record
        assert all(record["quality"][name]["ok"] for name in ("EDA", "BVP", "RESP")), record
    stopped = [line for line in stderr.splitlines() if "stopped sending" in line]
    assert stopped == ["biomoe monitor: the device stopped sending SpO2 (a sensor unplugged?); windows carry it as "
                       "missing until it is back"]
    with ResultStore(database, readonly=True) as store:
        assert [e["detail"]["channels"] for e in store.events("channels_stopped")] == [["SpO2"]]
        resumed = [e["detail"]["channels"] for e in store.events("channels_resumed")]
    assert resumed == ([["SpO2"]] if unplugged == "same boot" else [])
    if unplugged == "after a reboot":
        assert 0 < restart < 12


def test_a_rate_change_mid_session_keeps_the_windows_going(tmp_path):
    """From 32 s on the board (same boot, block indices going on) sends EDA at 250 Hz and BVP at 50 Hz instead
    of 100 Hz: one warning and a stored event; the windows go on on the same grid, window_index counting on
    (it started again at 0, and the windows across the change were lost), every window whole."""
    def change(frame, config):
        per_block = {"EDA": 250, "BVP": 50} if frame.timestamp_ms >= 32_000 else {}
        return dataclasses.replace(config, channels=tuple(
            dataclasses.replace(c, samples_per_block=per_block.get(c.name, c.samples_per_block))
            for c in config.channels))
    records, stderr, database = _monitor_from_the_start(tmp_path, _redescribed(change), 10)
    assert [r["start_time"] for r in records] == [HOP * i for i in range(10)]
    assert all(verdict["ok"] for record in records for verdict in record["quality"].values()), records
    assert [line for line in stderr.splitlines() if "sampling rate" in line] == [
        "biomoe monitor: the device changed the sampling rate of EDA from 100 to 250 Hz, BVP from 100 to 50 Hz; "
        "the windows go on, resampled to the bundle's 100 Hz"]
    with ResultStore(database, readonly=True) as store:
        assert [w.window_index for w in store.windows()] == list(range(10))
        assert [e["detail"]["channels"] for e in store.events("rate_change")] == [
            {"EDA": {"from_hz": 100.0, "to_hz": 250.0}, "BVP": {"from_hz": 100.0, "to_hz": 50.0}}]
        summary = store.events("summary")[-1]["detail"]
    assert summary["rate_changes"] == 1
    assert not any(summary["samples_dropped"].values()) and not any(summary["samples_lost"].values())


def test_a_channel_clipped_at_the_adc_range_the_device_announces_is_saturated(tmp_path):
    """The board's BVP ADC spans raw -300..300 (0.15 a.u.) and clips the pulse wave without raising its
    saturation flag: every window flags BVP, and only BVP, saturated."""
    def change(frame, config):
        return dataclasses.replace(config, channels=tuple(
            dataclasses.replace(c, raw_min=-300, raw_max=300) if c.name == "BVP" else c for c in config.channels))
    records, stderr, _ = _monitor_from_the_start(tmp_path, _redescribed(change), 3)
    assert len(records) == 3
    for record in records:
        assert "saturation" in _flags(record, "BVP") and record["quality"]["BVP"]["saturated"] > 0.1, record
        assert all(record["quality"][name]["ok"] for name in ("EDA", "RESP", "SpO2")), record


#: A board from another maker: ``channel -> (its ChannelSpec fields, protocol value -> its value)``: skin
#: resistance in kOhm (0.05 kOhm a step from 0), a pulse it calls PPG, RSP, SpO2 as a ratio.
OWN_WORDS = {"EDA": ({"name": "GSR", "unit": "kOhm", "scale": 0.05, "offset": 0.0, "raw_min": 0}, lambda us: 1e3 / us),
             "BVP": ({"name": "PPG"}, None), "RESP": ({"name": "RSP"}, None),
             "SpO2": ({"name": "SPO2", "unit": "ratio", "scale": 1e-4}, lambda percent: percent / 100)}


def _in_own_words(words):
    """A HostileLink tamper through which the simulated board describes its channels as ``words`` says, every
    sample converted to its unit and encoded with its scaling; frames are numbered again."""
    decoder, seq = FrameDecoder(), itertools.count()

    def spoken(config):
        return dataclasses.replace(config, channels=tuple(dataclasses.replace(c, **words.get(c.name, ({},))[0])
                                                          for c in config.channels))

    def tamper(wire):
        frames = []
        for frame in decoder.feed(wire):
            if isinstance(frame, Hello):
                frame = dataclasses.replace(frame, config=spoken(frame.config))
            elif isinstance(frame, SampleBlock):
                converted = ((words.get(ours.name, ({}, None))[1] or (lambda x: x))(ours.to_physical(raw))
                             for ours, raw in zip(frame.config.channels, frame.samples))
                samples = tuple(theirs.to_raw(values) for theirs, values in zip(spoken(frame.config).channels,
                                                                                converted))
                frame = dataclasses.replace(frame, samples=samples, config=None)
            if isinstance(frame, (Hello, SampleBlock, Status)):
                frames.append(encode_frame(dataclasses.replace(frame, seq=next(seq) & 0xFFFF)))
        return frames

    return tamper


def test_a_board_in_its_own_words_is_read_as_the_protocol_s_channels(tmp_path):
    """GSR in kOhm, PPG, RSP and SpO2 as a ratio (refused before: 'needs EDA, BVP, RESP, SpO2, which the device
    does not send'): one line says how each is read, and the windows equal those of the same board in uS and %."""
    (tmp_path / "uS").mkdir()
    calibrate = ("--calibration-windows", 1)
    reference, _, _ = _monitor_from_the_start(tmp_path / "uS", None, 3, calibrate)
    records, stderr, database = _monitor_from_the_start(tmp_path, _in_own_words(OWN_WORDS), 3, calibrate)
    assert [line for line in stderr.splitlines() if "is read as" in line] == [
        "biomoe monitor: the device's GSR (kOhm) is read as EDA in uS (1/R); the device's PPG (a.u.) is read as BVP "
        "in a.u.; the device's RSP (a.u.) is read as RESP in a.u.; the device's SPO2 (ratio) is read as SpO2 in % "
        "(x 100)"]
    assert len(records) == len(reference) == 3
    for theirs, ours in zip(records, reference):
        assert theirs["label"] == ours["label"]
        for name, verdict in theirs["quality"].items():
            assert verdict["ok"], theirs
            assert verdict["std"] == pytest.approx(ours["quality"][name]["std"], rel=0.01, abs=1e-4), name
        if ours["probabilities"] is not None:
            assert theirs["probabilities"] == pytest.approx(ours["probabilities"], abs=0.05)
    with ResultStore(database, readonly=True) as store:
        info = store.sessions()[-1]["info"]
        read = [event["detail"]["channels"] for event in store.events("channels_read")]
    assert info["device_channels"]["GSR"] == [100.0, "kOhm"]
    assert info["channels_read"]["EDA"] == read[0]["EDA"] == {
        "announced": {"name": "GSR", "unit": "kOhm"}, "unit": "uS", "conversion": "1/R", "rate_hz": 100.0}
    assert info["channels_read"]["SpO2"]["announced"] == {"name": "SPO2", "unit": "ratio"}


def _eda_in(unit, name="EDA", factor=1.0):
    """A :func:`_redescribed` change: EDA announced as ``name`` in ``unit``, its scaling times ``factor``."""
    def change(config):
        return dataclasses.replace(config, channels=tuple(
            dataclasses.replace(c, name=name, unit=unit, scale=c.scale * factor, offset=c.offset * factor)
            if c.name == "EDA" else c for c in config.channels))
    return change


def test_a_unit_that_cannot_be_converted_is_refused_at_start(tmp_path):
    """EDA announced in mV (read before as if in uS, windows and labels as usual): one line, exit 1."""
    change = _eda_in("mV")
    records, stderr, _ = _monitor_from_the_start(tmp_path, _redescribed(lambda frame, config: change(config)), 1,
                                                 returncode=1)
    assert records == []
    assert stderr.splitlines()[-1] == (
        f"biomoe monitor: error: bundle {load_bundle(default_bundle_path()).name} needs EDA, but the device's EDA is "
        "in 'mV', which is not a unit of EDA (us, umho, ns, ms, s, siemens, ohm, kohm, mohm); have the board "
        "announce it as firmware_bridge/PROTOCOL.md (section 3.1) says")


def test_mid_session_descriptions_are_read_the_same_way(tmp_path):
    """From 20 s the board announces EDA in mV (before: taken as uS), from 40 s as GSR in nS (before: 'stopped
    sending EDA'): EDA is missing from the windows over 20-40 s, one warning says why, and after 40 s it is
    read again, converted, said on one line and stored."""
    in_mv, in_ns = _eda_in("mV"), _eda_in("nS", "GSR", 1000.0)

    def change(frame, config):
        seconds = frame.timestamp_ms / 1000
        return config if seconds < 20 else in_mv(config) if seconds < 40 else in_ns(config)
    records, stderr, database = _monitor_from_the_start(tmp_path, _redescribed(change), 12)
    assert len(records) == 12
    for record in records:
        assert _flags(record, "EDA") == (["missing"] if _overlap(record, 20.0, 40.0) > 0 else []), record
    unit = "the device's EDA is in 'mV', which is not a unit of EDA (us, umho, ns, ms, s, siemens, ohm, kohm, mohm)"
    assert [line for line in stderr.splitlines() if "the device's" in line] == [
        f"biomoe monitor: {unit}; windows carry EDA as missing until the device describes it so it can be read",
        "biomoe monitor: the device's GSR (nS) is read as EDA in uS (x 0.001)"]
    with ResultStore(database, readonly=True) as store:
        stopped = [event["detail"] for event in store.events("channels_stopped")]
        resumed = [event["detail"]["channels"] for event in store.events("channels_resumed")]
        read = [event["detail"]["channels"]["EDA"] for event in store.events("channels_read")]
    assert [(detail["channels"], detail["unreadable"]) for detail in stopped] == [(["EDA"], {"EDA": unit})]
    assert resumed == [["EDA"]]
    assert read == [{"announced": {"name": "GSR", "unit": "nS"}, "unit": "uS", "conversion": "x 0.001",
                     "rate_hz": 100.0}]


def test_a_device_clock_that_stops_does_not_stall_the_windows(tmp_path):
    """From 30 s on the board stamps every frame 30 s while its blocks keep coming: one warning, and the
    windows go on, contiguous, placed by the blocks' sample index; nothing is dropped, and a lead-off
    the board flags meanwhile lands on its window."""
    link = HostileLink(lambda wire: [rewrite_timestamp(wire, min(frame_timestamp(wire), 30_000))])
    device = SimulatedDevice(SimulatorParams(speed=20, seed=3, conditions=["leadoff:BVP:50-60"]), sink=link)
    database = tmp_path / "results.sqlite"
    process = subprocess.Popen(_monitor_command("--port", link.path, "--windows", 8, "--db", database,
                                                "--config", _deep_queue(tmp_path)),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed, errors = _lines_as_they_come(process.stdout), _lines_as_they_come(process.stderr)
        wait_until_port_open(process.pid, link.path)
        device.open()
        device.start()
        assert process.wait(timeout=90) == 0, "".join(errors)
    finally:
        process.kill()
        device.close()
        link.close()
    assert "Traceback" not in "".join(errors)
    records = _lines("".join(printed))
    assert [r["start_time"] for r in records] == [10.0 * i for i in range(8)]
    assert [r["start_time"] for r in records if "lead_off" in _flags(r, "BVP")] == [50.0]
    assert [line for line in errors if "device clock" in line] == [
        "biomoe monitor: the device clock stopped advancing (or went back) at 30.000 s while its blocks kept coming; "
        "placing them by their sample index\n"]
    with ResultStore(database, readonly=True) as store:
        assert len(store.events("clock_lag")) == 1
        summary = store.events("summary")[-1]["detail"]
    assert summary["clock_lags"] == 1 and summary["samples_retimed"]["EDA"] >= 40 * 100
    assert not any(summary["samples_dropped"].values()) and not any(summary["samples_lost"].values())


def test_a_board_clock_off_its_sample_count_shows_the_re_anchors_on_the_status_line(tmp_path):
    """The board stamps its frames 5 % fast against its sample count: the windows' timeline moves to its clock
    every few seconds, counted on the status line once non-zero, as stored with each status and the summary."""
    def fast_clock(wire):
        return [rewrite_timestamp(wire, round(frame_timestamp(wire) * 1.05))]
    records, stderr, database = _monitor_from_the_start(tmp_path, fast_clock, 6, options=("--status-every", 0.2))
    assert all(verdict["ok"] for record in records for verdict in record["quality"].values()), records
    shown = [int(n) for n in re.findall(r"; windows re-anchored to the device clock (\d+) time\(s\) \(sample clock "
                                        r"off its rate\);", stderr)]
    with ResultStore(database, readonly=True) as store:
        stored = [event["detail"]["reanchors"] for event in store.events("status")]
        summary = store.events("summary")[-1]["detail"]
    assert shown and shown == [n for n in stored if n]
    assert summary["reanchors"] >= shown[-1]


def test_an_open_link_without_data_is_reported_stored_and_recovers(tmp_path):
    """The board streams 35 s, then half a frame and nothing while the port stays open: one warning, a stored
    link event, 'no data' on the status line; when a board streams again the monitor says so and carries on."""
    link = HostileLink()
    first = SimulatedDevice(SimulatorParams(speed=20, seed=3, duration_s=35), sink=link)
    second = SimulatedDevice(SimulatorParams(speed=20, seed=4), sink=link)
    database = tmp_path / "results.sqlite"
    process = subprocess.Popen(_monitor_command("--port", link.path, "--windows", 5, "--stale-after", 1,
                                                "--status-every", 0.5, "--db", database,
                                                "--config", _deep_queue(tmp_path)),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed, errors = _lines_as_they_come(process.stdout), _lines_as_they_come(process.stderr)
        wait_until_port_open(process.pid, link.path)
        first.open()
        first.start()
        first.wait()
        link.send(encode_frame(Status(1, 7, 0, 0, 3900, 80))[:9])  # half a frame, then silence
        _wait_for(lambda: any("link no data for" in line for line in errors))
        assert len(_lines("".join(printed))) == 3
        second.open()
        second.start()
        assert process.wait(timeout=60) == 0, "".join(errors)
    finally:
        process.kill()
        first.close()
        second.close()
        link.close()
    stderr = "".join(errors)
    assert "Traceback" not in stderr
    silent = [line for line in errors if "sample data" in line]
    assert len(silent) == 2
    assert re.fullmatch(f"biomoe monitor: no sample data from {re.escape(link.path)} for 1 s although the port is "
                        "open; is the sensor board streaming\\?\n", silent[0])
    assert re.fullmatch(f"biomoe monitor: sample data from {re.escape(link.path)} again after \\d+ s without\n",
                        silent[1])
    assert len(_lines("".join(printed))) == 5
    with ResultStore(database, readonly=True) as store:
        links = [event["detail"]["kind"] for event in store.events("link")]
    assert links == ["connected", "no_data", "data_resumed"]


# --------------------------------------------------------------------------- bad input


def _bundle_needing_ecg(tmp_path):
    source = load_bundle(default_bundle_path())
    manifest = {k: v for k, v in source.manifest.items() if k != "files"}
    manifest["channels"] = [*manifest["channels"], "ECG"]
    return save_bundle(tmp_path / "ecg", manifest, {name: source.path / name for name in source.files}).path


def _edited_bundle(tmp_path, name, edit):
    """A copy of the default bundle whose manifest is the text ``edit(manifest dict, folder)`` returns."""
    folder = Path(shutil.copytree(default_bundle_path(), tmp_path / name))
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(edit(manifest, folder))
    return folder


def _more_labels_than_the_head_scores(manifest, folder):
    manifest["labels"] = manifest["labels"] + ["Unbearable Pain"]
    del manifest["graphs"]["head"]["outputs"][0]["shape"]
    return json.dumps(manifest)


def _fewer_images_than_the_head_takes(manifest, folder):
    manifest["fusion"] = manifest["fusion"][:-1]
    manifest["graphs"]["head"]["inputs"][0]["shape"][1] -= 1
    return json.dumps(manifest)


def _a_head_outside_the_bundle(manifest, folder):
    outside = folder.parent / "elsewhere"
    outside.mkdir()
    head = manifest["graphs"]["head"]["file"]
    shutil.move(folder / head, outside / head)
    (folder / head).symlink_to(outside / head)
    return json.dumps(manifest)


def _bundle_case(name, edit, message):
    """A bad-input case: a bundle the monitor must refuse before it reads the device or stores anything
    (were it taken, one window at 20x would end the run with status 0)."""
    def options(tmp_path, stack):
        return ["--simulate", "--speed", "20", "--windows", "1", "--bundle", _edited_bundle(tmp_path, name, edit)]
    return options, message


def _config_file(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('simulate = true\nthreads = 0\n')
    return path


def _silent_port(stack):
    """A pseudo-terminal nobody writes to."""
    master, slave = os.openpty()
    stack.callback(os.close, master)
    stack.callback(os.close, slave)
    return os.ttyname(slave)


# case -> (options(tmp_path, exit_stack), pattern the error line must match)
BAD_INPUTS = {
    "missing bundle": (
        lambda tmp, stack: ["--simulate", "--bundle", tmp / "nowhere"], "bundle folder .*nowhere not found"),
    "corrupt bundle": (
        lambda tmp, stack: ["--simulate", "--bundle", corrupt_bundle(tmp)],
        "checksum mismatch for \\S+\\.(onnx|tflite).*re-export the bundle or copy it again"),
    "channel not sent": (
        lambda tmp, stack: ["--simulate", "--bundle", _bundle_needing_ecg(tmp)],
        "needs channel\\(s\\) ECG, which the device does not send"),
    "unknown port": (
        lambda tmp, stack: ["--port", tmp / "ttyNOPE"], "cannot open serial port .*ttyNOPE.*plugged in"),
    "silent port": (
        lambda tmp, stack: ["--port", _silent_port(stack), "--connect-timeout", "0.5"],
        "no device description \\(hello frame\\) arrived .* within 0.5 s; is a device streaming"),
    "bad flag value": (
        lambda tmp, stack: ["--simulate", "--hop", "-1"], "option --hop: hop_seconds = -1.0 is not valid"),
    "bad config value": (
        lambda tmp, stack: ["--config", _config_file(tmp)], "threads = 0 is not valid; allowed: a whole"),
    "simulator flag alone": (
        lambda tmp, stack: ["--port", "/dev/ttyACM0", "--speed", "5"], "--speed applies to the simulated hub only"),
    "no source": (lambda tmp, stack: [], "no sensor port: pass --port PORT"),
    "bad schedule": (
        lambda tmp, stack: ["--simulate", "--conditions", "melt:EDA:1-2"], "condition 'melt:EDA:1-2' is not"),
    "bundle labels vs head": _bundle_case(
        "labels", _more_labels_than_the_head_scores,
        r"head\.(onnx|tflite) outputs 3 class scores but the manifest has 4 labels"),
    "bundle images vs head": _bundle_case(
        "images", _fewer_images_than_the_head_takes,
        r"head\.(onnx|tflite) has input shape \[(n|\?), 5, 192\] but the manifest says \[(n|1), 4, 192\]"),
    "bundle window 1e308": _bundle_case(
        "window", lambda manifest, folder: json.dumps({**manifest, "window_seconds": 1e308}),
        "'window_seconds' must be a number > 0 and at most 600, got 1e\\+308"),
    "bundle nested 200000 deep": _bundle_case(
        "deep", lambda manifest, folder: "[" * 200_000 + "]" * 200_000, "manifest.json is nested too deeply"),
    "bundle manifest of 2 MiB": _bundle_case(
        "huge", lambda manifest, folder: json.dumps({**manifest, "description": "x" * (2 << 20)}),
        "manifest.json is larger than"),
    "bundle file outside": _bundle_case(
        "outside", _a_head_outside_the_bundle, r"head\.(onnx|tflite) leads outside the bundle .* through a symlink"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_naming_the_problem(case, tmp_path, capsys):
    options, message = BAD_INPUTS[case]
    database = tmp_path / "results.sqlite"
    with ExitStack() as stack:
        code = main(["monitor", *map(str, options(tmp_path, stack)), "--db", str(database)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("biomoe monitor: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not database.exists()


@pytest.mark.parametrize("case", ["corrupt bundle", "unknown port"])
def test_bad_input_from_the_command_has_no_traceback(case, tmp_path):
    options, message = BAD_INPUTS[case]
    done = _run_monitor(*options(tmp_path, None), "--db", tmp_path / "results.sqlite", timeout=30)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("biomoe monitor: error: ")


def test_docstring_examples_run():
    results = doctest.testmod(edge.bundle_images)
    assert results.attempted > 0 and results.failed == 0


def test_self_check_runs_one_window_of_the_bundle_without_a_sensor(tmp_path):
    """Whatever the time budget (a slow board is for biomoe doctor to report, not an install failure)."""
    config = tmp_path / "monitor.toml"
    config.write_text("[budgets]\nwindow_ms = 0.001\n")
    done = _run_monitor("--self-check", "--config", config, "--db", tmp_path / "results.sqlite")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["ok", "bundle"] and "checksums pass" in lines[0]
    assert lines[1].split()[:2] == ["ok", "inference"] and "one synthetic window" in lines[1]
    assert not (tmp_path / "results.sqlite").exists()  # checks only: no session is stored


def test_self_check_fails_a_corrupt_bundle(tmp_path):
    done = _run_monitor("--self-check", "--bundle", corrupt_bundle(tmp_path))
    assert done.returncode == 1
    assert done.stdout.split()[:2] == ["FAIL", "bundle"] and "checksum mismatch" in done.stdout
