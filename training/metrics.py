"""Classification metrics over windows: accuracy, macro-F1, per-class recall, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["classification_metrics", "confusion_matrix", "label_metrics", "macro_f1"]


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): row = true class, column = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape; got {y_true.shape} and {y_pred.shape}")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} must hold class indices 0..{n_classes - 1}; got {values.min()}..{values.max()}")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, n_classes)


def _f1_per_class(matrix: np.ndarray) -> np.ndarray:
    true_positive = np.diag(matrix).astype(float)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # predicted + actual
    return np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Unweighted mean of the per-class F1 scores (a class never seen nor predicted scores 0)."""
    return float(_f1_per_class(confusion_matrix(y_true, y_pred, n_classes)).mean())


def classification_metrics(y_true, y_pred, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class recall and F1, and the confusion matrix, as a JSON-ready dict."""
    n_classes = len(class_names)
    matrix = confusion_matrix(y_true, y_pred, n_classes)
    support = matrix.sum(axis=1)
    recall = np.divide(np.diag(matrix), support, out=np.zeros(n_classes), where=support > 0)
    total = int(matrix.sum())
    return {
        "n_windows": total,
        "accuracy": float(np.trace(matrix) / total) if total else 0.0,
        "macro_f1": float(_f1_per_class(matrix).mean()),
        "per_class_recall": {name: float(value) for name, value in zip(class_names, recall)},
        "per_class_f1": {name: float(value) for name, value in zip(class_names, _f1_per_class(matrix))},
        "support": {name: int(value) for name, value in zip(class_names, support)},
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
    }


def label_metrics(y_true, y_pred, model_classes, labels) -> dict[str, Any]:
    """:func:`classification_metrics` of indices into ``labels``, over the classes the model has or the truth holds.

    A class neither can give is left out: rest-vs-stress data scored by a
    three-class model gives metrics over the classes that data and model have.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    present = np.array(sorted(set(model_classes) | set(y_true.tolist())), dtype=np.int64)
    return classification_metrics(np.searchsorted(present, y_true), np.searchsorted(present, np.asarray(y_pred)),
                                  [labels[c] for c in present])
