"""E4 sessions + per-second labels -> AI4PAIN layout: segments where the labels say, rates kept."""

import gzip

import numpy as np
import pytest

from edge.scalars import window_scalars
from tests.conftest import shared_path
from training.ai4pain import load_split
from training.e4 import import_e4
from training.errors import DataError

START = 1_600_000_000


def write_e4(folder, seconds=200, heart_hz=1.2):
    folder.mkdir(parents=True)
    t4 = np.arange(seconds * 4) / 4
    eda = 2.0 + 0.5 * (t4 >= 100) * (t4 < 160)  # higher conductance under stress
    t64 = np.arange(seconds * 64) / 64
    bvp = np.sin(2 * np.pi * heart_hz * t64)
    for name, rate, values in (("EDA", 4, eda), ("BVP", 64, bvp)):
        with gzip.open(folder / f"{name}.csv.gz", "wt") as handle:
            handle.write(f"{START:.6f}\n{rate:.6f}\n" + "\n".join(f"{v:.6f}" for v in values) + "\n")


def write_labels(path, participant=7, seconds=200):
    rows = ["Participant,HR,respr,Time(sec),Label"]
    for s in range(seconds):
        if 190 <= s:
            continue  # unlabelled seconds are left out
        rows.append(f"{participant},80,14,{START + s},{int(100 <= s < 160)}")
    path.write_text("\n".join(rows) + "\n")


def test_rest_and_stress_become_baselines_and_high_trials_at_100_hz(tmp_path):
    write_e4(tmp_path / "S07")
    write_labels(tmp_path / "labels.csv")
    assert import_e4([tmp_path / "S07"], tmp_path / "labels.csv", tmp_path / "data") == ["S07"]
    windows = load_split(tmp_path / "data", "train", ("Eda", "Bvp"))
    segments = windows.segments.tolist()
    # rest 0-100 s: minutes 0-60 and 60-100 -> 6 + 4 windows; stress 100-160 s: six 10 s trials; rest 160-190 s: 3
    assert segments.count("HIGH_1") == 1 and sum(s.startswith("HIGH") for s in segments) == 6
    assert sum(s.startswith("Baseline") for s in segments) == 13
    assert set(windows.labels[[s.startswith("HIGH") for s in segments]]) == {2}
    eda = windows.signals[:, 0]
    assert np.allclose(eda[windows.labels == 2].mean(), 2.5, atol=0.05)
    assert np.allclose(eda[windows.labels == 0].mean(), 2.0, atol=0.05)
    rate = window_scalars(windows.signals[:, 1:2], ["BVP"], 100.0)[:, 0]
    assert np.allclose(rate, 72, atol=1.5)  # 64 Hz resampled to 100 Hz keeps the 1.2 Hz pulse


def test_a_folder_without_labels_or_signals_is_refused_in_one_line(tmp_path):
    write_e4(tmp_path / "S07")
    write_labels(tmp_path / "labels.csv", participant=8)
    with pytest.raises(DataError, match="no labels for participant 7"):
        import_e4([tmp_path / "S07"], tmp_path / "labels.csv", tmp_path / "data")
    (tmp_path / "S09").mkdir()
    write_labels(tmp_path / "labels9.csv", participant=9)
    with pytest.raises(DataError, match="no EDA.csv"):
        import_e4([tmp_path / "S09"], tmp_path / "labels9.csv", tmp_path / "data")


def test_real_stress_predict_session_imports_and_loads(tmp_path):
    session = shared_path("data/stress_predict/S02/EDA.csv.gz").parent
    labels = shared_path("data/stress_predict/labels_per_second.csv.gz")
    import_e4([session], labels, tmp_path / "data")
    windows = load_split(tmp_path / "data", "train", ("Eda", "Bvp"))
    counts = np.bincount(windows.labels, minlength=3)
    assert counts[0] > 150 and counts[1] == 0 and counts[2] > 80  # ~55 min, about a third under stress
    rates = window_scalars(windows.signals[:, 1:2], ["BVP"], 100.0)[:, 0]
    assert 55 < np.median(rates) < 110  # a human heart, read from a real wrist PPG
