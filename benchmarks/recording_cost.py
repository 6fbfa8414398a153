"""What ``biomoe monitor --record`` costs: latency per window, peak RSS, bytes and CPU per hour.

``python -m benchmarks.recording_cost --windows 40 --speed 10 --pairs 2``

1. Runs ``biomoe monitor --simulate`` in pairs, without and with ``--record``
   (alternating, so machine load hits both alike), and reads each run's
   summary event: median ``total`` and ``store`` latency per window and the
   peak resident memory. Reports the medians over pairs and their ratio.
2. Feeds one hour of the simulated hub's blocks (the ``finger-lab`` device:
   EDA, BVP, RESP at 100 Hz, SpO2 at 1 Hz, 1 s blocks) with a window note
   every 5 s straight into a :class:`~edge.recording.Recorder`: CPU seconds
   per hour of signal, and the bytes the file takes per hour (against
   :func:`~edge.recording.bytes_per_hour`).

Markdown on stdout.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.recording import Recorder, bytes_per_hour
from edge.storage import ResultStore, WindowResult
from firmware_bridge import ChannelBlock
from firmware_bridge.simulator import generator_config

__all__ = ["monitor_run", "recorder_hour", "main"]


def monitor_run(folder: Path, record: bool, windows: int, speed: float) -> dict:
    """One monitor run; its summary's median latencies (ms) and peak RSS (MiB)."""
    database = folder / f"run-{time.monotonic_ns()}.sqlite"
    config = folder / "deep.toml"
    config.write_text("[budgets]\nmax_pending_windows = 256\n")
    command = [sys.executable, "-m", "edge.cli", "monitor", "--simulate", "--speed", str(speed), "--hop", "10",
               "--windows", str(windows), "--quiet", "--db", str(database), "--config", str(config)]
    if record:
        command += ["--record", str(folder / f"rec-{database.stem}")]
    subprocess.run(command, check=True, capture_output=True, timeout=3600)
    with ResultStore(database, readonly=True) as store:
        summary = store.events("summary")[-1]["detail"]
    medians = summary["stage_median_ms"]
    return {"total_ms": medians["total"], "store_ms": medians["store"], "peak_mb": summary["memory"]["peak_mb"]}


def recorder_hour(folder: Path, hop_s: float = 5.0) -> dict:
    """CPU seconds and bytes for one hour of the simulated hub's blocks through a Recorder."""
    config = generator_config()
    rng = np.random.default_rng(0)
    blocks = []
    for spec in config.channels:
        raw = rng.integers(0, 30000, (3600, spec.samples_per_block)).astype(spec.sample_format.dtype)
        blocks.append((spec, raw))
    recorder = Recorder(folder / "hour", config)
    began = time.process_time()
    for k in range(3600):
        for spec, raw in blocks:
            recorder.on_event(ChannelBlock(spec.name, spec.unit, config.sampling_rate(spec.name),
                                           k * spec.samples_per_block, float(k), 1e9 + k, raw[k] * spec.scale,
                                           raw[k], (1, 1)))
        if k >= 10 and k % hop_s == 0:
            recorder.on_window(WindowResult(int(k // hop_s), k - 10.0, float(k), 0.0, {"No Pain": 0.9},
                                            "No Pain", quality={"EDA": {"ok": True, "flags": []}}))
    recorder.close()
    cpu = time.process_time() - began
    (path,) = recorder.files
    return {"cpu_s": cpu, "bytes": path.stat().st_size, "predicted": bytes_per_hour(config)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recording_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=40, help="windows per monitor run (default 40)")
    parser.add_argument("--speed", type=float, default=10.0, help="simulated hub speed (default 10)")
    parser.add_argument("--pairs", type=int, default=2, help="runs without and with --record (default 2 each)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="biomoe-recording-cost-") as scratch:
        folder = Path(scratch)
        runs = {False: [], True: []}
        for _ in range(args.pairs):
            for record in (False, True):
                runs[record].append(monitor_run(folder, record, args.windows, args.speed))
        hour = recorder_hour(folder)
    print(f"## Cost of `--record` ({args.pairs} pairs of {args.windows} windows at {args.speed:g}x; medians)\n")
    print("| | without | with --record | ratio |\n| --- | --- | --- | --- |")
    for key, name in (("total_ms", "latency per window, total (ms)"), ("store_ms", "store per window (ms)"),
                      ("peak_mb", "peak RSS (MiB)")):
        off = statistics.median(r[key] for r in runs[False])
        on = statistics.median(r[key] for r in runs[True])
        print(f"| {name} | {off:.1f} | {on:.1f} | {on / off:.2f} |")
    print(f"\nOne hour of the simulated hub through the recorder: {hour['cpu_s']:.2f} CPU s "
          f"({hour['cpu_s'] / 36:.3f} % of one core), {hour['bytes'] / 2**20:.2f} MiB on disk "
          f"(bytes_per_hour says {hour['predicted'] / 2**20:.2f} MiB; {hour['bytes'] * 24 / 2**30:.2f} GiB a day).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
