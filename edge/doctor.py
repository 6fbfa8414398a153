"""``biomoe doctor``: is this machine ready to monitor? Each check ok, warn or fail, with a fix.

Running it
----------
::

    biomoe doctor                                   # this machine, the shipped bundle, the default database
    biomoe doctor --port /dev/ttyACM0               # and the sensor board on that port
    biomoe doctor --config /etc/biomoe/monitor.toml --target rpi4

It takes the monitor's settings (``--config`` and the same flags as
``biomoe monitor``), so it checks what the monitor would use:

``python``, ``packages``
    Python and the device packages against what biomoe needs (the installed
    package's requirements).
``cpu``
    The architecture and the SIMD features the runtimes use: NEON and the
    dot-product instructions on ARM (int8 inference), AVX2, AVX-512 and VNNI
    on x86.
``bundle``, ``inference``
    The bundle loads and its checksums pass; one synthetic window runs through
    the monitor's pipeline (quality, images, inference) within the time
    budget: ``budgets.window_ms`` (default the hop), or the ``--target``
    board's from ``benchmarks/budgets.toml`` (scaled when measured on another
    kind of CPU, then only an estimate: a warning, not a failure).
``port``, ``hello``
    The port exists and this user may read and write it (if not: the
    ``dialout`` group), no other program holds it, and the device's
    description (hello frame) arrives within ``--connect-timeout`` with the
    channels the bundle needs. Without ``--port`` (and without ``port`` or
    ``simulate`` in the config) the sensor is not checked: a warning.
``database``
    The database's folder is writable, with free space for ``--days`` of
    windows at the configured hop.
``clock``
    The system clock is plausible (a Raspberry Pi has no real-time clock:
    without network it starts in the past) and not behind the last stored
    result.

The exit status is 0 when nothing failed (warnings allowed), 1 otherwise.
``--only`` runs some of the groups: ``system`` (python, packages, cpu),
``bundle``, ``port``, ``database``, ``clock``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.config import MonitorConfig, add_config_arguments, config_from_args
from edge.errors import EdgeError

__all__ = ["Check", "CHECK_GROUPS", "check_python", "check_packages", "check_cpu", "check_bundle", "check_port",
           "check_database", "check_clock", "run_checks", "format_check", "configure_parser", "run"]

#: Groups of checks ``--only`` chooses from, in the order they run.
CHECK_GROUPS = ("system", "bundle", "port", "database", "clock")
#: What this package needs when its metadata cannot be read (a source tree that was not installed).
_FALLBACK_REQUIREMENTS = ("numpy>=1.24", "scipy>=1.10", "pywavelets>=1.5", "pyserial>=3.5", "onnxruntime>=1.17",
                          'tomli>=2.0; python_version < "3.11"')
_MINIMUM_PYTHON = (3, 10)
#: Database bytes per stored window, rounded up from the shipped bundle's rows (quality of 4 channels,
#: latencies, probabilities; about 2.5 kB each with SQLite's page overhead) plus the events.
_BYTES_PER_WINDOW = 4096
#: No clock before this is right: the code was written after it.
_EARLIEST_PLAUSIBLE = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
_LATEST_PLAUSIBLE = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Check:
    """The verdict of one check.

    Attributes
    ----------
    name : str
        What was checked (``"port"``).
    status : {"ok", "warn", "fail"}
    detail : str
        What was found, one line.
    fix : str
        What to do, one line; empty when ``status`` is ``"ok"``.
    """

    name: str
    status: str
    detail: str
    fix: str = ""


def format_check(check: Check) -> str:
    """The check as one line, and its fix on a second one when there is something to do.

    Examples
    --------
    >>> print(format_check(Check("clock", "ok", "2026-01-01 10:00 UTC")))
      ok    clock      2026-01-01 10:00 UTC
    >>> print(format_check(Check("port", "fail", "/dev/ttyACM0 does not exist", "plug the board in")))
      FAIL  port       /dev/ttyACM0 does not exist
            fix: plug the board in
    """
    status = {"ok": "ok", "warn": "warn", "fail": "FAIL"}[check.status]
    line = f"  {status:<5} {check.name:<10} {check.detail}"
    return line + (f"\n        fix: {check.fix}" if check.fix else "")


# --------------------------------------------------------------------------- system


def check_python() -> Check:
    """Python itself: biomoe needs 3.10 or newer."""
    version = platform.python_version()
    if sys.version_info[:2] < _MINIMUM_PYTHON:
        needed = ".".join(map(str, _MINIMUM_PYTHON))
        return Check("python", "fail", f"Python {version}; biomoe needs {needed} or newer",
                     f"install Python {needed}+ (Raspberry Pi OS Bookworm has 3.11) and a new venv with it")
    return Check("python", "ok", f"Python {version} at {sys.executable}")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in re.split(r"[.+-]", text):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
    return tuple(parts)


def _marker_applies(marker: str) -> bool:
    """The environment markers biomoe's requirements use: extras (never, for the base) and python_version."""
    marker = marker.strip()
    if not marker:
        return True
    if "extra" in marker:
        return False
    found = re.fullmatch(r"""python_version\s*(<|<=|>|>=|==)\s*["']([\d.]+)["']""", marker)
    if not found:
        return True
    here, there = sys.version_info[:2], _version_tuple(found.group(2))
    return {"<": here < there, "<=": here <= there, ">": here > there, ">=": here >= there,
            "==": here == there}[found.group(1)]


def _requirements() -> list[tuple[str, str | None]]:
    """(distribution, minimum version or None) of the base install."""
    try:
        declared = importlib.metadata.requires("tiny-biomoe-edge") or []
    except importlib.metadata.PackageNotFoundError:
        declared = list(_FALLBACK_REQUIREMENTS)
    found = []
    for requirement in declared:
        spec, _, marker = requirement.partition(";")
        if not _marker_applies(marker):
            continue
        name = re.match(r"[A-Za-z0-9._-]+", spec.strip()).group()
        minimum = re.search(r">=\s*([\w.]+)", spec)
        found.append((name, minimum.group(1) if minimum else None))
    return found


def check_packages() -> Check:
    """The device packages are installed, each at least the version biomoe asks for."""
    present, problems = [], []
    for name, minimum in _requirements():
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append((f"{name} missing", f"{name}>={minimum}" if minimum else name))
            continue
        if minimum and _version_tuple(version) < _version_tuple(minimum):
            problems.append((f"{name} {version} (needs >= {minimum})", f"{name}>={minimum}"))
        else:
            present.append(f"{name} {version}")
    if problems:
        install = " ".join(f'"{spec}"' for _, spec in problems)
        return Check("packages", "fail", "; ".join(text for text, _ in problems),
                     f"pip install -U {install} (in the venv biomoe runs from)")
    return Check("packages", "ok", ", ".join(present))


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def check_cpu(machine: str | None = None, flags: set[str] | None = None) -> Check:
    """The CPU architecture and the SIMD features the inference runtimes use.

    Parameters
    ----------
    machine, flags : optional
        ``platform.machine()`` and the ``/proc/cpuinfo`` flags; default this machine's.

    Examples
    --------
    >>> check_cpu("aarch64", {"fp", "asimd"}).detail
    'aarch64: NEON; no dot product (asimddp; a Cortex-A72, Raspberry Pi 4): int8 layers slower than on a Pi 5'
    """
    machine = (machine or platform.machine()).lower()
    flags = _cpu_flags() if flags is None else flags
    if machine in ("x86_64", "amd64", "i686", "i386"):
        features = [name for name, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f")) if flag in flags]
        if {"avx512_vnni", "avx_vnni"} & flags:
            features.append("VNNI")
        if "avx2" not in flags and flags:
            return Check("cpu", "warn", f"{machine} without AVX2: inference runs several times slower",
                         "use a machine with AVX2 (any x86 CPU since 2013), or expect to miss the latency budget")
        return Check("cpu", "ok", f"{machine}: {', '.join(features) or 'features unknown'}")
    if machine in ("aarch64", "arm64"):
        if flags and "asimd" not in flags:
            return Check("cpu", "warn", f"{machine} without NEON (asimd): inference runs very slowly",
                         "run on a Cortex-A53 or newer (Raspberry Pi 3, 4, 5, Zero 2 W)")
        detail = f"{machine}: NEON"
        if "asimddp" in flags:
            return Check("cpu", "ok", detail + ", dot product (asimddp)" + (", i8mm" if "i8mm" in flags else ""))
        return Check("cpu", "ok", detail + "; no dot product (asimddp; a Cortex-A72, Raspberry Pi 4): int8 layers "
                                           "slower than on a Pi 5")
    if machine.startswith("arm"):
        return Check("cpu", "warn", f"{machine}: a 32-bit system; onnxruntime ships no wheels for it",
                     "install the 64-bit Raspberry Pi OS (aarch64)")
    return Check("cpu", "warn", f"{machine}: not a board biomoe was measured on",
                 "run biomoe bench to measure it against a budget")


# --------------------------------------------------------------------------- bundle and inference


def _synthetic_window(bundle, window_seconds: float):
    """A window of plausible-looking signals for the bundle's channels (only the time it takes matters)."""
    from edge.windows import Window

    rate = bundle.sampling_rate
    n = int(round(window_seconds * rate))
    t = np.arange(n) / rate
    rng = np.random.default_rng(0)
    rows = []
    for spec in bundle.channels:
        cycles = {"EDA": 0.05, "BVP": 1.2, "RESP": 0.25, "SPO2": 0.02}.get(spec.name.upper(), 1.0)
        wave = np.sin(2 * np.pi * cycles * t) + 0.05 * rng.standard_normal(n)
        low, high = spec.valid_range if spec.valid_range is not None else (-1.0, 1.0)
        rows.append(low + (high - low) * (0.5 + 0.1 * wave))
    return Window(0, 0.0, float(window_seconds), tuple(bundle.channel_names), np.asarray(rows), rate)


def _window_budget(config: MonitorConfig, bundle, target: str | None) -> tuple[float, float, str]:
    """(budget ms, factor applied to what is measured here, what the budget is)."""
    if target is None:
        if config.budgets.window_ms is not None:
            return config.budgets.window_ms, 1.0, "budgets.window_ms"
        hop = config.hop_seconds or config.window_seconds or bundle.window_seconds
        return hop * 1000.0, 1.0, f"the {hop:g} s hop"
    try:
        from benchmarks.budgets import get_target
    except ImportError:
        raise EdgeError("--target needs the benchmarks package of biomoe, which this install lacks; "
                        "leave --target out (the budget is then the hop)") from None
    board = get_target(target)
    factor = board.latency_factor()
    return board.window_ms, factor, f"{board.name}'s window_ms" + ("" if factor == 1.0 else f", est. x{factor:g}")


def check_bundle(config: MonitorConfig, target: str | None = None, time_budget: bool = True) -> Iterator[Check]:
    """The bundle loads and its checksums pass; one synthetic window runs (within the time budget, unless
    ``time_budget`` is False: then it runs once and only its failure fails)."""
    from edge.backends import create_backend
    from edge.budget import peak_memory_mb
    from edge.bundle import default_bundle_path, load_bundle
    from edge.bundle_images import FusionImages, bundle_representation_spec
    from edge.pipeline import WindowProcessor
    from edge.representations import REPRESENTATIONS
    from edge.smoothing import create_smoother

    path = config.bundle or default_bundle_path()
    try:
        bundle = load_bundle(path)
        bundle.require_representations(REPRESENTATIONS)
        spec = bundle_representation_spec(bundle, config.window_seconds)
    except EdgeError as exc:
        yield Check("bundle", "fail", str(exc), "copy the bundle folder again (or re-export it with biomoe export); "
                                                "leave --bundle out to use the one shipped with biomoe")
        return
    what = f"{bundle.name} ({bundle.bundle_id[:12]}) at {path}: {len(bundle.files)} files, checksums pass"
    if bundle.placeholder:
        yield Check("bundle", "warn", what + "; a PLACEHOLDER model (random weights): its pain levels mean nothing",
                    "pass --bundle with a trained bundle (biomoe export), or leave --bundle out")
    else:
        yield Check("bundle", "ok", what)
    try:
        budget_ms, factor, budget_name = _window_budget(config, bundle, target)
    except EdgeError as exc:
        yield Check("inference", "fail", str(exc), "biomoe bench --target lists the targets")
        return
    backend = None
    try:
        backend = create_backend(bundle, threads=config.threads)
        smoothing = config.smoothing
        processor = WindowProcessor(bundle, backend, create_smoother(smoothing.method, alpha=smoothing.alpha,
                                                                     windows=smoothing.windows),
                                    FusionImages(bundle.fusion, spec))
        window = _synthetic_window(bundle, spec.window_seconds)
        began = time.perf_counter()
        processor.process(window)  # the first call also sets the runtime up
        if time_budget:
            began = time.perf_counter()
            processor.process(window)
        took_ms = (time.perf_counter() - began) * 1000.0
    except EdgeError as exc:
        yield Check("inference", "fail", f"the bundle does not run here: {exc}",
                    "install what the message names, or use a bundle for this runtime (biomoe export --format onnx)")
        return
    finally:
        if backend is not None:
            backend.close()
    if not time_budget:
        yield Check("inference", "ok", f"one synthetic window runs ({took_ms:.0f} ms with the runtime's set-up)")
        return
    expected = took_ms * factor
    shown = f"{took_ms:.0f} ms" if factor == 1.0 else f"{took_ms:.0f} ms here, about {expected:.0f} ms there"
    detail = f"one synthetic window in {shown} (budget {budget_ms:.0f} ms: {budget_name}; {config.threads} threads)"
    memory = peak_memory_mb()
    if expected > budget_ms:
        fix = ("fewer busy programs, more --threads, a longer --hop, or a smaller bundle (biomoe export --int8); "
               "measure in full with biomoe bench")
        yield Check("inference", "warn" if factor != 1.0 else "fail", detail + " : over budget", fix)
    elif memory > config.budgets.memory_mb:
        yield Check("inference", "warn", f"{detail}; peak memory {memory:.0f} MiB, over budgets.memory_mb "
                                         f"{config.budgets.memory_mb:.0f}",
                    "raise budgets.memory_mb in the config, or use a smaller bundle")
    else:
        yield Check("inference", "ok", f"{detail}; peak memory {memory:.0f} MiB")


# --------------------------------------------------------------------------- the sensor


def check_port(config: MonitorConfig, timeout_s: float, bundle_path=None) -> Iterator[Check]:
    """The port is there, this user's, free, and the device says hello with the bundle's channels."""
    from edge.ports import port_problem, ports_hint

    if not config.port:
        if config.simulate:
            yield Check("port", "ok", "the simulated hub (simulate = true): no serial port to check")
        else:
            yield Check("port", "warn", f"no port given: the sensor board is not checked ({ports_hint()})",
                        "biomoe doctor --port /dev/ttyACM0 (the sensor board's device)")
        return
    port = config.port
    problem = port_problem(port)
    if problem is not None:
        yield Check("port", "fail", *_split_fix(str(problem)))
        return
    from edge.device_channels import DeviceChannels
    from edge.monitor import SensorSource

    source = SensorSource(port, None, timeout_s)
    try:
        began = time.monotonic()
        device = source.open()
        waited = time.monotonic() - began
    except EdgeError as exc:
        message = str(exc)
        name = "hello" if "(hello frame)" in message else "port"
        detail, fix = _split_fix(message)
        if name == "hello":  # the port opened: only the device is silent
            yield Check("port", "ok", f"{port}: readable and writable, no other reader")
        yield Check(name, "fail", detail, fix)
        return
    except Exception as exc:  # noqa: BLE001 - a port pyserial cannot open: say what it said
        yield Check("port", "fail", f"cannot open {port}: {exc}", "check the cable and the device node (dmesg | tail)")
        return
    finally:
        source.close()
    yield Check("port", "ok", f"{port}: readable and writable, no other reader")
    channels = ", ".join(f"{c.name} {device.sampling_rate(c.name):g} Hz" for c in device.channels)
    board = DeviceChannels(device)
    try:
        from edge.bundle import default_bundle_path, load_bundle

        bundle = load_bundle(bundle_path or config.bundle or default_bundle_path())
        board.require(bundle)
    except EdgeError as exc:
        yield Check("hello", "fail", f"the device sends {channels}, but {exc}", "use a bundle trained for these "
                                                                                 "channels (biomoe export)")
        return
    read_as = "".join(f"; {note}" for note in board.notes())
    yield Check("hello", "ok", f"device description after {waited:.1f} s: {channels}{read_as}")


def _split_fix(message: str) -> tuple[str, str]:
    """(what happened, what to do) of an :mod:`edge.ports` message ``"...; fix: ..."`` (or ``"...? fix: ..."``)."""
    found = re.search(r";? fix: ", message)
    if found is None:
        return message, "see the line above"
    return message[:found.start()], message[found.end():]


# --------------------------------------------------------------------------- the database and the clock


def _existing_folder(path: Path) -> Path:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_database(config: MonitorConfig, days: float) -> Check:
    """The database's folder is writable by this user, with room for ``days`` of windows."""
    path = Path(config.database).expanduser().absolute()
    folder = _existing_folder(path)
    user_fix = f"make {folder} writable for this user (sudo chown $USER {folder}), or pass --db with a file in a " \
               "folder you may write, e.g. --db ~/biomoe-results.sqlite"
    if not folder.is_dir():
        return Check("database", "fail", f"{folder} (the folder of {path}) is not a folder", user_fix)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return Check("database", "fail", f"cannot write in {folder} ({reason.lower()}), where {path.name} goes",
                     user_fix)
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return Check("database", "fail", f"{path} exists but this user may not write it",
                     f"sudo chown $USER {path}, or pass --db with another file")
    free = shutil.disk_usage(folder).free
    hop = config.hop_seconds or config.window_seconds or 10.0
    per_day = 86400.0 / hop * _BYTES_PER_WINDOW
    lasts = free / per_day
    detail = f"{path}: folder writable, {free / 2**30:.1f} GiB free, about {_days(lasts)} of windows at a {hop:g} s hop"
    if lasts < 1:
        return Check("database", "fail", detail, f"free space on {folder} (df -h {folder}), or pass --db elsewhere")
    if lasts < days:
        return Check("database", "warn", detail + f" (less than the {days:g} days asked)",
                     f"free space on {folder}, or move old results away (biomoe history --csv, then a new --db)")
    return Check("database", "ok", detail)


def _days(days: float) -> str:
    return f"{days:.1f} days" if days < 10 else f"{days:,.0f} days"


def check_clock(config: MonitorConfig | None = None, now: float | None = None) -> Check:
    """The wall clock is plausible, and not behind the newest result in the database."""
    now = time.time() if now is None else now
    stamp = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    shown = stamp.strftime("%Y-%m-%d %H:%M:%S UTC")
    fix = ("set it: sudo date -s 'YYYY-MM-DD HH:MM' (or sudo timedatectl set-ntp true with network); a Pi without "
           "network keeps time across power cuts only with an RTC battery")
    if not _EARLIEST_PLAUSIBLE <= stamp < _LATEST_PLAUSIBLE:
        return Check("clock", "fail", f"the system clock says {shown}, which cannot be right", fix)
    if config is not None and Path(config.database).is_file():
        newest = _newest_result_time(Path(config.database))
        if newest is not None and newest > now + 300:
            behind = dt.datetime.fromtimestamp(newest, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            return Check("clock", "warn", f"{shown}: behind the newest stored result ({behind}): the clock went back",
                         fix)
    return Check("clock", "ok", shown)


def _newest_result_time(path: Path) -> float | None:
    try:
        from edge.storage import ResultStore

        with ResultStore(path, readonly=True) as store:
            last = store.windows(last=1)
    except (EdgeError, OSError):
        return None
    return last[-1].wall_time if last else None


# --------------------------------------------------------------------------- command line


def run_checks(config: MonitorConfig, groups=CHECK_GROUPS, timeout_s: float = 10.0, days: float = 30.0,
               target: str | None = None) -> Iterator[Check]:
    """Every check of the chosen groups, in order, as each finishes."""
    if "system" in groups:
        yield check_python()
        yield check_packages()
        yield check_cpu()
    if "bundle" in groups:
        yield from check_bundle(config, target)
    if "port" in groups:
        yield from check_port(config, timeout_s)
    if "database" in groups:
        yield check_database(config, days)
    if "clock" in groups:
        yield check_clock(config)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``biomoe doctor``: the monitor's settings, and what to check."""
    parser.description = (
        "Check that this machine can monitor: Python and packages, CPU features, the bundle (checksums, one "
        "synthetic window within the time budget), the serial port and the device's hello, the database folder "
        "and the clock. Takes the monitor's settings (--config and its flags). Exit status 0 when nothing failed."
    )
    add_config_arguments(parser)
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long to wait for the device's hello frame (default: %(default)g)")
    parser.add_argument("--target", metavar="BOARD",
                        help="time budget of this board (rpi4, rpi5, rpi-zero-2w, jetson-orin-nano, dev-x86) "
                             "instead of the hop")
    parser.add_argument("--days", type=float, default=30.0, metavar="N",
                        help="free space wanted in the database's folder, in days of windows (default: %(default)g)")
    parser.add_argument("--only", metavar="GROUPS",
                        help=f"comma-separated groups to check, of {', '.join(CHECK_GROUPS)} (default: all)")


def run(args: argparse.Namespace) -> int:
    """Run the checks, print each as it finishes; 0 when none failed."""
    groups = CHECK_GROUPS
    if args.only:
        groups = tuple(group.strip() for group in args.only.split(",") if group.strip())
        unknown = [group for group in groups if group not in CHECK_GROUPS]
        if unknown or not groups:
            raise EdgeError(f"--only takes groups of {', '.join(CHECK_GROUPS)}, got {args.only!r}")
    for flag, value in (("--connect-timeout", args.connect_timeout), ("--days", args.days)):
        if not (math.isfinite(value) and value > 0):
            raise EdgeError(f"{flag} must be a number > 0, got {value!r}")
    config = config_from_args(args)
    print(f"biomoe doctor: {platform.system()} {platform.machine()}, user {_user_name()}", flush=True)
    counts = {"ok": 0, "warn": 0, "fail": 0}
    for check in run_checks(config, groups, args.connect_timeout, args.days, args.target):
        counts[check.status] += 1
        print(format_check(check), flush=True)
    verdict = ("ready to monitor" if not counts["fail"] else "not ready: fix the FAIL lines above, then run biomoe "
               "doctor again")
    print(f"{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failure(s): {verdict}")
    return 1 if counts["fail"] else 0


def _user_name() -> str:
    from edge.ports import user_name

    return user_name()
