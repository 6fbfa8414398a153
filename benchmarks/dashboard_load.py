"""What the bedside page costs the monitor: latency, peak memory and skipped windows, dashboard off and on.

``python -m benchmarks.dashboard_load --windows 20 --speed 5 --pairs 2``

Runs ``biomoe monitor --simulate`` for the same windows with the dashboard
off and on (``--dashboard 127.0.0.1:0``, with ``--clients`` Server-Sent
Events readers connected, as many browsers' EventSources cost the server),
interleaved (off, on, off, on...) so load from elsewhere on the machine falls
on both. Per run, from the results database and the monitor's summary event:
per-window latency (``total``: quality + images + inference + smoothing, and
``queue``: waiting for the processor, which would grow if publishing held the
loop back), the ``store`` stage, peak RSS, skipped windows, events each
client received. Also, in this process: the cost of one
:meth:`DashboardFeed.window_stored` with the clients subscribed (what the
monitor's thread pays per window) and the import time and memory of the
stdlib HTTP server the dashboard uses. Markdown on stdout; ``--json`` too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edge.storage import ResultStore

__all__ = ["monitor_run", "publish_cost_ms", "import_cost", "main"]

_LINK = re.compile(rb"dashboard at http://127\.0\.0\.1:(\d+)/")


def _read_events(port: int, counts: list[int], slot: int, stop: threading.Event) -> None:
    """One SSE client: read the stream, count events, until ``stop`` or the server closes."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/api/events")
    response = connection.getresponse()
    while not stop.is_set():
        line = response.fp.readline()
        if not line:
            break
        if line.startswith(b"event: "):
            counts[slot] += 1
    connection.close()


def monitor_run(dashboard: bool, windows: int, speed: float, hop: float, clients: int, folder: Path) -> dict:
    """One monitor run; its per-window latency, peak memory, skipped windows (and events per client)."""
    database = folder / f"run-{time.monotonic_ns()}.sqlite"
    command = [sys.executable, "-m", "edge.cli", "monitor", "--simulate", "--windows", str(windows),
               "--speed", str(speed), "--hop", str(hop), "--quiet", "--db", str(database)]
    if dashboard:
        command += ["--dashboard", "127.0.0.1:0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    counts, stop, readers = [0] * clients, threading.Event(), []
    if dashboard:
        for line in process.stderr:
            match = _LINK.search(line)
            if match:
                for slot in range(clients):
                    reader = threading.Thread(target=_read_events, args=(int(match.group(1)), counts, slot, stop),
                                              daemon=True)
                    reader.start()
                    readers.append(reader)
                break
    process.stderr.read()
    returncode = process.wait()
    stop.set()
    for reader in readers:
        reader.join(5)
    with ResultStore(database, readonly=True) as store:
        results = store.windows()
        summary = store.events("summary")[-1]["detail"]
    processed = [r for r in results if not r.skipped or r.skip_reason == "calibrating"]
    total = [r.latency_ms["total"] for r in processed]
    queue = [r.latency_ms.get("queue", 0.0) for r in processed]
    return {
        "dashboard": dashboard, "returncode": returncode, "windows": len(results),
        "skipped": sum(r.skipped and r.skip_reason != "calibrating" for r in results),
        "total_ms_median": float(np.median(total)), "total_ms_p95": float(np.percentile(total, 95)),
        "queue_ms_median": float(np.median(queue)), "store_ms_median": summary["stage_median_ms"].get("store"),
        "peak_rss_mb": summary["memory"]["peak_mb"], "events_per_client": counts if dashboard else None,
    }


def publish_cost_ms(clients: int, repeats: int = 200) -> float:
    """Median ms of one ``window_stored`` (timeline, quality, 4 traces, one event) with ``clients`` subscribed."""
    from edge.dashboard.alerts import HighPainAlerts
    from edge.dashboard.feed import DashboardFeed
    from edge.storage import WindowResult
    from edge.windows import Window

    labels, channels = ["No Pain", "Low Pain", "High Pain"], ("EDA", "BVP", "RESP", "SpO2")
    feed = DashboardFeed(labels, channels, HighPainAlerts(60), link_status=lambda: {"state": "up", "samples_lost": {}})
    subscribers = [feed.subscribe() for _ in range(clients)]
    data = np.random.default_rng(0).normal(size=(4, 1000))
    quality = {name: {"ok": True, "flags": []} for name in channels}
    probabilities = dict(zip(labels, (0.2, 0.3, 0.5)))
    times = []
    for i in range(repeats):
        result = WindowResult(i, 10.0 * i, 10.0 * i + 10, time.time(), probabilities, "High Pain", probabilities,
                              "High Pain", quality, session_id=1)
        began = time.perf_counter()
        feed.window_stored(result, Window(i, 10.0 * i, 10.0 * i + 10, channels, data, 100.0))
        times.append((time.perf_counter() - began) * 1000.0)
        for subscriber in subscribers:  # the server's threads would take them
            while not subscriber.messages.empty():
                subscriber.messages.get_nowait()
    return statistics.median(times)


def import_cost() -> dict:
    """Seconds and MiB of RSS that importing the dashboard adds to a Python that already runs the monitor's code."""
    code = ("import time, edge.monitor\n"
            "from edge.budget import process_memory_mb\n"
            "before = process_memory_mb(); began = time.perf_counter()\n"
            "import edge.dashboard.live\n"
            "print(time.perf_counter() - began, process_memory_mb() - before)")
    seconds, megabytes = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                        check=True).stdout.split()
    return {"seconds": float(seconds), "rss_mb": float(megabytes)}


def format_report(report: dict) -> str:
    """The runs and the in-process costs as markdown."""
    lines = [
        f"Monitor with the dashboard off and on ({report['clients']} SSE clients), {report['windows']} windows at "
        f"{report['speed']:g}x, hop {report['hop']:g} s, interleaved:",
        "",
        "| run | dashboard | windows | skipped | total ms (median / p95) | queue ms (median) | store ms | peak RSS MiB "
        "| events per client |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for number, run in enumerate(report["runs"], 1):
        lines.append(
            f"| {number} | {'on' if run['dashboard'] else 'off'} | {run['windows']} | {run['skipped']} | "
            f"{run['total_ms_median']:.0f} / {run['total_ms_p95']:.0f} | {run['queue_ms_median']:.0f} | "
            f"{run['store_ms_median']} | {run['peak_rss_mb']:.0f} | {run['events_per_client'] or '-'} |")
    medians, ratio = report["medians"], report["ratios"]
    lines.append("")
    for key in ("off", "on"):
        lines.append(f"- dashboard {key}: median total {medians[key]['total_ms']:.0f} ms, peak RSS "
                     f"{medians[key]['peak_rss_mb']:.0f} MiB")
    lines += [f"- on / off: latency x{ratio['total_ms']:.2f}, peak RSS x{ratio['peak_rss_mb']:.3f} "
                  f"(+{medians['on']['peak_rss_mb'] - medians['off']['peak_rss_mb']:.1f} MiB)",
              f"- one window published to {report['clients']} subscribers: {report['publish_ms']:.2f} ms (median)",
              f"- importing the dashboard (stdlib http.server): {report['import']['seconds'] * 1000:.0f} ms, "
              f"+{report['import']['rss_mb']:.1f} MiB RSS"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.dashboard_load``; exit 1 when the runs with the dashboard skipped more windows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dashboard_load", description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20, help="windows per run (default %(default)d)")
    parser.add_argument("--speed", type=float, default=5.0, help="simulator speed (default %(default)g)")
    parser.add_argument("--hop", type=float, default=10.0, help="window hop, s (default %(default)g)")
    parser.add_argument("--clients", type=int, default=3, help="SSE clients with the dashboard on (default 3)")
    parser.add_argument("--pairs", type=int, default=2, help="off/on pairs, interleaved (default %(default)d)")
    parser.add_argument("--json", type=Path, help="also write the report as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="biomoe-dashboard-load-") as folder:
        runs = [monitor_run(dashboard, args.windows, args.speed, args.hop, args.clients, Path(folder))
                for _ in range(args.pairs) for dashboard in (False, True)]
    medians = {key: {"total_ms": statistics.median(r["total_ms_median"] for r in runs if r["dashboard"] == on),
                     "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs if r["dashboard"] == on)}
               for key, on in (("off", False), ("on", True))}
    report = {"windows": args.windows, "speed": args.speed, "hop": args.hop, "clients": args.clients, "runs": runs,
              "medians": medians,
              "ratios": {name: medians["on"][name] / medians["off"][name] for name in ("total_ms", "peak_rss_mb")},
              "publish_ms": publish_cost_ms(args.clients), "import": import_cost()}
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(args.json)
    skipped = {on: sum(r["skipped"] for r in runs if r["dashboard"] == on) for on in (False, True)}
    return 0 if skipped[True] <= skipped[False] and all(r["returncode"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
