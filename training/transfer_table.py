"""Does it hold outside our own generator? ``python -m training.transfer_table``.

One table, validation macro-F1 (mean +- std over head seeds): rows are the
hand-feature logistic regression (:mod:`training.hand_features`) and the
pipeline's head on embeddings / scalars / both, each without calibration
and with the patient's baseline (:mod:`training.features`: relative to the
first rest minute); columns are data sets:

- ``--synth DIR``: train on its train split, score its validation split;
- ``--held-out DIR``: train on ``--synth``'s train split, score this cohort's
  validation split (e.g. ``biomoe synth`` with another device and effect
  setting: a generator setting the head never saw);
- ``--real DIR``: subject-wise k-fold cross-validation (``--folds``) over its
  train split (e.g. ``biomoe import-e4`` of the Stress-Predict recordings).

Embeddings come from the bundle's own backbone through the device's image
code, so the table scores what the monitor would compute::

    python -m training.transfer_table --bundle edge/bundles/default --synth data/synth \\
        --held-out data/synth-wrist --real data/stress --out runs/transfer
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np

from edge.backends import create_backend
from edge.bundle import load_bundle
from training.ai4pain import LABELS, WindowSet, load_split
from training.features import Features, bundle_embeddings, calibrate, window_scalar_features
from training.finetune import (
    FinetuneConfig,
    available_modalities,
    data_classes,
    predict,
    split_stop_subjects,
    subject_folds,
    train_head,
)
from training.hand_features import hand_features
from training.metrics import macro_f1
from training.settings import write_json

__all__ = ["ROWS", "main", "transfer_table"]

logger = logging.getLogger(__name__)

ROWS = (
    ("hand features, logistic regression", "hand", "none"),
    ("hand features, logistic regression", "hand", "baseline"),
    ("pipeline: embeddings", "embeddings", "none"),
    ("pipeline: embeddings", "embeddings", "baseline"),
    ("pipeline: scalars", "scalars", "none"),
    ("pipeline: scalars", "scalars", "baseline"),
    ("pipeline: embeddings + scalars", "both", "none"),
    ("pipeline: embeddings + scalars, scalars calibrated only", "both", "baseline-scalars"),
    ("pipeline: embeddings + scalars (default)", "both", "baseline"),
    ("pipeline: embeddings + scalars, per-subject z (upper bound, not deployable)", "both", "subject"),
)
"""(row name, inputs, normalise), in table order."""


class _Inputs:
    """Raw per-window inputs of one split, computed once: hand features, embeddings, scalars."""

    def __init__(self, windows: WindowSet, embeddings: np.ndarray):
        self.windows = windows
        self.hand = hand_features(windows)
        self.embeddings = embeddings
        self.scalars, _ = window_scalar_features(windows)

    def features(self, inputs: str, normalise: str, baseline_windows: int) -> Features:
        n = len(self.windows)
        empty = np.zeros((n, 0, self.embeddings.shape[2]), dtype=np.float32)
        raw = {
            "hand": Features(empty, self.hand),
            "embeddings": Features(self.embeddings, self.scalars[:, :0]),
            "scalars": Features(empty, self.scalars),
            "both": Features(self.embeddings, self.scalars),
        }[inputs]
        return calibrate(raw, self.windows, normalise, baseline_windows)


def _load(bundle, backend, root: Path, split: str, cache: Path | None, name: str) -> _Inputs:
    windows = load_split(root, split, available_modalities(root, split))
    return _Inputs(windows, bundle_embeddings(bundle, backend, windows,
                                              None if cache is None else cache / f"{name}_{split}_embeddings.npy"))


def _score(train: _Inputs, test: _Inputs, inputs: str, normalise: str, config: FinetuneConfig,
           seeds: int, train_rows=None, test_rows=None) -> list[float]:
    """Macro-F1 of heads (one per seed) trained on ``train`` rows and scored on ``test`` rows."""
    head_config = dataclasses.replace(config, hidden=None, dropout=0.0) if inputs == "hand" else config
    fit_features = train.features(inputs, normalise, config.baseline_windows)
    test_features = test.features(inputs, normalise, config.baseline_windows)
    train_rows = np.arange(len(train.windows)) if train_rows is None else train_rows
    test_rows = np.arange(len(test.windows)) if test_rows is None else test_rows
    labels = train.windows.labels[train_rows]
    classes = data_classes(labels)
    target = np.searchsorted(classes, labels)
    fit, stop = split_stop_subjects(train.windows.subjects[train_rows], config.stop_fraction, config.seed)
    truth = test.windows.labels[test_rows]
    scores = []
    for seed in range(seeds):
        head, _ = train_head(fit_features.take(train_rows[fit]), target[fit], fit_features.take(train_rows[stop]),
                             target[stop], head_config, seed=config.seed + seed, num_classes=len(classes))
        predicted = classes[predict(head, test_features.take(test_rows)).argmax(1)]
        present = np.unique(np.concatenate([truth, classes]))
        scores.append(macro_f1(np.searchsorted(present, truth), np.searchsorted(present, predicted), len(present)))
    return scores


def _cross_validated(data: _Inputs, inputs: str, normalise: str, config: FinetuneConfig, seeds: int,
                     folds: int) -> list[float]:
    """Per-seed mean over subject-wise folds."""
    subjects = data.windows.subjects
    per_fold = []
    for held_out in subject_folds(subjects, "k-fold", folds, config.seed):
        test = np.flatnonzero(np.isin(subjects, held_out))
        train = np.flatnonzero(~np.isin(subjects, held_out))
        per_fold.append(_score(data, data, inputs, normalise, config, seeds, train, test))
    return np.mean(per_fold, axis=0).tolist()


def transfer_table(bundle_path, *, synth=None, held_out=None, real=None, folds: int = 5, seeds: int = 3,
                   cache: Path | None = None, config: FinetuneConfig | None = None) -> dict:
    """The table as a dict: columns, rows with ``{column: [score per seed]}``."""
    config = config or FinetuneConfig()
    bundle = load_bundle(bundle_path)
    backend = create_backend(bundle)
    columns: dict[str, tuple] = {}
    if synth is not None:
        train = _load(bundle, backend, Path(synth), "train", cache, "synth")
        columns["synthetic cohort"] = ("split", train, _load(bundle, backend, Path(synth), "validation", cache, "synth"))
    if held_out is not None:
        if synth is None:
            raise ValueError("--held-out is scored with heads trained on --synth's train split; pass --synth too")
        columns["held-out generator setting"] = (
            "split", columns["synthetic cohort"][1], _load(bundle, backend, Path(held_out), "validation", cache, "held_out"))
    if real is not None:
        columns["real wrist stress (CV)"] = ("cv", _load(bundle, backend, Path(real), "train", cache, "real"), None)
    from tqdm import tqdm

    rows = []
    for name, inputs, normalise in tqdm(ROWS, desc="transfer table", unit="row"):
        row = {"row": name, "inputs": inputs, "normalise": normalise, "scores": {}}
        for column, (kind, first, second) in columns.items():
            if kind == "split":
                row["scores"][column] = _score(first, second, inputs, normalise, config, seeds)
            else:
                row["scores"][column] = _cross_validated(first, inputs, normalise, config, seeds, folds)
        rows.append(row)
        logger.info("%s / %s: %s", name, normalise,
                    {c: round(float(np.mean(s)), 3) for c, s in row["scores"].items()})
    return {"bundle": str(bundle_path), "columns": list(columns), "folds": folds, "seeds": seeds,
            "labels": list(LABELS), "rows": rows}


def markdown(table: dict) -> str:
    """The table in Markdown: mean +- std of macro-F1 over head seeds."""
    lines = ["| inputs | calibration | " + " | ".join(table["columns"]) + " |",
             "| --- | --- |" + " ---: |" * len(table["columns"])]
    for row in table["rows"]:
        cells = [f"{np.mean(row['scores'][c]):.3f} +- {np.std(row['scores'][c]):.3f}" for c in table["columns"]]
        lines.append(f"| {row['row']} | {row['normalise']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.transfer_table", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, type=Path, help="bundle whose backbone makes the embeddings")
    parser.add_argument("--synth", type=Path, help="cohort with train/ and validation/ (train -> validation)")
    parser.add_argument("--held-out", type=Path, help="cohort of another generator setting (scored on validation/)")
    parser.add_argument("--real", type=Path, help="real data set (subject-wise CV over train/)")
    parser.add_argument("--folds", type=int, default=5, help="CV folds for --real (default 5)")
    parser.add_argument("--seeds", type=int, default=3, help="head seeds per cell (default 3)")
    parser.add_argument("--cache", type=Path, help="folder to keep embeddings in (reused when present)")
    parser.add_argument("--out", required=True, type=Path, help="folder for table.json and table.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    table = transfer_table(args.bundle, synth=args.synth, held_out=args.held_out, real=args.real, folds=args.folds,
                           seeds=args.seeds, cache=args.cache)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "table.json", table)
    (args.out / "table.md").write_text(markdown(table) + "\n")
    print(markdown(table))
    print(f"written: {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
