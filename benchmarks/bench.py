"""``biomoe bench``: does a bundle fit a device's budget? Stage by stage, measured.

Measures, with warm-up and repeated runs (median and inter-quartile range),
the monitor's path on a simulated hub stream (:mod:`benchmarks.monitor_path`):

- ``bridge_decode``: frame decoding and assembly of the stream a window needs;
- ``windowing``: cutting the aligned window; ``quality``: the quality gate;
- ``represent``: the bundle's images of one window, and ``represent:KIND``:
  one image of each of the six representations (``*`` marks those the bundle uses);
- ``infer_window``: the bundle's backend on one window's images, and
  ``infer_image`` (``infer_window / k``);
- ``end_to_end``: serial bytes to stored-ready result, the whole path;
- ``load``: a fresh process from start to a backend ready and one window
  inferred (median of several processes);
- ``peak_rss``: peak resident memory (VmHWM) of a separate process running the
  path on several windows, and of ``biomoe monitor --simulate`` when the
  monitor is part of this build;
- ``bundle_size``: the bundle folder on disk;
- ``reference``: the release-equivalent PyTorch eager model (Tiny-BioMoE +
  fusion head, float32) on the same images with the same threads, and the
  speed-up of the bundle measured side by side (needs torch; the device has none).

Then prints a table against the chosen target's budget
(``benchmarks/budgets.toml``) and exits 1 when a budget is exceeded. On a
machine other than the target's kind (x86 for a Raspberry Pi target), latency
figures are scaled by the target's documented ``x86_slowdown`` and marked
``est.``; run the bench on the board for the real figure.

Examples::

    biomoe bench --target rpi4
    biomoe bench --bundle my-bundle --target rpi-zero-2w --json bench.json
    biomoe bench --quick                        # CI: a few repetitions
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata, util
from pathlib import Path

import numpy as np

from benchmarks.bench_bridge import encode_hour
from benchmarks.budgets import DEFAULT_BUDGETS, evaluate, get_target, load_targets
from edge.bundle import Bundle, default_bundle_path, load_bundle
from edge.errors import EdgeError
from edge.quality import signal_fill, window_quality
from edge.representations import REPRESENTATIONS, represent
from firmware_bridge.simulator import generator_config

__all__ = ["configure_parser", "run", "measure", "format_table", "machine_info", "time_calls",
           "time_interleaved", "run_child"]

#: ``biomoe monitor`` run for its peak memory: the simulated hub at high speed,
#: a fixed number of windows, no per-window output. {bundle}, {database},
#: {threads}, {windows} and {speed} are filled in.
MONITOR_ARGS = (
    "monitor", "--simulate", "--bundle", "{bundle}", "--db", "{database}", "--threads", "{threads}",
    "--windows", "{windows}", "--speed", "{speed}", "--quiet",
)
#: Seconds of stream beyond the window so every channel (SpO2 at 1 Hz) covers its end.
_STREAM_MARGIN_S = 2.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, help="bundle folder (default: the bundle shipped with biomoe)")
    parser.add_argument("--target", default="dev-x86", help="device whose budget applies (default: dev-x86)")
    parser.add_argument("--budgets", type=Path, help=f"budgets TOML file (default: {DEFAULT_BUDGETS.name} of biomoe)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write every measurement to this JSON file (its path is the last line printed)")
    parser.add_argument("--threads", type=int, default=2, help="inference threads, bundle and reference (default: 2)")
    parser.add_argument("--warmup", type=int, help="untimed calls per stage first (default: 3; --quick: 1)")
    parser.add_argument("--repeats", type=int, help="timed calls per stage (default: 20; --quick: 3)")
    parser.add_argument("--processes", type=int,
                        help="fresh processes timed for the load time (default: 5; --quick: 2)")
    parser.add_argument("--quick", action="store_true", help="few repetitions (CI smoke run, well under a minute)")
    parser.add_argument("--no-reference", action="store_true", help="skip the PyTorch reference model")
    parser.add_argument("--hop", type=float, default=5.0, help="window hop in seconds (default: 5)")
    parser.add_argument("--report", type=Path, help="write a markdown report (e.g. benchmarks/RESULTS.md)")
    parser.add_argument("--plot", type=Path, help="write a per-stage latency plot (PNG; needs matplotlib)")


def run(args: argparse.Namespace) -> int:
    """Measure, print the table against the target, write JSON/report; 1 when a budget fails."""
    settings = _settings(args)
    targets = load_targets(args.budgets)
    target = get_target(args.target, args.budgets)
    bundle_path = args.bundle or default_bundle_path()
    if not (Path(bundle_path) / "manifest.json").is_file():
        raise EdgeError(
            f"bundle {bundle_path} not found (no manifest.json there); pass --bundle with a folder "
            "written by biomoe export"
        )
    bundle = load_bundle(bundle_path)
    results = measure(bundle, progress=lambda line: print(line, file=sys.stderr, flush=True), **settings)
    evaluation = evaluate(results, target)
    print(format_table(results, evaluation))
    record = {**results, "evaluation": evaluation,
              "all_targets": {name: evaluate(results, other)["verdict"] for name, other in targets.items()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    if args.report or args.plot:
        from benchmarks.report import write_report

        command = " ".join(["biomoe bench", *(["--bundle", str(args.bundle)] if args.bundle else []),
                            "--target", args.target, *(["--quick"] if args.quick else []),
                            *(["--report", str(args.report)] if args.report else []),
                            *(["--plot", str(args.plot)] if args.plot else [])])
        write_report(record, targets, report=args.report, plot=args.plot, command=command)
    for path in (args.report, args.plot, args.json):  # the JSON, the file a script reads, on the last line
        if path:
            print(f"wrote {path}")
    return 0 if evaluation["verdict"] == "pass" else 1


def _settings(args: argparse.Namespace) -> dict:
    defaults = {"warmup": (3, 1), "repeats": (20, 3), "processes": (5, 2)}
    chosen = {name: getattr(args, name) if getattr(args, name) is not None else full_quick[args.quick]
              for name, full_quick in defaults.items()}
    minimum = {"warmup": 0, "repeats": 1, "processes": 1}
    for name, value in {**chosen, "threads": args.threads}.items():
        low = minimum.get(name, 1)
        if value < low:
            raise ValueError(f"--{name} must be >= {low}, got {value}")
    if not args.hop > 0:
        raise ValueError(f"--hop must be > 0 seconds, got {args.hop}")
    return {**chosen, "threads": args.threads, "hop_seconds": args.hop, "reference": not args.no_reference,
            "monitor_windows": 3 if args.quick else 8}


# --------------------------------------------------------------------------- measuring


def time_calls(function: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Wall time of ``repeats`` calls of ``function`` in ms, after ``warmup`` untimed ones."""
    return time_interleaved({"call": function}, warmup, repeats)["call"]


def script_main(module, argv: list[str] | None = None) -> int:
    """``python -m benchmarks.NAME`` for a module with ``configure_parser`` and ``run``.

    The parser's description is the module docstring's first line; a bad
    setting or file (ValueError, OSError) is one line on stderr and exit 1.
    """
    qualified = module.__spec__.name  # not __name__, which is "__main__" under python -m
    name = qualified.rpartition(".")[2]
    parser = argparse.ArgumentParser(prog=f"python -m {qualified}", description=module.__doc__.split("\n")[0])
    module.configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return module.run(args)
    except (ValueError, OSError) as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        return 1


def time_interleaved(functions: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, list[float]]:
    """ms per call of each function, timed in interleaved rounds (order reversed every other round).

    A change of load on the machine then hits every function alike, so their
    ratio is fair even when the absolute times drift.
    """
    for function in functions.values():
        for _ in range(warmup):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(repeats):
        for name in (list(functions) if round_index % 2 == 0 else list(reversed(functions))):
            start = time.perf_counter()
            functions[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def _row(stage: str, what: str, samples, unit: str = "ms", scaled: bool = True, budget: str | None = None,
         note: str = "") -> dict:
    """A table row: median and quartiles of ``samples`` (a list, or one value)."""
    values = np.atleast_1d(np.asarray(samples, dtype=float))
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"stage": stage, "what": what, "unit": unit, "median": float(median), "q1": float(q1), "q3": float(q3),
            "n": int(values.size), "scaled": scaled, "budget": budget, "note": note}


def measure(bundle: Bundle, *, threads: int = 2, warmup: int = 3, repeats: int = 20, processes: int = 5,
            hop_seconds: float = 5.0, reference: bool = True, monitor_windows: int = 8,
            progress: Callable[[str], None] = lambda line: None) -> dict:
    """Every measurement of ``biomoe bench`` for one bundle (see the module docstring).

    Returns
    -------
    dict
        ``machine``, ``bundle``, ``settings``, ``rows`` (one per stage: median,
        q1, q3 in ``unit``), ``reference`` and ``load_breakdown``; JSON-ready.
    """
    from benchmarks.monitor_path import (
        MonitorPath, cut_windows, decode_stream, representation_spec, window_scalars_stand_in,
    )

    machine = machine_info()
    config = generator_config()  # the simulated hub: EDA, BVP, RESP at 100 Hz, SpO2 at 1 Hz, 1 s blocks
    rates = {name: config.sampling_rate(name) for name in config.channel_names}
    stream_seconds = int(np.ceil(bundle.window_seconds + _STREAM_MARGIN_S))
    stream, _ = encode_hour(block_ms=1000, seconds=stream_seconds, spo2_rate_hz=rates["SpO2"])
    path = MonitorPath(bundle, rates, threads=threads, hop_seconds=hop_seconds)
    rows: list[dict] = []
    try:
        progress("bench: bridge, windowing, quality, representations")
        rows.append(_row("bridge_decode", f"decode + assemble {stream_seconds} s of stream ({len(stream)} bytes)",
                         time_calls(lambda: decode_stream(stream), warmup, repeats)))
        events = decode_stream(stream)
        rows.append(_row("windowing", "cut the aligned window",
                         time_calls(lambda: cut_windows(path.windower(), events), warmup, repeats)))
        window = cut_windows(path.windower(), events)[0]
        rows.append(_row("quality", "quality gate, every channel", time_calls(
            lambda: window_quality(window.data, window.sampling_rate, bundle.channels), warmup, repeats)))
        signals = signal_fill(window.data)[[bundle.channel_names.index(e.modality) for e in bundle.fusion]]
        rows.append(_row("represent", f"the bundle's {bundle.n_images} images",
                         time_calls(lambda: path.images_for(signals), warmup, repeats)))
        spec = representation_spec(bundle)
        used = {entry.representation for entry in bundle.fusion}
        for kind in REPRESENTATIONS:
            rows.append(_row(f"represent:{kind}", "one image" + (" (used by the bundle)" if kind in used else ""),
                             time_calls(lambda: represent(signals[0], spec, (kind,), sampling_rate=spec.sampling_rate),
                                        warmup, repeats)))

        images = path.images_for(signals)
        skipped = contextlib.nullcontext((None, {"status": "skipped (--no-reference)"}))
        with _reference_model(images, len(bundle.labels), threads) if reference else skipped as (
                reference_call, reference_result):
            scalars = window_scalars_stand_in(bundle)
            runners = {"infer_window": lambda: path.backend.predict(images, scalars)}
            if reference_call is not None:
                runners["reference"] = reference_call
            progress("bench: inference" + (", interleaved with the PyTorch reference" if reference_call else ""))
            inference = time_interleaved(runners, warmup, repeats)
        rows.append(_row("infer_window", f"backend ({bundle.backend}), {bundle.n_images} images",
                         inference["infer_window"]))
        rows.append(_row("infer_image", "infer_window / images per window",
                         [value / bundle.n_images for value in inference["infer_window"]]))
        progress("bench: end to end")
        rows.append(_row("end_to_end", "serial bytes -> result (the monitor's path)",
                         time_calls(lambda: path.run(stream), warmup, repeats), budget="window_ms"))
        if "reference" in inference:
            rows.append(_row("reference", "PyTorch eager float32 model, same images (rounds interleaved with "
                             "infer_window)", inference["reference"]))
    finally:
        path.close()

    progress(f"bench: start-up time ({processes} fresh processes)")
    load_ms, breakdown = _load_times(bundle, threads, processes)
    rows.append(_row("load", "process start -> backend ready, first window inferred", load_ms, budget="load_ms"))

    progress("bench: peak memory of separate processes")
    rows += _memory_rows(bundle, threads, hop_seconds, stream, rates, monitor_windows)
    size_mb = sum(f.stat().st_size for f in Path(bundle.path).rglob("*") if f.is_file()) / 2**20
    rows.append(_row("bundle_size", "bundle folder on disk", size_mb, unit="MB", scaled=False, budget="bundle_mb"))

    by_stage = {row["stage"]: row for row in rows}
    if "reference" in by_stage:
        reference_result["speedup"] = by_stage["reference"]["median"] / by_stage["infer_window"]["median"]
    return {
        "machine": machine,
        "bundle": {"path": str(bundle.path), "name": bundle.name, "id": bundle.bundle_id,
                   "placeholder": bundle.placeholder, "backend": bundle.backend, "pipeline": bundle.pipeline,
                   "images_per_window": bundle.n_images, "quantization": bundle.quantization,
                   "fusion": [f"{e.modality}:{e.representation}" for e in bundle.fusion]},
        "settings": {"threads": threads, "warmup": warmup, "repeats": repeats, "processes": processes,
                     "hop_seconds": hop_seconds, "window_seconds": bundle.window_seconds,
                     "stream": f"simulated hub, {stream_seconds} s, 1 s blocks"},
        "rows": rows,
        "reference": reference_result,
        "load_breakdown": breakdown,
    }


@contextlib.contextmanager
def _reference_model(images: np.ndarray, n_classes: int, threads: int):
    """``(call, info)``: the release-equivalent PyTorch eager model on ``images``, or ``(None, why not)``.

    torch runs with ``threads`` intra-op threads inside the ``with`` block.
    """
    missing = [name for name in ("torch", "timm") if util.find_spec(name) is None]
    if missing:
        yield None, {"status": f"{' and '.join(missing)} not installed"}
        return
    import torch

    from training.models import FusionHead, tiny_biomoe

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        backbone = tiny_biomoe().eval()
        head = FusionHead(num_embeddings=len(images), num_classes=n_classes).eval()
        batch = torch.from_numpy(np.ascontiguousarray(images))

        def call():
            with torch.inference_mode():
                return torch.softmax(head(backbone(batch).unsqueeze(0)), dim=-1)

        yield call, {"status": "measured", "torch": torch.__version__,
                     "model": "training.models.tiny_biomoe (eager, FFT spectral gating) + FusionHead, float32, "
                              "random weights (timing does not depend on them)"}
    finally:
        torch.set_num_threads(previous)


def _child_env() -> dict:
    """Environment for child processes: this source tree importable, quiet warnings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def run_child(module: str, arguments: list[str], timeout_s: float = 300.0) -> dict:
    """Run ``python -m module arguments`` in a fresh process.

    Returns
    -------
    dict
        ``returncode``, ``stdout``, ``stderr``, ``wall_ms`` (process start to
        exit, seen from here) and ``peak_rss_mb`` (the child's own peak,
        :mod:`benchmarks.peak_rss`).
    """
    with tempfile.TemporaryDirectory() as folder:
        record = Path(folder) / "peak.json"
        command = [sys.executable, "-m", "benchmarks.peak_rss", str(record), module, *arguments]
        start = time.perf_counter()
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=_child_env(), cwd=_PACKAGE_ROOT,
                                    timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise EdgeError(f"python -m {module} did not finish within {timeout_s:g} s") from None
        wall_ms = (time.perf_counter() - start) * 1e3
        peak = json.loads(record.read_text())["peak_rss_mb"] if record.is_file() else None
    return {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr,
            "wall_ms": wall_ms, "peak_rss_mb": peak}


def _child_failure(what: str, result: dict) -> EdgeError:
    lines = (result["stderr"].strip() or result["stdout"].strip() or "no output").splitlines()
    return EdgeError(f"{what} failed (exit {result['returncode']}): {lines[-1][:300]}")


def _load_times(bundle: Bundle, threads: int, processes: int) -> tuple[list[float], dict]:
    arguments = ["load", "--bundle", str(bundle.path), "--threads", str(threads)]
    walls, parts = [], []
    for _ in range(processes):
        result = run_child("benchmarks.monitor_path", arguments)
        if result["returncode"] != 0:
            raise _child_failure("the start-up measurement process", result)
        walls.append(result["wall_ms"])
        parts.append(json.loads(result["stdout"].strip().splitlines()[-1]))
    breakdown = {key: statistics.median(p[key] for p in parts) for key in parts[0]}
    return walls, breakdown


def _memory_rows(bundle: Bundle, threads: int, hop_seconds: float, stream: bytes, rates: dict,
                 windows: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        stream_file = Path(folder) / "stream.bin"
        stream_file.write_bytes(stream)
        arguments = ["pipeline", "--bundle", str(bundle.path), "--threads", str(threads), "--stream", str(stream_file),
                     "--rates", json.dumps(rates), "--hop", str(hop_seconds), "--windows", str(windows)]
        result = run_child("benchmarks.monitor_path", arguments)
        if result["returncode"] != 0:
            raise _child_failure("the pipeline memory process", result)
        rows.append(_row("peak_rss_pipeline", f"process running the path on {windows} windows",
                         result["peak_rss_mb"], unit="MB", scaled=False))
        # The hub's own rates, then a board whose EDA, BVP and RESP run faster than the bundle (downsampled).
        for name, signal_rate in (("peak_rss_monitor", 100), ("peak_rss_monitor_250hz", 250)):
            arguments = [part.format(bundle=bundle.path, database=Path(folder) / f"{name}.sqlite", threads=threads,
                                     windows=windows, speed=50) for part in MONITOR_ARGS]
            result = run_child("edge.cli", [*arguments, "--signal-rate", str(signal_rate)])
            if result["returncode"] != 0:
                raise _child_failure(f"biomoe monitor (peak memory run, {signal_rate} Hz)", result)
            rows.append(_row(name, f"biomoe monitor --simulate --signal-rate {signal_rate}, {windows} windows",
                             result["peak_rss_mb"], unit="MB", scaled=False, budget="peak_rss_mb"))
    return rows


def machine_info() -> dict:
    """The machine the numbers come from: CPU, cores, memory, OS, Python, libraries, load."""
    cpu = platform.processor() or platform.machine()
    memory_gib = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        cpu = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or cpu
        with open("/proc/meminfo", encoding="utf-8") as handle:
            memory_gib = int(next(line for line in handle if line.startswith("MemTotal")).split()[1]) / 2**20
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    versions = {}
    for package in ("numpy", "scipy", "PyWavelets", "onnxruntime", "ai-edge-litert", "torch", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {"cpu": cpu, "machine": platform.machine(), "cores": os.cpu_count(),
            "memory_gib": None if memory_gib is None else round(memory_gib, 1),
            "os": platform.platform(), "python": platform.python_version(), "versions": versions,
            "load_average": [round(value, 2) for value in os.getloadavg()],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# --------------------------------------------------------------------------- judging


def format_table(results: dict, evaluation: dict) -> str:
    """The human table: stage, median, IQR, figure on the target, budget, status."""
    estimated = evaluation["estimated"]
    on_target = f"{evaluation['target']} est." if estimated else evaluation["target"]
    bundle = results["bundle"]
    lines = [
        f"bundle {bundle['name']} ({bundle['id']}, {bundle['backend']}, {bundle['images_per_window']} images/window)"
        + ("  PLACEHOLDER: inference figures are not the real model's" if bundle["placeholder"] else ""),
        f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"load average {results['machine']['load_average'][0]:.2f}; {results['settings']['threads']} threads, "
        f"{results['settings']['repeats']} repeats after {results['settings']['warmup']} warm-up",
        f"target {evaluation['target']}: {evaluation['description']}",
    ]
    if estimated:
        lines.append(f"ESTIMATE: latencies measured here x {evaluation['factor']:g} (x86_slowdown of the target); "
                     "run biomoe bench on the board for the real figure")
    header = f"{'stage':<28}{'median':>10}{'IQR':>19}{on_target:>18}{'budget':>10}  status"
    lines += [header, "-" * len(header)]
    for row in results["rows"]:
        judged = evaluation["rows"][row["stage"]]
        unit = row["unit"]
        spread = f"{row['q1']:.2f}-{row['q3']:.2f}" if row["n"] > 1 else ""
        budget = f"{judged['budget']:g} {unit}" if judged["budget"] is not None else ""
        status = judged["status"] or (f"{judged['share']:.0%} of window" if judged["share"] is not None else "")
        lines.append(f"{row['stage']:<28}{row['median']:>8.2f}{unit:>3}{spread:>18}"
                     f"{judged['on_target']:>15.1f}{unit:>3}{budget:>10}  {status}".rstrip())
    breakdown = results["load_breakdown"]
    lines.append("load, median per step inside the process: " + ", ".join(
        f"{key.removesuffix('_ms')} {value:.0f} ms" for key, value in breakdown.items()))
    reference = results["reference"]
    if "speedup" in reference:
        threads = results["settings"]["threads"]
        lines.append(f"speed-up of the bundle over the PyTorch eager reference (same images, {threads} threads, "
                     f"measured side by side): {reference['speedup']:.2f}x"
                     + (" (placeholder bundle: not the real model's speed-up)" if bundle["placeholder"] else ""))
    else:
        lines.append(f"reference: {reference['status']}")
    lines.append(f"verdict for {evaluation['target']}: " + (
        "PASS" if evaluation["verdict"] == "pass" else "FAIL (" + "; ".join(evaluation["failures"]) + ")"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.bench``: the same as ``biomoe bench``."""
    from edge.cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
