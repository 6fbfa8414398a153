"""A tiny synthetic AI4PAIN cohort for the training tests (imported by them, not collected).

The synthetic sessions hold 30 windows per subject; the backbone costs tens of
milliseconds per image on a CPU, so the tests keep only the baseline and the
first two LOW and HIGH trials of each subject (10 windows: 6 No, 2 Low, 2 High).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.ai4pain import parse_segment_name, read_subject_csv
from training.synth import synthesize_cohort

TRIALS_KEPT = 2


def make_tiny_cohort(root: Path, n_train: int = 3, n_validation: int = 2, seed: int = 0) -> Path:
    """Write ``root/{train,validation}`` with few subjects and few trials; returns ``root``."""
    for split, n_subjects in (("train", n_train), ("validation", n_validation)):
        synthesize_cohort(root, split, n_subjects, seed=seed)
    return trim_cohort(root)


def trim_cohort(root: Path) -> Path:
    """Keep the baseline and the first two LOW and HIGH trials in every CSV under ``root``."""
    for path in sorted(Path(root).glob("*/*/*.csv")):
        _trim(path)
    return root


def _trim(path: Path) -> None:
    kept: dict[str, np.ndarray] = {}
    counts = {"low": 0, "high": 0}
    for name, column in read_subject_csv(path).items():
        segment = parse_segment_name(name)
        if segment.kind == "baseline":
            kept[name] = column
        elif segment.kind in counts and counts[segment.kind] < TRIALS_KEPT:
            counts[segment.kind] += 1
            kept[name] = column
    rows = max(len(column) for column in kept.values())
    table = np.full((rows, len(kept)), np.nan)
    for j, column in enumerate(kept.values()):
        table[: len(column), j] = column
    lines = [",".join(kept)] + [",".join("NaN" if np.isnan(v) else f"{v:.4f}" for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n")


__all__ = ["make_tiny_cohort", "trim_cohort"]
