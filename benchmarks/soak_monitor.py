"""Soak run of ``biomoe monitor`` against the simulated hub, faster than real time.

``python -m benchmarks.soak_monitor --hours 2 --speed 30``

Starts ``biomoe monitor --simulate`` in a subprocess for exactly the number
of windows that ``--hours`` of stream hold, samples the monitor's resident
memory (``VmRSS``, and its peak ``VmHWM``, from ``/proc/PID/status``) while it
runs, then reads the results database back and reports, as markdown on stdout:

- accounting: windows expected from the stream length, stored, processed,
  skipped; whether their indices and device time spans tile the stream
  with no hole; samples the bridge lost;
- memory: RSS at the first window, at the end and its peak, with samples
  through the run (flat means no leak);
- latency of each stage (median and 95th percentile over every window,
  from the stored ``latency_ms``; ``store`` from the monitor's summary).

Linux only (``/proc``). Choose a ``--speed`` the machine keeps up with: a
window every ``hop / speed`` wall seconds must leave room for its processing.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.storage import ResultStore

__all__ = ["expected_windows", "read_memory_kib", "soak", "format_report", "main"]

_STAGES = ("quality", "represent", "infer", "smooth", "total", "queue")


def expected_windows(stream_seconds: float, window_seconds: float, hop_seconds: float) -> int:
    """Windows of ``window_seconds`` every ``hop_seconds`` that fit in ``stream_seconds`` of signal."""
    if stream_seconds < window_seconds:
        return 0
    return math.floor((stream_seconds - window_seconds) / hop_seconds + 1e-9) + 1


def read_memory_kib(pid: int) -> dict[str, int] | None:
    """``VmRSS`` and ``VmHWM`` (peak) of a process in KiB; None once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values if len(values) == 2 else None


def soak(hours: float = 2.0, speed: float = 60.0, window: float = 10.0, hop: float = 5.0,
         sample_every: float = 1.0, database: Path | None = None, progress=sys.stderr) -> dict:
    """Run the monitor on ``hours`` of simulated stream and measure it.

    Parameters
    ----------
    hours : float
        Stream length in simulated hours.
    speed : float
        Simulator speed (multiple of real time).
    window, hop : float
        Window length and hop, seconds.
    sample_every : float
        Wall seconds between memory samples.
    database : Path, optional
        Results database; default a temporary file (removed afterwards).
    progress : text stream or None
        Where a line per 10 % of the run goes.

    Returns
    -------
    dict
        ``settings``, ``returncode``, ``wall_seconds``, ``accounting``,
        ``memory_mib`` (``first_window``, ``end``, ``peak``, ``samples``),
        ``latency_ms`` (stage -> ``median``, ``p95``), ``summary`` (the monitor's
        own summary event) and ``stderr_tail``.
    """
    n_windows = expected_windows(hours * 3600.0, window, hop)
    with tempfile.TemporaryDirectory(prefix="biomoe-soak-") as folder:
        database = Path(database) if database is not None else Path(folder) / "soak.sqlite"
        command = [
            sys.executable, "-m", "edge.cli", "monitor", "--simulate", "--speed", str(speed),
            "--window", str(window), "--hop", str(hop), "--windows", str(n_windows), "--quiet",
            "--db", str(database), "--status-every", "30", "--log-level", "warning",
        ]
        began = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        samples: list[tuple[float, int, int, int]] = []  # (wall s, windows stored, RSS KiB, HWM KiB)
        stored, reported = 0, 0
        while process.poll() is None:
            memory = read_memory_kib(process.pid)
            if database.exists():
                stored = _count(database, stored)
            if memory is not None:
                samples.append((time.monotonic() - began, stored, memory["VmRSS"], memory["VmHWM"]))
            if progress is not None and n_windows and stored * 10 // n_windows > reported:
                reported = stored * 10 // n_windows
                rss = samples[-1][2] / 1024 if samples else float("nan")
                print(f"soak: {stored}/{n_windows} windows, RSS {rss:.1f} MiB", file=progress, flush=True)
            time.sleep(sample_every)
        stderr = process.stderr.read()
        wall_seconds = time.monotonic() - began
        with ResultStore(database, readonly=True) as store:
            session = store.sessions()[-1]["id"]
            results = store.windows(session=session)
            summaries = [event for event in store.events("summary") if event["session_id"] == session]
    summary = summaries[-1]["detail"] if summaries else {}
    processed = [r for r in results if not r.skipped]
    tiled = [r.window_index for r in results] == list(range(len(results))) and all(
        math.isclose(r.start_time, results[0].start_time + i * hop) for i, r in enumerate(results)
    )
    latency = {}
    for stage in _STAGES:
        values = np.array([r.latency_ms[stage] for r in processed if stage in r.latency_ms])
        if values.size:
            latency[stage] = {"median": float(np.median(values)), "p95": float(np.percentile(values, 95))}
    if "store" in summary.get("stage_median_ms", {}):
        latency["store"] = {"median": summary["stage_median_ms"]["store"], "p95": math.nan}
    with_windows = [s for s in samples if s[1] > 0]
    return {
        "settings": {"hours": hours, "speed": speed, "window_s": window, "hop_s": hop},
        "returncode": process.returncode,
        "wall_seconds": wall_seconds,
        "accounting": {
            "expected": n_windows, "stored": len(results), "processed": len(processed),
            "skipped": len(results) - len(processed), "tiled": tiled,
            "windows_cut": summary.get("windows_cut"), "windows_waiting": summary.get("windows_waiting"),
            "samples_lost": summary.get("samples_lost"),
            "link_losses": summary.get("link_losses"),
        },
        "memory_mib": {
            "first_window": with_windows[0][2] / 1024 if with_windows else math.nan,
            "end": samples[-1][2] / 1024 if samples else math.nan,
            "peak": max(s[3] for s in samples) / 1024 if samples else math.nan,
            "samples": [(round(t, 1), n, round(rss / 1024, 1)) for t, n, rss, _ in with_windows],
        },
        "latency_ms": latency,
        "summary": summary,
        "stderr_tail": stderr.strip().splitlines()[-5:],
    }


def _count(database: Path, previous: int) -> int:
    """Windows stored so far (the monitor writes while we read: WAL allows it)."""
    try:
        with ResultStore(database, readonly=True) as store:
            return store.count()
    except Exception:  # the file is being created
        return previous


def format_report(report: dict) -> str:
    """The soak report as markdown."""
    settings, accounting, memory = report["settings"], report["accounting"], report["memory_mib"]
    lines = [
        f"## Monitor soak: {settings['hours']:g} simulated hours at {settings['speed']:g}x "
        f"(windows {settings['window_s']:g} s, hop {settings['hop_s']:g} s)",
        "",
        f"Wall time {report['wall_seconds']:.0f} s, exit status {report['returncode']}.",
        "",
        "| windows expected | stored | processed | skipped | indices and spans tile the stream | samples lost |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {accounting['expected']} | {accounting['stored']} | {accounting['processed']} | {accounting['skipped']} "
        f"| {'yes' if accounting['tiled'] else 'NO'} | {sum((accounting['samples_lost'] or {}).values())} |",
        "",
        f"RSS of the monitor process: {memory['first_window']:.1f} MiB at the first window, "
        f"{memory['end']:.1f} MiB at the end, peak {memory['peak']:.1f} MiB.",
        "",
        "| stage | median ms | p95 ms |",
        "| --- | --- | --- |",
    ]
    for stage, values in report["latency_ms"].items():
        p95 = "" if math.isnan(values["p95"]) else f"{values['p95']:.2f}"
        lines.append(f"| {stage} | {values['median']:.2f} | {p95} |")
    samples = memory["samples"]
    if samples:
        picks = [samples[round(i * (len(samples) - 1) / 10)] for i in range(11)]
        lines += ["", "RSS through the run (windows stored: MiB): "
                  + ", ".join(f"{n}: {rss:.1f}" for _, n, rss in picks)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.soak_monitor``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak_monitor", description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours of stream (default %(default)g)")
    parser.add_argument("--speed", type=float, default=30.0, help="simulator speed (default %(default)g)")
    parser.add_argument("--window", type=float, default=10.0, help="window seconds (default %(default)g)")
    parser.add_argument("--hop", type=float, default=5.0, help="hop seconds (default %(default)g)")
    parser.add_argument("--sample-every", type=float, default=1.0, help="memory sampling period, s")
    parser.add_argument("--db", type=Path, help="keep the results database here")
    parser.add_argument("--json", type=Path, help="also write the full report as JSON")
    args = parser.parse_args(argv)
    report = soak(args.hours, args.speed, args.window, args.hop, args.sample_every, args.db)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    accounting = report["accounting"]
    ok = report["returncode"] == 0 and accounting["stored"] == accounting["expected"] and accounting["tiled"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
