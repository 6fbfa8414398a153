"""Command-line mistakes: one clear line on stderr, a non-zero exit, and the output folder left as it was."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.storage import ResultStore, WindowResult

# (command line, a fragment of the one error line). Paths are relative to a folder holding the files of
# _inputs and an output folder out/ with one file in it; "missing/" does not exist.
MISTAKES = {
    "render --fs 0": (["render", "sig.csv", "--fs", "0", "--out", "out"], "sampling_rate must be a finite number > 0"),
    "render --fs negative": (["render", "sig.csv", "--fs", "-5", "--out", "out"], "got -5"),
    "render --hop-seconds 0": (["render", "sig.csv", "--fs", "100", "--hop-seconds", "0", "--out", "out"],
                               "--hop-seconds must be"),
    "render --window-seconds 0": (["render", "sig.csv", "--fs", "100", "--window-seconds", "0", "--out", "out"],
                                  "window_seconds must be a finite number > 0"),
    "render --spec missing": (["render", "sig.csv", "--fs", "100", "--spec", "missing.json", "--out", "out"],
                              "--spec missing.json does not exist"),
    "render --spec invalid": (["render", "sig.csv", "--fs", "100", "--spec", "bad.json", "--out", "out"],
                              "--spec bad.json: representation settings are not valid JSON"),
    "render --out a file": (["render", "sig.csv", "--fs", "100", "--out", "out/keep.txt"],
                            "--out out/keep.txt is a file"),
    "monitor --windows -1": (["monitor", "--simulate", "--windows", "-1", "--db", "out/r.sqlite"],
                             "--windows must be 0 (no limit) or a positive number"),
    "monitor --speed 0": (["monitor", "--simulate", "--speed", "0", "--windows", "1", "--db", "out/r.sqlite"],
                          "--speed must be a number > 0"),
    "monitor --signal-rate -5": (["monitor", "--simulate", "--signal-rate", "-5", "--windows", "1", "--db", "out/r.sqlite"],
                                 "--signal-rate must be a number > 0"),
    "monitor --signal-rate without --simulate": (["monitor", "--port", "/dev/null", "--signal-rate", "250"],
                                                 "--signal-rate applies to the simulated hub only"),
    "monitor --db not SQLite": (["monitor", "--simulate", "--windows", "1", "--speed", "50", "--db", "out/keep.txt"],
                                "file is not a database"),
    "monitor --db under a file": (["monitor", "--simulate", "--windows", "1", "--speed", "50",
                                   "--db", "out/keep.txt/r.sqlite"], "a file stands where its folder should be"),
    "export without --checkpoint": (["export", "--head", "fake.pth", "--out", "out/bundle"],
                                    "the following arguments are required: --checkpoint"),
    "export without --head": (["export", "--checkpoint", "fake.pth", "--out", "out/bundle"],
                              "the following arguments are required: --head"),
    "export not a checkpoint": (["export", "--checkpoint", "fake.pth", "--head", "fake.pth", "--out", "out/bundle"],
                                "fake.pth is not a Tiny-BioMoE checkpoint"),
    "history --last 0": (["history", "results.sqlite", "--last", "0"], "--last must be a positive number"),
    "history not SQLite": (["history", "out/keep.txt"], "file is not a database"),
    "history --csv into a missing folder": (["history", "results.sqlite", "--csv", "missing/r.csv"],
                                            "folder missing does not exist"),
}
_ARGPARSE_MISTAKES = ("export without --checkpoint", "export without --head")  # usage, then the error line


@pytest.fixture
def folder(tmp_path):
    """The inputs of MISTAKES: a signal CSV, specs, a fake checkpoint, a results database and out/keep.txt."""
    seconds = np.arange(3000) / 100.0
    np.savetxt(tmp_path / "sig.csv", np.column_stack([np.sin(seconds), np.cos(2 * seconds)]), delimiter=",",
               header="EDA,BVP", comments="")
    (tmp_path / "bad.json").write_text("{sampling_rate: 100")
    (tmp_path / "fake.pth").write_bytes(b"not a checkpoint")
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.start_session("b1", False, ["No Pain", "Pain"], ["EDA"])
        store.append(WindowResult(0, 0.0, 10.0, 1.7e9, {"No Pain": 0.9, "Pain": 0.1}, "No Pain"))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    return tmp_path


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(MISTAKES))
def test_a_mistake_is_one_line_and_changes_no_file(name, folder):
    argv, fragment = MISTAKES[name]
    if argv[0] == "export" and importlib.util.find_spec("torch") is None:
        pytest.skip("biomoe export needs the train extra")
    before = _tree(folder)
    done = subprocess.run([sys.executable, "-m", "edge.cli", *argv], cwd=folder, capture_output=True, text=True,
                          timeout=150)
    lines = done.stderr.splitlines()
    if name in _ARGPARSE_MISTAKES:
        assert done.returncode == 2 and lines[0].startswith(f"usage: biomoe {argv[0]}"), done.stderr
        assert lines[-1].startswith(f"biomoe {argv[0]}: error: ") and fragment in lines[-1], done.stderr
    else:
        assert done.returncode == 1, done.stderr
        assert len(lines) == 1 and lines[0].startswith(f"biomoe {argv[0]}: error: "), done.stderr
        assert fragment in lines[0], done.stderr
    assert _tree(folder) == before
