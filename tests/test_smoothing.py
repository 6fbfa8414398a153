import doctest

import numpy as np
import pytest

import edge.smoothing
from edge.smoothing import SMOOTHING_METHODS, ExponentialSmoother, MajoritySmoother, Smoother, create_smoother


def _random_probabilities(rng, n, classes=3):
    raw = rng.random((n, classes))
    return raw / raw.sum(axis=1, keepdims=True)


def test_ema_matches_the_recursive_formula():
    rng = np.random.default_rng(1)
    sequence = _random_probabilities(rng, 20)
    alpha = 0.3
    smoother = ExponentialSmoother(alpha)
    expected = sequence[0]
    for i, probabilities in enumerate(sequence):
        if i:
            expected = alpha * probabilities + (1 - alpha) * expected
        smoothed, label = smoother.update(probabilities)
        np.testing.assert_allclose(smoothed, expected)
        assert label == int(np.argmax(expected))
        assert smoothed.sum() == pytest.approx(1.0)


def test_ema_ignores_a_single_outlier_but_follows_a_lasting_change():
    smoother = ExponentialSmoother(0.4)
    no_pain, high_pain = [0.9, 0.05, 0.05], [0.05, 0.05, 0.9]
    labels = [smoother.update(p)[1] for p in [no_pain] * 5 + [high_pain] + [no_pain] * 2 + [high_pain] * 3]
    assert labels == [0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2]


def test_ema_with_alpha_one_is_no_smoothing():
    rng = np.random.default_rng(2)
    smoother, plain = ExponentialSmoother(1.0), Smoother()
    for probabilities in _random_probabilities(rng, 10):
        np.testing.assert_allclose(smoother.update(probabilities)[0], plain.update(probabilities)[0])


def test_majority_votes_over_the_last_windows():
    smoother = MajoritySmoother(windows=3)
    sequence = [[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.1, 0.7, 0.2], [0.1, 0.2, 0.7], [0.2, 0.1, 0.7]]
    results = [smoother.update(p) for p in sequence]
    # votes: [0] -> 0; [0, 1] tie -> higher mean is 1; [0, 1, 1] -> 1; [1, 1, 2] -> 1; [1, 2, 2] -> 2
    assert [label for _, label in results] == [0, 1, 1, 1, 2]
    np.testing.assert_allclose(results[-1][0], np.mean(sequence[-3:], axis=0))


def test_majority_counts_votes_before_probabilities():
    # Two windows vote No Pain, one, very sure, Pain: the mean favours Pain, the vote No Pain.
    smoother = MajoritySmoother(windows=3)
    results = [smoother.update(p) for p in ([0.51, 0.49, 0.0], [0.51, 0.49, 0.0], [0.0, 1.0, 0.0])]
    assert results[-1][1] == 0
    np.testing.assert_allclose(results[-1][0], [0.34, 0.66, 0.0])


def test_majority_of_one_window_is_the_raw_label():
    smoother = MajoritySmoother(windows=1)
    assert [smoother.update(p)[1] for p in ([0.1, 0.9], [0.8, 0.2], [0.3, 0.7])] == [1, 0, 1]


def test_unreliable_windows_do_not_move_the_smoothed_label():
    for smoother in (ExponentialSmoother(0.5), MajoritySmoother(3), Smoother()):
        settled = smoother.update([0.8, 0.1, 0.1])
        held = smoother.update([0.0, 0.0, 1.0], reliable=False)
        np.testing.assert_allclose(held[0], settled[0])
        assert held[1] == settled[1] == 0


def test_unreliable_first_window_returns_its_own_probabilities():
    smoother = ExponentialSmoother(0.5)
    probabilities, label = smoother.update([0.2, 0.7, 0.1], reliable=False)
    assert label == 1
    assert smoother.update([0.9, 0.05, 0.05])[1] == 0  # the unreliable window left no trace


def test_reset_forgets_history():
    smoother = MajoritySmoother(5)
    for _ in range(4):
        smoother.update([0.9, 0.05, 0.05])
    smoother.reset()
    assert smoother.update([0.1, 0.1, 0.8])[1] == 2


def test_reset_makes_the_next_window_the_first():
    smoother = ExponentialSmoother(0.5)
    smoother.update([0.9, 0.05, 0.05])
    smoother.reset()
    np.testing.assert_array_equal(smoother.update([0.2, 0.2, 0.6], reliable=False)[0], [0.2, 0.2, 0.6])
    np.testing.assert_array_equal(smoother.update([0.1, 0.1, 0.8])[0], [0.1, 0.1, 0.8])


@pytest.mark.parametrize("make", [lambda: ExponentialSmoother(0.5), lambda: MajoritySmoother(3)])
def test_integer_one_hot_probabilities_come_back_as_float64(make):
    smoother = make()
    assert smoother.update([0, 1, 0], reliable=False)[0].dtype == np.float64
    assert smoother.update([0, 1, 0])[0].dtype == np.float64


def test_create_smoother_by_name():
    assert create_smoother("ema", alpha=0.2).alpha == 0.2
    assert create_smoother("majority", windows=7).windows == 7
    assert type(create_smoother("".join(["n", "o", "n", "e"]))) is Smoother  # a name built at run time
    assert type(create_smoother("".join(["e", "m", "a"]))) is ExponentialSmoother
    assert set(SMOOTHING_METHODS) == {"ema", "majority", "none"}
    for unknown in ("median", "average", "gaussian", "window"):  # sorting before, between and after the names
        with pytest.raises(ValueError, match="allowed"):
            create_smoother(unknown)
    with pytest.raises(TypeError):
        create_smoother("ema", 0.2)  # the settings are keyword-only


def test_defaults_are_the_documented_ones():
    # alpha 0.5 (a window's weight halves with each newer one) and a 5-window vote, as the docstrings say.
    assert ExponentialSmoother().alpha == create_smoother().alpha == create_smoother("ema").alpha == 0.5
    assert MajoritySmoother().windows == create_smoother("majority").windows == 5


@pytest.mark.parametrize("make", [lambda: ExponentialSmoother(0.0), lambda: ExponentialSmoother(1.5),
                                  lambda: ExponentialSmoother(-0.5), lambda: ExponentialSmoother("0.5"),
                                  lambda: ExponentialSmoother(True), lambda: MajoritySmoother(0),
                                  lambda: MajoritySmoother(-1), lambda: MajoritySmoother(2.5),
                                  lambda: MajoritySmoother(True)])
def test_bad_parameters_are_refused(make):
    with pytest.raises(ValueError, match="must be"):
        make()


def test_the_limits_of_the_parameters_are_accepted():
    assert ExponentialSmoother(1.0).alpha == 1.0 and ExponentialSmoother(1e-9).alpha == 1e-9
    assert MajoritySmoother(1).windows == 1


@pytest.mark.parametrize("probabilities", [[np.nan, 0.5, 0.5], [1.0], [[0.5, 0.5], [0.5, 0.5]], 1.0, [[0.5, 0.5]]])
def test_bad_probabilities_are_refused(probabilities):
    with pytest.raises(ValueError, match="probabilities must be a finite 1-D array of >= 2 classes"):
        Smoother().update(probabilities)


def test_two_classes_are_enough():
    assert Smoother().update([0.3, 0.7])[1] == 1


def test_docstring_examples_run():
    results = doctest.testmod(edge.smoothing)
    assert results.attempted > 0 and results.failed == 0
