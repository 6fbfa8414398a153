"""Output for people and for programs: one readable line per window, or JSON lines.

``biomoe monitor`` and ``biomoe history`` print for whoever reads their
standard output. A terminal gets aligned human lines (:class:`WindowLines`);
a pipe or a file gets one JSON object per line, as the database stores it.
:func:`output_format` makes the choice (``--format text|jsonl`` overrides it).

A human line reads, for a three-class bundle::

    device time  level        No             Low            High           notes
        0:00:10  calibrating 1/6 (learning the patient's rest baseline)
        0:01:10  No Pain      ███████▊  97%  ▎          3%             0%
        0:01:20  Low Pain     ██▌       31%  ████▎     53%  █▎        16%  EDA saturation, level held
        0:01:30  skipped      processing fell behind (2 so far)

Device time is the end of the window on the sensor board's clock
(hours:minutes:seconds); the level is the smoothed label; each class has a
bar of its smoothed probability (the level's own numbers; eighth-blocks,
``#`` when the terminal cannot show them; the window's own probabilities
are in the JSON lines and the database); the notes name the channels the
quality gate flagged, with a window that has one not moving the level
(``level held``), and the samples lost on the link since the previous line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from edge.storage import WindowResult

__all__ = ["OUTPUT_FORMATS", "output_format", "device_clock", "probability_bar", "WindowLines"]

#: Values of ``--format`` on ``biomoe monitor``.
OUTPUT_FORMATS = ("text", "jsonl")
#: Cells of one probability bar.
BAR_CELLS = 8
_EIGHTHS = " ▏▎▍▌▋▊▉█"
_CLOCK = len("device time")
_SKIP_REASONS = {"behind": "processing fell behind", "database unavailable": "database unavailable"}


def output_format(requested: str | None, stream) -> str:
    """``"text"`` for a terminal, ``"jsonl"`` for a pipe or file, unless ``requested`` says which.

    Parameters
    ----------
    requested : {"text", "jsonl"} or None
        The ``--format`` flag; None chooses from ``stream``.
    stream : text stream
        Where the lines go (``sys.stdout``).

    Examples
    --------
    >>> import io
    >>> output_format(None, io.StringIO()), output_format("text", io.StringIO())
    ('jsonl', 'text')
    """
    if requested is not None:
        if requested not in OUTPUT_FORMATS:
            raise ValueError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, got {requested!r}")
        return requested
    try:
        return "text" if stream.isatty() else "jsonl"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "jsonl"


def _can_draw_blocks(stream) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        _EIGHTHS.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def device_clock(seconds: float) -> str:
    """Device seconds as ``H:MM:SS`` (hours run on past 24).

    Examples
    --------
    >>> device_clock(70.0), device_clock(90061.4)
    ('0:01:10', '25:01:01')
    """
    if not math.isfinite(seconds):
        return "-:--:--"
    sign = "-" if seconds < 0 else ""
    whole = int(round(abs(seconds)))
    return f"{sign}{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def probability_bar(p: float | None, cells: int = BAR_CELLS, blocks: bool = True) -> str:
    """A bar ``cells`` characters wide of a probability in [0, 1].

    Eighth-blocks (``█▌``) when ``blocks``, else ``#`` and ``.``.

    Examples
    --------
    >>> probability_bar(0.5, 4), probability_bar(0.5, 4, blocks=False)
    ('██  ', '##..')
    """
    if p is None or not math.isfinite(p):
        return " " * cells
    p = min(max(p, 0.0), 1.0)
    if not blocks:
        filled = round(p * cells)
        return "#" * filled + "." * (cells - filled)
    eighths = round(p * cells * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[part] if part else "")
    return text.ljust(cells)


def _flagged(quality: dict) -> list[str]:
    """Channels the quality gate flagged, those with the same flags together: ``["EDA BVP missing"]``."""
    groups: dict[str, list[str]] = {}
    for channel, verdict in quality.items():
        if not verdict.get("ok", False):
            groups.setdefault(" ".join(verdict.get("flags", [])) or "flagged", []).append(channel)
    if len(groups) == 1 and len(next(iter(groups.values()))) == len(quality) > 1:
        return [f"all channels {next(iter(groups))}"]
    return [f"{' '.join(channels)} {flags}" for flags, channels in groups.items()]


def _short_names(labels: Sequence[str]) -> list[str]:
    """``No Pain`` -> ``No`` when the first words tell the classes apart; the labels otherwise."""
    first = [label.split()[0] if label.split() else label for label in labels]
    return first if len(set(first)) == len(first) else list(labels)


class WindowLines:
    """Human lines of the monitor's results, one per window, aligned in columns.

    Call it with each :class:`~edge.storage.WindowResult` in order; the first
    call's text starts with a header line.

    Parameters
    ----------
    labels : sequence of str
        The bundle's class labels, in model order.
    calibration_windows : int
        Reliable windows a calibrated bundle learns the rest baseline from (0: none).
    lost_samples : callable, optional
        ``lost_samples() -> int``: samples lost on the link so far (the monitor's
        counter); lines say how many were lost since the previous line.
    blocks : bool
        Draw bars with Unicode eighth-blocks (else ``#``).

    Examples
    --------
    >>> lines = WindowLines(["No Pain", "Pain"], calibration_windows=0, blocks=False)
    >>> ok = {"EDA": {"ok": True, "flags": []}}
    >>> result = WindowResult(0, 0.0, 10.0, 0.0, {"No Pain": 0.75, "Pain": 0.25}, "No Pain",
    ...                       {"No Pain": 0.75, "Pain": 0.25}, "No Pain", ok)
    >>> print(lines(result))
    device time  level        No             Pain           notes
        0:00:10  No Pain      ######..  75%  ##......  25%
    """

    def __init__(self, labels: Sequence[str], calibration_windows: int = 0,
                 lost_samples: Callable[[], int] | None = None, blocks: bool = True):
        self.labels = list(labels)
        self.names = _short_names(self.labels)
        self.calibration_windows = calibration_windows
        self.lost_samples = lost_samples
        self.blocks = blocks
        self._cell = max(BAR_CELLS + 7, max(len(name) for name in self.names) + 2) if self.names else 0
        self._level_width = max([11, *map(len, self.labels)]) + 2
        self._header_done = False
        self._rest_windows = 0  # reliable calibrating windows since the last labelled one
        self._calibrating = False
        self._skipped = 0
        self._lost_before = 0

    @classmethod
    def for_stream(cls, stream, labels: Sequence[str], calibration_windows: int = 0,
                   lost_samples: Callable[[], int] | None = None) -> WindowLines:
        """Lines for ``stream``, with block bars if its encoding can show them."""
        return cls(labels, calibration_windows, lost_samples, blocks=_can_draw_blocks(stream))

    def header(self) -> str:
        """The column names."""
        cells = "".join(name.ljust(self._cell) for name in self.names)
        return f"{'device time':>{_CLOCK}}  {'level':<{self._level_width}}{cells}notes"

    def __call__(self, result: WindowResult) -> str:
        """The line of one result (after the header, the first time)."""
        line = self.line(result)
        if not self._header_done:
            self._header_done = True
            return self.header() + "\n" + line
        return line

    def line(self, result: WindowResult) -> str:
        """The line of one result, without the header."""
        clock = f"{device_clock(result.end_time):>{_CLOCK}}  "
        notes = self._notes(result)
        if result.skipped and result.skip_reason == "calibrating":
            text = clock + self._calibration_text(result)
        elif result.skipped:
            self._skipped += 1
            reason = _SKIP_REASONS.get(result.skip_reason or "", result.skip_reason or "not processed")
            text = clock + f"{'skipped':<{self._level_width}}{reason} ({self._skipped} so far)"
        else:
            self._calibrating = False
            level = result.smoothed_label or result.label or "-"
            probabilities = result.smoothed_probabilities or result.probabilities or {}
            bars = "".join(self._cell_text(probabilities.get(label)) for label in self.labels)
            text = clock + f"{level:<{self._level_width}}{bars}"
        if notes:
            text = text.ljust(len(clock) + self._level_width + self._cell * len(self.names)) + notes
        return text.rstrip()

    def _cell_text(self, p: float | None) -> str:
        if p is None:
            return "-".ljust(self._cell)
        return f"{probability_bar(p, BAR_CELLS, self.blocks)} {round(100 * p):3d}%".ljust(self._cell)

    def _calibration_text(self, result: WindowResult) -> str:
        if not self._calibrating:  # a new baseline (the start, or kill -USR1)
            self._calibrating, self._rest_windows = True, 0
        counted = bool(result.quality) and all(verdict.get("ok", False) for verdict in result.quality.values())
        if counted:
            self._rest_windows += 1
        total = self.calibration_windows
        progress = f"{min(self._rest_windows, total)}/{total}" if total else f"{self._rest_windows}"
        text = f"calibrating {progress}"
        return text + (" (learning the patient's rest baseline)" if counted else " (window not counted)")

    def _notes(self, result: WindowResult) -> str:
        notes = []
        if not result.skipped or result.skip_reason == "calibrating":
            notes.extend(_flagged(result.quality))
            if not result.skipped and notes:  # the smoother ignores unreliable windows
                notes.append("level held")
        if self.lost_samples is not None:
            lost = self.lost_samples()
            if lost > self._lost_before:
                notes.append(f"{lost - self._lost_before} samples lost")
            self._lost_before = max(lost, self._lost_before)
        if result.placeholder:
            notes.append("PLACEHOLDER model")
        return ", ".join(notes)
