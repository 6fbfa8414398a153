"""The feature-based observer that measures a synthetic cohort's difficulty."""

import numpy as np

from training.synth_difficulty import fit_logistic, macro_f1, subject_zscore


def test_macro_f1_is_the_unweighted_mean_of_class_f1():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    # class 0: P 1/2, R 1/2 -> 0.5; class 1: P 2/3, R 1 -> 0.8; class 2: P 1, R 1/2 -> 2/3
    assert np.isclose(macro_f1(y_true, y_pred, 3), np.mean([0.5, 0.8, 2 / 3]))
    assert macro_f1(y_true, y_true, 3) == 1.0


def test_logistic_regression_learns_separable_classes():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [4, 0], [0, 4]])
    y = np.repeat([0, 1, 2], [20, 60, 60])  # imbalanced, as No/Low/High Pain
    x = centres[y] + rng.normal(0, 0.5, (len(y), 2))
    predict = fit_logistic(x, y, 3)
    assert np.mean(predict(x) == y) > 0.97
    assert np.mean(predict(centres + 0.1) == [0, 1, 2]) == 1.0


def test_subject_zscore_removes_each_subject_offset_and_scale():
    features = np.array([[1.0], [3.0], [100.0], [300.0]])
    subjects = np.array(["a", "a", "b", "b"])
    np.testing.assert_allclose(subject_zscore(features, subjects)[:, 0], [-1, 1, -1, 1])
