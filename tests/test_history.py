import csv
import json
import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import require_module

from edge import history
from edge.cli import main
from edge.errors import EdgeError
from edge.storage import ResultStore, WindowResult
from tests.privileges import without_privileges

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["No Pain", "Low Pain", "High Pain"]


def _fill(path, n=6, placeholder=False):
    with ResultStore(path) as store:
        store.start_session("b1", placeholder, LABELS, ["EDA", "BVP"])
        for i in range(n):
            if i == 3:
                store.append(WindowResult(i, 10.0 * i, 10.0 * i + 10, 1.7e9 + 10 * i, skipped=True,
                                          skip_reason="behind", bundle_id="b1", placeholder=placeholder))
                continue
            level = i % 3
            probabilities = {label: (0.8 if j == level else 0.1) for j, label in enumerate(LABELS)}
            quality = {"EDA": {"ok": i != 4, "flags": [] if i != 4 else ["lead_off"]},
                       "BVP": {"ok": True, "flags": []}}
            store.append(WindowResult(
                i, 10.0 * i, 10.0 * i + 10, 1.7e9 + 10 * i, probabilities, LABELS[level], probabilities,
                LABELS[level], quality, {"total": 100.0 + i}, bundle_id="b1", placeholder=placeholder,
            ))
    return path


def test_prints_a_table(tmp_path, capsys):
    database = _fill(tmp_path / "r.sqlite")
    assert main(["history", str(database), "--format", "table"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["session", "window"]
    assert "p(High Pain)" in out[0]
    assert len(out) == 1 + 6
    assert "skipped" in out[4] and "EDA:lead_off" in out[5]
    assert "Low Pain" in out[2] and "0.800" in out[2]


def test_reading_leaves_the_database_folder_as_it_was(tmp_path, capsys):
    database = _fill(tmp_path / "r.sqlite")
    content = database.read_bytes()
    assert main(["history", str(database), "--format", "jsonl"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["r.sqlite"]  # no -wal or -shm left behind
    assert database.read_bytes() == content


def test_reads_the_windows_a_running_monitor_holds_in_its_wal(tmp_path, capsys):
    database = _fill(tmp_path / "r.sqlite", n=2)
    with ResultStore(database) as writer:  # open, like a running monitor: its new windows are in -wal
        writer.start_session("b1", False, LABELS, ["EDA", "BVP"])
        writer.append(WindowResult(0, 0.0, 10.0, 1.8e9, bundle_id="b1", skipped=True, skip_reason="behind"))
        assert main(["history", str(database), "--format", "jsonl"]) == 0
    assert [json.loads(line)["session_id"] for line in capsys.readouterr().out.splitlines()] == [1, 1, 2]


def test_last_limits_the_rows(tmp_path, capsys):
    database = _fill(tmp_path / "r.sqlite")
    assert main(["history", str(database), "--last", "2", "--format", "table"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[1].split()[1] == "4"


def test_placeholder_results_are_marked(tmp_path, capsys):
    database = _fill(tmp_path / "r.sqlite", placeholder=True)
    main(["history", str(database), "--format", "table"])
    assert "PLACEHOLDER" in capsys.readouterr().out


def test_csv_export(tmp_path):
    database = _fill(tmp_path / "r.sqlite")
    out = tmp_path / "out.csv"
    assert main(["history", str(database), "--csv", str(out)]) == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert rows[0]["p_No Pain"] == "0.8" and rows[0]["smoothed_label"] == "No Pain"
    assert rows[3]["skipped"] == "1" and rows[3]["quality"] == "skipped" and rows[3]["p_No Pain"] == ""
    assert rows[4]["quality_ok"] == "0" and rows[4]["quality"] == "EDA:lead_off"
    assert rows[5]["latency_ms"] == "105.0"


def test_csv_to_standard_output(tmp_path, capsys):
    database = _fill(tmp_path / "r.sqlite", n=2)
    main(["history", str(database), "--csv", "-"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("session,window,start_time") and len(lines) == 3


def test_into_a_pipe_json_lines_as_the_monitor_prints_them(tmp_path, capsys):
    database = _fill(tmp_path / "r.sqlite")
    assert main(["history", str(database)]) == 0  # standard output is not a terminal here
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    with ResultStore(database, readonly=True) as store:
        assert records == [result.to_dict() for result in store.windows()]
    assert records[3]["skipped"] and records[4]["quality"]["EDA"]["flags"] == ["lead_off"]


def test_format_csv_on_standard_output(tmp_path, capsys):
    database = _fill(tmp_path / "r.sqlite", n=2)
    assert main(["history", str(database), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("session,window,start_time") and len(lines) == 3


def test_a_terminal_gets_the_table(tmp_path):
    database = _fill(tmp_path / "r.sqlite", n=2)
    master, slave = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "edge.cli", "history", str(database)], cwd=ROOT,
                              stdout=slave, stderr=subprocess.PIPE, timeout=60)
        shown = os.read(master, 65536).decode().splitlines()
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 0, done.stderr
    assert shown[0].split()[:2] == ["session", "window"] and len(shown) == 3


def test_timeline_png(tmp_path):
    require_module("matplotlib")
    database = _fill(tmp_path / "r.sqlite", placeholder=True)
    out = tmp_path / "timeline.png"
    assert main(["history", str(database), "--plot", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    database = _fill(tmp_path / "r.sqlite")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with ResultStore(database, readonly=True) as store:
        results = store.windows()
    with pytest.raises(EdgeError, match="pip install matplotlib"):
        history.plot_timeline(results, tmp_path / "t.png")


def test_empty_database(tmp_path, capsys):
    database = tmp_path / "r.sqlite"
    ResultStore(database).close()
    assert main(["history", str(database), "--format", "table"]) == 0
    assert "no windows stored" in capsys.readouterr().out
    assert main(["history", str(database)]) == 0  # into a pipe: no lines, the note on stderr
    captured = capsys.readouterr()
    assert captured.out == "" and "no windows stored" in captured.err
    assert main(["history", str(database), "--plot", str(tmp_path / "t.png")]) == 1
    assert "no stored windows" in capsys.readouterr().err


def _killed_writer(folder, checkpoint_after=None):
    """A results database whose writer died (its -wal stays) and whose -shm file was then removed."""
    path = folder / "results.sqlite"
    writer = textwrap.dedent(f"""
        import os
        from edge.storage import ResultStore, WindowResult
        store = ResultStore({str(path)!r})
        store.start_session("b1", False, {LABELS!r}, ["EDA"])
        for index in range(6):
            if index == {checkpoint_after!r}:
                store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.append(WindowResult(index, 10.0 * index, 10.0 * index + 10, 1.7e9, bundle_id="b1",
                                      skipped=True, skip_reason="behind"))
        os._exit(0)  # like SIGKILL: no checkpoint, -wal and -shm stay
    """)
    subprocess.run([sys.executable, "-c", writer], check=True, cwd=ROOT, timeout=60)
    path.with_name(path.name + "-shm").unlink()
    return path


def _as_a_user_who_cannot_write(folder):
    """Make ``folder`` read-only; for root, who writes anywhere through its capabilities, drop them."""
    folder.chmod(0o555)
    return without_privileges()


@pytest.mark.parametrize("checkpoint_after", [None, 4], ids=["all in -wal", "last two in -wal"])
def test_history_reads_a_database_it_may_not_write_beside(checkpoint_after, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    path = _killed_writer(folder, checkpoint_after)
    try:
        done = subprocess.run([sys.executable, "-m", "edge.cli", "history", str(path), "--format", "table"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60,
                              preexec_fn=_as_a_user_who_cannot_write(folder))
    finally:
        folder.chmod(0o755)
    assert "Traceback" not in done.stderr and "move the file away" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    if checkpoint_after is None:  # nothing readable without the -wal: say why and what to do
        assert done.returncode == 1
        assert lines[0].startswith("biomoe history: error: cannot read results database ")
        assert "-shm index, gone" in lines[0] and "run biomoe history as a user who may write there" in lines[0]
    else:  # the checkpointed windows, and a note that the later ones are not shown
        assert done.returncode == 0
        assert [line.split()[1] for line in done.stdout.splitlines()[1:]] == ["0", "1", "2", "3"]
        assert lines[0].startswith("biomoe history: note: the latest windows, in results.sqlite-wal, are not shown")


def test_a_database_the_user_may_not_read_is_named_as_such(tmp_path):
    path = _fill(tmp_path / "r.sqlite")
    path.chmod(0o000)
    try:
        done = subprocess.run([sys.executable, "-m", "edge.cli", "history", str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60,
                              preexec_fn=_as_a_user_who_cannot_write(tmp_path))
    finally:
        tmp_path.chmod(0o755)
    assert done.returncode == 1
    assert done.stderr == (f"biomoe history: error: cannot read results database {path}: permission denied; run as "
                           "a user who may read it (e.g. the monitor's service user) or copy it\n")


def test_missing_database_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "history", str(tmp_path / "nope.sqlite")],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("biomoe history: error: no results database")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
