"""``biomoe history DB``: read back what the monitor stored.

Prints the stored windows as a table on a terminal and as JSON lines (one
object per window, as ``biomoe monitor`` prints them) into a pipe or a file;
``--format table|csv|jsonl`` chooses. Exports them to a CSV file (``--csv``),
or draws a timeline PNG (``--plot``) of the smoothed pain level above a strip
of per-channel signal quality; ``--export edf`` writes them as an EDF+
annotation file on the clock of the monitor's recordings
(:mod:`edge.recording.history_export`). The plot needs matplotlib (``pip install
"tiny-biomoe-edge[plot]"``); printing and CSV need nothing beyond the standard
library. The database is opened read-only, so this is safe while the monitor
runs, and works for a user who may not write to its folder.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from edge.console import output_format
from edge.errors import EdgeError
from edge.storage import ResultStore, WindowResult

__all__ = ["HISTORY_FORMATS", "history_rows", "format_table", "write_csv", "write_jsonl", "plot_timeline",
           "configure_parser", "run"]

#: Values of ``--format``: what goes to standard output.
HISTORY_FORMATS = ("table", "csv", "jsonl")


def _labels_of(results: Sequence[WindowResult]) -> list[str]:
    """Class labels in model order, from the first results that have probabilities."""
    labels: list[str] = []
    for result in results:
        for label in result.probabilities or {}:
            if label not in labels:
                labels.append(label)
    return labels


def _channels_of(results: Sequence[WindowResult]) -> list[str]:
    channels: list[str] = []
    for result in results:
        for channel in result.quality:
            if channel not in channels:
                channels.append(channel)
    return channels


def _wall(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="seconds")


def _flags_text(result: WindowResult) -> str:
    if result.skipped:
        return "skipped"
    bad = [f"{channel}:{'+'.join(v.get('flags', []))}" for channel, v in result.quality.items() if not v.get("ok")]
    return "ok" if not bad else " ".join(bad)


def history_rows(results: Sequence[WindowResult]) -> list[dict]:
    """Flat rows (one per window) with one ``p_<label>`` column per class.

    Columns: ``session``, ``window``, ``start_time``, ``end_time`` (device s),
    ``wall_time`` (local ISO time), ``label``, ``smoothed_label``,
    ``p_<label>``..., ``quality_ok``, ``quality`` (``ok``, ``skipped`` or
    ``CHANNEL:flag+flag``...), ``latency_ms`` (total), ``skipped``,
    ``bundle_id``, ``placeholder``.
    """
    labels = _labels_of(results)
    rows = []
    for r in results:
        row = {
            "session": r.session_id, "window": r.window_index,
            "start_time": r.start_time, "end_time": r.end_time, "wall_time": _wall(r.wall_time),
            "label": r.label or "", "smoothed_label": r.smoothed_label or "",
        }
        for label in labels:
            value = (r.probabilities or {}).get(label)
            row[f"p_{label}"] = "" if value is None else round(value, 6)
        row.update({
            "quality_ok": "" if r.quality_ok is None else int(r.quality_ok),
            "quality": _flags_text(r),
            "latency_ms": r.latency_ms.get("total", ""),
            "skipped": int(r.skipped), "bundle_id": r.bundle_id, "placeholder": int(r.placeholder),
        })
        rows.append(row)
    return rows


def format_table(results: Sequence[WindowResult]) -> str:
    """A fixed-width text table of the results, for a terminal."""
    labels = _labels_of(results)
    header = ["session", "window", "device time (s)", "wall time", "smoothed", "label"]
    header += [f"p({label})" for label in labels] + ["total ms", "quality"]
    lines = [header]
    for r in results:
        probabilities = r.probabilities or {}
        lines.append([
            str(r.session_id), str(r.window_index), f"{r.start_time:.1f}-{r.end_time:.1f}", _wall(r.wall_time),
            r.smoothed_label or "-", r.label or "-",
            *[f"{probabilities[label]:.3f}" if label in probabilities else "-" for label in labels],
            f"{r.latency_ms['total']:.0f}" if "total" in r.latency_ms else "-", _flags_text(r),
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)
    if any(r.placeholder for r in results):
        text = "NOTE: results from a PLACEHOLDER model (random weights): the pain levels mean nothing.\n" + text
    return text


def write_csv(results: Sequence[WindowResult], target) -> int:
    """Write :func:`history_rows` as CSV to a path (or a text stream); return the row count."""
    rows = history_rows(results)
    if hasattr(target, "write"):
        _write_rows(rows, target)
    else:
        with open(target, "w", newline="", encoding="utf-8") as handle:
            _write_rows(rows, handle)
    return len(rows)


def write_jsonl(results: Sequence[WindowResult], handle) -> int:
    """One JSON object per window (:meth:`WindowResult.to_json`, as the monitor prints); return the count."""
    for result in results:
        handle.write(result.to_json() + "\n")
    return len(results)


def _write_rows(rows: list[dict], handle) -> None:
    fields = list(rows[0]) if rows else ["session", "window"]
    writer = csv.DictWriter(handle, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)


def plot_timeline(results: Sequence[WindowResult], path, title: str | None = None) -> None:
    """Draw the smoothed pain level and per-channel quality over wall time to a PNG.

    Top panel: smoothed level (step line) and each window's own label (dots);
    skipped windows as grey ticks. Bottom panel: one row per channel, a
    green square where the channel was ok, red where it was flagged, grey
    where the window was skipped.

    Raises
    ------
    EdgeError
        When matplotlib is not installed, or there is nothing to plot.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgeError(
            'drawing the timeline needs matplotlib, which is not installed; pip install matplotlib '
            '(or pip install "tiny-biomoe-edge[plot]"), or export with --csv'
        ) from None
    if not results:
        raise EdgeError("no stored windows to plot; run biomoe monitor first or widen --last/--session")
    labels, channels = _labels_of(results), _channels_of(results)
    times = [dt.datetime.fromtimestamp(r.wall_time) for r in results]

    figure, (levels, quality) = plt.subplots(
        2, 1, sharex=True, figsize=(11, 2.8 + 0.35 * max(len(channels), 1)),
        gridspec_kw={"height_ratios": [3, max(len(channels), 1) * 0.6]},
    )
    processed = [(t, r) for t, r in zip(times, results) if not r.skipped]
    if processed:
        x = [t for t, _ in processed]
        smoothed = [labels.index(r.smoothed_label) if r.smoothed_label in labels else None for _, r in processed]
        raw = [labels.index(r.label) if r.label in labels else None for _, r in processed]
        levels.step(x, smoothed, where="post", color="tab:red", linewidth=2, label="smoothed")
        levels.plot(x, raw, "o", color="tab:blue", markersize=3, alpha=0.5, label="window")
    skipped = [t for t, r in zip(times, results) if r.skipped]
    if skipped:
        levels.plot(skipped, [-0.3] * len(skipped), "|", color="grey", markersize=8, label="skipped")
    levels.set_yticks(range(len(labels)), labels)
    levels.set_ylim(-0.5, max(len(labels) - 0.5, 0.5))
    levels.set_ylabel("pain level")
    levels.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    levels.grid(axis="y", alpha=0.3)

    for row, channel in enumerate(channels):
        colours = [
            "lightgrey" if r.skipped or channel not in r.quality
            else ("tab:green" if r.quality[channel].get("ok") else "tab:red")
            for r in results
        ]
        quality.scatter(times, [row] * len(times), c=colours, marker="s", s=30)
    quality.set_yticks(range(len(channels)), channels)
    quality.set_ylim(-0.7, len(channels) - 0.3)
    quality.set_ylabel("quality")
    quality.set_xlabel("wall time")
    heading = title or "Pain monitor timeline"
    if any(r.placeholder for r in results):
        heading += "  (PLACEHOLDER MODEL: levels are meaningless)"
    levels.set_title(heading)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``biomoe history``."""
    parser.add_argument("database", type=Path, metavar="DB", help="results database written by biomoe monitor")
    parser.add_argument("--last", type=int, metavar="N", help="only the last N windows")
    parser.add_argument("--session", type=int, metavar="ID", help="only windows of this monitor session")
    parser.add_argument("--format", choices=HISTORY_FORMATS,
                        help="what to print: table, csv or jsonl (one JSON object per window); default table on a "
                             "terminal, jsonl into a pipe or file")
    parser.add_argument("--csv", metavar="OUT.csv", help="export to a CSV file ('-' for standard output)")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="draw a timeline PNG")
    parser.add_argument("--export", choices=("edf",),
                        help="edf: write the windows as an EDF+ annotation file on the clock of the monitor's "
                             "--record files (one per session), to --out")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="file --export writes (default: the database's name with .edf)")


def run(args: argparse.Namespace) -> int:
    """Print, export or plot the stored results."""
    if args.last is not None and args.last < 1:
        raise EdgeError(f"--last must be a positive number of windows, got {args.last}")
    for option, target in (("--csv", args.csv), ("--plot", args.plot)):
        if target not in (None, "-") and not Path(target).parent.is_dir():
            raise EdgeError(f"{option} {target}: folder {Path(target).parent} does not exist; create it first")
    with ResultStore(args.database, readonly=True) as store:
        results = store.windows(last=args.last, session=args.session)
        recording_files = store.events("recording_file")
        if store.unread_wal:
            print(f"biomoe history: note: the latest windows, in {args.database.name}-wal, are not shown: SQLite "
                  f"needs its -shm index, which is gone, and cannot rebuild it in a folder you may not write; run "
                  "as a user who may write there (e.g. the monitor's service user) to see them", file=sys.stderr)
    if args.out is not None and args.export is None:
        raise EdgeError("--out names the file of --export; add --export edf")
    if args.format is not None or (args.csv is None and args.plot is None and args.export is None):
        chosen = args.format or ("table" if output_format(None, sys.stdout) == "text" else "jsonl")
        if not results:
            print(f"no windows stored in {args.database} yet", file=sys.stdout if chosen == "table" else sys.stderr)
        elif chosen == "table":
            print(format_table(results))
        elif chosen == "csv":
            write_csv(results, sys.stdout)
        else:
            write_jsonl(results, sys.stdout)
    if args.csv == "-":
        write_csv(results, sys.stdout)
    elif args.csv is not None:
        count = write_csv(results, args.csv)
        print(f"wrote {count} windows to {args.csv}", file=sys.stderr)
    if args.plot is not None:
        plot_timeline(results, args.plot, title=f"Pain monitor timeline: {args.database.name}")
        print(f"wrote timeline of {len(results)} windows to {args.plot}", file=sys.stderr)
    if args.export == "edf":
        from edge.recording.history_export import export_edf

        for path in export_edf(results, recording_files, args.out or args.database.with_suffix(".edf")):
            print(f"wrote EDF+ annotations to {path}", file=sys.stderr)
    return 0
