"""``biomoe import``: recordings in the field's formats + labelled intervals -> the AI4PAIN layout.

Reads EDF/EDF+/BDF, WFDB records, E4 session folders and CSV files with
:func:`edge.recording.formats.read_recording` (channel map ``--map``, CSV rate
``--rate``), resamples every channel to 100 Hz and cuts each recording at its
labelled intervals, so ``biomoe finetune`` trains on a user's own recordings.

Labels
------
``--labels INTERVALS.csv`` (read as the recordings' CSV: ``,`` ``;`` or tab,
a byte-order mark, blank lines): a header row with ``start,end,label`` (seconds
from the recording's first sample) and optionally ``subject`` (the recording's
file name without extension; without it the intervals apply to every
recording). ``--annotations``: the EDF+ annotations whose text *is* a label
(with their duration as the interval); others (e.g. a monitor's window
notes) are ignored.

A label is ``baseline`` / ``no pain`` / ``0``, ``low`` / ``low pain`` / ``1``,
``high`` / ``high pain`` / ``2`` or ``rest`` (case-insensitive). As in
AI4PAIN, baseline and rest intervals become columns of at most a minute
(``Baseline_1``, ``REST_1``, ...), and each low or high interval consecutive
10 s trials (``LOW_1``, ``HIGH_1``, ...); a part shorter than a window is
left out (and said), as is the part of an interval past the recording's end.
Overlapping intervals are refused (their shared seconds would be imported
twice). A segment that touches a stretch without samples of any channel
written (longer than a second: :attr:`SourceRecording.missing`) is left out,
and how many is one warning line. One subject per recording, named after its
file.

Everything is read and checked before anything is written; each CSV is
written whole (``.partial`` then renamed).

Example::

    biomoe import lab/*.edf --annotations --out data/lab
    biomoe import session.csv --rate 100 --map EDA=GSR --labels intervals.csv --out data/mine --split train
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np

from edge.recording.csv_table import csv_rows
from edge.recording.formats import parse_channel_map, read_recording
from training.ai4pain import SAMPLING_RATE, write_subject_csv
from training.errors import DataError

__all__ = ["LABEL_NAMES", "read_intervals", "annotation_intervals", "subject_columns", "import_recordings",
           "configure_parser", "run"]

logger = logging.getLogger(__name__)

#: Label text (lower case) -> AI4PAIN segment kind.
LABEL_NAMES = {
    "baseline": "Baseline", "no pain": "Baseline", "no_pain": "Baseline", "nopain": "Baseline", "0": "Baseline",
    "low": "LOW", "low pain": "LOW", "low_pain": "LOW", "1": "LOW",
    "high": "HIGH", "high pain": "HIGH", "high_pain": "HIGH", "2": "HIGH",
    "rest": "REST",
}
_FOLDERS = {"EDA": "Eda", "BVP": "Bvp", "RESP": "Resp", "SpO2": "SpO2"}
_LONG_SECONDS = 60.0  # baseline and rest columns: at most a minute, as AI4PAIN's baseline
_TRIAL_SECONDS = 10.0  # low and high trials: one window each


def _kind(text: str) -> str | None:
    return LABEL_NAMES.get(re.sub(r"\s+", " ", str(text).strip().lower()))


def read_intervals(path) -> dict[str | None, list[tuple[float, float, str]]]:
    """``{subject or None: [(start s, end s, kind)]}`` from a ``start,end,label[,subject]`` CSV."""
    path = Path(path)
    header, *rows = csv_rows(path) or [[]]
    fields = [name.lower() for name in header]
    if not {"start", "end", "label"} <= set(fields) or not rows:
        raise DataError(f"{path}: the label file needs a header with start,end,label (and optionally subject), "
                        f"then one row per interval; got {fields or 'no rows'}{'' if rows else ' and no intervals'}")
    intervals: dict[str | None, list] = {}
    for number, cells in enumerate(rows, start=2):
        row = dict(zip(fields, cells + [""] * (len(fields) - len(cells))))
        kind = _kind(row["label"])
        if kind is None:
            raise DataError(f"{path}, row {number}: label {row['label']!r} is not one of baseline, low, high, rest "
                            "(or no pain, low pain, high pain, 0, 1, 2)")
        try:
            start, end = float(row["start"]), float(row["end"])
        except ValueError:
            raise DataError(f"{path}, row {number}: start and end must be seconds, got {row['start']!r}, "
                            f"{row['end']!r}") from None
        if not 0 <= start < end:
            raise DataError(f"{path}, row {number}: needs 0 <= start < end, got {start:g}, {end:g}")
        intervals.setdefault(row.get("subject") or None, []).append((start, end, kind))
    return intervals


def annotation_intervals(annotations) -> list[tuple[float, float, str]]:
    """The EDF+ annotations whose text is a label and which have a duration."""
    return [(onset, onset + duration, _kind(text)) for onset, duration, text in annotations
            if _kind(text) is not None and duration > 0]


def subject_columns(signals: dict[str, np.ndarray], intervals, where: str,
                    missing=()) -> dict[str, dict[str, np.ndarray]]:
    """AI4PAIN columns per folder (``Eda``...) of one recording at 100 Hz, cut at its intervals, leaving out the
    segments that touch a ``missing`` stretch ``(start s, end s)``: their samples are no signal."""
    length = min(len(values) for values in signals.values()) / SAMPLING_RATE
    columns: dict[str, dict[str, np.ndarray]] = {_FOLDERS[name]: {} for name in signals}
    counts: dict[str, int] = {}
    left_out: dict[str, int] = {}
    intervals = sorted(intervals)
    for (start, end, kind), (next_start, next_end, next_kind) in zip(intervals, intervals[1:]):
        if next_start < end:
            raise DataError(f"{where}: labelled intervals overlap: {kind} {start:g}-{end:g} s and {next_kind} "
                            f"{next_start:g}-{next_end:g} s; the seconds they share would be imported twice, maybe "
                            "under two labels: fix the labels")
    for start, end, kind in intervals:
        if end > length + 1:
            logger.warning("%s: %s interval %g-%g s runs past the recording's end (%g s): %s (are the labels' times "
                           "seconds from the recording's start?)", where, kind, start, end, length,
                           "cut there" if start < length else "left out")
        end = min(end, length)
        piece = _LONG_SECONDS if kind in ("Baseline", "REST") else _TRIAL_SECONDS
        starts = np.arange(start, end - _TRIAL_SECONDS + 1e-9, piece)
        if len(starts) == 0 and start < length:
            logger.warning("%s: %s interval %g-%g s is shorter than a %g s window; left out", where, kind, start,
                           end, _TRIAL_SECONDS)
        for first in starts:
            last = min(first + piece, end)
            if any(gap_start < last and first < gap_end for gap_start, gap_end in missing):
                left_out[kind] = left_out.get(kind, 0) + 1
                continue
            counts[kind] = counts.get(kind, 0) + 1
            for name, values in signals.items():
                part = values[int(round(first * SAMPLING_RATE)):int(round(last * SAMPLING_RATE))]
                columns[_FOLDERS[name]][f"{kind}_{counts[kind]}"] = part
    if left_out:
        logger.warning("%s: %d segment(s) left out for missing samples (%s)", where, sum(left_out.values()),
                       ", ".join(f"{n} {kind}" for kind, n in left_out.items()))
    if not counts:
        raise DataError(f"{where}: no labelled interval holds a whole {_TRIAL_SECONDS:g} s window"
                        f"{' without missing samples' if left_out else ''}; check the labels' times (seconds from "
                        "the recording's start)")
    return columns


def import_recordings(paths, out, *, labels=None, annotations: bool = False, split: str = "train",
                      channel_map: dict | None = None, rate_hz: float | None = None) -> dict[str, dict[str, int]]:
    """Write recordings as subjects of ``out/split``; return ``{subject: {kind: columns}}``.

    Raises
    ------
    DataError, EdgeError
        Before anything is written: an unreadable recording, a label file or
        annotations that label nothing, two recordings of one name.
    """
    if (labels is None) == (not annotations):
        raise DataError("give the labels: --labels INTERVALS.csv or --annotations (EDF+), one of the two")
    intervals = read_intervals(labels) if labels is not None else {}
    planned: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for path in map(Path, paths):
        subject = path.name.split(".")[0]
        if subject in planned:
            raise DataError(f"two recordings are named {subject!r}; rename one (the subject is the file name)")
        recording = read_recording(path, channel_map, rate_hz)
        if annotations:
            chosen = annotation_intervals(recording.annotations)
            if not chosen:
                raise DataError(f"{path}: no annotation is a label with a duration (baseline, low, high, rest); "
                                "use --labels INTERVALS.csv")
        else:
            chosen = intervals.get(subject, []) + intervals.get(None, [])
            if not chosen:
                raise DataError(f"{labels}: no intervals for {subject} (its subject column names "
                                f"{', '.join(sorted(str(s) for s in intervals if s))})")
        missing = [gap for gaps in recording.missing.values() for gap in gaps]
        planned[subject] = subject_columns(recording.at_rate(SAMPLING_RATE), chosen, str(path), missing)
    for subject, folders in planned.items():
        for folder, columns in folders.items():
            target = Path(out) / split / folder
            target.mkdir(parents=True, exist_ok=True)
            write_subject_csv(target / f"{subject}.csv", columns)
    return {subject: _count(next(iter(folders.values()))) for subject, folders in planned.items()}


def _count(columns: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in columns:
        kind = name.rsplit("_", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``biomoe import``."""
    parser.add_argument("recordings", nargs="+", type=Path,
                        help="EDF/BDF(+) files, WFDB records (.hea), E4 session folders or CSV files")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", type=Path, metavar="INTERVALS.csv",
                        help="labelled intervals: start,end,label[,subject] in seconds from each recording's start")
    labels.add_argument("--annotations", action="store_true", help="take the labels from the EDF+ annotations")
    parser.add_argument("--out", required=True, type=Path, help="data set folder to write (AI4PAIN layout)")
    parser.add_argument("--split", default="train", help="split folder to write the subjects into (default train)")
    parser.add_argument("--map", metavar="CH=NAME,...", help="which channel is EDA, BVP, RESP, SpO2 (e.g. EDA=GSR)")
    parser.add_argument("--rate", type=float, metavar="HZ", help="sampling rate of CSV files without a time column")


def run(args: argparse.Namespace) -> int:
    """Run ``biomoe import``."""
    subjects = import_recordings(args.recordings, args.out, labels=args.labels, annotations=args.annotations,
                                 split=args.split, channel_map=parse_channel_map(args.map), rate_hz=args.rate)
    for subject, counts in subjects.items():
        print(f"{subject}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
    folders = sorted({p.name for p in (args.out / args.split).iterdir() if p.is_dir()})
    print(f"{args.out / args.split}: {len(subjects)} subject(s), {', '.join(folders)} at 100 Hz")
    return 0
