"""Patient calibration: the baseline is the mean of the first rest windows, never of pain windows."""

import numpy as np
import pytest

from edge.calibration import Baseline, baseline_rows


def test_baseline_subtracts_the_rest_mean_from_any_window():
    rest = np.array([[70.0, 1.0], [74.0, 3.0]])
    baseline = Baseline.fit(rest)
    assert baseline.windows == 2
    np.testing.assert_allclose(baseline.apply([[87.0, 2.0], [72.0, 2.0]]), [[15.0, 0.0], [0.0, 0.0]])


def test_baseline_round_trips_through_json_with_its_shape():
    baseline = Baseline.fit(np.arange(24.0).reshape(2, 3, 4))
    again = Baseline.from_dict(baseline.to_dict())
    assert again.mean.shape == (3, 4) and again.windows == 2
    np.testing.assert_array_equal(again.mean, baseline.mean)


def test_baseline_refuses_empty_non_finite_or_misshapen_features():
    with pytest.raises(ValueError, match="at least one window"):
        Baseline.fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="finite"):
        Baseline.fit([[1.0, np.nan]])
    with pytest.raises(ValueError, match="do not end in"):
        Baseline.fit([[1.0, 2.0]]).apply([1.0, 2.0, 3.0])


def test_baseline_rows_are_each_subjects_first_rest_windows_only():
    labels = np.array([0, 0, 0, 2, 0, 1, 0, 0, 2, 0])
    subjects = np.array(["a"] * 6 + ["b"] * 4)
    mask = baseline_rows(labels, subjects, windows=2)
    assert np.flatnonzero(mask).tolist() == [0, 1, 6, 7]
    assert not mask[labels > 0].any()
    assert np.flatnonzero(baseline_rows(labels, subjects, windows=0)).tolist() == [0, 1, 2, 4, 6, 7, 9]


def test_baseline_rows_follow_the_session_order_not_the_row_order():
    labels = np.zeros(4, dtype=int)
    mask = baseline_rows(labels, np.array(["a"] * 4), order=np.array([30, 10, 0, 20]), windows=2)
    assert np.flatnonzero(mask).tolist() == [1, 2]


def test_a_subject_without_rest_cannot_be_calibrated():
    with pytest.raises(ValueError, match="subject 'b' has no No Pain window"):
        baseline_rows(np.array([0, 2]), np.array(["a", "b"]))
