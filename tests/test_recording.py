"""edge.recording: EDF+/BDF+ files of every delivered sample (``biomoe monitor --record``), read back by
pyedflib and MNE; gaps, restarts and windows as annotations; rotation; SIGKILL; disk budget."""

import datetime as dt
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mne
import numpy as np
import pyedflib
import pytest

import edge.monitor
import edge.recording.recorder as recorder_module
from edge.cli import main
from edge.errors import EdgeError
from edge.recording import EdfPlusWriter, EdfSignal, Recorder, bytes_per_hour
from edge.recording.history_export import export_edf
from edge.storage import ResultStore, WindowResult
from firmware_bridge import ChannelBlock, DeviceEvent, GapEvent
from firmware_bridge.protocol import ChannelSpec, DeviceConfig, SampleFormat
from firmware_bridge.simulator import generator_config

ROOT = Path(__file__).resolve().parents[1]


def _annotations(path):
    with pyedflib.EdfReader(str(path)) as reader:
        onsets, durations, texts = reader.readAnnotations()
    return list(zip(onsets.tolist(), durations.tolist(), texts.tolist()))


def _start(reader):
    """The file's first sample in wall time (pyedflib 0.1.42's getStartdatetime reads the 100 ns subsecond
    field as if it were in 1 us units, ten times too small)."""
    return reader.getStartdatetime().replace(microsecond=0) + dt.timedelta(microseconds=reader.starttime_subsecond / 10)


def _digital(path):
    with pyedflib.EdfReader(str(path)) as reader:
        return {label: reader.readSignal(i, digital=True) for i, label in enumerate(reader.getSignalLabels())}


@pytest.mark.parametrize("bdf", [False, True])
def test_writer_round_trip_through_pyedflib_and_mne(tmp_path, bdf):
    low, high = (-8_000_000, 8_000_000) if bdf else (-32768, 32767)
    signals = [EdfSignal("EDA", "uS", 50, -1.5, 30.25, low, high), EdfSignal("SpO2", "%", 1, 0.0, 327.67, 0, 32767)]
    path = tmp_path / ("a.bdf" if bdf else "a.edf")
    writer = EdfPlusWriter(path, signals, 0.5, dt.datetime(2026, 3, 1, 8, 30, 15), bdf=bdf)
    rng = np.random.default_rng(1)
    written = [(rng.integers(low, high + 1, 50), rng.integers(0, 32768, 1)) for _ in range(7)]
    for k, record in enumerate(written):
        writer.write_record(0.25 + 0.5 * k, record)
        writer.annotate(0.25 + 0.5 * k + 0.1, f"note {k}", 0.3)
    writer.annotate(0.25 + 3.5, "after the last record")  # no record with room follows: placed at close
    assert writer.close() == 0
    assert path.stat().st_size == writer.bytes_written
    with pyedflib.EdfReader(str(path)) as reader:
        assert reader.datarecords_in_file == 7 and reader.getSignalLabels() == ["EDA", "SpO2"]
        assert _start(reader) == dt.datetime(2026, 3, 1, 8, 30, 15, 250000)
        eda = reader.readSignal(0, digital=True)
        np.testing.assert_array_equal(eda, np.concatenate([r[0] for r in written]))
        np.testing.assert_allclose(reader.readSignal(0), signals[0].to_physical(eda), rtol=0, atol=1e-9)
        assert reader.getPhysicalDimension(1) == "%"
    notes = _annotations(path)
    assert [t for _, _, t in notes if t.startswith("note")] == [f"note {k}" for k in range(7)]
    assert all(o == pytest.approx(0.5 * k + 0.1) and d == pytest.approx(0.3)
               for k, (o, d, _) in enumerate(n for n in notes if n[2].startswith("note")))
    assert ("after the last record" in [t for _, _, t in notes])
    raw = (mne.io.read_raw_bdf if bdf else mne.io.read_raw_edf)(path, verbose="error")
    assert raw.n_times == 7 * 50 // 1 and len(raw.annotations) == 8


class _Spy(Recorder):
    """The real recorder, keeping what the monitor delivered to it."""

    instances: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.delivered = []
        _Spy.instances.append(self)

    def on_event(self, event):
        self.delivered.append(event)
        super().on_event(event)


def _delivered(recorder, channel):
    blocks = [e for e in recorder.delivered if isinstance(e, ChannelBlock) and e.channel == channel]
    return blocks


def test_monitor_records_a_disconnect_and_a_reboot(tmp_path, monkeypatch, capsys):
    """Three files (before the link loss, until the reboot, after it); every delivered sample in them,
    exactly; the gap, the restart and every stored window as annotations at their times."""
    monkeypatch.setattr(edge.monitor, "Recorder", _Spy)
    _Spy.instances.clear()
    folder, database = tmp_path / "rec", tmp_path / "results.sqlite"
    config = tmp_path / "monitor.toml"
    config.write_text("[budgets]\nmax_pending_windows = 64\n")
    assert main(["monitor", "--simulate", "--speed", "20", "--hop", "5", "--windows", "14", "--quiet",
                 "--conditions", "disconnect:22-25,reboot:45-47", "--record", str(folder),
                 "--db", str(database), "--config", str(config)]) == 0
    recorder = _Spy.instances[-1]
    files = recorder.files
    assert [p.name for p in files] == sorted(p.name for p in folder.iterdir()) and len(files) == 3
    # every sample the bridge delivered is in the files, in order, exactly (the last block may be incomplete)
    for channel in ("EDA", "BVP", "RESP", "SpO2"):
        delivered = np.concatenate([b.raw for b in _delivered(recorder, channel)])
        recorded = np.concatenate([_digital(p)[channel] for p in files])
        assert 0 <= len(delivered) - len(recorded) < 100
        np.testing.assert_array_equal(recorded, delivered[: len(recorded)])
    blocks = _delivered(recorder, "EDA")
    with pyedflib.EdfReader(str(files[0])) as reader:
        physical = reader.readSignal(0)
    np.testing.assert_allclose(physical, np.concatenate([b.samples for b in blocks])[: len(physical)], atol=1e-4)
    for path in files:
        raw = mne.io.read_raw_edf(path, verbose="error")
        assert raw.ch_names == ["EDA", "BVP", "RESP", "SpO2"] and raw.n_times % 100 == 0
    first, second, third = (_annotations(p) for p in files)
    first_length = len(_digital(files[0])["EDA"]) / 100
    gap = next(n for n in first if n[2].startswith("gap: link loss"))
    assert gap[0] == pytest.approx(first_length) and 2 <= gap[1] <= 6
    assert second[0][2].startswith("recording resumes after a gap of")
    lost = [e for e in recorder.delivered if isinstance(e, GapEvent)]
    assert lost and f"EDA {sum(g.n_samples for g in lost if g.channel == 'EDA')}" in gap[2]
    assert any(t.startswith("device restarted") for _, _, t in second)
    assert third[0][2].startswith("device restarted")
    # every stored window is an annotation of the file that holds its start, at its device time
    with ResultStore(database, readonly=True) as store:
        windows = [(w.window_index, w.start_time, w.end_time) for w in store.windows()]
    notes = {t.split(":")[0]: (o, d, path) for path in files for o, d, t in _annotations(path)
             if t.startswith("window ")}
    assert len(notes) == len(windows) == 14
    boot_starts = [b.device_time_s for b in blocks if b.first_sample_index == 0]
    for index, start, end in windows:
        onset, duration, path = notes[f"window {index}"]
        assert duration == pytest.approx(end - start)
        if path == files[0]:
            assert onset == pytest.approx(start - blocks[0].device_time_s, abs=1e-6)
        if path == files[2]:
            assert onset == pytest.approx(start - boot_starts[-1], abs=1e-6)
    assert recorder.samples_not_recorded < 4 * 100
    # biomoe history --export edf: the same windows at the same wall-clock times as in the recordings
    assert main(["history", str(database), "--export", "edf", "--out", str(tmp_path / "history.edf")]) == 0
    exported = _absolute_annotations(tmp_path / "history.edf")
    recorded = {t: o for path in files for t, o in _absolute_annotations(path).items()}
    windows_exported = {t: o for t, o in exported.items() if t.startswith("window ")}
    assert len(windows_exported) == 14
    assert all(o == pytest.approx(recorded[t], abs=1e-3) for t, o in windows_exported.items())


def test_bedside_alerts_are_annotated_in_the_recording(tmp_path):
    """With the dashboard on, a High Pain alert raised during a scripted episode, and its end, are annotations."""
    folder, database = tmp_path / "rec", tmp_path / "results.sqlite"
    assert main(["monitor", "--simulate", "--speed", "20", "--hop", "5", "--windows", "30", "--quiet",
                 "--conditions", "pain:high:40-110", "--dashboard", "127.0.0.1:0", "--alert-after", "10",
                 "--record", str(folder), "--db", str(database)]) == 0
    notes = [t for path in sorted(folder.iterdir()) for _, _, t in _annotations(path) if t.startswith("alert")]
    with ResultStore(database, readonly=True) as store:
        stored = [e for e in store.events() if e["kind"].startswith("alert")]
    assert [e["kind"] for e in stored][:2] == ["alert", "alert_end"]  # raised in the episode, ended after it
    assert notes == [f"{e['kind'].replace('_', ' ')} {e['detail']['id']}: High Pain for "
                     f"{e['detail']['high_seconds']:.0f} s" for e in stored]


def test_history_export_without_recordings_uses_the_results_wall_times(tmp_path):
    """No recording_file events: device time 0 is the earliest wall_time - end_time of a device session."""
    results = [WindowResult(i, 5.0 * i, 5.0 * i + 10, 1_800_000_000 + 5.0 * i + 10 + 0.3 + 0.1 * (i % 2),
                            {"No Pain": 0.8, "High Pain": 0.2}, "No Pain", session_id=1) for i in range(4)]
    results += [WindowResult(4 + i, 5.0 * i, 5.0 * i + 10, 1_800_000_040 + 5.0 * i + 10.5, None, None, skipped=True,
                             skip_reason="calibrating", session_id=1) for i in range(2)]  # after a restart
    (path,) = export_edf(results, [], tmp_path / "h.edf")
    notes = _absolute_annotations(path)
    assert notes["window 0: No Pain p=0.800"] == pytest.approx(1_800_000_000.3)
    assert notes["window 3: No Pain p=0.800"] == pytest.approx(1_800_000_015.3)
    assert notes["window 5: no level (calibrating)"] == pytest.approx(1_800_000_045.5)
    assert notes["device restarted"] == pytest.approx(1_800_000_040.5)


def _absolute_annotations(path):
    """{text: unix time of its onset} of an EDF+ file."""
    with pyedflib.EdfReader(str(path)) as reader:
        start = _start(reader).replace(tzinfo=dt.timezone.utc).timestamp()
        return {t: start + o for o, _, t in zip(*reader.readAnnotations())}


def test_sigkill_mid_file_leaves_a_readable_file(tmp_path):
    folder = tmp_path / "rec"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "monitor", "--simulate", "--speed", "10", "--hop", "5", "--quiet",
         "--record", str(folder), "--db", str(tmp_path / "r.sqlite")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            files = sorted(folder.glob("*.edf")) if folder.is_dir() else []
            if files and files[0].stat().st_size > 40 * 1000:
                with sqlite3.connect(tmp_path / "r.sqlite") as db:
                    if db.execute("SELECT count(*) FROM windows").fetchone()[0] >= 3:
                        break
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    (path,) = sorted(folder.glob("*.edf"))
    header_bytes = 256 * 6
    record_bytes = 2 * (3 * 100 + 1) + 384
    complete = (path.stat().st_size - header_bytes) // record_bytes
    with pyedflib.EdfReader(str(path)) as reader:
        assert complete - 1 <= reader.datarecords_in_file <= complete and reader.datarecords_in_file >= 20
        eda = reader.readSignal(0)
    assert len(eda) == 100 * reader.datarecords_in_file and np.all(np.isfinite(eda)) and np.ptp(eda) > 0
    assert sum(t.startswith("window ") for _, _, t in _annotations(path)) >= 3
    assert mne.io.read_raw_edf(path, verbose="error").n_times >= 100 * (complete - 1)


def _blocks(config, seconds, boot=(1, 7), start_index=0, rng=None):
    """What a reader delivers for ``seconds`` of a device: one block per channel per block period."""
    rng = rng or np.random.default_rng(0)
    period = config.block_duration_s
    for k in range(int(seconds / period)):
        for spec in config.channels:
            raw = rng.integers(spec.raw_min, spec.raw_max + 1, spec.samples_per_block).astype(spec.sample_format.dtype)
            index = start_index + k * spec.samples_per_block
            yield ChannelBlock(spec.name, spec.unit, config.sampling_rate(spec.name), index,
                               (start_index / spec.samples_per_block + k) * period, 1000.0 + k * period,
                               raw * spec.scale + spec.offset, raw, boot)


def test_a_value_past_the_adc_range_is_stored_at_its_end_and_said(tmp_path):
    config = generator_config()  # SpO2: raw 0..32767
    recorder = Recorder(tmp_path, config)
    events = list(_blocks(config, 3))
    spo2 = next(i for i, e in enumerate(events) if e.channel == "SpO2" and e.first_sample_index == 1)
    bad = events[spo2]
    events[spo2] = ChannelBlock(bad.channel, bad.unit, bad.sampling_rate, bad.first_sample_index, bad.device_time_s,
                                bad.received_at, bad.samples, np.array([-5], dtype=np.int16), bad.session)
    for event in events:
        recorder.on_event(event)
    recorder.close()
    (path,) = recorder.files
    assert _digital(path)["SpO2"].tolist()[1] == 0
    assert any("1 samples of SpO2 outside the ADC range 0..32767" in t for _, _, t in _annotations(path))


def test_files_rotate_back_to_back(tmp_path):
    config = generator_config()
    recorder = Recorder(tmp_path, config, rotate_seconds=20.0)
    for event in _blocks(config, 50):
        recorder.on_event(event)
    recorder.close()
    assert len(recorder.files) == 3
    starts, lengths = [], []
    for path in recorder.files:
        with pyedflib.EdfReader(str(path)) as reader:
            starts.append(_start(reader))
            lengths.append(reader.datarecords_in_file)
    assert lengths == [20, 20, 10]
    assert [(b - a).total_seconds() for a, b in zip(starts, starts[1:])] == [20.0, 20.0]


def test_an_adc_over_16_bits_is_recorded_as_bdf(tmp_path):
    config = DeviceConfig(250_000, (ChannelSpec("EEG", "uV", 64, SampleFormat.INT32, -(2**23), 2**23 - 1, 0.02, 0.0),
                                    ChannelSpec("EDA", "uS", 1, SampleFormat.INT16, 0, 32767, 0.001, 0.0)), 1)
    recorder = Recorder(tmp_path, config)
    events = list(_blocks(config, 3))
    for event in events:
        recorder.on_event(event)
    recorder.close()
    (path,) = recorder.files
    assert path.suffix == ".bdf"
    np.testing.assert_array_equal(_digital(path)["EEG"], np.concatenate([e.raw for e in events if e.channel == "EEG"]))
    assert mne.io.read_raw_bdf(path, verbose="error").n_times == 12 * 64


def test_a_channel_lost_in_one_block_ends_the_file_without_inventing_samples(tmp_path):
    config = generator_config()
    recorder = Recorder(tmp_path, config)
    events = list(_blocks(config, 10))
    lost = next(i for i, e in enumerate(events) if e.channel == "BVP" and e.first_sample_index == 400)
    gap = events[lost]
    events[lost] = GapEvent("BVP", 400, 100, 100.0, gap.device_time_s, "overflow", gap.received_at, gap.session)
    for event in events:
        recorder.on_event(event)
    recorder.close()
    first, second = recorder.files
    assert len(_digital(first)["EDA"]) == 400 and len(_digital(second)["EDA"]) == 500
    assert recorder.samples_not_recorded == 100 + 100 + 1  # EDA, RESP and SpO2 of the dropped record
    assert any(t.startswith("gap: queue overflow: samples lost (BVP 100)") for _, _, t in _annotations(first))
    assert _annotations(second)[0][2] == "recording resumes after a gap of 1 s (queue overflow: samples lost (BVP 100))"


def test_a_restart_keeps_the_recording_going_forward_in_time(tmp_path):
    config = generator_config()
    recorder = Recorder(tmp_path, config)
    for event in _blocks(config, 5):
        recorder.on_event(event)
    recorder.on_event(DeviceEvent("session", 1, 8, True, None, 1005.0))
    for event in _blocks(config, 3, boot=(1, 8)):  # the new boot's clock and the host clock start again at 0 / 1000
        recorder.on_event(event)
    recorder.close()
    starts = []
    for path in recorder.files:
        with pyedflib.EdfReader(str(path)) as reader:
            starts.append(_start(reader))
    assert len(starts) == 2 and (starts[1] - starts[0]).total_seconds() >= 5


def test_disk_budget_refuses_to_start_and_stops_recording_not_monitoring(tmp_path, monkeypatch, caplog):
    config = generator_config()
    with pytest.raises(EdgeError, match="not enough disk space to record"):
        Recorder(tmp_path, config, min_free_mb=10**9)
    recorder = Recorder(tmp_path, config)
    free = [10**12]
    monkeypatch.setattr(recorder_module.shutil, "disk_usage", lambda _: type("U", (), {"free": free[0]})())
    events = list(_blocks(config, 130))
    for event in events[: 4 * 70]:
        recorder.on_event(event)
    free[0] = 2**20  # the disk fills up
    for event in events[4 * 70:]:
        recorder.on_event(event)
    recorder.close()
    assert not recorder.recording and "MiB free" in recorder.stopped_because
    assert "recording stopped" in caplog.text and "monitoring continues" in caplog.text
    assert len(_digital(recorder.files[0])["EDA"]) == 120 * 100  # up to the check after the disk filled


def test_size_per_hour_is_what_the_files_take(tmp_path):
    config = generator_config()
    recorder = Recorder(tmp_path, config)
    for event in _blocks(config, 60):
        recorder.on_event(event)
    recorder.close()
    (path,) = recorder.files
    assert (path.stat().st_size - 256 * 6) * 60 == pytest.approx(bytes_per_hour(config))


@pytest.mark.parametrize("options, message", [
    (["--record-rotate", "0"], "record_rotate_minutes = 0.0 is not valid"),
    (["--record", "/proc/biomoe-cannot-be-here"], "cannot create the recording folder"),
])
def test_bad_recording_settings_are_one_line(tmp_path, options, message):
    done = subprocess.run([sys.executable, "-m", "edge.cli", "monitor", "--simulate", "--speed", "20", "--windows",
                           "1", "--db", str(tmp_path / "r.sqlite"), *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert message in done.stderr.strip().splitlines()[-1]


def test_docstring_examples_run():
    import doctest

    from edge.recording import edf_writer

    assert doctest.testmod(edf_writer).failed == 0
