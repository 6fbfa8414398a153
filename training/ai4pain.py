"""Read the AI4PAIN 2025 data layout into labelled 10 s windows.

The layout (see ``shared/reference/ai4pain/FORMAT.md``)::

    <root>/<split>/<Modality>/<subject>.csv     split: train, validation, test
                                                Modality: Eda, Bvp, Resp, SpO2

One CSV per subject and signal, one header row, one column per segment, rows
are samples at 100 Hz, shorter columns padded with ``NaN`` or empty cells.
Column names come in several styles (``Baseline``, ``HIGH_1``, ``2_LOW_3``,
``63_HIGH_12``, ``x19_BASELINE``, ``x10_REST_6``); the segment type is matched
case-insensitively and a trailing number is read as the trial number.

Labels follow the published convention: the baseline is No Pain and is cut
into non-overlapping windows (six for a 60 s baseline; a recording with
several rest periods names them ``Baseline_1``, ``Baseline_2``, ...); each ``LOW_n`` /
``HIGH_n`` trial gives one Low / High Pain window taken from its start (an
offset can be set); ``REST`` segments are excluded, or, with
``rest_as_no_pain``, cut like a baseline into No Pain windows: the minutes
after pain ends, which a bedside monitor must call No Pain too. Subject ids
are kept with every window so that splits and metrics can be made by subject.

Examples
--------
>>> from training.ai4pain import load_split
>>> windows = load_split("data/ai4pain", "train")            # doctest: +SKIP
>>> windows.signals.shape                                     # doctest: +SKIP
(1230, 4, 1000)
"""

from __future__ import annotations

import csv
import io
import os
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.errors import DataError

__all__ = [
    "LABELS",
    "MODALITIES",
    "SAMPLING_RATE",
    "SEGMENT_KINDS",
    "Segment",
    "WindowSet",
    "load_split",
    "parse_segment_name",
    "read_subject_csv",
    "write_subject_csv",
]

logger = logging.getLogger(__name__)

MODALITIES: tuple[str, ...] = ("Eda", "Bvp", "Resp", "SpO2")
"""Folder names of the four signals, in the order windows stack them."""

LABELS: tuple[str, ...] = ("No Pain", "Low Pain", "High Pain")
"""Class names; a window's label is an index into this tuple."""

SAMPLING_RATE = 100.0
"""Sampling rate of every AI4PAIN signal, in Hz."""

SEGMENT_KINDS: tuple[str, ...] = ("baseline", "low", "high", "rest")

_KIND_LABEL = {"baseline": 0, "low": 1, "high": 2, "rest": None}
_ON_ERROR = ("raise", "skip")

# Optional prefix (subject number, possibly after letters: "2_", "x19_"), the
# segment type, then an optional trial number ("_12", "12").
_SEGMENT_NAME = re.compile(
    r"^(?:[a-z]*\d+[_\- ])?(?P<kind>baseline|low|high|rest)(?:[_\- ]?(?P<trial>\d+))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Segment:
    """What one CSV column holds.

    Attributes
    ----------
    kind : str
        One of ``"baseline"``, ``"low"``, ``"high"``, ``"rest"``.
    trial : int or None
        Trial number read from the name (``HIGH_12`` -> 12), None if absent.
    """

    kind: str
    trial: int | None = None

    @property
    def label(self) -> int | None:
        """Index into :data:`LABELS`, or None for a REST segment (not labelled)."""
        return _KIND_LABEL[self.kind]


def parse_segment_name(name: str) -> Segment | None:
    """Parse an AI4PAIN column name.

    Parameters
    ----------
    name : str
        Column header, e.g. ``"Baseline"``, ``"HIGH_1"``, ``"2_Baseline_1"``,
        ``"63_HIGH_12"``, ``"x19_BASELINE"`` or ``"x10_REST_6"``. Case and
        surrounding spaces are ignored.

    Returns
    -------
    Segment or None
        The segment type and trial number, or None when the name is not an
        AI4PAIN segment name (the caller decides whether that is an error).

    Examples
    --------
    >>> parse_segment_name("63_HIGH_12")
    Segment(kind='high', trial=12)
    >>> parse_segment_name("x19_BASELINE")
    Segment(kind='baseline', trial=None)
    >>> parse_segment_name("Timestamp") is None
    True
    """
    match = _SEGMENT_NAME.match(name.strip())
    if match is None:
        return None
    trial = match.group("trial")
    return Segment(match.group("kind").lower(), int(trial) if trial is not None else None)


@dataclass
class WindowSet:
    """Labelled, modality-aligned windows of one split.

    Attributes
    ----------
    signals : ndarray of float32, shape (n_windows, n_modalities, n_samples)
        Raw signal values (EDA in microsiemens, SpO2 in percent, BVP and RESP
        in sensor units), one row per modality in the order of ``modalities``.
    labels : ndarray of int64, shape (n_windows,)
        Index into :data:`LABELS` (0 No Pain, 1 Low Pain, 2 High Pain).
    subjects : ndarray of str, shape (n_windows,)
        Subject id (the CSV file name without ``.csv``).
    segments : ndarray of str, shape (n_windows,)
        Source column name, as written in the first modality's file.
    starts : ndarray of int64, shape (n_windows,)
        First sample of the window within its segment.
    modalities : tuple of str
        Modality names, one per signal row.
    sampling_rate : float
        Sampling rate in Hz.
    skipped : list of str
        One message per problem skipped while loading (also logged).
    """

    signals: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    segments: np.ndarray
    starts: np.ndarray
    modalities: tuple[str, ...]
    sampling_rate: float
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.signals)
        for name in ("labels", "subjects", "segments", "starts"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"WindowSet.{name} has {len(getattr(self, name))} entries, signals has {n}")
        if self.signals.ndim != 3 or self.signals.shape[1] != len(self.modalities):
            raise ValueError(
                f"WindowSet.signals must have shape (n_windows, {len(self.modalities)}, n_samples), "
                f"got {self.signals.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def subject_ids(self) -> np.ndarray:
        """Distinct subject ids, in order of first appearance."""
        _, first = np.unique(self.subjects, return_index=True)
        return self.subjects[np.sort(first)]

    def take(self, indices) -> WindowSet:
        """Windows at ``indices`` (integer indices or a boolean mask), as a new set."""
        indices = np.asarray(indices)
        return WindowSet(
            signals=self.signals[indices],
            labels=self.labels[indices],
            subjects=self.subjects[indices],
            segments=self.segments[indices],
            starts=self.starts[indices],
            modalities=self.modalities,
            sampling_rate=self.sampling_rate,
            skipped=list(self.skipped),
        )


def read_subject_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read one subject/modality CSV into its columns.

    Parameters
    ----------
    path : str or Path
        CSV file with one header row and one column per segment. Empty cells
        and ``NaN`` are missing values.

    Returns
    -------
    dict of str to ndarray of float64
        Column name (stripped) -> samples, in file order, with the trailing
        padding (missing values after the last number) removed.

    Raises
    ------
    DataError
        If the file has no header, repeats a column name, has a row with the
        wrong number of cells, or a cell that is not a number (the message
        names the file, row and column).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    header_line, _, body = text.partition("\n")
    names = [name.strip() for name in next(csv.reader([header_line]), [])]
    if not any(names):
        raise DataError(f"{path}: no header row; the first line must name the segments (e.g. Baseline,LOW_1,...)")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(f"{path}: column name(s) {duplicates} appear more than once; each segment needs its own column")
    body = body.rstrip("\n")
    if not body.strip():
        return {name: np.zeros(0) for name in names}
    try:
        table = np.loadtxt(io.StringIO(_fill_empty_fields(body)), delimiter=",", ndmin=2, quotechar='"')
    except ValueError:
        table = _parse_cell_by_cell(path, names, body)  # slow, and names the bad cell if there is one
    if table.shape[1] != len(names):
        raise DataError(f"{path}: rows have {table.shape[1]} cells but the header names {len(names)} columns")
    infinite = np.isinf(table).any(axis=0)
    if infinite.any():
        bad = [names[j] for j in np.flatnonzero(infinite)]
        raise DataError(f"{path}: column(s) {bad} hold infinite values; only numbers and empty/NaN padding are allowed")
    columns = {}
    for j, name in enumerate(names):
        present = np.flatnonzero(~np.isnan(table[:, j]))
        columns[name] = table[: present[-1] + 1 if present.size else 0, j].copy()
    return columns


def _fill_empty_fields(body: str) -> str:
    """Write ``nan`` into every empty CSV field (at a line's start or end, or between commas)."""
    body = "\n" + body + "\n"
    for _ in range(2):  # each pass fills every other one of adjacent empty fields
        body = body.replace(",,", ",nan,").replace("\n\n", "\nnan\n")
    return body.replace("\n,", "\nnan,").replace(",\n", ",nan\n")[1:-1]


def _parse_cell_by_cell(path: Path, names: list[str], body: str) -> np.ndarray:
    """Parse a CSV body with the csv module (blank cells are NaN); DataError naming the first bad row or cell."""
    rows = []
    for line_number, row in enumerate(csv.reader(io.StringIO(body)), start=2):
        if len(row) != len(names):
            raise DataError(f"{path}: row {line_number} has {len(row)} cells but the header names {len(names)} columns")
        values = []
        for j, cell in enumerate(row):
            try:
                values.append(float(cell) if cell.strip() else np.nan)
            except ValueError:
                raise DataError(
                    f"{path}: non-numeric cell {cell!r} at row {line_number}, column {j + 1} ({names[j]!r}); "
                    "cells must be numbers, NaN or empty"
                ) from None
        rows.append(values)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))


class _Problems:
    """Raise or log-and-record each data problem, as ``on_error`` says."""

    def __init__(self, on_error: str) -> None:
        self.on_error = on_error
        self.skipped: list[str] = []

    def report(self, message: str) -> None:
        if self.on_error == "raise":
            raise DataError(f"{message} (pass on_error='skip' to skip it with a logged warning)")
        self.skip(message)

    def skip(self, message: str) -> None:
        logger.warning("skipped: %s", message)
        self.skipped.append(message)


def _find_folder(parent: Path, name: str, what: str) -> Path:
    """``parent/name`` matched case-insensitively; DataError if absent or ambiguous."""
    if not parent.is_dir():
        raise DataError(f"{what}: folder {parent} does not exist")
    matches = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.lower() == name.lower())
    if not matches:
        found = sorted(p.name for p in parent.iterdir() if p.is_dir())
        raise DataError(f"{what}: no folder {name!r} in {parent} (found: {found or 'none'})")
    if len(matches) > 1:
        raise DataError(f"{what}: folders {[p.name for p in matches]} in {parent} differ only by case; keep one")
    return matches[0]


def _subject_sort_key(subject: str) -> tuple:
    return (0, int(subject), "") if subject.isdigit() else (1, 0, subject)


def _check_parameters(modalities, window_seconds, sampling_rate, trial_offset_seconds, max_pad_fraction, on_error):
    if isinstance(modalities, str) or not modalities:
        raise ValueError(f"modalities must be a non-empty sequence of folder names such as {MODALITIES}, got {modalities!r}")
    if len({m.lower() for m in modalities}) != len(modalities):
        raise ValueError(f"modalities must not repeat a name, got {tuple(modalities)}")
    if not window_seconds > 0:
        raise ValueError(f"window_seconds must be > 0, got {window_seconds}; AI4PAIN work uses 10.0")
    if not sampling_rate > 0:
        raise ValueError(f"sampling_rate must be > 0 Hz, got {sampling_rate}; AI4PAIN signals are at 100.0 Hz")
    if not trial_offset_seconds >= 0:
        raise ValueError(f"trial_offset_seconds must be >= 0, got {trial_offset_seconds}")
    if not 0 <= max_pad_fraction < 1:
        raise ValueError(f"max_pad_fraction must be in [0, 1), got {max_pad_fraction}; the default is 0.05")
    if on_error not in _ON_ERROR:
        raise ValueError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")


def _window_starts(segment: Segment, length: int, window: int, offset: int, min_length: int) -> list[int]:
    """First samples of the windows of one segment (a window may run past ``length``: it is padded).

    A baseline or rest segment is cut into consecutive windows, a trial gives one.
    """
    if segment.kind in ("baseline", "rest") and length >= window:
        starts = list(range(0, length - window + 1, window))
        if length - (starts[-1] + window) >= min_length:
            starts.append(length - window)  # overlaps its neighbour by at most the pad allowance
        return starts
    start = 0 if segment.kind in ("baseline", "rest") else offset
    return [start] if length - start >= min_length else []


def load_split(
    root: str | Path,
    split: str,
    modalities: tuple[str, ...] = MODALITIES,
    *,
    window_seconds: float = 10.0,
    sampling_rate: float = SAMPLING_RATE,
    trial_offset_seconds: float = 0.0,
    max_pad_fraction: float = 0.05,
    on_error: str = "raise",
    rest_as_no_pain: bool = False,
) -> WindowSet:
    """Load one split of an AI4PAIN-layout data set as labelled windows.

    Parameters
    ----------
    root : str or Path
        Folder holding ``train/``, ``validation/``, ``test/``.
    split : str
        Split folder name (matched case-insensitively).
    modalities : tuple of str, default :data:`MODALITIES`
        Signal folders to read, matched case-insensitively; windows stack them
        in this order.
    window_seconds : float, default 10.0
        Window length in seconds.
    sampling_rate : float, default 100.0
        Sampling rate of the files in Hz (the CSVs carry no time stamps).
    trial_offset_seconds : float, default 0.0
        Where a LOW/HIGH trial's window starts, from the trial's start.
    max_pad_fraction : float, default 0.05
        How much of a window may be missing at the end of a segment. A trial
        that short (e.g. 990 samples for a 1,000-sample window) is padded
        with its last value; a shorter one is skipped and logged. For the
        baseline, a last partial window within this allowance is instead
        moved back to end at the segment's end (overlapping its neighbour),
        so a 5,950-sample baseline gives six windows and none is padded.
    on_error : {"raise", "skip"}, default "raise"
        What to do with a malformed subject or column: raise
        :class:`~training.errors.DataError`, or skip it, log a warning and
        record the reason in ``WindowSet.skipped``. Skipped: a subject
        missing in one modality; a file that cannot be read (non-numeric
        cell, ragged row, repeated name; the whole subject); an unknown
        column name; a repeated segment; a segment missing in one modality;
        a window with missing values inside. A missing split or modality
        folder always raises (skipping it would change the input shape).
    rest_as_no_pain : bool, default False
        Cut ``REST`` segments into No Pain windows like the baseline instead
        of leaving them out (AI4PAIN leaves them out). They follow the
        baseline in column order, so a subject's first No Pain windows, the
        calibration minute (:func:`edge.calibration.baseline_rows`), stay its
        baseline's.

    Returns
    -------
    WindowSet
        Windows ordered by subject (numeric ids numerically), then by column
        order of the first modality's file.

    Raises
    ------
    DataError
        For a missing folder, no subject files, or (``on_error="raise"``) any
        malformed subject or column.
    ValueError
        For a parameter out of range.
    """
    _check_parameters(modalities, window_seconds, sampling_rate, trial_offset_seconds, max_pad_fraction, on_error)
    modalities = tuple(modalities)
    window = int(round(window_seconds * sampling_rate))
    offset = int(round(trial_offset_seconds * sampling_rate))
    min_length = window - int(np.floor(max_pad_fraction * window))
    problems = _Problems(on_error)

    split_dir = _find_folder(Path(root), split, f"split {split!r}")
    files: dict[str, dict[str, Path]] = {}
    for modality in modalities:
        folder = _find_folder(split_dir, modality, f"modality {modality!r}")
        files[modality] = {p.stem: p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv"}
    all_subjects = sorted(set().union(*(set(f) for f in files.values())), key=_subject_sort_key)
    if not all_subjects:
        raise DataError(f"no subject CSV files under {split_dir}/{{{','.join(modalities)}}}/")

    signals, labels, subjects, segment_names, starts = [], [], [], [], []
    for subject in all_subjects:
        missing = [m for m in modalities if subject not in files[m]]
        if missing:
            problems.report(f"subject {subject!r} of {split_dir} has no {'/'.join(missing)} file")
            continue
        try:
            tables = {m: read_subject_csv(files[m][subject]) for m in modalities}
        except DataError as exc:
            problems.report(f"subject {subject!r}: {exc}")
            continue
        for name, columns in _aligned_segments(subject, tables, modalities, problems):
            segment = parse_segment_name(name)
            if segment.kind == "rest" and not rest_as_no_pain:
                continue
            length = min(len(column) for column in columns)
            window_starts = _window_starts(segment, length, window, offset, min_length)
            if not window_starts:
                start = 0 if segment.kind in ("baseline", "rest") else offset
                problems.skip(
                    f"subject {subject!r} segment {name!r}: {length} samples; a {window}-sample window "
                    f"from sample {start} needs at least {start + min_length} (max_pad_fraction={max_pad_fraction})"
                )
            for start in window_starts:
                stacked = np.stack([_cut(column[:length], start, window) for column in columns])
                if np.isnan(stacked).any():
                    problems.report(
                        f"subject {subject!r} segment {name!r}: missing values inside the window at sample {start}"
                    )
                    continue
                signals.append(stacked.astype(np.float32))
                labels.append(0 if segment.kind == "rest" else segment.label)
                subjects.append(subject)
                segment_names.append(name)
                starts.append(start)

    if not signals:
        raise DataError(f"no windows could be loaded from {split_dir}; see the skipped reasons logged above")
    result = WindowSet(
        signals=np.stack(signals),
        labels=np.asarray(labels, dtype=np.int64),
        subjects=np.asarray(subjects, dtype=str),
        segments=np.asarray(segment_names, dtype=str),
        starts=np.asarray(starts, dtype=np.int64),
        modalities=modalities,
        sampling_rate=float(sampling_rate),
        skipped=problems.skipped,
    )
    counts = np.bincount(result.labels, minlength=len(LABELS))
    logger.info(
        "%s: %d windows from %d subjects (%s), %d problems skipped",
        split_dir,
        len(result),
        len(result.subject_ids),
        ", ".join(f"{label} {count}" for label, count in zip(LABELS, counts)),
        len(problems.skipped),
    )
    return result


def _aligned_segments(subject: str, tables: dict, modalities: tuple[str, ...], problems: _Problems):
    """``(name, [column per modality])`` for each segment found in every modality, in file order."""
    keyed: dict[str, dict[Segment, tuple[str, np.ndarray]]] = {}
    for modality in modalities:
        keyed[modality] = {}
        parsed = {name: parse_segment_name(name) for name in tables[modality]}
        n_baselines = sum(segment is not None and segment.kind == "baseline" for segment in parsed.values())
        for name, column in tables[modality].items():
            segment = parsed[name]
            if segment is not None and segment.kind == "baseline" and n_baselines == 1:
                segment = Segment("baseline")  # a single baseline: "Baseline" and "2_Baseline_1" match
            if segment is None:
                problems.report(
                    f"subject {subject!r} {modality}: unknown column {name!r}; expected names like "
                    "Baseline, LOW_1, HIGH_12, REST_3 (optionally prefixed, e.g. 2_LOW_3, x19_BASELINE)"
                )
            elif segment in keyed[modality]:
                problems.report(
                    f"subject {subject!r} {modality}: columns {keyed[modality][segment][0]!r} and {name!r} "
                    "are the same segment; both are skipped"
                )
                keyed[modality][segment] = (keyed[modality][segment][0], None)
            else:
                keyed[modality][segment] = (name, column)
    first = keyed[modalities[0]]
    reported: set[Segment] = set()
    for modality in modalities[1:]:
        for segment, (name, _) in keyed[modality].items():
            if segment not in first and segment not in reported:
                reported.add(segment)
                problems.report(f"subject {subject!r}: segment {name!r} of {modality} is missing in {modalities[0]}")
    for segment, (name, _) in first.items():
        absent = [m for m in modalities if segment not in keyed[m]]
        if absent:
            problems.report(f"subject {subject!r}: segment {name!r} is missing in {'/'.join(absent)}")
            continue
        columns = [keyed[m][segment][1] for m in modalities]
        if any(column is None for column in columns):
            continue
        yield name, columns


def _cut(column: np.ndarray, start: int, window: int) -> np.ndarray:
    """``column[start:start + window]``, padded at the end with its last value if short."""
    piece = column[start : start + window]
    if len(piece) < window:
        piece = np.pad(piece, (0, window - len(piece)), mode="edge")
    return piece


def write_subject_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Write one subject's signal as an AI4PAIN CSV: a header of segment names, one column each, empty-padded.

    Written to ``PATH.partial`` and renamed, so a stopped import leaves no half-written file.
    """
    length = max(len(column) for column in columns.values())
    table = np.full((length, len(columns)), np.nan)
    for i, column in enumerate(columns.values()):
        table[: len(column), i] = column
    body = io.StringIO()
    np.savetxt(body, table, delimiter=",", fmt="%.6g")
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as handle:
        handle.write(",".join(columns) + "\n")
        handle.write(body.getvalue().replace("nan", ""))  # shorter columns end in empty cells, as AI4PAIN's do
    os.replace(partial, path)
