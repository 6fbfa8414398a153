"""Synthetic cohort generator: layout, loader round trip, determinism, documented pain effects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.cli import main
from training.ai4pain import MODALITIES, load_split, parse_segment_name, read_subject_csv
from training.errors import DataError
from training.synth import synthesize_cohort, synthesize_subject
from training.synth_difficulty import window_features

# Six subjects: the class means below are means over subjects, and one subject in three (a 50 bpm heart seen
# through a poor PPG contact) defeats the beat detector of the window features.
N_SUBJECTS = 6


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    assert synthesize_cohort(root, "train", N_SUBJECTS, seed=0) == list(range(1, N_SUBJECTS + 1))
    return root


@pytest.fixture(scope="module")
def windows(cohort):
    return load_split(cohort, "train")


def test_writes_the_ai4pain_layout(cohort):
    for modality in MODALITIES:
        assert sorted(p.name for p in (cohort / "train" / modality).iterdir()) == [f"{i}.csv" for i in range(1, 7)]
    header = (cohort / "train" / "Eda" / "2.csv").read_text().split("\n", 1)[0].split(",")
    kinds = [parse_segment_name(name).kind for name in header]
    assert kinds[0] == "baseline"
    assert kinds.count("low") == kinds.count("high") == 12 and kinds.count("rest") == 23
    assert [kind == "rest" for kind in kinds[1:]] == [i % 2 == 1 for i in range(47)]  # REST between trials


def test_subjects_exercise_every_naming_style_and_padding(cohort):
    headers = [(cohort / "train" / "Bvp" / f"{i}.csv").read_text().split("\n", 1)[0] for i in (1, 2, 3)]
    assert headers[0].startswith("1_Baseline_1,1_")
    assert headers[1].startswith("x2_BASELINE,x2_")
    assert headers[2].startswith("Baseline,")
    contents = [(cohort / "train" / "Bvp" / f"{i}.csv").read_text() for i in (1, 2, 3)]
    assert ",," in contents[0] and "NaN" in contents[2] and "NaN" not in contents[0]


def test_segment_lengths_are_ai4pain_like(cohort):
    columns = read_subject_csv(cohort / "train" / "Resp" / "1.csv")
    lengths = {name: len(column) for name, column in columns.items()}
    trials = [n for name, n in lengths.items() if parse_segment_name(name).kind in ("low", "high")]
    rests = [n for name, n in lengths.items() if parse_segment_name(name).kind == "rest"]
    assert 5950 < lengths["1_Baseline_1"] < 6050
    assert 985 <= min(trials) and max(trials) <= 1130 and len(set(trials)) > 5
    assert 3500 <= min(rests) and max(rests) <= 4500


def test_round_trip_through_the_loader(windows):
    assert windows.signals.shape == (N_SUBJECTS * 30, 4, 1000)
    assert windows.skipped == []
    assert list(windows.subject_ids) == [str(i) for i in range(1, N_SUBJECTS + 1)]
    for subject in windows.subject_ids:
        labels = windows.labels[windows.subjects == subject]
        assert list(np.bincount(labels, minlength=3)) == [6, 12, 12]
    assert np.isfinite(windows.signals).all()


def test_signals_are_physiological(windows):
    eda, spo2 = windows.signals[:, 0], windows.signals[:, 3]
    assert 0 < eda.min() and eda.max() < 40  # microsiemens
    assert 85 <= spo2.min() and spo2.max() <= 100 and np.all(spo2 == np.round(spo2))  # whole percent
    rate = window_features(windows)["Bvp"][:, 0]
    assert 45 < np.nanmedian(rate) < 110  # beats per minute


def test_pain_changes_the_signals_as_documented(windows):
    """High Pain vs No Pain, per subject then averaged: SCL rises, heart rate rises,
    pulse amplitude falls, breathing quickens; Low Pain lies in between for EDA."""
    features = window_features(windows)
    checks = {  # (modality, feature column, sign of High - No Pain)
        "EDA late - early": ("Eda", 1, +1),
        "heart rate": ("Bvp", 0, +1),
        "pulse amplitude": ("Bvp", 2, -1),
        "breathing rate": ("Resp", 0, +1),
    }
    for name, (modality, column, sign) in checks.items():
        by_class = np.array(
            [
                [np.nanmean(features[modality][(windows.subjects == s) & (windows.labels == c), column]) for c in range(3)]
                for s in windows.subject_ids
            ]
        ).mean(axis=0)
        assert sign * (by_class[2] - by_class[0]) > 0, (name, by_class)
        if name == "EDA late - early":
            assert by_class[0] < by_class[1] < by_class[2], by_class


def test_response_strength_drives_the_evoked_scr():
    subject = synthesize_subject(5, seed=0)
    eda = subject.recording["Eda"]
    rises, strengths = [], []
    for (start, _), strength, name in zip(subject.bounds, subject.strengths["eda"], subject.names):
        if parse_segment_name(name).kind in ("low", "high"):
            rises.append(eda[start + 500 : start + 1000].max() - eda[start : start + 100].mean())
            strengths.append(strength)
    assert np.corrcoef(strengths, rises)[0, 1] > 0.5


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    first = synthesize_cohort(tmp_path / "a", "validation", 2, seed=3)
    synthesize_cohort(tmp_path / "b", "validation", 2, seed=3)
    synthesize_cohort(tmp_path / "c", "validation", 2, seed=4)
    assert first == [101, 102]
    for modality in MODALITIES:
        for subject in first:
            relative = Path("validation") / modality / f"{subject}.csv"
            assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
            assert (tmp_path / "a" / relative).read_bytes() != (tmp_path / "c" / relative).read_bytes()


def test_difficulty_scales_responses_without_changing_the_subject():
    easy, hard = synthesize_subject(7, difficulty="easy"), synthesize_subject(7, difficulty="hard")
    assert easy.profile == hard.profile and easy.names == hard.names and easy.bounds == hard.bounds
    np.testing.assert_allclose(easy.strengths["heart"], 4 * hard.strengths["heart"])


@pytest.mark.parametrize("device, effects", [("raw-adc", "cardiac-dominant"), ("wrist-e4", "eda-dominant")])
def test_devices_and_effects_write_a_loadable_cohort_of_the_same_subjects(tmp_path, device, effects):
    assert main(["synth", "--out", str(tmp_path), "--split", "validation", "--subjects", "2",
                 "--device", device, "--effects", effects]) == 0
    windows = load_split(tmp_path, "validation")
    assert windows.signals.shape == (2 * 30, 4, 1000) and windows.skipped == [] and np.isfinite(windows.signals).all()
    lab = synthesize_subject(101)
    other = synthesize_subject(101, device=device, effects=effects)
    assert other.profile == lab.profile and other.bounds == lab.bounds
    np.testing.assert_array_equal(other.strengths["heart"], lab.strengths["heart"])
    if device == "raw-adc":  # ADC counts, written as integers, the PPG around a large DC offset
        first_row = (tmp_path / "validation" / "Bvp" / "101.csv").read_text().split("\n")[1]
        assert all(cell == str(int(cell)) for cell in first_row.split(",") if cell)
        assert windows.signals[:, 1].mean() > 10_000


def test_default_subject_ids_are_disjoint_between_splits(tmp_path):
    train = synthesize_cohort(tmp_path, "train", 2)
    validation = synthesize_cohort(tmp_path, "validation", 2)
    test = synthesize_cohort(tmp_path, "test", 2)
    assert not set(train) & set(validation) and not set(validation) & set(test) and not set(train) & set(test)


def test_refuses_to_overwrite_unless_asked(tmp_path):
    synthesize_cohort(tmp_path, "train", 1)
    with pytest.raises(DataError, match="already holds 4 CSV files.*overwrite"):
        synthesize_cohort(tmp_path, "train", 1)
    synthesize_cohort(tmp_path, "train", 1, first_subject_id=50, overwrite=True)
    assert [p.name for p in (tmp_path / "train" / "Eda").iterdir()] == ["50.csv"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_subjects": 0}, "n_subjects must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"difficulty": "trivial"}, "difficulty must be one of"),
        ({"difficulty": 0.0}, "must be > 0"),
        ({"split": "../train"}, "plain folder name"),
        ({"split": "holdout", "n_subjects": None}, "n_subjects is needed"),
        ({"split": "holdout", "n_subjects": 2}, "first_subject_id is needed"),
        ({"n_subjects": 101}, "pass first_subject_id"),
    ],
)
def test_bad_parameters_are_refused(tmp_path, kwargs, message):
    arguments = {"split": "train", "n_subjects": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        synthesize_cohort(tmp_path, **arguments)


def test_cli_writes_a_split_and_reports_misuse(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--split", "test", "--subjects", "1", "--seed", "2"]) == 0
    assert "ids 201-201" in capsys.readouterr().out
    assert (tmp_path / "test" / "SpO2" / "201.csv").is_file()
    assert main(["synth", "--out", str(tmp_path), "--subjects", "3"]) == 1
    assert "--subjects and --first-subject-id apply to one split" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path), "--split", "test", "--subjects", "1"]) == 1
    assert "already holds" in capsys.readouterr().err


def test_sustained_protocol_writes_minutes_of_ongoing_pain_as_six_windows_each():
    from training.synth import synthesize_subject

    subject = synthesize_subject(4, seed=0, protocol="sustained")
    pain = [i for i, name in enumerate(subject.names) if "LOW" in name.upper() or "HIGH" in name.upper()]
    assert len(pain) == 36  # 3 low + 3 high minutes
    runs = np.split(np.asarray(pain), np.flatnonzero(np.diff(pain) > 1) + 1)
    assert [len(run) for run in runs] == [6] * 6
    for run in runs:
        assert all(subject.bounds[a][1] == subject.bounds[b][0] for a, b in zip(run[:-1], run[1:]))  # contiguous
        assert all(subject.bounds[i][1] - subject.bounds[i][0] == 1000 for i in run)
        for strengths in subject.strengths.values():
            assert np.all(strengths[run] == strengths[run[0]]) and strengths[run[0]] > 0  # one episode
    assert synthesize_subject(4, seed=0).names == synthesize_subject(4, seed=0, protocol="trials").names
