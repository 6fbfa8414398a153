"""Head inputs for training: calibration against the rest minute only; two-signal, two-class data sets."""

import dataclasses
import json

import numpy as np
import pytest

from tests.test_e4 import write_e4, write_labels
from training.ai4pain import WindowSet
from training.e4 import import_e4
from training.evaluate import evaluate_run
from training.features import Features, calibrate
from training.finetune import DEFAULT_PAIRS, FinetuneConfig, finetune, for_data


def window_set(labels, subjects) -> WindowSet:
    n = len(labels)
    return WindowSet(signals=np.zeros((n, 1, 10), np.float32), labels=np.asarray(labels), subjects=np.asarray(subjects),
                     segments=np.array(["x"] * n), starts=np.arange(n), modalities=("Eda",), sampling_rate=100.0)


def test_baseline_calibration_reads_only_the_first_rest_windows_of_each_subject():
    windows = window_set([0, 0, 0, 2, 1, 0, 0, 2], ["a"] * 5 + ["b"] * 3)
    scalars = np.array([[1.0], [3.0], [50.0], [9.0], [7.0], [10.0], [20.0], [40.0]])
    embeddings = np.repeat(scalars[:, None, :], 2, axis=2)  # (n, 1, 2)
    out = calibrate(Features(embeddings, scalars), windows, "baseline", baseline_windows=2)
    # subject a: baseline mean(1, 3) = 2 (the third rest window and the pain windows are not in it)
    np.testing.assert_allclose(out.scalars[:5, 0], [-1, 1, 48, 7, 5])
    np.testing.assert_allclose(out.scalars[5:, 0], [-5, 5, 25])
    np.testing.assert_allclose(out.embeddings[:, 0, 1], out.scalars[:, 0])  # embeddings: the same baseline
    only_scalars = calibrate(Features(embeddings, scalars), windows, "baseline-scalars", baseline_windows=2)
    np.testing.assert_array_equal(only_scalars.embeddings, embeddings)
    np.testing.assert_allclose(only_scalars.scalars, out.scalars)
    changed = scalars.copy()
    changed[3] = 1e6  # a pain window cannot move the baseline
    np.testing.assert_allclose(calibrate(Features(embeddings, changed), windows, "baseline", 2).scalars[[0, 1, 2, 4]],
                               out.scalars[[0, 1, 2, 4]])


def test_subject_normalisation_is_a_z_score_over_all_windows():
    windows = window_set([0, 2, 0, 2], ["a", "a", "b", "b"])
    out = calibrate(Features(np.zeros((4, 0, 192)), np.array([[1.0], [3.0], [10.0], [30.0]])), windows, "subject", 6)
    np.testing.assert_allclose(out.scalars[:, 0], [-1, 1, -1, 1])


@pytest.fixture(scope="module")
def wrist_data(tmp_path_factory):
    """Two E4 subjects (EDA + BVP only; rest and stress only) in train and one in validation."""
    root = tmp_path_factory.mktemp("wrist")
    for split, participants in (("train", (7, 8)), ("validation", (9,))):
        for participant in participants:
            write_e4(root / "sessions" / f"S{participant:02d}", heart_hz=1.1 + 0.05 * participant)
            write_labels(root / f"labels{participant}.csv", participant=participant)
            import_e4([root / "sessions" / f"S{participant:02d}"], root / f"labels{participant}.csv", root / "data",
                      split=split)
    return root / "data"


def test_default_pairs_shrink_to_the_signals_a_data_set_has_and_given_pairs_must_fit(wrist_data):
    config = for_data(FinetuneConfig(), wrist_data, "train")
    assert config.pairs == tuple(p for p in DEFAULT_PAIRS if p.split(":")[0] in ("Eda", "Bvp"))
    with pytest.raises(Exception, match="has no Resp folder"):
        for_data(FinetuneConfig(pairs=("Resp:scalogram",)), wrist_data, "train")


def test_a_two_class_data_set_trains_a_two_class_head_and_reports_two_class_metrics(wrist_data, tmp_path):
    config = dataclasses.replace(FinetuneConfig(), inputs="scalars", max_epochs=300, patience=300, stop_fraction=0.5)
    metrics = finetune(config, wrist_data, tmp_path / "run", device="cpu")
    assert metrics["classes"] == ["No Pain", "High Pain"]
    assert metrics["scalars"] == ["EDA.level", "EDA.rise", "EDA.range", "EDA.phasic", "BVP.rate", "BVP.amplitude"]
    report = evaluate_run(tmp_path / "run", wrist_data, "validation", device="cpu")
    assert report["class_names"] == ["No Pain", "High Pain"] and len(report["confusion_matrix"]) == 2
    assert report["macro_f1"] > 0.75  # chance is 0.5; the stress EDA step is plain after calibration
    assert json.loads((tmp_path / "run" / "config.json").read_text())["normalise"] == "baseline"
