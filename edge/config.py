"""Monitor settings: a TOML file, overridden by command-line flags.

A Raspberry Pi runs the monitor as a service from a file such as
``/etc/biomoe/monitor.toml`` (see ``edge/monitor.example.toml``); a person at
a terminal overrides single values with flags (``--hop 5``). Every value is
checked once, here: a bad one is an :class:`~edge.errors.EdgeError` naming
where it came from, the key, the value and what is allowed.

Top-level keys: ``port``, ``simulate``, ``bundle``, ``database``,
``window_seconds``, ``hop_seconds``, ``threads``, ``log_level``, ``calibration_windows``,
``dashboard``, ``dashboard_token``, ``alert_after_seconds``, ``record``, ``record_rotate_minutes``,
``record_min_free_mb``, ``stale_after_seconds``. Tables
``[smoothing]`` (``method``, ``alpha``, ``windows``) and ``[budgets]``
(``window_ms``, ``memory_mb``, ``max_pending_windows``,
``status_interval_seconds``). Relative paths in a file are relative to the
file's folder.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edge.dashboard.access import parse_bind_address, require_token
from edge.errors import EdgeError
from edge.smoothing import SMOOTHING_METHODS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "LOG_LEVELS",
    "SmoothingConfig",
    "BudgetConfig",
    "MonitorConfig",
    "load_config",
    "add_config_arguments",
    "config_from_args",
    "example_config_path",
]

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class SmoothingConfig:
    """Temporal smoothing (:func:`edge.smoothing.create_smoother`)."""

    method: str = "ema"
    alpha: float = 0.5
    windows: int = 5


@dataclass(frozen=True)
class BudgetConfig:
    """What the monitor may spend, watched continuously.

    Attributes
    ----------
    window_ms : float or None
        Processing time allowed per window; None: the hop (the pace windows
        arrive at). Slower windows are counted and reported.
    memory_mb : float
        Resident memory the process should stay under; exceeding it is reported.
    max_pending_windows : int
        Windows that may wait for processing; when more arrive the oldest
        waiting one is skipped (stored as skipped), so the queue never grows.
    status_interval_seconds : float
        How often the status line (skipped windows, bridge losses, budgets)
        is printed.
    """

    window_ms: float | None = None
    memory_mb: float = 512.0
    max_pending_windows: int = 2
    status_interval_seconds: float = 60.0


@dataclass(frozen=True)
class MonitorConfig:
    """All settings of ``biomoe monitor``.

    Attributes
    ----------
    port : str or None
        Serial port of the sensor hub (``/dev/ttyACM0``) or a pyserial URL.
    simulate : bool
        Read the built-in simulated hub instead of ``port``.
    bundle : Path or None
        Model bundle folder; None: the bundle shipped with biomoe.
    database : Path
        SQLite results database.
    window_seconds : float or None
        Window length; None: the bundle's.
    hop_seconds : float or None
        Start-to-start distance of windows; None: the window length.
    threads : int
        Inference threads.
    log_level : str
        One of :data:`LOG_LEVELS`.
    calibration_windows : int or None
        Reliable rest windows the patient's baseline averages (a calibrated
        bundle); None: the bundle's own number.
    dashboard : str or None
        ``[HOST:]PORT`` of the live bedside page (:mod:`edge.dashboard`); None: no page.
    dashboard_token : Path or None
        File holding the page's access token (created, mode 0600, if missing);
        needed to bind the page to anything but loopback.
    alert_after_seconds : float
        Seconds of persisting High Pain before the page raises its alert.
    record : Path or None
        Folder for EDF+ recordings of every delivered sample (:mod:`edge.recording`); None: no recording.
    record_rotate_minutes : float
        Length of one recording file.
    record_min_free_mb : float
        Free disk space recording leaves; below it recording stops (monitoring goes on).
    stale_after_seconds : float or None
        Wall-clock seconds without sample data on an open link before the
        monitor warns and reports the link as ``no data``; None: three windows' worth.
    smoothing : SmoothingConfig
    budgets : BudgetConfig
    """

    port: str | None = None
    simulate: bool = False
    bundle: Path | None = None
    database: Path = Path("biomoe-results.sqlite")
    window_seconds: float | None = None
    hop_seconds: float | None = None
    threads: int = 2
    log_level: str = "info"
    calibration_windows: int | None = None
    dashboard: str | None = None
    dashboard_token: Path | None = None
    alert_after_seconds: float = 60.0
    record: Path | None = None
    record_rotate_minutes: float = 60.0
    record_min_free_mb: float = 64.0
    stale_after_seconds: float | None = None
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    budgets: BudgetConfig = field(default_factory=BudgetConfig)

    def require_source(self) -> None:
        """Refuse a configuration that names no sensor to read."""
        if not self.simulate and not self.port:
            raise EdgeError(
                "no sensor port: pass --port PORT (e.g. /dev/ttyACM0), set port in the config file, "
                "or use --simulate to run with the built-in simulated hub"
            )

    def require_dashboard_access(self) -> None:
        """Refuse a dashboard reachable from other machines without an access token file."""
        if self.dashboard is not None:
            require_token(parse_bind_address(self.dashboard), self.dashboard_token)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (paths as strings), e.g. to store with a session."""
        data = asdict(self)
        for key in _PATH_KEYS:
            data[key] = None if data[key] is None else str(data[key])
        return data


class _Invalid(Exception):
    """A value failed its check; the message says what is allowed."""


def _text(value):
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("a non-empty string")
    return value


def _boolean(value):
    if not isinstance(value, bool):
        raise _Invalid("true or false")
    return value


def _path(value):
    return Path(_text(value)).expanduser()


def _number(low: float, high: float, *, low_open: bool = True) -> Callable:
    bracket = "(" if low_open else "["

    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Invalid(f"a number in {bracket}{low:g}, {high:g}]")
        if value > high or value < low or (low_open and value == low):
            raise _Invalid(f"a number in {bracket}{low:g}, {high:g}]")
        return float(value)

    return check


def _integer(low: int, high: int) -> Callable:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _Invalid(f"a whole number from {low} to {high}")
        return value

    return check


def _bind_address(value):
    try:
        parse_bind_address(_text(value))
    except EdgeError:
        raise _Invalid("[HOST:]PORT, e.g. 8080 or 0.0.0.0:8080") from None
    return value


def _choice(options) -> Callable:
    def check(value):
        if value not in options:
            raise _Invalid("one of " + ", ".join(f'"{o}"' for o in options))
        return value

    return check


# dotted key -> check. Section keys are "<table>.<key>".
_CHECKS: dict[str, Callable] = {
    "port": _text,
    "simulate": _boolean,
    "bundle": _path,
    "database": _path,
    "window_seconds": _number(0, 600),
    "hop_seconds": _number(0, 3600),
    "threads": _integer(1, 64),
    "log_level": _choice(LOG_LEVELS),
    "calibration_windows": _integer(1, 360),
    "dashboard": _bind_address,
    "dashboard_token": _path,
    "alert_after_seconds": _number(0, 86_400),
    "record": _path,
    "record_rotate_minutes": _number(0, 10_080),
    "record_min_free_mb": _number(0, 1_000_000, low_open=False),
    "stale_after_seconds": _number(0, 86_400),
    "smoothing.method": _choice(SMOOTHING_METHODS),
    "smoothing.alpha": _number(0, 1),
    "smoothing.windows": _integer(1, 1000),
    "budgets.window_ms": _number(0, 3_600_000),
    "budgets.memory_mb": _number(0, 1_000_000),
    "budgets.max_pending_windows": _integer(1, 1000),
    "budgets.status_interval_seconds": _number(0, 86_400),
}
_TABLES = ("smoothing", "budgets")
_PATH_KEYS = ("bundle", "database", "dashboard_token", "record")


def _checked(key: str, value, where: str):
    try:
        return _CHECKS[key](value)
    except _Invalid as allowed:
        raise EdgeError(f"{where}: {key} = {value!r} is not valid; allowed: {allowed}") from None


def _read_toml(path: Path) -> dict:
    if not path.is_file():
        raise EdgeError(
            f"config file {path} not found; copy {example_config_path()} there and edit it, or pass --config"
        )
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise EdgeError(f"config {path}: not valid TOML ({exc}); fix the syntax") from None


def _flatten(data: dict, where: str) -> dict:
    """TOML tables -> dotted keys, refusing unknown keys and tables."""
    flat = {}
    for key, value in data.items():
        if key in _TABLES:
            if not isinstance(value, dict):
                raise EdgeError(f"{where}: {key} must be a table [{key}], got {value!r}")
            for sub_key, sub_value in value.items():
                flat[f"{key}.{sub_key}"] = sub_value
        else:
            flat[key] = value
    unknown = [key for key in flat if key not in _CHECKS]
    if unknown:
        allowed = ", ".join(_CHECKS)
        raise EdgeError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {allowed}; check the spelling")
    return flat


def load_config(
    path=None, overrides: Mapping[str, object] | None = None, origins: Mapping[str, str] | None = None
) -> MonitorConfig:
    """Settings from a TOML file (optional) with ``overrides`` applied on top.

    Parameters
    ----------
    path : str or Path, optional
        TOML file. Relative paths inside it are relative to its folder.
    overrides : mapping, optional
        Dotted key (``"hop_seconds"``, ``"smoothing.method"``) -> value;
        None values are ignored (a flag that was not given).
    origins : mapping, optional
        Dotted key -> where the override came from (``"option --hop"``),
        for error messages.

    Returns
    -------
    MonitorConfig

    Raises
    ------
    EdgeError
        Naming the file or option, the key, the bad value and what is allowed.

    Examples
    --------
    >>> load_config(overrides={"hop_seconds": 5, "smoothing.method": "majority"}).smoothing.method
    'majority'
    """
    values: dict[str, object] = {}
    if path is not None:
        path = Path(path).expanduser()
        where = f"config {path}"
        for key, value in _flatten(_read_toml(path), where).items():
            value = _checked(key, value, where)
            if key in _PATH_KEYS and not value.is_absolute():
                value = path.parent / value
            values[key] = value
    origins = origins or {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _CHECKS:
            raise ValueError(f"unknown configuration key {key!r}; allowed: {', '.join(_CHECKS)}")
        values[key] = _checked(key, value, origins.get(key, "override"))
    top = {key: value for key, value in values.items() if "." not in key}
    tables = {
        table: {key.split(".", 1)[1]: value for key, value in values.items() if key.startswith(table + ".")}
        for table in _TABLES
    }
    return replace(
        MonitorConfig(**top),
        smoothing=SmoothingConfig(**tables["smoothing"]),
        budgets=BudgetConfig(**tables["budgets"]),
    )


# flag -> (dotted key, argparse keywords)
_FLAGS = {
    "--port": ("port", {"metavar": "PORT", "help": "serial port of the sensor hub, e.g. /dev/ttyACM0"}),
    "--simulate": ("simulate", {"action": "store_const", "const": True,
                                "help": "read the built-in simulated sensor hub (no hardware)"}),
    "--bundle": ("bundle", {"metavar": "DIR", "help": "model bundle folder (default: the bundled model)"}),
    "--db": ("database", {"metavar": "FILE", "help": "SQLite results database"}),
    "--window": ("window_seconds", {"type": float, "metavar": "SECONDS", "help": "window length (default: the bundle's)"}),
    "--hop": ("hop_seconds", {"type": float, "metavar": "SECONDS", "help": "window hop (default: the window length)"}),
    "--smoothing": ("smoothing.method", {"choices": SMOOTHING_METHODS, "help": "temporal smoothing of the labels"}),
    "--threads": ("threads", {"type": int, "metavar": "N", "help": "inference threads"}),
    "--log-level": ("log_level", {"choices": LOG_LEVELS, "help": "logging detail"}),
    "--calibration-windows": ("calibration_windows", {"type": int, "metavar": "N",
                                                      "help": "rest windows the patient's baseline averages "
                                                              "(default: the bundle's, 6 = one minute)"}),
    "--dashboard": ("dashboard", {"metavar": "[HOST:]PORT",
                                  "help": "serve the live bedside page, e.g. 8080 (127.0.0.1) or 0.0.0.0:8080 "
                                          "(needs --dashboard-token)"}),
    "--dashboard-token": ("dashboard_token", {"metavar": "FILE",
                                              "help": "the page's access token, created (mode 0600) if missing"}),
    "--alert-after": ("alert_after_seconds", {"type": float, "metavar": "SECONDS",
                                              "help": "persisting High Pain before the page's alert (default 60)"}),
    "--record": ("record", {"metavar": "DIR", "help": "keep every delivered sample as EDF+ files in DIR, with the "
                                                      "windows, gaps and restarts as annotations"}),
    "--record-rotate": ("record_rotate_minutes", {"type": float, "metavar": "MINUTES",
                                                  "help": "length of one recording file (default 60)"}),
    "--stale-after": ("stale_after_seconds", {"type": float, "metavar": "SECONDS",
                                              "help": "warn when an open link brings no sample data for this long "
                                                      "(default: three windows' worth)"}),
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and one flag per overridable setting to ``parser``."""
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (flags override its values)")
    for flag, (key, keywords) in _FLAGS.items():
        parser.add_argument(flag, dest=_dest(key), default=None, **keywords)


def _dest(key: str) -> str:
    return "config_" + key.replace(".", "_")


def config_from_args(args: argparse.Namespace) -> MonitorConfig:
    """The settings of a parsed command line: ``--config`` file, then the flags."""
    overrides = {key: getattr(args, _dest(key)) for key, _ in _FLAGS.values()}
    origins = {key: f"option {flag}" for flag, (key, _) in _FLAGS.items()}
    return load_config(args.config, overrides, origins)


def example_config_path() -> Path:
    """The annotated example file shipped with biomoe."""
    return Path(__file__).resolve().parent / "monitor.example.toml"
