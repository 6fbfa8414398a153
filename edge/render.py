"""``biomoe render``: write the six representation PNGs of each window of a signal CSV.

So a person can look at what the model sees::

    biomoe render Eda/12.csv --fs 100 --out renders/
    # renders/<column>/w000_spectrogram_angle.png ... w000_waveform.png, w001_...

The CSV has a header row of column names and one numeric column per signal
or segment (the AI4PAIN layout); shorter columns may be padded at the end
with empty cells or NaN, which are trimmed. A single column of numbers
without a header (a raw sensor dump) is one signal named after the file.
Each column is cut into windows of ``--window-seconds`` every
``--hop-seconds``; a window with a missing or non-finite sample inside is
skipped with a warning. Values beyond +-1e12, far outside any sensor's range,
are refused: they are a unit or export mistake, and overflow the images'
arithmetic into blank pictures.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

import numpy as np

from edge.errors import EdgeError
from edge.png import write_png
from edge.representations import REPRESENTATIONS, RepresentationSpec, represent

__all__ = ["configure_parser", "read_signal_csv", "run"]

# Windows rendered per represent() call: bounds memory (6 images of 150 kB per window).
_WINDOWS_PER_BATCH = 16
_MISSING_CELLS = {"", "nan", "NaN", "NAN"}
_MAX_ABS_VALUE = 1e12  # a 32-bit ADC gives at most 2.1e9


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``biomoe render``."""
    parser.add_argument("signal", type=Path, metavar="SIGNAL.csv",
                        help="CSV with a header row and one numeric column per signal or segment, "
                             "or a single column of numbers without a header")
    parser.add_argument("--fs", type=float, required=True, metavar="HZ", help="sampling rate of the CSV, Hz")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="output folder; PNGs go to DIR/<column>/w<index>_<representation>.png")
    parser.add_argument("--window-seconds", type=float, metavar="S",
                        help="window length, s (default: the spec's, 10 s)")
    parser.add_argument("--hop-seconds", type=float, metavar="S",
                        help="step between window starts, s (default: the window length, no overlap)")
    parser.add_argument("--column", action="append", metavar="NAME",
                        help="render only this column (repeat for several; default: all)")
    parser.add_argument("--spec", type=Path, metavar="SPEC.json",
                        help="representation settings as JSON (RepresentationSpec.to_json), e.g. a model bundle's")


def run(args: argparse.Namespace) -> int:
    """Render every window of the selected columns; returns the exit status."""
    if args.out.exists() and not args.out.is_dir():
        raise EdgeError(f"--out {args.out} is a file; pass a folder (new or existing) for the PNGs")
    spec = _spec_from_args(args)
    hop_seconds = spec.window_seconds if args.hop_seconds is None else args.hop_seconds
    if not (math.isfinite(hop_seconds) and round(hop_seconds * spec.sampling_rate) >= 1):
        raise ValueError(f"--hop-seconds must be a finite number of seconds, at least one sample "
                         f"(1 / {spec.sampling_rate:g} s); got {hop_seconds}")
    hop = round(hop_seconds * spec.sampling_rate)
    columns = _select_columns(read_signal_csv(args.signal), args.column)

    too_short = {name: values.size for name, values in columns.items() if values.size < spec.n_samples}
    window_text = f"one window of {spec.n_samples} samples ({spec.window_seconds:g} s at {spec.sampling_rate:g} Hz)"
    if len(too_short) == len(columns):
        lengths = ", ".join(f"{name!r} {size}" for name, size in too_short.items())
        raise EdgeError(f"{args.signal}: every column has fewer samples than {window_text} ({lengths}); "
                        f"use a shorter --window-seconds")
    for name, size in too_short.items():
        _warn(f"column {name!r} has {size} samples, fewer than {window_text}; skipped")

    rendered = 0
    folders = _output_folders([name for name in columns if name not in too_short], args.out)
    for name, folder in folders.items():
        rendered += _render_column(name, columns[name], folder, spec, hop)
    if rendered == 0:
        raise EdgeError(f"{args.signal}: no window could be rendered (every window has missing samples)")
    print(f"wrote {rendered * len(REPRESENTATIONS)} PNGs ({rendered} windows x {len(REPRESENTATIONS)} "
          f"representations) of {len(folders)} column(s) to {args.out}")
    return 0


def read_signal_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Read a CSV of numeric columns under a header row, or one headerless column.

    Empty cells and ``nan`` read as NaN; trailing NaN of each column (the
    padding of shorter columns) are trimmed, NaN inside a column are kept. A
    file whose first row is a single number has no header: its one column
    is named after the file (``ecg_dump.csv`` -> ``ecg_dump``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict of str to ndarray of float64
        Column name to its samples, in file order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        For an empty file, a missing or duplicate header, a row with more
        cells than the header, or a cell that is not a number or beyond
        +-1e12 (row and column named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"signal file {path} does not exist (or is not a file)")
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        raise ValueError(f"{path}: the file is empty; expected a header row of column names, then samples")
    headerless = len(rows[0]) == 1 and _is_number(rows[0][0].strip())  # a raw dump of one signal
    header = [path.stem] if headerless else [name.strip() for name in rows[0]]
    first_line, data = (1, rows) if headerless else (2, rows[1:])
    if not header or all(_is_number(name) for name in header if name):
        raise ValueError(f"{path}: the first row must name the columns (e.g. Eda or LOW_1), unless the file is a "
                         f"single column of numbers; got {rows[0]}")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates or "" in header:
        raise ValueError(f"{path}: column names must be unique and non-empty; got {header}")
    samples = np.full((len(data), len(header)), np.nan)
    for line, row in enumerate(data, start=first_line):
        if len(row) > len(header):
            raise ValueError(f"{path}: line {line} has {len(row)} cells but the header names {len(header)} columns")
        for position, cell in enumerate(row):
            cell = cell.strip()
            if cell in _MISSING_CELLS:
                continue
            try:
                value = float(cell)
            except ValueError:
                raise ValueError(f"{path}: line {line}, column {header[position]!r}: {cell!r} is not a number") from None
            if math.isfinite(value) and abs(value) > _MAX_ABS_VALUE:
                raise ValueError(f"{path}: line {line}, column {header[position]!r}: {cell} is beyond "
                                 f"+-{_MAX_ABS_VALUE:g}, far outside any sensor's range; check the file's units")
            samples[line - first_line, position] = value
    columns = {}
    for position, name in enumerate(header):
        present = np.flatnonzero(~np.isnan(samples[:, position]))
        columns[name] = samples[: present[-1] + 1 if present.size else 0, position].copy()
    return columns


def _spec_from_args(args: argparse.Namespace) -> RepresentationSpec:
    if args.spec is None:
        settings = {"sampling_rate": args.fs}
    else:
        if not args.spec.is_file():
            raise EdgeError(f"--spec {args.spec} does not exist (or is not a file); pass the JSON of a "
                            "RepresentationSpec (RepresentationSpec.to_json)")
        try:
            spec = RepresentationSpec.from_json(args.spec.read_text())
        except ValueError as exc:
            raise EdgeError(f"--spec {args.spec}: {exc}") from None
        if not math.isclose(args.fs, spec.sampling_rate, rel_tol=1e-9):
            raise ValueError(f"--fs {args.fs:g} Hz differs from sampling_rate {spec.sampling_rate:g} Hz in "
                             f"{args.spec}; resample the signal or pass a spec made for {args.fs:g} Hz")
        settings = spec.to_dict()
    if args.window_seconds is not None:
        settings["window_seconds"] = args.window_seconds
    return RepresentationSpec.from_dict(settings)


def _select_columns(columns: dict[str, np.ndarray], wanted: list[str] | None) -> dict[str, np.ndarray]:
    if not wanted:
        return columns
    unknown = [name for name in wanted if name not in columns]
    if unknown:
        raise ValueError(f"--column {unknown} not in the file; its columns are {list(columns)}")
    return {name: columns[name] for name in dict.fromkeys(wanted)}


def _output_folders(names: list[str], out: Path) -> dict[str, Path]:
    """One folder per column, its name made safe for any file system."""
    folders = {name: out / (re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "column") for name in names}
    clashing = [name for name in names if list(folders.values()).count(folders[name]) > 1]
    if clashing:
        raise ValueError(f"columns {clashing} would share one output folder; rename them in the CSV")
    return folders


def _render_column(name: str, samples: np.ndarray, folder: Path, spec: RepresentationSpec, hop: int) -> int:
    """Write the PNGs of every complete, finite window of one column; returns the windows written."""
    starts = np.arange(0, samples.size - spec.n_samples + 1, min(hop, samples.size))  # any hop past the end: 1
    windows = np.lib.stride_tricks.sliding_window_view(samples, spec.n_samples)[starts]
    finite = np.isfinite(windows).all(axis=-1)
    for index in np.flatnonzero(~finite):
        missing = int((~np.isfinite(windows[index])).sum())
        _warn(f"column {name!r} window {index} (samples {starts[index]}-{starts[index] + spec.n_samples - 1}) "
              f"has {missing} missing or non-finite samples; skipped")
    kept = np.flatnonzero(finite)
    if kept.size:
        folder.mkdir(parents=True, exist_ok=True)
    for first in range(0, kept.size, _WINDOWS_PER_BATCH):
        batch = kept[first : first + _WINDOWS_PER_BATCH]
        images = represent(windows[batch], spec, sampling_rate=spec.sampling_rate)
        for index, window_images in zip(batch, images):
            for kind, image in zip(REPRESENTATIONS, window_images):
                write_png(folder / f"w{index:03d}_{kind}.png", image)
    return int(kept.size)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _warn(message: str) -> None:
    print(f"biomoe render: warning: {message}", file=sys.stderr)

