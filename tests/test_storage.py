import dataclasses
import doctest
import json
import math
import os
import stat
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import edge.storage
from edge.errors import EdgeError
from edge.storage import SCHEMA_VERSION, ResultStore, StoreUnavailable, WindowResult
from tests.privileges import without_privileges

LABELS = ["No Pain", "Low Pain", "High Pain"]


def _result(index, skipped=False, ok=True):
    if skipped:
        return WindowResult(index, 10.0 * index, 10.0 * index + 10, 1.7e9 + index, skipped=True,
                            skip_reason="behind", latency_ms={"total": 0.0}, bundle_id="b1")
    probabilities = {"No Pain": 0.7, "Low Pain": 0.2, "High Pain": 0.1}
    quality = {
        "EDA": {"ok": ok, "flags": [] if ok else ["lead_off"], "missing": 0.0, "std": 0.3},
        "BVP": {"ok": True, "flags": [], "missing": 0.0, "std": math.nan},
    }
    return WindowResult(
        index, 10.0 * index, 10.0 * index + 10, 1.7e9 + index, probabilities, "No Pain",
        probabilities, "No Pain", quality, {"represent": 120.5, "infer": 30.25, "total": 151.0},
        bundle_id="b1", placeholder=True,
    )


def test_results_round_trip_and_survive_reopening(tmp_path):
    path = tmp_path / "sub" / "results.sqlite"
    with ResultStore(path) as store:
        session = store.start_session("b1", True, LABELS, ["EDA", "BVP"], {"hop_seconds": 10.0})
        for i in range(3):
            store.append(_result(i))
    with ResultStore(path) as store:
        second = store.start_session("b1", True, LABELS, ["EDA", "BVP"])
        store.append(_result(3, skipped=True))
        assert second == session + 1
        stored = store.windows()
    assert [r.window_index for r in stored] == [0, 1, 2, 3]
    assert [r.session_id for r in stored] == [session] * 3 + [second]
    first = stored[0]
    assert first.probabilities == {"No Pain": 0.7, "Low Pain": 0.2, "High Pain": 0.1}
    assert first.latency_ms == {"represent": 120.5, "infer": 30.25, "total": 151.0}
    assert first.quality["BVP"]["std"] is None  # NaN stored as null
    assert first.placeholder and first.quality_ok
    assert stored[3].skipped and stored[3].probabilities is None and stored[3].quality_ok is None


def test_database_is_in_wal_mode_with_full_sync(tmp_path):
    path = tmp_path / "r.sqlite"
    store = ResultStore(path)
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_each_window_is_committed_when_append_returns(tmp_path):
    path = tmp_path / "r.sqlite"
    store = ResultStore(path)
    store.start_session("b1", False, LABELS, ["EDA"])
    reader = sqlite3.connect(path)
    for i in range(3):
        store.append(_result(i))
        assert reader.execute("SELECT count(*) FROM windows").fetchone()[0] == i + 1
    reader.close()
    store.close()


def test_a_killed_writer_loses_no_committed_window(tmp_path):
    path = tmp_path / "r.sqlite"
    child = textwrap.dedent(f"""
        import os, signal
        from edge.storage import ResultStore, WindowResult
        store = ResultStore({str(path)!r})
        store.start_session("b1", False, ["a", "b"], ["EDA"])
        for i in range(40):
            store.append(WindowResult(i, i * 10.0, i * 10.0 + 10, 0.0, {{"a": 0.5, "b": 0.5}}, "a"))
        os.kill(os.getpid(), signal.SIGKILL)  # power cut: no close, no checkpoint
    """)
    process = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert process.returncode == -9, process.stderr
    with ResultStore(path) as store:
        assert store.count() == 40
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_last_and_session_filters(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        first = store.start_session("b1", False, LABELS, ["EDA"])
        for i in range(5):
            store.append(_result(i))
        second = store.start_session("b2", False, LABELS, ["EDA"])
        for i in range(2):
            store.append(_result(i, skipped=True))
        assert [r.window_index for r in store.windows(last=3)] == [4, 0, 1]
        assert [r.window_index for r in store.windows(session=first, last=2)] == [3, 4]
        assert len(store.windows(session=second)) == 2
        assert store.count() == 7 and store.count(skipped=True) == 2 and store.count(skipped=False) == 5
        assert [s["bundle_id"] for s in store.sessions()] == ["b1", "b2"]


def test_every_field_of_a_window_comes_back_as_written(tmp_path):
    written = [
        WindowResult(7, 70.0, 80.0, 1.7e9 + 7.5, {"No Pain": 0.6, "Low Pain": 0.3, "High Pain": 0.1}, "No Pain",
                     {"No Pain": 0.2, "Low Pain": 0.5, "High Pain": 0.3}, "Low Pain",
                     {"EDA": {"ok": False, "flags": ["lead_off"]}}, {"infer": 30.5, "total": 151.0},
                     bundle_id="b9", placeholder=True),
        WindowResult(8, 75.0, 85.0, 1.7e9 + 12.5, skipped=True, skip_reason="behind", bundle_id="b9"),
    ]
    with ResultStore(tmp_path / "r.sqlite") as store:
        session = store.start_session("b9", True, LABELS, ["EDA"])
        for result in written:
            store.append(result)
        read = store.windows()
    assert read == [dataclasses.replace(result, session_id=session) for result in written]


def test_opening_a_current_database_needs_no_lock_another_program_holds(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path):
        pass
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # e.g. the monitor in the middle of a write
    try:
        started = time.monotonic()
        with ResultStore(path) as store:
            assert store.count() == 0
        assert time.monotonic() - started < 2.0
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_sessions_are_listed_with_what_started_them(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        before = time.time()
        session = store.start_session("b1", True, LABELS, ["EDA", "BVP"], {"hop_seconds": 5.0})
        (listed,) = store.sessions()
    assert listed["id"] == session and listed["bundle_id"] == "b1" and listed["placeholder"] is True
    assert before <= listed["started_wall_time"] <= time.time()
    assert listed["labels"] == LABELS and listed["channels"] == ["EDA", "BVP"] and listed["info"] == {"hop_seconds": 5.0}


def test_the_file_says_biom_in_its_application_id(tmp_path):
    with ResultStore(tmp_path / "r.sqlite"):
        pass
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == int.from_bytes(b"BIOM", "big")


def test_another_programs_database_is_refused_whatever_its_application_id(tmp_path):
    for application_id in (0, 0x7FFFFFFF):
        path = tmp_path / f"other-{application_id}.sqlite"
        with sqlite3.connect(path) as conn:
            conn.execute(f"PRAGMA application_id = {application_id}")
            conn.execute("CREATE TABLE notes(text)")
        conn.close()
        for readonly in (False, True):
            with pytest.raises(EdgeError, match="is not a biomoe results database"):
                ResultStore(path, readonly=readonly)


def test_the_monitor_writes_and_history_reads_from_other_threads(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as writer:
        writer.start_session("b1", False, LABELS, ["EDA", "BVP"])
        worker = threading.Thread(target=lambda: [writer.append(_result(i)) for i in range(3)])
        worker.start()
        worker.join(timeout=30)
        with ResultStore(path, readonly=True) as reader:
            read = []
            worker = threading.Thread(target=lambda: read.extend(reader.windows()))
            worker.start()
            worker.join(timeout=30)
    assert [r.window_index for r in read] == [0, 1, 2]


def test_events_are_stored(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.start_session("b1", False, LABELS, ["EDA"])
        store.append_event("status", {"skipped": 2, "bridge_lost": 15})
        store.append_event("resync", {"channel": "EDA"})
        assert [e["kind"] for e in store.events()] == ["status", "resync"]
        assert store.events("status")[0]["detail"] == {"skipped": 2, "bridge_lost": 15}


def test_json_line_is_standard_json(tmp_path):
    line = _result(0, ok=False).to_json()
    assert "\n" not in line and "NaN" not in line
    record = json.loads(line)
    assert record["quality_ok"] is False and record["smoothed_label"] == "No Pain"
    assert sum(record["probabilities"].values()) == pytest.approx(1.0)
    assert record["placeholder"] is True


def test_read_only_store_refuses_writes_and_missing_files(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.start_session("b1", False, LABELS, ["EDA"])
        store.append(_result(0))
    with ResultStore(path, readonly=True) as store:
        assert store.count() == 1
        with pytest.raises(EdgeError, match="read-only"):
            store.append(_result(1))
    with pytest.raises(EdgeError, match="no results database"):
        ResultStore(tmp_path / "missing.sqlite", readonly=True)


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(EdgeError, match="cannot use results database"):
        ResultStore(garbage)
    other = tmp_path / "other.sqlite"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE notes(text)")
    connection.commit()
    connection.close()
    with pytest.raises(EdgeError, match="not a biomoe results database"):
        ResultStore(other)


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultStore(path).close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.commit()
    connection.close()
    with pytest.raises(EdgeError, match="upgrade biomoe"):
        ResultStore(path)


def test_a_locked_database_is_one_line_and_the_same_write_succeeds_later(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.start_session("b1", False, LABELS, ["EDA"])
        store.append(_result(0))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the database
        with pytest.raises(StoreUnavailable, match=f"^results database {path} is locked by another program$"):
            store.append(_result(1))
        other.execute("ROLLBACK")
        other.close()
        store.append(_result(1))
        assert [r.window_index for r in store.windows()] == [0, 1]
    with ResultStore(path) as reopened:  # opening needs no lock, so a held lock cannot stop the monitor's start
        assert reopened.count() == 2


def test_a_full_database_is_reported_as_no_space_and_stays_intact(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.start_session("b1", False, LABELS, ["EDA"])
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "database or disk is full"
        with pytest.raises(StoreUnavailable, match=f"^no space left on device at {path}$"):
            for index in range(100):
                store.append(_result(index))
        stored = store.count()
        store._conn.execute(f"PRAGMA max_page_count = {pages + 100}")
        store.append(_result(stored))
        assert [r.window_index for r in store.windows()] == list(range(stored + 1))
    assert _raw(path, "PRAGMA integrity_check") == [("ok",)]


def test_a_commit_the_disk_refuses_is_reported_not_hidden_by_the_rollback(tmp_path):
    """Writing past a file size limit fails inside COMMIT, after which SQLite has already rolled back."""
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.start_session("b1", False, LABELS, ["EDA"])
    script = textwrap.dedent(f"""
        import resource, signal
        from edge.storage import ResultStore, StoreUnavailable, WindowResult
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        store = ResultStore({str(path)!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        try:
            for index in range(1000):
                store.append(WindowResult(index, 0.0, 10.0, 1.7e9, quality={{"EDA": {{"x": "x" * 2000}}}}))
        except StoreUnavailable as exc:
            print(exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        store.append(WindowResult(-1, 0.0, 10.0, 1.7e9))
        store.close()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"cannot write results database {path} (disk I/O error)\n"
    assert _raw(path, "PRAGMA integrity_check") == [("ok",)]
    with ResultStore(path, readonly=True) as store:
        indices = [r.window_index for r in store.windows()]
    assert indices[-1] == -1 and indices[:-1] == list(range(len(indices) - 1))


def test_docstring_examples_run():
    results = doctest.testmod(edge.storage)
    assert results.attempted > 0 and results.failed == 0


def test_the_database_is_private_to_its_owner(tmp_path):
    """Patient results: 0600 whatever the umask, and SQLite's WAL files follow the database's mode."""
    path = tmp_path / "results.sqlite"
    previous = os.umask(0o022)
    try:
        with ResultStore(path) as store:
            store.start_session("abc", False, ["No Pain", "Pain"], ["EDA"])
            store.append(WindowResult(0, 0.0, 10.0, 1.7e9, {"No Pain": 0.8, "Pain": 0.2}, "No Pain"))
            written = [path, path.with_name("results.sqlite-wal"), path.with_name("results.sqlite-shm")]
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in written if p.exists()}
    finally:
        os.umask(previous)
    assert len(modes) == 3 and set(modes.values()) == {0o600}, modes


def _raw(path, sql):
    """Rows as SQLite itself reads them, without the store."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def test_columns_hold_compact_json_sql_null_and_the_quality_verdict(tmp_path):
    """Other tools read the file: JSON columns are compact standard JSON, absent values SQL NULL, quality_ok 1/0/NULL."""
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.start_session("b1", False, LABELS, ["EDA"])
        store.append(WindowResult(0, 0.0, 10.0, 1.5, {"No Pain": 0.75, "Pain": 0.25}, "No Pain",
                                  quality={"EDA": {"ok": True}}, latency_ms={"total": 2.5}))
        store.append(WindowResult(1, 10.0, 20.0, 2.5, {"No Pain": 0.5, "Pain": 0.5}, "No Pain",
                                  quality={"EDA": {"ok": False}}))
        store.append(WindowResult(2, 20.0, 30.0, 3.5, skipped=True, skip_reason="behind"))
    rows = _raw(path, "SELECT probabilities, smoothed_probabilities, quality_ok, quality, latency FROM windows ORDER BY id")
    assert rows == [
        ('{"No Pain":0.75,"Pain":0.25}', None, 1, '{"EDA":{"ok":true}}', '{"total":2.5}'),
        ('{"No Pain":0.5,"Pain":0.5}', None, 0, '{"EDA":{"ok":false}}', "{}"),
        (None, None, None, "{}", "{}"),
    ]


def test_numpy_values_are_stored_as_plain_json(tmp_path):
    """The monitor's verdicts hold numpy scalars; they are stored as the numbers they are, NaN as null."""
    quality = {"EDA": {"ok": np.bool_(True), "std": np.float32(0.25), "samples": np.int64(1000),
                       "mean": np.float32("nan")}}
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.append(WindowResult(0, 0.0, 10.0, 1.5, quality=quality))
        (read,) = store.windows()
    assert read.quality == {"EDA": {"ok": True, "std": 0.25, "samples": 1000, "mean": None}}
    assert json.loads(WindowResult(0, 0.0, 10.0, 1.5, quality=quality).to_json())["quality"] == read.quality


def test_json_line_is_compact_and_holds_every_field():
    line = WindowResult(3, 30.0, 40.0, 1.5, skipped=True, skip_reason="behind", bundle_id="b1").to_json()
    assert line == (
        '{"window_index":3,"start_time":30.0,"end_time":40.0,"wall_time":1.5,"probabilities":null,"label":null,'
        '"smoothed_probabilities":null,"smoothed_label":null,"quality":{},"latency_ms":{},"skipped":true,'
        '"skip_reason":"behind","bundle_id":"b1","placeholder":false,"session_id":null,"quality_ok":null}'
    )


def test_a_skipped_window_without_a_reason_stays_skipped(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.append(WindowResult(0, 0.0, 10.0, 1.5, skipped=True))
        (read,) = store.windows()
    assert read.skipped is True and read.skip_reason is None


def test_a_window_stored_before_any_session_belongs_to_none(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        assert store.session_id is None and store.unread_wal is False
        store.append(WindowResult(0, 0.0, 10.0, 1.5))
        assert store.windows()[0].session_id is None
    assert _raw(path, "SELECT session_id FROM windows") == [(None,)]


def test_sessions_keep_placeholder_false(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.start_session("b1", False, LABELS, ["EDA"])
        assert store.sessions()[0]["placeholder"] is False


def test_events_keep_their_session_time_and_kind(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.append_event("start", wall_time=100.5)
        session = store.start_session("b1", False, LABELS, ["EDA"])
        store.append_event("status", {"skipped": 2}, wall_time=123.25)
        store.append_event("resync", {"channel": "EDA"}, wall_time=124.5)
        assert store.events() == [
            {"session_id": None, "wall_time": 100.5, "kind": "start", "detail": {}},
            {"session_id": session, "wall_time": 123.25, "kind": "status", "detail": {"skipped": 2}},
            {"session_id": session, "wall_time": 124.5, "kind": "resync", "detail": {"channel": "EDA"}},
        ]
        assert store.events("resync") == [store.events()[2]]


def test_a_locked_write_waits_one_second_before_giving_up(tmp_path):
    """The monitor retries on its own; a short wait keeps it responsive to stop signals while a lock lasts."""
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1000  # milliseconds


def test_a_window_the_schema_refuses_is_rolled_back_and_the_store_stays_usable(tmp_path):
    """A NOT NULL column left empty is a caller's bug: SQLite's own error, no transaction left open."""
    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL constraint failed: windows.start_time"):
            store.append(WindowResult(0, None, 10.0, 1.5))
        assert not store._conn.in_transaction
        store.append(WindowResult(1, 10.0, 20.0, 2.5))
        assert [r.window_index for r in store.windows()] == [1]


def test_a_new_database_is_created_with_its_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "r.sqlite"
    with ResultStore(path) as store:
        store.append(WindowResult(0, 0.0, 10.0, 1.5))
    assert _raw(path, "SELECT window_index FROM windows") == [(0,)]


def test_a_database_marked_as_ours_without_its_tables_gets_them(tmp_path):
    """An empty file carrying biomoe's application_id (schema version 0) is set up, not taken as current."""
    path = tmp_path / "r.sqlite"
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA application_id = {int.from_bytes(b'BIOM', 'big')}")
    connection.close()
    with ResultStore(path) as store:
        store.append(WindowResult(0, 0.0, 10.0, 1.5))
        assert store.count() == 1
    assert _raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_closed_database_is_read_from_another_thread(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.append(WindowResult(0, 0.0, 10.0, 1.5))
    assert not path.with_name("r.sqlite-wal").exists()  # closed: every window is in the file itself
    with ResultStore(path, readonly=True) as reader:
        read = []
        worker = threading.Thread(target=lambda: read.extend(reader.windows()))
        worker.start()
        worker.join(timeout=30)
    assert [r.window_index for r in read] == [0]


def test_unusable_files_are_refused_in_one_line_with_what_to_do(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(EdgeError) as error:
        ResultStore(garbage)
    assert str(error.value) == (f"cannot use results database {garbage}: file is not a database; check the path and "
                                "its permissions, or move the file away to start a new one")
    with pytest.raises(EdgeError) as error:
        ResultStore(garbage, readonly=True)
    assert str(error.value) == (f"cannot read results database {garbage}: file is not a database; is it a file "
                                "written by biomoe monitor?")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes(text)")
    connection.close()
    with pytest.raises(EdgeError) as error:
        ResultStore(other)
    assert str(error.value) == (f"{other} is not a biomoe results database; pass the file written by biomoe monitor "
                                "or a new file name")
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(EdgeError) as error:
        ResultStore(tmp_path / "file" / "r.sqlite")
    assert str(error.value) == (f"cannot use results database {tmp_path / 'file' / 'r.sqlite'}: a file stands where "
                                "its folder should be; choose a path in a folder")


_READER = """
import json, sys
from edge.errors import EdgeError
from edge.storage import ResultStore
try:
    ResultStore(sys.argv[1], readonly=True)
except EdgeError as exc:
    print(json.dumps({"error": str(exc)}))
"""


def _read_as_a_user_who_cannot_write(path):
    """What a read-only store says of ``path`` to a user who may not write its folder (root: without privileges)."""
    path.parent.chmod(0o555)
    try:
        done = subprocess.run([sys.executable, "-c", _READER, str(path)], capture_output=True, text=True,
                              timeout=60, preexec_fn=without_privileges())
    finally:
        path.parent.chmod(0o755)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _killed_writer_whose_shm_cannot_be_rebuilt(folder, checkpoint_after):
    """Six windows written by a monitor killed before closing, checkpointed into the file after
    ``checkpoint_after`` of them; its -shm index is then gone and cannot be made again (as in a folder the
    reader may not write; here a link into a missing folder stands where SQLite would create it)."""
    path = folder / "results.sqlite"
    writer = textwrap.dedent(f"""
        import os
        from edge.storage import ResultStore, WindowResult
        store = ResultStore({str(path)!r})
        for index in range(6):
            store.append(WindowResult(index, 10.0 * index, 10.0 * index + 10, 1.7e9))
            if index + 1 == {checkpoint_after!r}:
                store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os._exit(0)  # like SIGKILL: no checkpoint, -wal and -shm stay
    """)
    subprocess.run([sys.executable, "-c", writer], check=True, timeout=60)
    shm = path.with_name(path.name + "-shm")
    shm.unlink()
    shm.symlink_to(folder / "missing" / shm.name)
    return path


@pytest.mark.parametrize("checkpoint_after, windows, unread_wal", [(4, [0, 1, 2, 3], True), (6, list(range(6)), False)])
def test_a_database_whose_shm_cannot_be_rebuilt_is_read_as_on_disk(tmp_path, checkpoint_after, windows, unread_wal):
    """The windows checkpointed into the file are read; ``unread_wal`` says whether later ones wait in the -wal."""
    path = _killed_writer_whose_shm_cannot_be_rebuilt(tmp_path, checkpoint_after)
    with ResultStore(path, readonly=True) as store:
        read = []
        worker = threading.Thread(target=lambda: read.extend(r.window_index for r in store.windows()))
        worker.start()
        worker.join(timeout=30)
        assert read == windows and store.unread_wal is unread_wal


def test_a_database_whose_windows_are_all_in_an_unreadable_wal_says_what_to_do(tmp_path):
    path = _killed_writer_whose_shm_cannot_be_rebuilt(tmp_path, None)
    with pytest.raises(EdgeError) as error:
        ResultStore(path, readonly=True)
    assert str(error.value) == (
        f"cannot read results database {path}: its latest windows are in results.sqlite-wal, which SQLite reads only "
        f"with its results.sqlite-shm index, gone, and {tmp_path} is not writable to rebuild it; run biomoe history "
        "as a user who may write there (e.g. the monitor's service user), or copy the database with its -wal file "
        "to a writable folder"
    )


def test_a_database_the_user_may_not_read_is_named_as_such(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.append(WindowResult(0, 0.0, 10.0, 1.5))
    path.chmod(0o000)
    assert _read_as_a_user_who_cannot_write(path) == {"error": (
        f"cannot read results database {path}: permission denied; run as a user who may read it (e.g. the "
        "monitor's service user) or copy it"
    )}
