"""How hard is a synthetic cohort? A feature-based near-ideal observer.

Trains a class-balanced multinomial logistic regression on hand-made
features of each 10 s window (features chosen to match what
:mod:`training.synth` changes with pain: skin-conductance rise and slope,
heart rate and pulse amplitude late vs early in the window, breathing rate
and depth, SpO2 level and change) on the train split and scores it on the
validation split (other subjects), per modality and with all four. It
reports two columns: features z-scored within each subject, as an observer
who knows each subject's windows would normalise them (the figure to compare
with the Bayes-optimal target in :mod:`training.synth`, of which it is a
lower bound), and raw features.

Usage::

    python -m training.synth_difficulty                   # generates 41/12 subjects in a temp folder
    python -m training.synth_difficulty --root data/synth # an existing cohort (or the real data)

The numbers of the last calibration (seeds 0-2) are in the docstring of
:mod:`training.synth`; rerun this after changing the model there.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.signal import find_peaks

from training.ai4pain import LABELS, MODALITIES, WindowSet, load_split
from training.metrics import macro_f1
from training.synth import DIFFICULTIES, synthesize_cohort

__all__ = ["evaluate", "fit_logistic", "subject_zscore", "window_features"]


def _smooth(x: np.ndarray, samples: int) -> np.ndarray:
    kernel = np.ones(samples) / samples
    return np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), -1, x)


def _late_minus_early(x: np.ndarray, fs: float) -> np.ndarray:
    return x[:, -int(4 * fs) :].mean(axis=1) - x[:, : int(2 * fs)].mean(axis=1)


def _eda_features(x: np.ndarray, fs: float) -> np.ndarray:
    smooth = _smooth(x, int(fs))
    slope = np.diff(smooth[:, int(fs) : -int(fs)], axis=1) * fs
    return np.column_stack([x.mean(1), _late_minus_early(x, fs), slope.max(1), x.max(1) - x.min(1), x.std(1)])


def _bvp_features(x: np.ndarray, fs: float) -> np.ndarray:
    rows = []
    for signal in x:
        centred = signal - _smooth(signal[None], int(1.5 * fs))[0]
        peaks, _ = find_peaks(centred, distance=int(0.33 * fs), prominence=0.3 * centred.std())
        troughs, _ = find_peaks(-centred, distance=int(0.33 * fs), prominence=0.3 * centred.std())
        if len(peaks) < 4 or len(troughs) < 2:
            rows.append([np.nan] * 5)
            continue
        times = peaks[1:] / fs
        rate = 60.0 * fs / np.diff(peaks)
        early, late = times < 3.0, times > 6.0
        amplitude = np.array([centred[p] - centred[troughs[troughs < p][-1]] if np.any(troughs < p) else np.nan for p in peaks])
        amp_early = np.nanmedian(amplitude[peaks < 3 * fs]) if np.any(peaks < 3 * fs) else np.nan
        amp_late = np.nanmedian(amplitude[peaks > 6 * fs]) if np.any(peaks > 6 * fs) else np.nan
        rows.append(
            [
                np.median(rate),
                (np.median(rate[late]) if late.any() else np.nan) - (np.median(rate[early]) if early.any() else np.nan),
                np.log(np.nanmedian(amplitude)),
                np.log(amp_late / amp_early) if amp_late > 0 and amp_early > 0 else np.nan,
                np.log(signal.std()),
            ]
        )
    return np.asarray(rows)


def _resp_features(x: np.ndarray, fs: float) -> np.ndarray:
    smooth = _smooth(x, int(0.5 * fs))
    rows = []
    for signal in smooth:
        peaks, _ = find_peaks(signal, distance=int(1.5 * fs), prominence=0.3 * signal.std())
        rate = 60.0 * fs / np.diff(peaks).mean() if len(peaks) > 1 else np.nan
        half = len(signal) // 2
        rows.append([rate, np.log(signal[half:].std() / signal[:half].std()), np.log(signal.max() - signal.min())])
    return np.column_stack([np.asarray(rows), _late_minus_early(x, fs)])


def _spo2_features(x: np.ndarray, fs: float) -> np.ndarray:
    return np.column_stack([x.mean(1), _late_minus_early(x, fs), x.min(1), x.std(1)])


_FEATURES = {"eda": _eda_features, "bvp": _bvp_features, "resp": _resp_features, "spo2": _spo2_features}


def window_features(windows: WindowSet) -> dict[str, np.ndarray]:
    """Hand-made features of every window, per modality.

    Returns
    -------
    dict of str to ndarray, shape (n_windows, n_features)
        Modality name -> features (NaN where a feature cannot be measured,
        e.g. too few beats in a motion-corrupted window).
    """
    signals = windows.signals.astype(np.float64)
    return {
        modality: _FEATURES[modality.lower()](signals[:, m], windows.sampling_rate)
        for m, modality in enumerate(windows.modalities)
    }


def subject_zscore(features: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """Z-score each feature within each subject (NaN-aware)."""
    out = np.empty_like(features)
    for subject in np.unique(subjects):
        rows = subjects == subject
        mean = np.nanmean(features[rows], axis=0)
        std = np.nanstd(features[rows], axis=0)
        out[rows] = (features[rows] - mean) / np.where(std > 0, std, 1.0)
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1e-2, steps: int = 2000):
    """Class-balanced multinomial logistic regression by gradient descent; returns a predict function."""
    mean, std = x.mean(0), x.std(0) + 1e-9
    z = np.column_stack([(x - mean) / std, np.ones(len(x))])
    weights = np.zeros((z.shape[1], n_classes))
    sample_weight = (len(y) / (n_classes * np.bincount(y, minlength=n_classes)))[y]
    onehot = np.eye(n_classes)[y]
    for _ in range(steps):
        logits = z @ weights
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        gradient = z.T @ ((p - onehot) * sample_weight[:, None]) / len(y) + l2 * weights
        weights -= 0.5 * gradient

    def predict(x_new: np.ndarray) -> np.ndarray:
        z_new = np.column_stack([(x_new - mean) / std, np.ones(len(x_new))])
        return np.argmax(z_new @ weights, axis=1)

    return predict



def _prepare(windows: WindowSet, per_subject: bool) -> dict[str, np.ndarray]:
    features = window_features(windows)
    prepared = {}
    for modality, values in features.items():
        if per_subject:
            values = subject_zscore(values, windows.subjects)
        prepared[modality] = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    return prepared


def evaluate(train: WindowSet, validation: WindowSet, per_subject: bool) -> dict[str, tuple[float, float]]:
    """Validation (accuracy, macro-F1) per modality and for all modalities together."""
    train_features, validation_features = _prepare(train, per_subject), _prepare(validation, per_subject)
    groups = {m: [m] for m in train.modalities} | {"all": list(train.modalities)}
    results = {}
    for name, members in groups.items():
        predict = fit_logistic(np.hstack([train_features[m] for m in members]), train.labels, len(LABELS))
        predicted = predict(np.hstack([validation_features[m] for m in members]))
        results[name] = (float(np.mean(predicted == validation.labels)), macro_f1(validation.labels, predicted, len(LABELS)))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.synth_difficulty", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, help="existing data set (default: generate one in a temp folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated cohort (default: 0)")
    parser.add_argument(
        "--difficulty", default="medium", choices=tuple(DIFFICULTIES), help="of the generated cohort (default: medium)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        root = args.root
        if root is None:
            root = Path(scratch)
            for split in ("train", "validation"):
                synthesize_cohort(root, split, seed=args.seed, difficulty=args.difficulty)
        train, validation = load_split(root, "train", MODALITIES), load_split(root, "validation", MODALITIES)
    print(f"{len(train)} train windows ({len(train.subject_ids)} subjects), {len(validation)} validation windows "
          f"({len(validation.subject_ids)} subjects); validation accuracy / macro-F1")
    table = {norm: evaluate(train, validation, norm) for norm in (True, False)}
    print(f"{'modalities':<10} {'per-subject z-score':>22} {'raw features':>16}")
    for name in table[True]:
        (acc_z, f1_z), (acc_raw, f1_raw) = table[True][name], table[False][name]
        print(f"{name:<10} {100 * acc_z:>13.1f} % / {f1_z:.2f} {100 * acc_raw:>8.1f} % / {f1_raw:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
