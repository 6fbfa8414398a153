"""``biomoe import-e4``: Empatica E4 sessions + per-second labels -> the AI4PAIN layout.

An E4 session folder holds ``EDA.csv`` (microsiemens, 4 Hz) and ``BVP.csv``
(PPG, 64 Hz), optionally gzipped; each starts with the session's unix start
time and the sampling rate, then one sample per row. A label file gives one
row per second: ``Participant, ..., Time(sec), Label`` (the Stress-Predict
data set's ``labels_per_second.csv``), unix time, ``Label`` 0 at rest and 1
under stress.

Both signals are resampled to 100 Hz on the EDA clock (polyphase, SciPy) and
cut at the label changes: each rest period becomes baseline segments of at
most a minute (``Baseline_1``, ``Baseline_2``, ...; the loader cuts them into
No Pain windows) and each stress period becomes consecutive 10 s ``HIGH_n`` trials
(one High Pain window each). Seconds without a label are left out. The
result has ``Eda/`` and ``Bvp/`` folders only: train with the pairs and
scalars of those two signals.

Example::

    biomoe import-e4 ../shared/data/stress_predict/S* \\
        --labels ../shared/data/stress_predict/labels_per_second.csv.gz --out data/stress
"""

from __future__ import annotations

import argparse
import csv
import gzip
import logging
import os
import re
from pathlib import Path

import numpy as np

from edge.recording.formats import read_e4_signal, resample_to
from training.ai4pain import SAMPLING_RATE, write_subject_csv
from training.errors import DataError

__all__ = ["configure_parser", "import_e4", "read_e4_signal", "read_second_labels", "run"]

logger = logging.getLogger(__name__)

_SIGNALS = {"Eda": "EDA", "Bvp": "BVP"}  # AI4PAIN folder -> E4 file stem
_BASELINE_SECONDS = 60  # rest periods are written as columns of at most a minute, as AI4PAIN's baseline


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.csv", f"{stem}.csv.gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder} holds no {stem}.csv or {stem}.csv.gz; is it an E4 session folder?")


def read_second_labels(path: str | os.PathLike) -> dict[str, dict[int, int]]:
    """Per participant (as written, e.g. ``"2"``): ``{unix second: label}``."""
    path = Path(path)
    labels: dict[str, dict[int, int]] = {}
    with _open_text(path) as handle:
        reader = csv.DictReader(handle)
        needed = {"Participant", "Time(sec)", "Label"}
        if not reader.fieldnames or not needed <= set(reader.fieldnames):
            raise DataError(f"{path}: the label file needs the columns {sorted(needed)}, got {reader.fieldnames}")
        for row in reader:
            labels.setdefault(row["Participant"].strip(), {})[int(float(row["Time(sec)"]))] = int(float(row["Label"]))
    return labels


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """``(label, first, end)`` of each run of equal values in a per-second array (-1: unlabelled)."""
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts, ends = np.r_[0, edges], np.r_[edges, len(labels)]
    return [(int(labels[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def _session_columns(folder: Path, seconds: dict[int, int], trial_seconds: float) -> dict[str, dict[str, np.ndarray]]:
    """Columns per AI4PAIN folder for one session."""
    signals = {name: read_e4_signal(_find(folder, stem)) for name, stem in _SIGNALS.items()}
    start = max(t0 for t0, _, _ in signals.values())
    resampled = {}
    for name, (t0, rate, samples) in signals.items():
        at_100 = resample_to(samples, rate, SAMPLING_RATE)
        resampled[name] = at_100[int(round((start - t0) * SAMPLING_RATE)):]
    length = min(len(x) for x in resampled.values())
    n_seconds = int(length // SAMPLING_RATE)
    per_second = np.array([seconds.get(int(np.floor(start)) + i, -1) for i in range(n_seconds)])
    columns: dict[str, dict[str, np.ndarray]] = {name: {} for name in _SIGNALS}
    trial = max(1, int(round(trial_seconds)))
    counts = {"Baseline": 0, "HIGH": 0}
    for label, first, end in _runs(per_second):
        if label == 0:  # a last piece shorter than a window would give no window: left out
            pieces = [(s, min(s + _BASELINE_SECONDS, end)) for s in range(first, end - trial + 1, _BASELINE_SECONDS)]
        elif label == 1:
            pieces = [(s, s + trial) for s in range(first, end - trial + 1, trial)]
        else:
            continue
        kind = "Baseline" if label == 0 else "HIGH"
        for s, e in pieces:
            counts[kind] += 1
            for name in _SIGNALS:
                segment = resampled[name][int(s * SAMPLING_RATE):int(e * SAMPLING_RATE)]
                columns[name][f"{kind}_{counts[kind]}"] = segment
    if not counts["Baseline"]:
        raise DataError(f"{folder}: no rest period (label 0) overlaps the recording")
    return columns


def import_e4(sessions, labels_path, out, *, split: str = "train", trial_seconds: float = 10.0) -> list[str]:
    """Write E4 sessions as subjects of ``out/split`` in the AI4PAIN layout; return the subject ids.

    The participant of a folder is the number in its name (``S02`` -> ``2``),
    looked up in the label file.
    """
    labels = read_second_labels(labels_path)
    written = []
    for folder in map(Path, sessions):
        match = re.search(r"(\d+)$", folder.name)
        if not folder.is_dir() or match is None:
            raise DataError(f"{folder}: expected an E4 session folder named with its participant number (e.g. S02)")
        participant = str(int(match.group(1)))
        if participant not in labels:
            raise DataError(f"{labels_path} has no labels for participant {participant} ({folder})")
        columns = _session_columns(folder, labels[participant], trial_seconds)
        for name, table in columns.items():
            target = Path(out) / split / name
            target.mkdir(parents=True, exist_ok=True)
            write_subject_csv(target / f"{folder.name}.csv", table)
        written.append(folder.name)
        logger.info("%s: %d rest periods, %d stress trials", folder.name,
                    sum(c.startswith("Baseline") for c in columns["Eda"]), sum(c.startswith("HIGH") for c in columns["Eda"]))
    return written


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``biomoe import-e4``."""
    parser.add_argument("sessions", nargs="+", type=Path, help="E4 session folders (EDA.csv, BVP.csv), named SNN")
    parser.add_argument("--labels", required=True, type=Path, help="per-second label CSV (Participant, Time(sec), Label)")
    parser.add_argument("--out", required=True, type=Path, help="data set folder to write (AI4PAIN layout)")
    parser.add_argument("--split", default="train", help="split folder to write the subjects into (default train)")


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe import-e4``."""
    subjects = import_e4(args.sessions, args.labels, args.out, split=args.split)
    print(f"{args.out / args.split}: {len(subjects)} subjects ({', '.join(subjects)}), Eda and Bvp at 100 Hz")
    return 0
