"""The feature-based observer that measures a synthetic cohort's difficulty."""

import numpy as np

from training.synth_difficulty import fit_logistic, subject_zscore


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
