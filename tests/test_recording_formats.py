"""edge.recording formats and replay: EDF+/BDF, WFDB and CSV files the tests write themselves, read into the
protocol's channels; replayed through the serial path into the monitor (record -> replay gives the live
run's predictions); bad input is one line and writes nothing."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyedflib
import pytest
import wfdb

from edge.cli import main
from edge.errors import EdgeError
from edge.recording.formats import parse_channel_map, read_recording
from edge.recording.replay import replay_recording
from firmware_bridge import BridgeParams, ChannelBlock, SensorReader

ROOT = Path(__file__).resolve().parents[1]


def write_edf(path, channels, rate, annotations=()):
    """An EDF+ file by pyedflib's own writer: ``channels`` = [(label, unit, samples)]."""
    writer = pyedflib.EdfWriter(str(path), len(channels), file_type=pyedflib.FILETYPE_EDFPLUS)
    headers = []
    for label, unit, samples in channels:
        low, high = float(np.min(samples)) - 1, float(np.max(samples)) + 1
        headers.append({"label": label, "dimension": unit, "sample_frequency": rate, "physical_min": round(low, 2),
                        "physical_max": round(high, 2), "digital_min": -32768, "digital_max": 32767})
    writer.setSignalHeaders(headers)
    writer.writeSamples([np.asarray(samples, dtype=np.float64) for _, _, samples in channels])
    for onset, duration, text in annotations:
        writer.writeAnnotation(onset, duration, text)
    writer.close()


def _signal(seconds, rate, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    return 5 + np.sin(2 * np.pi * 0.1 * t) + 0.01 * rng.normal(size=len(t))


def test_edf_plus_with_names_units_and_annotations(tmp_path):
    path = tmp_path / "lab.edf"
    eda_ns = 1000 * _signal(30, 128)
    write_edf(path, [("GSR", "nS", eda_ns), ("Pleth", "mV", _signal(30, 128, 1)), ("ECG", "mV", _signal(30, 128, 2))],
              128, annotations=[(2.0, 10.0, "high pain"), (15.0, 10.0, "baseline")])
    recording = read_recording(path, parse_channel_map("EDA=GSR"))
    assert set(recording.signals) == {"EDA", "BVP"}  # Pleth found by name, ECG left out
    assert recording.rates == {"EDA": 128.0, "BVP": 128.0}
    assert recording.units == {"EDA": "uS", "BVP": "mV"}
    np.testing.assert_allclose(recording.signals["EDA"], eda_ns / 1000, atol=2e-3)  # nS -> uS, 16-bit steps
    assert [(o, d, t) for o, d, t in recording.annotations] == [(2.0, 10.0, "high pain"), (15.0, 10.0, "baseline")]
    replay = replay_recording(recording)
    config = replay.config(1000)
    eda = config.channels[0]
    assert eda.samples_per_block == 128 and replay.scaling["EDA"][0] == -32768  # the file's integers travel as they are
    raw = eda.to_raw(recording.signals["EDA"])
    with pyedflib.EdfReader(str(path)) as reader:
        np.testing.assert_array_equal(raw, reader.readSignal(0, digital=True))


def test_skin_resistance_becomes_conductance(tmp_path):
    """EDA as skin resistance (kOhm, Ohm, MOhm): 1/R in microsiemens, sent as values (no linear scaling fits)."""
    eda = 2 + np.arange(4 * 60) / 400  # uS at 4 Hz
    path = tmp_path / "resistance.edf"
    write_edf(path, [("GSR", "kOhm", 1000 / eda)], 4)
    recording = read_recording(path)
    assert recording.rates == {"EDA": 4.0} and recording.units == {"EDA": "uS"}
    np.testing.assert_allclose(recording.signals["EDA"], eda, rtol=1e-3)
    assert "EDA" not in recording.scaling and "EDA" not in replay_recording(recording).scaling
    table = tmp_path / "resistance.csv"
    table.write_text(_table("EDA (MOhm)", [1 / eda]))
    np.testing.assert_allclose(read_recording(table, rate_hz=4).signals["EDA"], eda, rtol=1e-3)


def test_channel_names_with_a_qualifier(tmp_path):
    """``Resp Thorax`` is RESP (it was left out without a word beside SpO2); two candidates are one line."""
    path = tmp_path / "lab.edf"
    write_edf(path, [("Resp Thorax", "mV", _signal(30, 32)), ("SpO2", "%", 90 + _signal(30, 32, 1)),
                     ("EDA-Wrist", "uS", _signal(30, 32, 2))], 32)
    recording = read_recording(path)
    assert recording.rates == {"EDA": 32.0, "RESP": 32.0, "SpO2": 32.0}
    np.testing.assert_allclose(recording.signals["RESP"], _signal(30, 32), atol=1e-3)
    table = tmp_path / "processed.csv"
    table.write_text(_table("EDA_Raw,EDA_Clean,PPG", [EDA_RAMP, EDA_RAMP, -EDA_RAMP]))
    with pytest.raises(EdgeError, match=r"processed.csv: several channels could be EDA \(EDA_Raw, EDA_Clean\); say "
                                        "which with --map EDA=EDA_Raw"):
        read_recording(table, rate_hz=100)
    assert len(read_recording(table, {"EDA": "EDA_Clean"}, rate_hz=100).signals["EDA"]) == 3000


def test_wfdb_record(tmp_path):
    eda, resp = _signal(20, 250), _signal(20, 250, 3)
    wfdb.wrsamp("rec", fs=250, units=["uS", "mV"], sig_name=["EDA", "RSP"], p_signal=np.column_stack([eda, resp]),
                fmt=["16", "16"], write_dir=str(tmp_path))
    recording = read_recording(tmp_path / "rec.hea")
    assert recording.rates == {"EDA": 250.0, "RESP": 250.0}
    np.testing.assert_allclose(recording.signals["EDA"], eda, atol=1e-3)
    assert read_recording(tmp_path / "rec").rates == recording.rates  # the record name alone


def test_csv_with_a_time_column_and_a_single_headerless_column(tmp_path):
    table = tmp_path / "session.csv"
    t = np.arange(0, 20, 0.01)
    np.savetxt(table, np.column_stack([t, _signal(20, 100), _signal(20, 100, 1)]), delimiter=",",
               header="time,EDA,PPG", comments="")
    recording = read_recording(table)
    assert recording.rates["EDA"] == pytest.approx(100.0) and set(recording.signals) == {"EDA", "BVP"}
    column = tmp_path / "eda.csv"
    np.savetxt(column, _signal(60, 4))
    recording = read_recording(column, {"EDA": "1"}, rate_hz=4.0)
    assert recording.rates == {"EDA": 4.0} and len(recording.signals["EDA"]) == 240
    replay = replay_recording(recording)
    assert replay.config(1000).channels[0].samples_per_block == 4  # 4 Hz fits a 1 s block: kept
    assert replay_recording(read_recording(column, {"EDA": "1"}, rate_hz=2.5)).rates["EDA"] == 100.0  # resampled


def _table(header, columns, delimiter=",", decimal=".", ending=""):
    """CSV text: ``header`` then one row per sample of ``columns`` (strings kept as written)."""
    rows = [delimiter.join(c if isinstance(c, str) else f"{c:.4f}".replace(".", decimal) for c in row) + ending
            for row in zip(*columns)]
    return header + "\n" + "\n".join(rows) + "\n"


SECONDS = np.arange(3000) / 100
EDA_RAMP = 2 + SECONDS / 100
CSV_AS_WRITTEN = {  # name: (file text, --rate); each holds EDA_RAMP at 100 Hz and a PPG
    "byte-order mark, EDA first": ("\ufeff" + _table("EDA,PPG", [EDA_RAMP, -EDA_RAMP]), 100),
    "quoted header, CRLF": (_table('"time","EDA","PPG"', [SECONDS, EDA_RAMP, -EDA_RAMP]).replace("\n", "\r\n"), None),
    "semicolons, decimal comma": (_table("time;EDA;PPG", [SECONDS, EDA_RAMP, -EDA_RAMP], ";", ","), None),
    "tabs, comment lines": ("# exported by X\n" + _table("time\tEDA\tPPG", [SECONDS, EDA_RAMP, -EDA_RAMP], "\t"), None),
    "a row of units": (_table("time,EDA,PPG\ns,uS,a.u.", [SECONDS, EDA_RAMP, -EDA_RAMP]), None),
    "units in the names": (_table("Time [s],eda_uS,PPG (mV)", [SECONDS, EDA_RAMP, -EDA_RAMP]), None),
    "EDA in nS": (_table("time,EDA (nS),PPG", [SECONDS, 1000 * EDA_RAMP, -EDA_RAMP]), None),
    "trailing empty column": (_table("time,EDA,PPG,", [SECONDS, EDA_RAMP, -EDA_RAMP], ending=","), None),
    "time in ms": (_table("time_ms,EDA,PPG", [1000 * SECONDS, EDA_RAMP, -EDA_RAMP]), None),
    "unix ms": (_table("timestamp,EDA,PPG", [[f"{1.7e12 + 10 * i:.0f}" for i in range(3000)], EDA_RAMP, -EDA_RAMP]),
                None),
    "ISO date-times": (_table("timestamp,EDA,PPG", [[str(np.datetime64("2024-03-01T09:00:00.000") +
                                                         np.timedelta64(10 * i, "ms")) for i in range(3000)],
                                                   EDA_RAMP, -EDA_RAMP]), None),
}


@pytest.mark.parametrize("case", CSV_AS_WRITTEN, ids=list(CSV_AS_WRITTEN))
def test_csv_files_as_spreadsheets_and_loggers_write_them(case, tmp_path):
    text, rate = CSV_AS_WRITTEN[case]
    path = tmp_path / "session.csv"
    path.write_text(text, encoding="utf-8", newline="")
    recording = read_recording(path, rate_hz=rate)
    assert set(recording.signals) == {"EDA", "BVP"}
    assert recording.rates["EDA"] == pytest.approx(100.0) and len(recording.signals["EDA"]) == 3000
    np.testing.assert_allclose(recording.signals["EDA"], EDA_RAMP, atol=1e-4)


def test_long_stretches_of_missing_samples_are_kept_as_missing_not_held_flat(tmp_path, caplog):
    """Over 1 s without samples: kept as missing intervals (exact seconds) and one warning line per channel."""
    path = tmp_path / "lost.csv"
    eda = [f"{v:.4f}" for v in EDA_RAMP]
    eda[1000:1500] = [""] * 500  # 5 s from 10 s
    eda[2000:2050] = [""] * 50  # 0.5 s from 20 s: filled
    eda[2500:2700] = [""] * 200  # 2 s from 25 s
    path.write_text(_table("time,EDA,PPG", [SECONDS, eda, -EDA_RAMP]))
    recording = read_recording(path)
    assert recording.missing == {"EDA": [(10.0, 15.0), (25.0, 27.0)]}  # PPG has every sample
    eda_read = recording.signals["EDA"]
    assert np.isfinite(eda_read).all() and eda_read[2025] == pytest.approx(EDA_RAMP[1999], abs=1e-4)
    for name, first in (("seg1", 2.0), ("seg2", 3.0)):  # a WFDB record of two segments 30 s apart (variable layout)
        wfdb.wrsamp(name, fs=100, units=["uS"], sig_name=["EDA"], p_signal=first + SECONDS[:, None] / 100, fmt=["16"],
                    write_dir=str(tmp_path))
    (tmp_path / "layout.hea").write_text("layout 1 100 0\n~ 16 200/uS 16 0 0 0 0 EDA\n")
    (tmp_path / "gap.hea").write_text("gap/4 1 100 9000\nlayout 0\nseg1 3000\n~ 3000\nseg2 3000\n")
    assert read_recording(tmp_path / "gap.hea").missing == {"EDA": [(30.0, 60.0)]}
    assert [r.getMessage() for r in caplog.records if r.name == "edge.recording.formats"] == [
        f"{path}: EDA (EDA) has no samples for 7 s in 2 stretch(es) longer than 1 s (the longest 5 s from 10 s); not "
        "filled: a replay flags them as a lead-off, biomoe import leaves out the segments they touch",
        f"{tmp_path / 'gap.hea'}: EDA (EDA) has no samples for 30 s in 1 stretch(es) longer than 1 s (the longest "
        "30 s from 30 s); not filled: a replay flags them as a lead-off, biomoe import leaves out the segments they "
        "touch"]
    path.write_text(_table("time,EDA,PPG", [SECONDS, ["nan"] * len(SECONDS), -EDA_RAMP]))  # all missing
    with pytest.raises(EdgeError, match=r"lost.csv: EDA \(EDA\) holds no finite sample"):
        read_recording(path)


def test_rows_missing_from_a_time_column_are_missing_samples_in_place(tmp_path):
    """5 s of rows lost after 20 s (a logger's dropout): the samples after it stay at their own seconds, the 5 s
    are missing; a few lost rows are filled; the rate is the clock's, not lowered by the gap."""
    path = tmp_path / "dropout.csv"
    t = np.round(np.r_[np.arange(0, 12, 1 / 256), np.arange(12.1, 20, 1 / 256), np.arange(25, 40, 1 / 256)], 3)
    path.write_text(_table("time,EDA", [t, 2 + t / 100]))
    recording = read_recording(path)
    assert recording.rates["EDA"] == pytest.approx(256.0, rel=1e-3)
    assert recording.missing == {"EDA": [(pytest.approx(20.0, abs=0.01), pytest.approx(25.0, abs=0.01))]}
    eda = recording.signals["EDA"]
    assert len(eda) == pytest.approx(40 * 256, abs=2)
    at = np.array([5.0, 15.0, 30.0, 39.5])  # seconds before and after the 0.1 s and the 5 s gaps
    np.testing.assert_allclose(eda[np.rint(at * recording.rates["EDA"]).astype(int)], 2 + at / 100, atol=2e-5)


def test_csv_rate_from_rounded_times_and_missing_cells(tmp_path):
    """256 Hz timestamps rounded to the millisecond (steps of 3 and 4 ms) give 256 Hz, not the median's 250."""
    path = tmp_path / "logger.csv"
    t = np.round(np.arange(256 * 40) / 256, 3)
    eda = [f"{v:.3f}" for v in 2 + t / 100]
    eda[100] = ""  # one lost sample: the previous one repeats
    path.write_text(_table("time,EDA", [t, eda]))
    recording = read_recording(path)
    assert recording.rates["EDA"] == pytest.approx(256.0, rel=1e-4) and len(recording.signals["EDA"]) == 256 * 40
    assert recording.signals["EDA"][100] == pytest.approx(recording.signals["EDA"][99])


def _truncated_edf(tmp_path):
    path = tmp_path / "cut.edf"
    write_edf(path, [("EDA", "uS", _signal(30, 100))], 100)
    path.write_bytes(path.read_bytes()[:-700])
    return path


def _discontinuous_edf(tmp_path):
    path = tmp_path / "gaps.edf"
    write_edf(path, [("EDA", "uS", _signal(30, 100))], 100)
    data = bytearray(path.read_bytes())
    data[192:197] = b"EDF+D"  # the header's reserved field: an EDF+D file
    path.write_bytes(bytes(data))
    return path


def _edf_in_millivolts(tmp_path):
    path = tmp_path / "mv.edf"
    write_edf(path, [("EDA", "mV", _signal(30, 100))], 100)
    return path


def _csv_too_fast(tmp_path):
    path = tmp_path / "fast.csv"
    np.savetxt(path, _signal(1, 20000), header="EDA", comments="")
    return path


def _csv(tmp_path):
    path = tmp_path / "ok.csv"
    np.savetxt(path, np.column_stack([_signal(30, 100), _signal(30, 100, 1)]), delimiter=",", header="EDA,BVP",
               comments="")
    return path


def _csv_with_an_irregular_clock(tmp_path):
    path = tmp_path / "irregular.csv"
    t = np.r_[np.arange(0, 30, 0.01), np.arange(30, 60, 0.015)]  # 100 Hz for 30 s, then rows every 15 ms
    np.savetxt(path, np.column_stack([t, np.ones_like(t)]), delimiter=",", header="time,EDA", comments="")
    return path


def _csv_with_an_empty_column(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text(_table("EDA,PPG", [[""] * 3000, ["1", "2", "3"] * 1000]))  # one-character cells
    return path


def _csv_cut_short(tmp_path):
    path = tmp_path / "cut.csv"
    path.write_text(_table("time,EDA,PPG", [SECONDS, EDA_RAMP, -EDA_RAMP]) + "30.00,2.3\n")  # the logger stopped
    return path


def _csv_with_text_in_a_column(tmp_path):
    path = tmp_path / "text.csv"
    eda = [f"{v:.4f}" for v in EDA_RAMP]
    eda[1500] = "ERR"
    path.write_text(_table("time;EDA;PPG", [SECONDS, eda, -EDA_RAMP], ";", ","))
    return path


def _csv_with_a_bad_date_time(tmp_path):
    path = tmp_path / "stamps.csv"
    stamps = [str(np.datetime64("2024-03-01T09:00:00.000") + np.timedelta64(10 * i, "ms")) for i in range(3000)]
    stamps[2000] = "2024-03-01 soon"
    path.write_text(_table("timestamp,EDA", [stamps, EDA_RAMP]))
    return path


def _wfdb_fixed_layout_with_a_null_segment(tmp_path):
    wfdb.wrsamp("seg1", fs=100, units=["uS"], sig_name=["EDA"], p_signal=_signal(30, 100)[:, None], fmt=["16"],
                write_dir=str(tmp_path))
    (tmp_path / "multi.hea").write_text("multi/2 1 100 6000\nseg1 3000\n~ 3000\n")  # wfdb 4 fails on it
    return tmp_path / "multi.hea"


BAD_INPUT = {
    "truncated EDF": (_truncated_edf, [], "not a readable EDF/BDF file"),
    "discontinuous EDF+D": (_discontinuous_edf, [], "(The file is discontinuous and cannot be read); pyedflib reads no "
                            "EDF+D (discontinuous) file: export each continuous part as EDF+C"),
    "wrong channel map": (_csv, ["--rate", "100", "--map", "EDA=GSR"], "--map EDA=GSR: no channel 'GSR'"),
    "unknown unit": (_edf_in_millivolts, [], "is in 'mV', which is not a unit of EDA"),
    "a rate the protocol cannot carry": (_csv_too_fast, ["--rate", "20000"], "the protocol carries EDA at"),
    "CSV without a rate": (_csv, [], "needs its sampling rate: --rate HZ"),
    "WFDB record wfdb cannot read": (_wfdb_fixed_layout_with_a_null_segment, [],
                                     "multi.hea: not a readable WFDB record (AttributeError:"),
    "CSV whose clock is not regular": (_csv_with_an_irregular_clock, [], "column 'time' is not a regular clock: "
                                       "data row 3001 is 6 s off the 83.3375 Hz its rows give; resample"),
    "CSV cut short": (_csv_cut_short, [], "cut.csv: data row 3001 has 2 cells where the header names 3 columns"),
    "CSV with text in a column": (_csv_with_text_in_a_column, [], "text.csv: column 'EDA' holds 'ERR' in data row "
                                  "1501, not a number"),
    "CSV with a bad date-time": (_csv_with_a_bad_date_time, [], "stamps.csv: column 'timestamp' holds '2024-03-01 "
                                 "soon' in data row 2001, not an ISO 8601 date-time"),
    "CSV column of empty cells": (_csv_with_an_empty_column, ["--rate", "100"], "EDA (EDA) holds no finite sample"),
}


@pytest.mark.parametrize("case", BAD_INPUT, ids=list(BAD_INPUT))
def test_bad_recordings_are_one_line_and_write_nothing(case, tmp_path, capsys):
    make, options, message = BAD_INPUT[case]
    path = make(tmp_path)
    database = tmp_path / "results.sqlite"
    assert main(["monitor", "--replay", str(path), "--db", str(database), "--record", str(tmp_path / "rec"),
                 *options]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert not database.exists() and not (tmp_path / "rec").exists()


def test_subject_needs_an_ai4pain_folder_to_replay(tmp_path, capsys):
    assert main(["monitor", "--simulate", "--subject", "S1", "--db", str(tmp_path / "r.sqlite")]) == 1
    assert "--subject names the AI4PAIN subject of a --replay folder" in capsys.readouterr().err


def test_e4_session_folder(tmp_path):
    (tmp_path / "EDA.csv").write_text("1700000000.0\n4.0\n" + "\n".join(f"{0.5 + i / 100}" for i in range(80)))
    (tmp_path / "BVP.csv").write_text("1700000001.0\n64.0\n" + "\n".join(f"{i}" for i in range(64 * 19)))
    recording = read_recording(tmp_path)
    assert recording.rates == {"EDA": 4.0, "BVP": 64.0}
    assert recording.signals["EDA"][0] == pytest.approx(0.54)  # both from the later start: EDA's 5th sample
    assert len(recording.signals["BVP"]) == 64 * 19 and recording.units["EDA"] == "uS"


def test_a_wrong_map_says_the_protocol_channels():
    with pytest.raises(EdgeError, match="CHANNEL one of EDA, BVP, RESP, SpO2"):
        parse_channel_map("ECG=II")


def _monitor(*options):
    done = subprocess.run([sys.executable, "-m", "edge.cli", "monitor", "--format", "jsonl", *map(str, options)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_record_then_replay_gives_the_live_runs_predictions(tmp_path):
    config = tmp_path / "monitor.toml"
    config.write_text("[budgets]\nmax_pending_windows = 64\n")
    live = _monitor("--simulate", "--speed", 20, "--hop", 5, "--windows", 16, "--conditions", "pain:high:40-75",
                    "--record", tmp_path / "rec", "--db", tmp_path / "live.sqlite", "--config", config)
    (recorded,) = sorted((tmp_path / "rec").glob("*.edf"))
    replayed = _monitor("--replay", recorded, "--speed", 20, "--hop", 5, "--db", tmp_path / "replay.sqlite",
                        "--config", config)
    assert len(replayed) >= 15  # the windows the recording holds whole
    pairs = [(a, b) for a, b in zip(live, replayed) if a["label"] is not None]
    assert len(pairs) >= 8 and all(a["start_time"] == b["start_time"] for a, b in pairs)
    agreement = np.mean([a["label"] == b["label"] for a, b in pairs])
    assert agreement >= 0.99
    difference = max(abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in pairs for k in a["probabilities"])
    assert difference < 1e-6  # the same integers over the same protocol


def test_a_replay_flags_a_dropout_as_lead_off_and_reads_the_rest(tmp_path):
    """5.7 s without EDA samples (22.3-28 s): the windows over it carry lead_off and hold the level; the others
    are read as usual."""
    columns = [_signal(50, 100), _signal(50, 100, 1), _signal(50, 100, 2), 92 + _signal(50, 100, 3)]
    rows = [",".join(f"{c[i]:.4f}" for c in columns) for i in range(5000)]
    rows[2230:2800] = ["," + row.split(",", 1)[1] for row in rows[2230:2800]]
    path = tmp_path / "dropout.csv"
    path.write_text("GSR,PPG,RSP,SpO2\n" + "\n".join(rows) + "\n")
    config = tmp_path / "monitor.toml"
    config.write_text("[budgets]\nmax_pending_windows = 64\n")
    windows = _monitor("--replay", path, "--rate", 100, "--speed", 50, "--hop", 5, "--calibration-windows", 1,
                       "--db", tmp_path / "replay.sqlite", "--config", config)
    assert [w["start_time"] for w in windows] == [0, 5, 10, 15, 20, 25, 30, 35]
    flags = [{channel: verdict["flags"] for channel, verdict in w["quality"].items() if verdict["flags"]}
             for w in windows]
    assert flags == [{}, {}, {}, {"EDA": ["lead_off"]}, {"EDA": ["lead_off"]}, {"EDA": ["lead_off"]}, {}, {}]
    assert [w["quality_ok"] for w in windows[1:]] == [True, True, False, False, False, True, True]
    held = windows[2]["smoothed_probabilities"]
    assert all(w["smoothed_probabilities"] == held for w in windows[3:6])  # the level of 10-20 s, held


def test_simulate_device_replays_a_file(tmp_path):
    """``biomoe simulate-device --replay FILE`` on a pty: a reader gets the file's samples at their indices."""
    path = tmp_path / "session.csv"
    columns = [_signal(12, 100), _signal(12, 100, 1), _signal(12, 100, 2), 96 + _signal(12, 100, 3)]
    np.savetxt(path, np.column_stack(columns), delimiter=",", header="GSR,PPG,RSP,SpO2", comments="")
    link = tmp_path / "hub"
    device = subprocess.Popen([sys.executable, "-m", "edge.cli", "simulate-device", "--replay", str(path), "--rate",
                               "100", "--map", "EDA=GSR", "--speed", "4", "--link", str(link), "--hello-every", "1"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not link.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with SensorReader(BridgeParams(port=str(link))) as reader:
            out, err = device.communicate(timeout=60)
            events = reader.read_until_idle(idle_s=0.5)
    finally:
        device.kill()
    assert device.returncode == 0, err
    assert "replay of session.csv: EDA 100 Hz [uS], BVP 100 Hz [a.u.], RESP 100 Hz [a.u.], SpO2 100 Hz [%]" in out
    blocks = [e for e in events if isinstance(e, ChannelBlock) and e.channel == "EDA"]
    assert len(blocks) >= 6
    for block in blocks:
        expected = columns[0][block.first_sample_index:block.first_sample_index + len(block.samples)]
        np.testing.assert_allclose(block.samples, expected, atol=1e-3)
