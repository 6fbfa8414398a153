"""Mutation testing of the device path: does each module's own test file catch small planted bugs?

For each module in :data:`MODULES`, cosmic-ray plants one small bug at a time
(an operator, a comparison, a constant, a ``break``...) in a copy of the
checkout and runs the test files a developer runs for that module; a mutant
whose tests still pass *survives*. Mutants that cannot change behaviour are
listed with their reason in ``equivalent.toml`` and left out of the score::

    python -m tests.mutation.run                      # every module (hours on 2 cores)
    python -m tests.mutation.run edge/quality.py      # one module
    python -m tests.mutation.run training/metrics.py --survivors   # and list what survived

It prints the Markdown table of the README's development section (module,
mutants, killed, equivalent, score = killed / non-equivalent mutants). The
work databases stay in ``.mutation/`` (``cr-report .mutation/<name>.sqlite``
shows every mutant) and a re-run continues an unfinished one. ``--sample N``
tests N mutants per module drawn at random (seeded), for a quick estimate.
"""

from __future__ import annotations

import argparse
import ast
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT_FILE = Path(__file__).with_name("equivalent.toml")
STATE_DIR = ROOT / ".mutation"

# module -> the test files a developer runs for it
MODULES: dict[str, tuple[str, ...]] = {
    "firmware_bridge/protocol.py": ("tests/test_protocol.py",),
    "firmware_bridge/reader.py": ("tests/test_reader.py",),
    "edge/windows.py": ("tests/test_windows.py",),
    "edge/quality.py": ("tests/test_quality.py",),
    "edge/representations.py": ("tests/test_representations.py",),
    "edge/bundle.py": ("tests/test_bundle.py",),
    "edge/storage.py": ("tests/test_storage.py",),
    "edge/smoothing.py": ("tests/test_smoothing.py",),
    "training/metrics.py": ("tests/test_metrics.py",),
}
TIMEOUT_S = 120.0  # per mutant: a mutant that hangs the tests is caught (killed)


def _copy_checkout(target: Path) -> Path:
    """The checkout's tracked and untracked files (not ignored ones) in ``target/repo``, ``../shared`` beside it."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    repo = target / "repo"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    shared = ROOT.parent / "shared"
    if shared.exists():
        (target / "shared").symlink_to(shared)
    return repo


def _config(module: str, tests: tuple[str, ...]) -> str:
    command = f"{sys.executable} -m pytest -x -q -p no:cacheprovider -p no:randomly {' '.join(tests)}"
    return (f'[cosmic-ray]\nmodule-path = "{module}"\ntimeout = {TIMEOUT_S}\nexcluded-modules = []\n'
            f'test-command = "{command}"\n\n[cosmic-ray.distributor]\nname = "local"\n')


def _database(module: str) -> Path:
    return STATE_DIR / (module.replace("/", ".").removesuffix(".py") + ".sqlite")


def _sample(database: Path, size: int, seed: int = 0) -> None:
    """Mark all but ``size`` mutants (drawn at random) skipped, so exec tests only the sample."""
    with use_db(str(database), WorkDB.Mode.open) as db:
        items = sorted(db.pending_work_items, key=lambda item: item.job_id)
        kept = set(item.job_id for item in random.Random(seed).sample(items, min(size, len(items))))
        skipped = [item.job_id for item in items if item.job_id not in kept]
        db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))


def _pending(database: Path) -> int:
    with use_db(str(database), WorkDB.Mode.open) as db:
        return sum(1 for _ in db.pending_work_items)


def _execute(config: Path, database: Path, repo: Path, label: str) -> None:
    """``cosmic-ray exec`` with a one-line progress display on stderr."""
    total = _pending(database)
    process = subprocess.Popen([sys.executable, "-m", "cosmic_ray.cli", "exec", str(config), str(database)],
                               cwd=repo, stdout=subprocess.DEVNULL)
    shown = None
    while process.poll() is None:
        time.sleep(2.0)
        done = total - _pending(database)
        if done != shown:
            print(f"\r{label}: {done}/{total} mutants", end="", file=sys.stderr, flush=True)
            shown = done
    print(file=sys.stderr)
    if process.returncode != 0:
        raise SystemExit(f"cosmic-ray exec failed for {label} (exit {process.returncode})")


def _annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions of every annotation: with ``from __future__ import annotations`` they are strings,
    never evaluated, so a mutant inside one (``dict | None`` -> ``dict + None``) changes nothing."""
    tree = ast.parse(source)
    if not any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names) for node in tree.body):
        return []
    annotations = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
        elif isinstance(node, ast.arg):
            annotations.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
    return [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in annotations if a is not None]


def _equivalents(module: str) -> list[dict]:
    entries = tomllib.loads(EQUIVALENT_FILE.read_text()).get("equivalent", [])
    return [entry for entry in entries if entry["module"] == module]


def _score(module: str, database: Path, repo: Path, survivors: bool) -> dict:
    """Counts of one module's tested mutants; a survivor in an annotation or listed in equivalent.toml is equivalent."""
    source = (repo / module).read_text()
    lines = source.splitlines()
    known = {(entry["operator"], entry["line"].strip()) for entry in _equivalents(module)}
    annotations = _annotation_spans(source)
    counts = {"module": module, "mutants": 0, "killed": 0, "equivalent": 0}
    with use_db(str(database), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            mutation = item.mutations[0]
            line = lines[mutation.start_pos[0] - 1].strip()
            counts["mutants"] += 1
            if result.test_outcome != TestOutcome.SURVIVED:
                counts["killed"] += 1
            elif (mutation.operator_name, line) in known or any(
                    start <= tuple(mutation.start_pos) < end for start, end in annotations):
                counts["equivalent"] += 1
            elif survivors:
                print(f"{module}:{mutation.start_pos[0]}: {mutation.operator_name} "
                      f"(occurrence {mutation.occurrence}): {line}", file=sys.stderr)
    scored = counts["mutants"] - counts["equivalent"]
    counts["score"] = counts["killed"] / scored if scored else 1.0
    return counts


def mutate_module(module: str, workspace: Path, sample: int | None, survivors: bool) -> dict:
    """Run (or continue) the mutation testing of one module; returns its counts."""
    repo = _copy_checkout(workspace / module.replace("/", "."))
    config = repo.parent / "cosmic-ray.toml"
    config.write_text(_config(module, MODULES[module]))
    database = _database(module)
    if not database.exists():
        STATE_DIR.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "cosmic_ray.cli", "init", str(config), str(database)], cwd=repo,
                       check=True)
        if sample is not None:
            _sample(database, sample)
    _execute(config, database, repo, module)
    return _score(module, database, repo, survivors)


def format_table(rows: list[dict]) -> str:
    """The Markdown table of the README."""
    lines = ["| module | mutants | killed | equivalent | score |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| `{r['module']}` | {r['mutants']} | {r['killed']} | {r['equivalent']} | {r['score']:.0%} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation.run", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"modules to mutate (default all: "
                                                                     f"{', '.join(MODULES)})")
    parser.add_argument("--sample", type=int, metavar="N", help="test N mutants per module drawn at random (seeded)")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants on stderr")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results of these modules")
    args = parser.parse_args(argv)
    unknown = [name for name in args.modules if name not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {list(MODULES)}")
    if args.sample is not None and args.sample < 1:
        parser.error(f"--sample must be a positive number of mutants, got {args.sample}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="biomoe-mutation-") as workspace:
        for module in args.modules or MODULES:
            if args.fresh:
                _database(module).unlink(missing_ok=True)
            rows.append(mutate_module(module, Path(workspace), args.sample, args.survivors))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
