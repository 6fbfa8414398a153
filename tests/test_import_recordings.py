"""biomoe import: EDF+ (labels from its annotations), CSV and WFDB recordings with labelled intervals, and
NeuroKit's real 100 Hz recordings, into the AI4PAIN layout; the loader finds the windows where the labels say."""

import gzip

import numpy as np
import pytest
import wfdb

from edge.cli import main
from tests.conftest import shared_path
from tests.test_recording_formats import write_edf
from training.ai4pain import load_split
from training.errors import DataError
from training.import_recordings import import_recordings

RATE = 100


def _ramp(seconds, rate=RATE, offset=0.0):
    """Distinct values per sample, so a window's first value says where it was cut."""
    return offset + np.arange(int(seconds * rate)) / rate


def test_edf_plus_annotations_label_the_windows(tmp_path):
    path = tmp_path / "P01.edf"
    write_edf(path, [("EDA", "uS", 1 + _ramp(120) / 100), ("PPG", "mV", _ramp(120, offset=500) / 100)], RATE,
              annotations=[(0.0, 30.0, "baseline"), (40.0, 25.0, "High Pain"), (70.0, 12.0, "low"),
                           (90.0, 10.0, "window 3: High Pain p=0.9")])  # a monitor's note is no label
    counts = import_recordings([path], tmp_path / "data", annotations=True)
    assert counts == {"P01": {"Baseline": 1, "HIGH": 2, "LOW": 1}}
    windows = load_split(tmp_path / "data", "train", ("Eda", "Bvp"))
    assert windows.segments.tolist() == ["Baseline_1"] * 3 + ["HIGH_1", "HIGH_2", "LOW_1"]
    assert windows.labels.tolist() == [0, 0, 0, 2, 2, 1]
    starts = [1 + 0.0, 1 + 0.1, 1 + 0.2, 1 + 0.4, 1 + 0.5, 1 + 0.7]  # EDA = 1 + t/100 at each window's start
    np.testing.assert_allclose(windows.signals[:, 0, 0], starts, atol=2e-3)


def test_csv_and_wfdb_with_an_intervals_file(tmp_path):
    table = tmp_path / "A.csv"
    np.savetxt(table, np.column_stack([_ramp(60), _ramp(60, offset=7)]), delimiter=",", header="GSR,RSP",
               comments="")
    wfdb.wrsamp("B", fs=250, units=["uS", "mV"], sig_name=["EDA", "Resp"],
                p_signal=np.column_stack([_ramp(60, 250), _ramp(60, 250, offset=3)]), fmt=["16", "16"],
                write_dir=str(tmp_path))
    intervals = tmp_path / "labels.csv"
    intervals.write_text("subject,start,end,label\nA,0,20,baseline\nA,20,40,high\nB,5,25,no pain\nB,30,50,2\n")
    counts = import_recordings([table, tmp_path / "B.hea"], tmp_path / "data", labels=intervals,
                               rate_hz=100)  # GSR is EDA by name
    assert counts == {"A": {"Baseline": 1, "HIGH": 2}, "B": {"Baseline": 1, "HIGH": 2}}
    windows = load_split(tmp_path / "data", "train", ("Eda", "Resp"))
    b = windows.subjects == "B"
    np.testing.assert_allclose(windows.signals[b, 0, 0], [5, 15, 30, 40], atol=0.02)  # B's EDA is its time (s)
    assert windows.labels[b].tolist() == [0, 0, 2, 2]


def test_neurokit_recordings_import_and_load(tmp_path):
    source = shared_path("data/neurokit/bio_eventrelated_100hz.csv.gz")
    table = tmp_path / "eventrelated.csv"
    with gzip.open(source, "rt") as handle:
        table.write_text(handle.read())
    intervals = tmp_path / "labels.csv"
    intervals.write_text("start,end,label\n0,60,baseline\n90,120,high\n")
    assert main(["import", str(table), "--rate", "100", "--labels", str(intervals), "--out", str(tmp_path / "data"),
                 "--map", "BVP=Photosensor"]) == 0
    windows = load_split(tmp_path / "data", "train", ("Eda", "Bvp", "Resp"))
    assert windows.labels.tolist() == [0] * 6 + [2] * 3
    raw = np.loadtxt(table, delimiter=",", skiprows=1)  # ECG, EDA, Photosensor, RSP
    for window, start_s in zip(windows.signals, [0, 10, 20, 30, 40, 50, 90, 100, 110]):
        np.testing.assert_allclose(window[0], raw[start_s * 100:start_s * 100 + 1000, 1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(window[2], raw[start_s * 100:start_s * 100 + 1000, 3], rtol=1e-5, atol=1e-6)


def test_bad_labels_write_nothing(tmp_path, capsys):
    table = tmp_path / "A.csv"
    np.savetxt(table, _ramp(60), header="EDA", comments="")
    good = tmp_path / "A2.csv"
    np.savetxt(good, _ramp(60), header="EDA", comments="")
    intervals = tmp_path / "labels.csv"
    intervals.write_text("subject,start,end,label\nA2,0,30,baseline\nA,0,30,moderate\n")
    assert main(["import", str(good), str(table), "--rate", "100", "--labels", str(intervals), "--out",
                 str(tmp_path / "data")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "label 'moderate' is not one of baseline, low, high, rest" in error[0]
    assert not (tmp_path / "data").exists()
    with pytest.raises(DataError, match="no intervals for A "):
        intervals.write_text("subject,start,end,label\nA2,0,30,baseline\n")
        import_recordings([good, table], tmp_path / "data", labels=intervals, rate_hz=100)
    assert not (tmp_path / "data").exists()


def test_overlapping_intervals_are_refused_and_intervals_past_the_end_said(tmp_path, capsys, caplog):
    table = tmp_path / "A.csv"
    np.savetxt(table, _ramp(120), header="EDA", comments="")
    intervals = tmp_path / "labels.csv"
    intervals.write_text("start,end,label\n0,40,baseline\n30,60,high\n")
    assert main(["import", str(table), "--rate", "100", "--labels", str(intervals), "--out",
                 str(tmp_path / "data")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "labelled intervals overlap: Baseline 0-40 s and HIGH 30-60 s" in error[0], error
    assert not (tmp_path / "data").exists()
    intervals.write_text("start,end,label\n0,30,baseline\n100,200,high\n200,260,low\n")
    counts = import_recordings([table], tmp_path / "data", labels=intervals, rate_hz=100)
    assert counts == {"A": {"Baseline": 1, "HIGH": 2}}  # HIGH cut at 120 s, LOW after the end
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "HIGH interval 100-200 s runs past the recording's end (120 s): cut there (are the labels' times seconds from "
        "the recording's start?)",
        "LOW interval 200-260 s runs past the recording's end (120 s): left out (are the labels' times seconds from "
        "the recording's start?)"]


def test_a_label_file_saved_by_a_spreadsheet(tmp_path):
    """Byte-order mark, semicolons, Windows line endings, a blank line: the same intervals."""
    table = tmp_path / "A.csv"
    np.savetxt(table, _ramp(60), header="EDA", comments="")
    intervals = tmp_path / "labels.csv"
    intervals.write_bytes("\ufeffStart;End;Label\r\n0;20;Baseline\r\n\r\n30;50;High Pain\r\n".encode("utf-8"))
    assert import_recordings([table], tmp_path / "data", labels=intervals, rate_hz=100) == {
        "A": {"Baseline": 1, "HIGH": 2}}
    windows = load_split(tmp_path / "data", "train", ("Eda",))
    np.testing.assert_allclose(windows.signals[:, 0, 0], [0, 10, 30, 40], atol=0.02)  # EDA is its time (s)
    assert windows.labels.tolist() == [0, 0, 2, 2]


def test_segments_touching_missing_samples_are_left_out_and_said(tmp_path, capsys, caplog):
    """RSP lost for 42-47 s: the HIGH trial 40-50 s is left out; EDA lost for 78.5-80 s touches no segment."""
    eda, resp = [f"{v:.2f}" for v in _ramp(120)], [f"{v:.2f}" for v in _ramp(120, offset=7)]
    resp[4200:4700] = [""] * 500
    eda[7850:8000] = [""] * 150  # ends where LOW 80-90 s starts
    table = tmp_path / "A.csv"
    table.write_text("EDA,RSP\n" + "\n".join(f"{e},{r}" for e, r in zip(eda, resp)) + "\n")
    intervals = tmp_path / "labels.csv"
    intervals.write_text("start,end,label\n0,30,baseline\n30,70,high\n80,100,low\n")
    assert main(["import", str(table), "--rate", "100", "--labels", str(intervals), "--out",
                 str(tmp_path / "data")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "A: 1 Baseline, 3 HIGH, 2 LOW"
    assert [r.getMessage() for r in caplog.records if r.name == "training.import_recordings"] == [
        f"{table}: 1 segment(s) left out for missing samples (1 HIGH)"]
    windows = load_split(tmp_path / "data", "train", ("Eda", "Resp"))
    assert windows.segments.tolist() == ["Baseline_1"] * 3 + ["HIGH_1", "HIGH_2", "HIGH_3", "LOW_1", "LOW_2"]
    np.testing.assert_allclose(windows.signals[:, 0, 0], [0, 10, 20, 30, 50, 60, 80, 90], atol=0.02)  # EDA = time
