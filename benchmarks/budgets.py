"""Device budgets: what a bundle may spend on each target board.

The budgets live in a TOML file (``benchmarks/budgets.toml`` by default, where
each number's source is written next to it); :func:`load_targets` reads and
checks it. ``biomoe bench`` compares its measurements with one target.

Examples
--------
>>> targets = load_targets()
>>> sorted(targets)[:2]
['dev-x86', 'jetson-orin-nano']
>>> targets["rpi-zero-2w"].peak_rss_mb
250.0
"""

from __future__ import annotations

import math
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["DEFAULT_BUDGETS", "BUDGET_KEYS", "Target", "load_targets", "get_target", "evaluate"]

DEFAULT_BUDGETS = Path(__file__).with_name("budgets.toml")
#: The budget of each target, in the units their names end with.
BUDGET_KEYS = ("window_ms", "load_ms", "peak_rss_mb", "bundle_mb")


@dataclass(frozen=True)
class Target:
    """One device and its budgets.

    Attributes
    ----------
    name, description : str
        Key in the budgets file and a line about the hardware.
    machine : str
        ``platform.machine()`` of the board (``"aarch64"``, ``"x86_64"``).
    x86_slowdown : float
        Factor from the reference x86 machine's latency to this board's
        (an estimate, documented in the budgets file).
    window_ms, load_ms, peak_rss_mb, bundle_mb : float
        The budgets (see the budgets file).
    """

    name: str
    description: str
    machine: str
    x86_slowdown: float
    window_ms: float
    load_ms: float
    peak_rss_mb: float
    bundle_mb: float

    def is_this_machine(self) -> bool:
        """Whether the bench runs on this target's kind of CPU (measured figures, not estimates)."""
        return _normalise_machine(platform.machine()) == _normalise_machine(self.machine)

    def latency_factor(self) -> float:
        """Factor applied to latencies measured here: 1 on the target's own kind of machine."""
        return 1.0 if self.is_this_machine() else self.x86_slowdown


def _normalise_machine(name: str) -> str:
    name = name.lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(name, name)


def load_targets(path: str | Path | None = None) -> dict[str, Target]:
    """Read and check a budgets file.

    Parameters
    ----------
    path : str or Path, optional
        The TOML file; default :data:`DEFAULT_BUDGETS`.

    Returns
    -------
    dict of str to Target
        By target name, in file order.

    Raises
    ------
    EdgeError
        For a missing or malformed file, a target without a budget, or a
        budget that is not a number > 0.
    """
    path = Path(DEFAULT_BUDGETS if path is None else path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeError(f"budgets file {path} does not exist; pass --budgets FILE or leave it out") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EdgeError(f"budgets file {path} cannot be read: {exc}") from None
    tables = data.get("targets")
    if not isinstance(tables, dict) or not tables:
        raise EdgeError(f"budgets file {path} defines no [targets.NAME] table; see {DEFAULT_BUDGETS}")
    return {name: _parse_target(path, name, table) for name, table in tables.items()}


def get_target(name: str, path: str | Path | None = None) -> Target:
    """The target ``name`` of a budgets file; an unknown name is an :class:`EdgeError` listing the known ones."""
    targets = load_targets(path)
    if name not in targets:
        raise EdgeError(
            f"unknown target {name!r}; known targets: {', '.join(targets)} "
            f"(from {Path(DEFAULT_BUDGETS if path is None else path)})"
        )
    return targets[name]


def _parse_target(path: Path, name: str, table) -> Target:
    where = f"budgets file {path}, [targets.{name}]"
    if not isinstance(table, dict):
        raise EdgeError(f"{where} must be a table of budgets")
    numbers = {}
    for key in ("x86_slowdown",) + BUDGET_KEYS:
        value = table.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise EdgeError(f"{where}: '{key}' must be a number > 0, got {value!r}")
        numbers[key] = float(value)
    machine = table.get("machine")
    if not isinstance(machine, str) or not machine:
        raise EdgeError(f"{where}: 'machine' must name a CPU architecture such as \"aarch64\", got {machine!r}")
    return Target(name=name, description=str(table.get("description", "")), machine=machine, **numbers)


def evaluate(results: dict, target: Target) -> dict:
    """Each row on ``target``: the figure there (scaled when estimated), its budget and pass/fail.

    Returns
    -------
    dict
        ``target``, ``estimated`` (bool), ``factor``, ``rows`` (stage ->
        ``{"on_target", "budget", "status", "share"}``), ``failures`` and
        ``verdict`` (``"pass"``/``"fail"``).
    """
    factor = target.latency_factor()
    window_budget = target.window_ms
    judged, failures = {}, []
    for row in results["rows"]:
        on_target = row["median"] * (factor if row["scaled"] else 1.0)
        entry = {"on_target": on_target, "budget": None, "status": "", "share": None}
        if row["budget"]:
            budget = getattr(target, row["budget"])
            entry.update(budget=budget, status="pass" if on_target <= budget else "FAIL")
            if on_target > budget:
                failures.append(f"{row['stage']}: {on_target:.0f} {row['unit']} > {budget:g} {row['unit']}")
        elif row["unit"] == "ms" and row["stage"] not in ("reference", "load"):
            entry["share"] = on_target / window_budget
        judged[row["stage"]] = entry
    return {"target": target.name, "description": target.description, "estimated": factor != 1.0,
            "factor": factor, "rows": judged, "failures": failures, "verdict": "fail" if failures else "pass"}
