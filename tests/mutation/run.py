"""Mutation testing of the device path: does each module's own test file catch small planted bugs?

For each module in :data:`MODULES`, mutmut plants one small bug at a time (an
operator, a comparison, a constant, a dropped argument...) inside its functions
and runs the test files a developer runs for that module, only the tests that
call the mutated function; a mutant whose tests still pass *survives*. Mutants
that cannot change behaviour are listed with their reason in
``equivalent.toml`` and left out of the score::

    python -m tests.mutation.run                      # every module (minutes on 2 cores)
    python -m tests.mutation.run edge/quality.py      # one module
    python -m tests.mutation.run training/metrics.py --survivors   # and list what survived
    python -m tests.mutation.run edge/quality.py --retest --survivors   # after strengthening its tests
    python -m tests.mutation.run --report             # the table of the last runs, running nothing

It prints the Markdown table of the README's development section (module,
mutants, killed, equivalent, score = killed / non-equivalent mutants). Each
module's work tree stays in ``.mutation/<module>/`` until the next run, so
``cd .mutation/edge.quality && mutmut show <mutant>`` (or ``mutmut browse``)
shows any mutant.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import libcst
from mutmut.mutation.diff_apply import read_mutant_function, read_original_function
from mutmut.stats import status_by_exit_code
from mutmut.utils.format_utils import orig_function_and_class_names_from_key

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT_FILE = Path(__file__).with_name("equivalent.toml")
STATE_DIR = ROOT / ".mutation"
PACKAGES = ("edge", "firmware_bridge", "training", "quantize", "benchmarks")  # what the tests import

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
DETECTED = {"killed", "timeout", "segfault"}  # a crash or a hang is a bug the tests noticed
UNDETECTED = {"survived", "no tests"}


def workspace_of(module: str) -> Path:
    return STATE_DIR / module.replace("/", ".").removesuffix(".py")


def _meta_path(module: str) -> Path:
    """mutmut's results of the module's last run."""
    return workspace_of(module) / "mutants" / f"{module}.meta"


def _changed_since_last_run(module: str, tests: bool = True) -> bool:
    """Whether the module (or, with ``tests``, its test files) differs from the copy its last run used."""
    names = (module, *MODULES[module]) if tests else (module,)
    return any((workspace_of(module) / name).read_bytes() != (ROOT / name).read_bytes() for name in names)


def mutmut_settings(module: str, tests: tuple[str, ...]) -> str:
    """The ``[tool.mutmut]`` table that mutates ``module`` and runs only ``tests``."""
    listed = lambda items: "[" + ", ".join(f'"{item}"' for item in items) + "]"  # noqa: E731
    return (f"\n[tool.mutmut]\nsource_paths = {listed(PACKAGES)}\nonly_mutate = {listed([module])}\n"
            f"pytest_add_cli_args_test_selection = {listed(tests)}\n"
            f'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:randomly"]\n')


def _copy_checkout(module: str) -> Path:
    """The checkout's tracked and untracked files (not ignored ones) in a fresh ``.mutation/<module>/``, with the
    mutmut settings for ``module`` added to its pyproject.toml and ``../shared`` reachable as the tests expect."""
    workspace = workspace_of(module)
    shutil.rmtree(workspace, ignore_errors=True)
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file() and not name.startswith(".mutation/"):
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, workspace / name)
    with open(workspace / "pyproject.toml", "a") as pyproject:
        pyproject.write(mutmut_settings(module, MODULES[module]))
    shared = ROOT.parent / "shared"
    if shared.exists():
        (workspace / "shared").symlink_to(shared)  # mutmut runs the tests from mutants/; its parent is here
    return workspace


def equivalents(module: str) -> dict[tuple[str, str, str], str]:
    """(function, original line, mutant line) -> why the mutant cannot change what ``module`` does."""
    entries = tomllib.loads(EQUIVALENT_FILE.read_text()).get("equivalent", [])
    return {(e["function"], e["original"], e["mutant"]): e["reason"] for e in entries if e["module"] == module}


def changed_lines(mutated_module: libcst.Module, mutant: str) -> tuple[str, str]:
    """The lines a mutant changes, as (original, mutated), each stripped and joined by newlines."""
    original, mutated = (libcst.Module([read(mutated_module, mutant)]).code.splitlines()
                         for read in (read_original_function, read_mutant_function))
    diff = list(difflib.unified_diff(original, mutated, lineterm="", n=0))[2:]
    removed = [line[1:].strip() for line in diff if line.startswith("-")]
    added = [line[1:].strip() for line in diff if line.startswith("+")]
    return "\n".join(removed), "\n".join(added)


def function_of(mutant: str) -> str:
    """``edge.quality.xǁDeviceFlagsǁprune__mutmut_6`` -> ``DeviceFlags.prune``."""
    function, cls = orig_function_and_class_names_from_key(mutant)
    function = function.rpartition(".")[-1]
    return f"{cls}.{function}" if cls else function


def score(module: str, survivors: bool) -> dict:
    """Counts of one module's mutants from mutmut's results; a survivor listed in equivalent.toml is equivalent."""
    workspace = workspace_of(module)
    exit_codes = json.loads(_meta_path(module).read_text())["exit_code_by_key"]
    known = equivalents(module)
    counts = {"module": module, "mutants": len(exit_codes), "killed": 0, "equivalent": 0}
    mutated_module = libcst.parse_module((workspace / "mutants" / module).read_text())
    for mutant, exit_code in sorted(exit_codes.items()):
        status = status_by_exit_code[exit_code]
        if status in DETECTED:
            counts["killed"] += 1
            continue
        if status not in UNDETECTED:
            raise SystemExit(f"mutant {mutant} of {module} ended '{status}': run the module again")
        original, mutated = changed_lines(mutated_module, mutant)
        if (function_of(mutant), original, mutated) in known:
            counts["equivalent"] += 1
        elif survivors:
            print(f"{module}: {function_of(mutant)}: {status} ({mutant})\n  - {original}\n  + {mutated}",
                  file=sys.stderr)
    scored = counts["mutants"] - counts["equivalent"]
    counts["score"] = counts["killed"] / scored if scored else 1.0
    return counts


def _survivors_of_last_run(module: str) -> list[str]:
    """The mutants of ``module`` that its tests did not catch last time, with the current tests copied in."""
    workspace = workspace_of(module)
    meta = _meta_path(module)
    if not meta.exists():
        raise SystemExit(f"{module} has no earlier run to re-test: run it without --retest first")
    if _changed_since_last_run(module, tests=False):
        raise SystemExit(f"{module} changed since its last run, so its mutants did too: run it without --retest")
    exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
    shutil.copytree(ROOT / "tests", workspace / "tests", dirs_exist_ok=True)
    (workspace / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)  # which tests call what: the new ones too
    known = equivalents(module)
    mutated_module = libcst.parse_module((workspace / "mutants" / module).read_text())
    return [mutant for mutant, code in exit_codes.items() if status_by_exit_code[code] in UNDETECTED
            and (function_of(mutant), *changed_lines(mutated_module, mutant)) not in known]  # listed: no test can


def mutate_module(module: str, jobs: int, survivors: bool, retest: bool = False) -> dict:
    """Mutation-test one module from scratch, or only last run's survivors with ``retest``; returns its counts."""
    if retest:
        names = _survivors_of_last_run(module)
        workspace = workspace_of(module)
    else:
        names = []
        workspace = _copy_checkout(module)
    if retest and not names:
        return score(module, survivors)  # nothing to re-test (mutmut given no names would run every mutant)
    print(f"{module}: mutmut run in {workspace.relative_to(ROOT)}", file=sys.stderr, flush=True)
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    finished = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *names],
                              cwd=workspace, stdout=sys.stderr, env=environment)
    if finished.returncode != 0:
        raise SystemExit(f"mutmut failed for {module} (exit {finished.returncode}); see the output above")
    return score(module, survivors)


def format_table(rows: list[dict]) -> str:
    """The Markdown table of the README."""
    lines = ["| module | mutants | killed | equivalent | score |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| `{r['module']}` | {r['mutants']} | {r['killed']} | {r['equivalent']} | {r['score']:.1%} |"
              for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation.run", description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"modules to mutate (default all: "
                                                                     f"{', '.join(MODULES)})")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants on stderr")
    parser.add_argument("--retest", action="store_true",
                        help="re-test only the mutants that survived the last run (after strengthening the tests)")
    parser.add_argument("--report", action="store_true",
                        help="print the table of each module's last run without running anything")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), metavar="N",
                        help="mutants tested at once (default: the number of CPUs)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.modules if name not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {list(MODULES)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.report and args.retest:
        parser.error("--report runs nothing, so it cannot --retest")
    modules = args.modules or list(MODULES)
    missing = [module for module in modules if args.report and not _meta_path(module).exists()]
    if missing:
        parser.error(f"no earlier run of {missing} to report: run them without --report")
    stale = [module for module in modules if args.report and _changed_since_last_run(module)]
    if stale:
        parser.error(f"{stale} changed since their last run: run them without --report")
    rows = [score(module, args.survivors) if args.report else mutate_module(module, args.jobs, args.survivors,
                                                                              args.retest) for module in modules]
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
