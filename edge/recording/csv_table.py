"""CSV recordings as written by spreadsheets, loggers and other labs: :func:`csv_rows`, :func:`read_csv_columns`.

What is accepted (the header by Python's :mod:`csv`, the rows by NumPy's
parser as they stream: a day of samples costs its floats, not its text):

- a byte-order mark, Windows line endings, quoted cells, blank lines and
  ``#`` comment lines before the header;
- ``,``, ``;`` or tab between cells (sniffed), and a decimal comma when the
  cells are not separated by commas (``2,5;0,75``);
- a header row naming the columns, optionally with units (``EDA (uS)``,
  ``EDA [uS]``, ``eda_uS``) or a row of units under it (``s,uS,a.u.``);
  without a header, one column whose channel ``--map`` names;
- empty cells (missing values: NaN) and a trailing empty column;
- a time column (``time``, ``timestamp``, ``t``, ``seconds``...) in seconds,
  in milliseconds when its unit says so (``time_ms``, ``time (ms)``) or its
  values are unix milliseconds, or as ISO 8601 date-times; it gives the rate,
  and a jump in it (rows missing) leaves those samples missing, in place, so
  no later second shifts; a clock that is not regular is refused.
"""

from __future__ import annotations

import csv
import gzip
import math
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge.errors import EdgeError

__all__ = ["csv_rows", "read_csv_columns", "split_unit"]

_TIME_NAMES = ("time", "timestamp", "t", "seconds", "sec", "elapsed", "elapsed time")
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3, "milliseconds": 1e-3}
#: Units recognised after ``_`` or a space at the end of a column name (``eda_uS``); bracketed ones are always units.
_SUFFIX_UNITS = ("us", "µs", "μs", "ns", "ms", "s", "sec", "kohm", "ohm", "mohm", "kω", "ω", "mω", "%", "mv", "v")
#: Unix time in milliseconds is above this (1e11 s would be the year 5138).
_UNIX_MS = 1e11
#: Lines the delimiter is sniffed from (and the header read from).
_SNIFFED_LINES = 20
#: A step longer than this many typical steps in a time column is a jump: samples missing there.
JUMP_STEPS = 2.0
#: A time column whose rows, placed on the sample grid, stray further than this from it is not a regular clock.
TIME_TOLERANCE_SECONDS = 0.5


def _open_text(path: Path):
    """Text of a CSV (gzipped or not), a leading byte-order mark dropped, line endings kept for :mod:`csv`."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _content_lines(handle) -> Iterator[str]:
    """The lines of an open CSV that hold something: blank lines and ``#`` comments left out."""
    return (line for line in handle if line.strip() and not line.lstrip().startswith("#"))


def _sniff_delimiter(lines: list[str]) -> str:
    """``,``, ``;`` or tab, as the first lines use it (``,`` when they do not tell)."""
    try:
        return csv.Sniffer().sniff("".join(lines), delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _cells(lines, delimiter: str) -> list[list[str]]:
    return [[cell.strip() for cell in row] for row in csv.reader(lines, delimiter=delimiter)]


def csv_rows(path) -> list[list[str]]:
    """The non-blank rows of a small CSV file (a label file) as stripped cells, delimiter sniffed, comments dropped.

    Raises
    ------
    EdgeError
        The file cannot be read or is not text.
    """
    path = Path(path)
    try:
        with _open_text(path) as handle:
            lines = list(_content_lines(handle))
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise EdgeError(f"{path}: cannot read it as a CSV text file ({exc})") from None
    return [row for row in _cells(lines, _sniff_delimiter(lines[:_SNIFFED_LINES])) if any(row)]


def split_unit(name: str) -> tuple[str, str | None]:
    """``"EDA (uS)"``, ``"EDA [uS]"``, ``"eda_uS"`` -> ``("EDA", "uS")``; a name without a unit -> ``(name, None)``."""
    bracketed = re.fullmatch(r"(.+?)\s*[(\[]\s*([^)\]]*?)\s*[)\]]", name)
    if bracketed:
        return bracketed.group(1), bracketed.group(2)
    suffixed = re.fullmatch(r"(.+?)[_ ]+([^_ ]+)", name)
    if suffixed and suffixed.group(2).lower() in _SUFFIX_UNITS:
        return suffixed.group(1), suffixed.group(2)
    return name, None


def _is_number(cell: str) -> bool:
    try:
        float(cell.replace(",", "."))
        return True
    except ValueError:
        return False


def read_csv_columns(path, rate_hz: float | None, channel_map: dict[str, str]) -> list[tuple]:
    """``[(name, unit or None, rate Hz, samples, None)]`` of a CSV recording (see the module docstring).

    A column without a unit is taken to be in the protocol's unit (EDA in uS).

    Raises
    ------
    EdgeError
        No rows, ragged rows, cells that are not numbers, no rate (``--rate``
        or a time column), a time column that does not increase or is not a regular clock.
    """
    path = Path(path)
    try:
        with _open_text(path) as handle:
            lines = _content_lines(handle)
            first = list(itertools.islice(lines, _SNIFFED_LINES))
            delimiter = _sniff_delimiter(first)
            names, units, head_lines = _header(path, _cells(first[:2], delimiter), channel_map)
            body = first[head_lines:]
            if not body:
                raise EdgeError(f"{path}: a header but no rows of samples")
            time_index = _time_column(names)
            first_row = _cells(body[:1], delimiter)[0]
            iso_time = time_index is not None and time_index < len(first_row) and not _is_number(first_row[time_index])
            table = _numbers(path, body, lines, delimiter, names, time_index if iso_time else None, head_lines)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise EdgeError(f"{path}: cannot read it as a CSV text file ({exc})") from None
    kept = [i for i in range(len(names)) if i != time_index and (names[i] or not np.isnan(table[:, i]).all())]
    if time_index is None:
        if rate_hz is None:
            raise EdgeError(f"{path}: a CSV without a time column needs its sampling rate: --rate HZ")
        rate, grid = rate_hz, np.arange(len(table))
    else:
        seconds = table[:, time_index] if iso_time else _seconds(path, names[time_index], units[time_index],
                                                                  table[:, time_index])
        rate, grid = _sample_grid(path, names[time_index], units[time_index], seconds, rate_hz)
    return [(names[i], units[i], rate, _on_grid(table[:, i], grid), None) for i in kept]


def _time_column(names) -> int | None:
    """Index of the column whose name says it holds each sample's time, or None."""
    return next((i for i, name in enumerate(names) if name.lower() in _TIME_NAMES), None)


def _header(path: Path, rows: list[list[str]], channel_map: dict[str, str]) -> tuple[tuple, list, int]:
    """``(names, units, lines)`` of a CSV's head: the header row, a row of units under it if any, how many lines."""
    if not rows:
        raise EdgeError(f"{path}: the file holds no rows; export the recording again")
    if all(_is_number(cell) for cell in rows[0] if cell):
        if len(rows[0]) != 1:
            raise EdgeError(f"{path}: {len(rows[0])} columns without a header row; add a header naming them "
                            "(e.g. time,EDA,BVP) or give one column")
        if len(channel_map) != 1:
            raise EdgeError(f"{path}: one column without a name; say which channel it is with --map, e.g. "
                            "--map EDA=1")
        return (next(iter(channel_map.values())),), [None], 0
    names, units = zip(*(split_unit(cell) for cell in rows[0]))
    time_index = _time_column(names)
    if len(rows) > 1 and _is_unit_row(rows[1], time_index):
        return names, [unit or cell or None for unit, cell in zip(units, rows[1])], 2
    return names, list(units), 1


def _numbers(path: Path, body: list[str], more: Iterator[str], delimiter: str, names: tuple,
             iso_time: int | None, head_lines: int) -> np.ndarray:
    """The data rows (``body``, then ``more``) as a float table, parsed as they stream by NumPy: the file's text
    is never held in memory, so hours of samples cost their floats only.

    Empty cells are NaN, a decimal comma is a point, the ISO 8601 time column
    (index ``iso_time``) is unix seconds; cells past the header's columns
    must be empty (a trailing delimiter).
    """
    width_seen = len(_cells(body[:1], delimiter)[0])
    converters = {i: _iso_seconds if i == iso_time else _number for i in range(width_seen)}
    try:
        table = np.loadtxt(itertools.chain(body, more), delimiter=delimiter, quotechar='"', ndmin=2,
                           dtype=np.float64, converters=converters)
    except ValueError as exc:
        raise _bad_row(path, delimiter, names, converters, head_lines, exc) from None
    width = len(names)
    if table.shape[1] < width or not np.isnan(table[:, width:]).all():
        raise _bad_row(path, delimiter, names, converters, head_lines, None)
    return table[:, :width]


def _number(cell: str) -> float:
    """A cell as a number: empty is NaN (missing), a decimal comma a point."""
    cell = cell.strip()
    return float(cell.replace(",", ".")) if cell else math.nan


def _iso_seconds(cell: str) -> float:
    """An ISO 8601 date-time cell as unix seconds."""
    return float(np.datetime64(cell.strip(), "ns").astype(np.int64)) / 1e9


def _bad_row(path: Path, delimiter: str, names: tuple, converters: dict, head_lines: int,
             exc: ValueError | None) -> EdgeError:
    """The one line naming the first data row NumPy could not read (read again, row by row, to find it)."""
    width = len(names)
    with _open_text(path) as handle:
        rows = csv.reader(itertools.islice(_content_lines(handle), head_lines, None), delimiter=delimiter)
        for number, row in enumerate(rows, start=1):
            if len(row) < width or any(cell.strip() for cell in row[width:]):
                return EdgeError(f"{path}: data row {number} has {len(row)} cells where the header names {width} "
                                 "columns; a truncated or extra line? delete it")
            for index, cell in enumerate(row[:width]):
                try:
                    converters.get(index, _number)(cell)
                except ValueError:
                    what = "an ISO 8601 date-time" if converters.get(index) is _iso_seconds else "a number"
                    return EdgeError(f"{path}: column {names[index]!r} holds {cell.strip()!r} in data row {number}, "
                                     f"not {what}; remove that line or text")
    return EdgeError(f"{path}: cannot read its rows of samples ({exc})")


def _on_grid(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``values`` at their sample-grid indices, NaN (missing) where no row is."""
    out = np.full(grid[-1] + 1, np.nan)
    out[grid] = values
    return out


def _is_unit_row(row: list[str], time_index: int | None) -> bool:
    """A row under the header that names units (``s,uS,a.u.``): no number in it, some text beside the time."""
    return not any(_is_number(cell) for cell in row) and any(cell for i, cell in enumerate(row) if i != time_index)


def _sample_grid(path: Path, name: str, unit: str | None, seconds: np.ndarray,
                 rate_hz: float | None) -> tuple[float, np.ndarray]:
    """``(rate Hz, grid index of each row)`` from a time column's ``seconds``.

    Rows are consecutive samples within a run; a step over
    :data:`JUMP_STEPS` typical steps ends a run (samples missing there), and
    the next run is placed by its time, the samples between left missing. The
    rate counts the samples of the runs over their duration, so times rounded
    to the millisecond (256 Hz) give the true rate.
    """
    steps = np.diff(seconds)
    if len(steps) == 0 or not np.all(steps > 0):  # NaN (an empty time cell) fails too
        raise EdgeError(f"{path}: column {name!r} must increase from row to row (time of each sample)")
    typical = float(np.median(steps))
    ends = np.flatnonzero(steps > JUMP_STEPS * typical)  # last row of each run but the final one
    first = np.r_[0, ends + 1]
    last = np.r_[ends, len(seconds) - 1]
    spanned = float(np.sum(seconds[last] - seconds[first]))
    rate = float(np.sum(last - first) / spanned) if spanned > 0 else 1.0 / typical
    if unit is None and rate < 1.0:
        raise EdgeError(f"{path}: column {name!r} steps by {typical:g} per row, {rate:g} Hz if seconds; if it "
                        f"holds milliseconds, name it {name}_ms")
    if rate_hz is not None and not math.isclose(rate, rate_hz, rel_tol=1e-3):
        raise EdgeError(f"{path}: --rate {rate_hz:g} contradicts its {name!r} column ({rate:g} Hz)")
    offsets = np.rint((seconds[first] - seconds[0]) * rate).astype(np.int64) - first  # grid index - row number
    grid = np.repeat(np.maximum.accumulate(offsets), last - first + 1) + np.arange(len(seconds))  # runs never overlap
    stray = np.abs(grid / rate - (seconds - seconds[0]))
    if stray.max() > TIME_TOLERANCE_SECONDS:
        row = int(np.argmax(stray))
        raise EdgeError(f"{path}: column {name!r} is not a regular clock: data row {row + 1} is {stray[row]:.2g} s off "
                        f"the {rate:g} Hz its rows give; resample the recording to a fixed rate")
    return rate, grid


def _seconds(path: Path, name: str, unit: str | None, values: np.ndarray) -> np.ndarray:
    """A numeric time column in seconds: its unit's (s or ms), else ms when the values are unix milliseconds."""
    if unit is None:
        return values * (1e-3 if np.nanmax(np.abs(values)) > _UNIX_MS else 1.0)
    if unit.lower() not in _TIME_UNITS:
        raise EdgeError(f"{path}: column {name!r} is in {unit!r}; give its times in s or ms")
    return values * _TIME_UNITS[unit.lower()]
