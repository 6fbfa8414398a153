"""Loader for the AI4PAIN layout, checked on small hand-written files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge.calibration import baseline_rows
from training.ai4pain import LABELS, MODALITIES, Segment, load_split, parse_segment_name, read_subject_csv
from training.errors import DataError, TrainingError

BASELINE = 5950  # samples: five full 10 s windows and a 950-sample remainder


def write_csv(path: Path, columns: dict[str, np.ndarray], padding: str = "", newline: str = "\n") -> None:
    """Write columns of different lengths the AI4PAIN way: padded to the longest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = max(len(c) for c in columns.values())
    lines = [",".join(columns)]
    for i in range(rows):
        lines.append(",".join(f"{c[i]:.6g}" if i < len(c) else padding for c in columns.values()))
    path.write_text(newline.join(lines) + newline)


def segment_values(modality: int, code: int, length: int) -> np.ndarray:
    """A column whose values say where they come from: modality, segment code, sample index."""
    return modality * 100_000 + code * 10_000 + np.arange(length, dtype=float)


def subject_columns(names: dict[str, str], modality: int, lengths: dict[str, int]) -> dict[str, np.ndarray]:
    """Columns of one file: ``names`` maps a canonical name to the name written in the header."""
    codes = {canonical: code for code, canonical in enumerate(lengths)}
    return {names[c]: segment_values(modality, codes[c], lengths[c]) for c in lengths}


LENGTHS = {"Baseline": BASELINE, "LOW_1": 1022, "REST_1": 4000, "HIGH_1": 990, "REST_2": 3900, "HIGH_2": 1118, "LOW_2": 850}
STYLES = {  # subject id -> header style, as seen in the published exports
    "2": lambda c: "2_Baseline_1" if c == "Baseline" else f"2_{c}",
    "10": lambda c: c,
    "19": lambda c: f"x19_{c.upper()}" if not c.startswith("LOW") else f"x19_{c.lower()}",
}
FOLDERS = {"Eda": "EDA", "Bvp": "bvp", "Resp": "Resp", "SpO2": "SpO2"}  # case varies on disk


def make_dataset(root: Path, subjects=STYLES, lengths=LENGTHS, folders=FOLDERS) -> Path:
    for subject, style in subjects.items():
        names = {c: style(c) for c in lengths}
        for m, modality in enumerate(MODALITIES):
            if modality not in folders:
                continue
            padding = "NaN" if subject == "10" else ""
            write_csv(root / "train" / folders[modality] / f"{subject}.csv", subject_columns(names, m, lengths), padding)
    return root


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Baseline", Segment("baseline")),
        ("HIGH_1", Segment("high", 1)),
        ("REST_1", Segment("rest", 1)),
        ("2_Baseline_1", Segment("baseline", 1)),
        ("2_LOW_3", Segment("low", 3)),
        ("63_HIGH_12", Segment("high", 12)),
        ("x19_BASELINE", Segment("baseline")),
        ("x10_REST_6", Segment("rest", 6)),
        (" low_4 ", Segment("low", 4)),
        ("Unnamed: 0", None),
        ("HIGHEST_1", None),
        ("", None),
    ],
)
def test_parse_segment_name(name, expected):
    assert parse_segment_name(name) == expected


def test_segment_labels_follow_the_published_convention():
    assert [LABELS[Segment(k).label] for k in ("baseline", "low", "high")] == ["No Pain", "Low Pain", "High Pain"]
    assert Segment("rest", 2).label is None


@pytest.mark.parametrize("padding", ["", "NaN", "nan"])
def test_read_subject_csv_strips_padding(tmp_path, padding):
    path = tmp_path / "1.csv"
    write_csv(path, {"Baseline": np.arange(5.0), "HIGH_1": np.array([1.5, -2.0]), "REST_1": np.zeros(0)}, padding)
    columns = read_subject_csv(path)
    assert list(columns) == ["Baseline", "HIGH_1", "REST_1"]
    np.testing.assert_array_equal(columns["Baseline"], np.arange(5.0))
    np.testing.assert_array_equal(columns["HIGH_1"], [1.5, -2.0])
    assert columns["REST_1"].size == 0


def test_read_subject_csv_accepts_windows_line_endings_and_bom(tmp_path):
    path = tmp_path / "1.csv"
    path.write_bytes(b'\xef\xbb\xbf"Baseline","LOW_1"\r\n1,2\r\n3,\r\n')
    columns = read_subject_csv(path)
    np.testing.assert_array_equal(columns["Baseline"], [1, 3])
    np.testing.assert_array_equal(columns["LOW_1"], [2])


def test_read_subject_csv_blank_cells_are_missing_values(tmp_path):
    single = tmp_path / "1.csv"
    single.write_text("Baseline\n1\n\n3\n\n\n")
    np.testing.assert_array_equal(read_subject_csv(single)["Baseline"], [1, np.nan, 3])
    spaced = tmp_path / "2.csv"
    spaced.write_text("Baseline,LOW_1,HIGH_1\n1, ,2\n,,\n3,\t,\n")
    columns = read_subject_csv(spaced)
    np.testing.assert_array_equal(columns["Baseline"], [1, np.nan, 3])
    assert columns["LOW_1"].size == 0
    np.testing.assert_array_equal(columns["HIGH_1"], [2])


def test_read_subject_csv_names_a_non_numeric_cell(tmp_path):
    path = tmp_path / "7.csv"
    path.write_text("Baseline,LOW_1\n1,2\n3,oops\n")
    with pytest.raises(DataError, match=r"7\.csv.*'oops' at row 3, column 2 \('LOW_1'\)"):
        read_subject_csv(path)


def test_read_subject_csv_rejects_ragged_rows_and_repeated_names(tmp_path):
    ragged = tmp_path / "1.csv"
    ragged.write_text("Baseline,LOW_1\n1,2\n3,4,5\n")
    with pytest.raises(DataError, match="row 3 has 3 cells but the header names 2"):
        read_subject_csv(ragged)
    ragged.write_text("Baseline,LOW_1\n1,2\n\n3,4\n")
    with pytest.raises(DataError, match="row 3 has 0 cells"):
        read_subject_csv(ragged)
    repeated = tmp_path / "2.csv"
    repeated.write_text("LOW_1,LOW_1\n1,2\n")
    with pytest.raises(DataError, match="more than once"):
        read_subject_csv(repeated)


def test_load_split_windows_labels_and_subjects(tmp_path, caplog):
    root = make_dataset(tmp_path)
    with caplog.at_level(logging.WARNING, logger="training.ai4pain"):
        windows = load_split(root, "train")

    # Subjects in numeric order; per subject: 6 baseline + LOW_1 + HIGH_1 + HIGH_2 (LOW_2 too short, REST excluded).
    assert list(windows.subject_ids) == ["2", "10", "19"]
    assert windows.signals.shape == (3 * 9, 4, 1000)
    assert windows.signals.dtype == np.float32
    per_subject = windows.take(windows.subjects == "19")
    assert list(per_subject.labels) == [0] * 6 + [1, 2, 2]
    assert list(per_subject.segments) == ["x19_BASELINE"] * 6 + ["x19_low_1", "x19_HIGH_1", "x19_HIGH_2"]
    assert list(per_subject.starts[:6]) == [0, 1000, 2000, 3000, 4000, BASELINE - 1000]
    assert windows.modalities == MODALITIES and windows.sampling_rate == 100.0

    # Each window holds its own segment's samples, aligned across modalities.
    baseline_last = per_subject.signals[5]
    for m in range(4):
        np.testing.assert_array_equal(baseline_last[m], segment_values(m, 0, BASELINE)[-1000:])
    high_990 = per_subject.signals[7]  # 990 samples, padded with the last value
    np.testing.assert_array_equal(high_990[1, :990], segment_values(1, 3, 990))
    assert np.all(high_990[1, 990:] == high_990[1, 989])
    np.testing.assert_array_equal(per_subject.signals[8][2], segment_values(2, 5, 1000))  # HIGH_2: first 10 s of 1118

    # The too-short trial is skipped and logged, once per subject.
    assert len(windows.skipped) == 3 and all("LOW_2" in s or "low_2" in s for s in windows.skipped)
    assert sum("850 samples" in r.getMessage() for r in caplog.records) == 3


def test_trial_offset_moves_the_trial_window(tmp_path):
    root = make_dataset(tmp_path, subjects={"10": STYLES["10"]})
    windows = load_split(root, "train", trial_offset_seconds=0.5, modalities=("Eda",))
    high_2 = windows.take(windows.segments == "HIGH_2")
    np.testing.assert_array_equal(high_2.signals[0, 0], segment_values(0, 5, 1118)[50:1050])
    assert high_2.starts[0] == 50
    # The baseline is not offset; LOW_1 (1022 samples) now ends 28 samples short and is padded.
    assert windows.take(windows.labels == 0).starts[0] == 0
    assert windows.take(windows.segments == "LOW_1").signals[0, 0, -1] == segment_values(0, 1, 1022)[-1]
    assert any("'HIGH_1': 990 samples" in s and "at least 1000" in s for s in windows.skipped)


def test_modalities_select_and_order_the_signal_rows(tmp_path):
    root = make_dataset(tmp_path)
    windows = load_split(root, "train", modalities=("spo2", "EDA"))
    assert windows.signals.shape[1] == 2
    assert windows.signals[0, 0, 0] == 300_000 and windows.signals[0, 1, 0] == 0


def test_missing_modality_folder_always_raises(tmp_path):
    root = make_dataset(tmp_path, folders={m: f for m, f in FOLDERS.items() if m != "Resp"})
    for on_error in ("raise", "skip"):
        with pytest.raises(DataError, match=r"no folder 'Resp'.*found: \['EDA', 'SpO2', 'bvp'\]"):
            load_split(root, "train", on_error=on_error)
    assert len(load_split(root, "train", modalities=("Eda", "Bvp", "SpO2"))) == 27


def test_missing_split_raises_with_a_clear_error(tmp_path):
    root = make_dataset(tmp_path)
    with pytest.raises(DataError, match=r"no folder 'validation'.*found: \['train'\]"):
        load_split(root, "validation")
    assert issubclass(DataError, TrainingError)


def test_subject_missing_in_one_modality(tmp_path, caplog):
    root = make_dataset(tmp_path)
    (root / "train" / "bvp" / "10.csv").unlink()
    with pytest.raises(DataError, match=r"subject '10'.*no Bvp file.*on_error='skip'"):
        load_split(root, "train")
    with caplog.at_level(logging.WARNING, logger="training.ai4pain"):
        windows = load_split(root, "train", on_error="skip")
    assert list(windows.subject_ids) == ["2", "19"]
    assert any("subject '10'" in r.getMessage() and "no Bvp file" in r.getMessage() for r in caplog.records)
    assert any("no Bvp file" in s for s in windows.skipped)


def test_unknown_column(tmp_path, caplog):
    root = make_dataset(tmp_path, subjects={"10": STYLES["10"]})
    path = root / "train" / "Resp" / "10.csv"
    columns = read_subject_csv(path)
    columns["Timestamp"] = np.arange(10.0)
    write_csv(path, columns)
    with pytest.raises(DataError, match=r"Resp: unknown column 'Timestamp'"):
        load_split(root, "train")
    with caplog.at_level(logging.WARNING, logger="training.ai4pain"):
        windows = load_split(root, "train", on_error="skip")
    assert len(windows) == 9  # the other columns are kept
    assert any("unknown column 'Timestamp'" in r.getMessage() for r in caplog.records)


def test_non_numeric_cell(tmp_path, caplog):
    root = make_dataset(tmp_path)
    path = root / "train" / "SpO2" / "19.csv"
    lines = path.read_text().split("\n")
    cells = lines[3].split(",")
    cells[1] = "n/a"
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"19\.csv: non-numeric cell 'n/a' at row 4, column 2 \('x19_low_1'\)"):
        load_split(root, "train")
    with caplog.at_level(logging.WARNING, logger="training.ai4pain"):
        windows = load_split(root, "train", on_error="skip")
    assert list(windows.subject_ids) == ["2", "10"]
    assert any("non-numeric cell 'n/a'" in r.getMessage() for r in caplog.records)


def test_segment_missing_in_one_modality(tmp_path, caplog):
    root = make_dataset(tmp_path, subjects={"10": STYLES["10"]})
    path = root / "train" / "bvp" / "10.csv"
    columns = read_subject_csv(path)
    del columns["HIGH_2"]
    write_csv(path, columns)
    with pytest.raises(DataError, match=r"segment 'HIGH_2' is missing in Bvp"):
        load_split(root, "train")
    with caplog.at_level(logging.WARNING, logger="training.ai4pain"):
        windows = load_split(root, "train", on_error="skip")
    assert "HIGH_2" not in windows.segments and len(windows) == 8
    assert any("'HIGH_2' is missing in Bvp" in r.getMessage() for r in caplog.records)


def test_missing_values_inside_a_window(tmp_path):
    root = make_dataset(tmp_path, subjects={"10": STYLES["10"]})
    path = root / "train" / "EDA" / "10.csv"
    columns = read_subject_csv(path)
    columns["LOW_1"][100] = np.nan
    write_csv(path, columns, padding="")
    with pytest.raises(DataError, match="missing values inside the window"):
        load_split(root, "train")
    assert "LOW_1" not in load_split(root, "train", on_error="skip").segments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"window_seconds": 0}, "window_seconds must be > 0"),
        ({"sampling_rate": -1}, "sampling_rate must be > 0"),
        ({"trial_offset_seconds": -1}, "trial_offset_seconds must be >= 0"),
        ({"max_pad_fraction": 1.0}, r"max_pad_fraction must be in \[0, 1\)"),
        ({"on_error": "ignore"}, "on_error must be one of"),
        ({"modalities": "Eda"}, "modalities must be a non-empty sequence"),
        ({"modalities": ("Eda", "eda")}, "must not repeat"),
    ],
)
def test_parameters_are_checked(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_split(tmp_path, "train", **kwargs)


def test_several_baselines_per_subject_each_give_no_pain_windows_and_two_modalities_suffice(tmp_path):
    """A recording with rest before and after a task (E4 imports) and no Resp/SpO2 folders."""
    columns = {"Baseline_1": 2000, "HIGH_1": 1000, "Baseline_2": 3000}
    for modality in ("Eda", "Bvp"):
        folder = tmp_path / "train" / modality
        folder.mkdir(parents=True)
        length = max(columns.values())
        table = np.full((length, len(columns)), np.nan)
        for i, n in enumerate(columns.values()):
            table[:n, i] = np.arange(n) + 1.0
        with open(folder / "S1.csv", "w") as handle:
            handle.write(",".join(columns) + "\n")
            np.savetxt(handle, table, delimiter=",", fmt="%.1f")
    windows = load_split(tmp_path, "train", ("Eda", "Bvp"))
    assert windows.segments.tolist() == ["Baseline_1"] * 2 + ["HIGH_1"] + ["Baseline_2"] * 3
    assert windows.labels.tolist() == [0, 0, 2, 0, 0, 0]


def test_rest_segments_become_no_pain_windows_after_the_baseline_when_asked(tmp_path):
    root = make_dataset(tmp_path, subjects={"19": STYLES["19"]})
    windows = load_split(root, "train", rest_as_no_pain=True, trial_offset_seconds=0.5)
    # REST_1 (4,000 samples) gives 4 windows; REST_2 (3,900) 3: its last 900 samples are too few for a fourth.
    # (HIGH_1, 990 samples, is too short once offset by 0.5 s.)
    assert list(windows.segments) == (["x19_BASELINE"] * 6 + ["x19_low_1"] + ["x19_REST_1"] * 4
                                      + ["x19_REST_2"] * 3 + ["x19_HIGH_2"])
    assert list(windows.labels) == [0] * 6 + [1] + [0] * 7 + [2]
    rest_2 = windows.take(windows.segments == "x19_REST_2")
    assert list(rest_2.starts) == [0, 1000, 2000]  # not offset like a trial
    np.testing.assert_array_equal(rest_2.signals[2, 1], segment_values(1, 4, 3900)[2000:3000])
    # The calibration minute is still the baseline's six windows.
    assert list(np.flatnonzero(baseline_rows(windows.labels, windows.subjects))) == list(range(6))
    # Without the option, as AI4PAIN: no REST window.
    assert "x19_REST_1" not in load_split(root, "train").segments
