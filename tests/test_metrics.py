"""Classification metrics against hand-computed examples and a counting reference (training/metrics.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from training.metrics import classification_metrics, confusion_matrix, label_metrics, macro_f1


def _f1_by_counting(y_true, y_pred, label) -> float:
    """F1 of one class from its true positives, false positives and false negatives (0 when all are 0)."""
    pairs = list(zip(y_true, y_pred))
    tp = sum(t == label and p == label for t, p in pairs)
    fp = sum(t != label and p == label for t, p in pairs)
    fn = sum(t == label and p != label for t, p in pairs)
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def test_metrics_against_a_hand_computed_example():
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    y_pred = [0, 1, 0, 1, 2, 2, 2, 0, 2, 1]
    assert confusion_matrix(y_true, y_pred, 3).tolist() == [[2, 1, 0], [0, 1, 1], [1, 1, 3]]
    report = classification_metrics(y_true, y_pred, ("No", "Low", "High"))
    assert report["n_windows"] == 10 and report["accuracy"] == pytest.approx(0.6)
    assert report["per_class_recall"] == pytest.approx({"No": 2 / 3, "Low": 0.5, "High": 0.6})
    # F1: No 2*2/(3+3), Low 2*1/(3+2), High 2*3/(4+5)
    assert report["per_class_f1"] == pytest.approx({"No": 4 / 6, "Low": 2 / 5, "High": 6 / 9})
    assert report["macro_f1"] == pytest.approx((4 / 6 + 2 / 5 + 6 / 9) / 3)
    assert macro_f1(y_true, y_pred, 3) == report["macro_f1"]
    assert report["support"] == {"No": 3, "Low": 2, "High": 5}
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 1, 3]]
    assert report["class_names"] == ["No", "Low", "High"]


def test_a_class_never_seen_nor_predicted_scores_zero_in_the_mean():
    # Perfect on No and Low; High absent: the macro mean is over all three classes, (1 + 1 + 0) / 3.
    assert macro_f1([0, 1, 1], [0, 1, 1], 3) == pytest.approx(2 / 3)
    report = classification_metrics([0, 1, 1], [0, 1, 1], ("No", "Low", "High"))
    assert report["macro_f1"] == pytest.approx(2 / 3)
    assert report["per_class_recall"]["High"] == 0.0 and report["per_class_f1"]["High"] == 0.0
    assert report["support"]["High"] == 0


def test_an_absent_class_scores_zero_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. numpy's "where used without out: uninitialised memory"
        assert macro_f1([0, 1, 1], [0, 1, 1], 3) == pytest.approx(2 / 3)


def test_a_class_never_predicted_has_zero_recall_and_f1():
    report = classification_metrics([0, 1, 1, 1], [0, 0, 0, 0], ("No", "Pain"))
    assert report["per_class_recall"] == {"No": 1.0, "Pain": 0.0}
    assert report["per_class_f1"] == pytest.approx({"No": 2 / 5, "Pain": 0.0})
    assert report["accuracy"] == pytest.approx(0.25)


def test_no_windows_give_zero_scores_not_nan():
    assert confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
    report = classification_metrics([], [], ("No", "Pain"))
    assert report["n_windows"] == 0 and report["accuracy"] == 0.0 and report["macro_f1"] == 0.0


@pytest.mark.parametrize(
    "y_true, y_pred, message",
    [
        ([0, 3], [0, 1], r"y_true must hold class indices 0\.\.2; got 0\.\.3"),
        ([0, 1], [-1, 1], r"y_pred must hold class indices 0\.\.2; got -1\.\.1"),
        ([0, 1], [2, 3], r"y_pred must hold class indices 0\.\.2; got 2\.\.3"),
        ([0, 1], [2, 5], r"y_pred must hold class indices 0\.\.2; got 2\.\.5"),
        ([0, 1, 2], [0, 1], r"same shape; got \(3,\) and \(2,\)"),
        ([0], [0, 1], r"same shape; got \(1,\) and \(2,\)"),
    ],
)
def test_labels_outside_the_classes_or_of_another_length_are_refused(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        confusion_matrix(y_true, y_pred, 3)


def test_the_refusal_names_the_highest_class_index():
    with pytest.raises(ValueError, match=r"class indices 0\.\.1; got 0\.\.2"):
        confusion_matrix([0, 2], [0, 1], 2)


def test_the_last_class_index_is_accepted():
    assert confusion_matrix([2], [2], 3)[2, 2] == 1


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=40))
def test_matches_counting_by_hand(pairs):
    y_true, y_pred = [t for t, _ in pairs], [p for _, p in pairs]
    matrix = confusion_matrix(y_true, y_pred, 4)
    for t in range(4):
        for p in range(4):
            assert matrix[t, p] == sum(pair == (t, p) for pair in pairs)
    expected = [_f1_by_counting(y_true, y_pred, label) for label in range(4)]
    assert macro_f1(y_true, y_pred, 4) == pytest.approx(np.mean(expected))
    report = classification_metrics(y_true, y_pred, ("a", "b", "c", "d"))
    assert list(report["per_class_f1"].values()) == pytest.approx(expected)
    correct = sum(t == p for t, p in pairs)
    assert report["accuracy"] == pytest.approx(correct / len(pairs) if pairs else 0.0)


def test_label_metrics_cover_the_classes_the_model_has_or_the_truth_holds():
    labels = ("No Pain", "Low Pain", "High Pain")
    two_class = label_metrics([0, 0, 2, 2], [0, 2, 2, 2], model_classes=[0, 2], labels=labels)
    assert two_class["class_names"] == ["No Pain", "High Pain"] and two_class["confusion_matrix"] == [[1, 1], [0, 2]]
    three = label_metrics([1, 2], [1, 0], model_classes=[0, 1, 2], labels=labels)
    assert three["class_names"] == list(labels) and three["support"] == {"No Pain": 0, "Low Pain": 1, "High Pain": 1}
