"""Every window's result, kept on the device in SQLite.

The monitor writes one :class:`WindowResult` per window, the same record it
prints as a JSON line, to a :class:`ResultStore`. The database is in WAL mode
with ``synchronous=FULL`` and one transaction per window: a committed window
survives a power cut, and a cut in the middle of a write loses at most that
window, never the file. Reopening continues where the last run stopped; each
run is a *session* (its bundle, labels, channels and settings).

Schema (version 1, ``PRAGMA user_version``; ``application_id`` marks the file
as a biomoe results database)::

    sessions(id, started_wall_time, bundle_id, placeholder, labels JSON, channels JSON, info JSON)
    windows(id, session_id, window_index, start_time, end_time, wall_time, skipped, skip_reason,
            label, smoothed_label, probabilities JSON, smoothed_probabilities JSON,
            quality_ok, quality JSON, latency JSON, bundle_id, placeholder)
    events(id, session_id, wall_time, kind, detail JSON)

Times: ``start_time``/``end_time`` are device seconds (the sensor board's
clock), ``wall_time`` is Unix seconds when the result was made.

A write that cannot happen now (the database locked by another program, the
disk full, an I/O error) raises :class:`StoreUnavailable` with one line
saying which, after rolling back whatever SQLite left open: the file stays
intact and the same write can be tried again later.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge.errors import EdgeError

__all__ = ["SCHEMA_VERSION", "WindowResult", "ResultStore", "StoreUnavailable"]

SCHEMA_VERSION = 1
_APPLICATION_ID = 0x42494F4D  # "BIOM"
#: Seconds a write waits for another program's lock before raising StoreUnavailable; the monitor
#: retries on its own, so it stays responsive to stop signals while a lock lasts.
_WRITE_BUSY_TIMEOUT_S = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_wall_time REAL NOT NULL,
    bundle_id TEXT NOT NULL,
    placeholder INTEGER NOT NULL,
    labels TEXT NOT NULL,
    channels TEXT NOT NULL,
    info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER REFERENCES sessions(id),
    window_index INTEGER NOT NULL,
    start_time REAL NOT NULL,
    end_time REAL NOT NULL,
    wall_time REAL NOT NULL,
    skipped INTEGER NOT NULL,
    skip_reason TEXT,
    label TEXT,
    smoothed_label TEXT,
    probabilities TEXT,
    smoothed_probabilities TEXT,
    quality_ok INTEGER,
    quality TEXT NOT NULL,
    latency TEXT NOT NULL,
    bundle_id TEXT NOT NULL,
    placeholder INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS windows_by_session ON windows(session_id, id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER REFERENCES sessions(id),
    wall_time REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""
_JSON_COLUMNS = ("probabilities", "smoothed_probabilities", "quality", "latency")


@dataclass
class WindowResult:
    """The monitor's result for one window: one JSON line, one database row.

    Attributes
    ----------
    window_index : int
        Sequence number of the window in its session.
    start_time, end_time : float
        Device time span of the window (seconds).
    wall_time : float
        Unix time the result was made.
    probabilities : dict of str to float or None
        Class probabilities by label; None for a skipped window.
    label : str or None
        Most probable class of this window alone.
    smoothed_probabilities : dict of str to float or None
        After temporal smoothing (:mod:`edge.smoothing`).
    smoothed_label : str or None
        The reported pain level.
    quality : dict of str to dict
        Per-channel verdicts of :func:`edge.quality.window_quality`.
    latency_ms : dict of str to float
        Time spent in each stage (``quality``, ``represent``, ``infer``, ...)
        and ``total``, in milliseconds.
    skipped : bool
        True when the window was not processed because the monitor was behind.
    skip_reason : str or None
        Why it was skipped.
    bundle_id : str
        The bundle that produced the result.
    placeholder : bool
        True when that bundle is a placeholder (meaningless predictions).
    session_id : int or None
        Filled in by :meth:`ResultStore.append`.
    """

    window_index: int
    start_time: float
    end_time: float
    wall_time: float
    probabilities: dict | None = None
    label: str | None = None
    smoothed_probabilities: dict | None = None
    smoothed_label: str | None = None
    quality: dict = field(default_factory=dict)
    latency_ms: dict = field(default_factory=dict)
    skipped: bool = False
    skip_reason: str | None = None
    bundle_id: str = ""
    placeholder: bool = False
    session_id: int | None = None

    @property
    def quality_ok(self) -> bool | None:
        """All channels ok; None for a skipped window (nothing was checked)."""
        if self.skipped:
            return None
        return all(verdict.get("ok", False) for verdict in self.quality.values())

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready) of all fields plus ``quality_ok``."""
        data = asdict(self)
        data["quality_ok"] = self.quality_ok
        return data

    def to_json(self) -> str:
        """The record as one compact JSON line (NaN written as null)."""
        return json.dumps(_json_safe(self.to_dict()), separators=(",", ":"), allow_nan=False)


class StoreUnavailable(EdgeError):
    """A write the database cannot take now (locked, disk full, I/O error); worth retrying later."""


# SQLite's messages for the errors a later retry can get past, and what to tell a person.
_TRANSIENT_ERRORS = {
    "database is locked": "results database {path} is locked by another program",
    "database table is locked": "results database {path} is locked by another program",
    "database or disk is full": "no space left on device at {path}",
    "disk I/O error": "cannot write results database {path} (disk I/O error)",
}


class ResultStore:
    """SQLite store of window results (see the module docstring for the schema).

    Parameters
    ----------
    path : str or Path
        Database file; created (with its folder) unless ``readonly``.
    readonly : bool
        Open an existing database without writing (``biomoe history``). A
        WAL database that cannot be opened read-only as usual (its ``-shm``
        file is gone and the folder is not writable) is read as it is on
        disk (``immutable``); :attr:`unread_wal` then says whether recent
        windows in its ``-wal`` file are left out.

    Raises
    ------
    EdgeError
        When the file is missing (read-only), not a biomoe results database,
        written by a newer biomoe, or cannot be opened.
    StoreUnavailable
        From the write methods, when the write cannot happen now.

    Examples
    --------
    >>> import tempfile, os
    >>> with ResultStore(os.path.join(tempfile.mkdtemp(), "r.sqlite")) as store:
    ...     session = store.start_session("abc123", False, ["No Pain", "Pain"], ["EDA"])
    ...     _ = store.append(WindowResult(0, 0.0, 10.0, 1.7e9, {"No Pain": 0.8, "Pain": 0.2}, "No Pain"))
    ...     store.count()
    1
    """

    def __init__(self, path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.Lock()
        self.session_id: int | None = None
        self.unread_wal = False
        if readonly and not self.path.is_file():
            raise EdgeError(f"no results database at {self.path}; check the path (biomoe monitor --db writes it)")
        if readonly and not os.access(self.path, os.R_OK):
            raise EdgeError(f"cannot read results database {self.path}: permission denied; run as a user who may "
                            "read it (e.g. the monitor's service user) or copy it")
        try:
            if readonly:
                self._conn = self._connect_readonly()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                _create_private(self.path)
                self._conn = sqlite3.connect(self.path, timeout=_WRITE_BUSY_TIMEOUT_S, isolation_level=None,
                                             check_same_thread=False)
            self._prepare()
        except sqlite3.DatabaseError as exc:
            if self.unread_wal:
                raise self._unread_wal_error() from None
            if readonly:
                raise EdgeError(f"cannot read results database {self.path}: {exc}; is it a file written by "
                                "biomoe monitor?") from None
            raise EdgeError(
                f"cannot use results database {self.path}: {exc}; check the path and its permissions, "
                "or move the file away to start a new one"
            ) from None
        except (FileExistsError, NotADirectoryError):
            raise EdgeError(f"cannot use results database {self.path}: a file stands where its folder should be; "
                            "choose a path in a folder") from None

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection that leaves no file behind.

        With no ``-wal`` file beside it (no monitor has it open), the database
        file holds every window: it is read as it is (``immutable``), because
        a ``mode=ro`` connection to a WAL database creates ``-wal`` and
        ``-shm`` files that it cannot remove. Otherwise ``mode=ro`` reads the
        WAL too, and the file as it is when SQLite cannot set up its index.
        """
        uri = self.path.resolve().as_uri()
        wal = self.path.with_name(self.path.name + "-wal")
        if not wal.exists():
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=10.0, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:  # e.g. a WAL file whose -shm is gone, in a folder we cannot write
            conn.close()
        self.unread_wal = wal.is_file() and wal.stat().st_size > 0
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)

    def _unread_wal_error(self) -> EdgeError:
        folder = self.path.resolve().parent
        return EdgeError(
            f"cannot read results database {self.path}: its latest windows are in {self.path.name}-wal, which "
            f"SQLite reads only with its {self.path.name}-shm index, gone, and {folder} is not writable to "
            "rebuild it; run biomoe history as a user who may write there (e.g. the monitor's service user), "
            "or copy the database with its -wal file to a writable folder"
        )

    def _prepare(self) -> None:
        conn = self._conn
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        if application_id != _APPLICATION_ID and self.unread_wal:
            raise self._unread_wal_error()
        if application_id != _APPLICATION_ID and (has_tables or self.readonly):
            raise EdgeError(
                f"{self.path} is not a biomoe results database; pass the file written by biomoe monitor "
                "or a new file name"
            )
        if version > SCHEMA_VERSION:
            raise EdgeError(
                f"results database {self.path} has schema version {version}, newer than this biomoe "
                f"({SCHEMA_VERSION}); upgrade biomoe to read it"
            )
        if self.readonly:
            return
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed window survives a power cut
        if application_id == _APPLICATION_ID and version == SCHEMA_VERSION:
            return  # nothing to write: opening needs no lock another program may hold
        conn.execute("BEGIN IMMEDIATE")
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")

    def start_session(self, bundle_id: str, placeholder: bool, labels, channels, info: dict | None = None) -> int:
        """Open a new session (one monitor run); later results belong to it.

        Parameters
        ----------
        bundle_id : str
            :attr:`edge.bundle.Bundle.bundle_id`.
        placeholder : bool
            Whether the bundle is a placeholder.
        labels, channels : sequence of str
            The bundle's labels and channels.
        info : dict, optional
            Anything worth keeping about the run (settings, versions).

        Returns
        -------
        int
            The session id.
        """
        row = (
            time.time(), bundle_id, int(bool(placeholder)), json.dumps(list(labels)),
            json.dumps(list(channels)), json.dumps(_json_safe(info or {}), allow_nan=False),
        )
        cursor = self._write(
            "INSERT INTO sessions(started_wall_time, bundle_id, placeholder, labels, channels, info) "
            "VALUES (?, ?, ?, ?, ?, ?)", row,
        )
        self.session_id = cursor.lastrowid
        return self.session_id

    def append(self, result: WindowResult) -> int:
        """Store one window's result in its own transaction; return its row id."""
        if result.session_id is None:
            result.session_id = self.session_id
        data = result.to_dict()
        quality_ok = data["quality_ok"]
        row = (
            result.session_id, result.window_index, result.start_time, result.end_time, result.wall_time,
            int(result.skipped), result.skip_reason, result.label, result.smoothed_label,
            _dump(result.probabilities), _dump(result.smoothed_probabilities),
            None if quality_ok is None else int(quality_ok), _dump(result.quality), _dump(result.latency_ms),
            result.bundle_id, int(result.placeholder),
        )
        cursor = self._write(
            "INSERT INTO windows(session_id, window_index, start_time, end_time, wall_time, skipped, skip_reason, "
            "label, smoothed_label, probabilities, smoothed_probabilities, quality_ok, quality, latency, "
            "bundle_id, placeholder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row,
        )
        return cursor.lastrowid

    def append_event(self, kind: str, detail: dict | None = None, wall_time: float | None = None) -> int:
        """Store a monitor event (status line, bridge loss, resync...); return its row id."""
        row = (self.session_id, time.time() if wall_time is None else wall_time, kind,
               json.dumps(_json_safe(detail or {}), allow_nan=False))
        return self._write("INSERT INTO events(session_id, wall_time, kind, detail) VALUES (?, ?, ?, ?)", row).lastrowid

    def _write(self, sql: str, row: tuple) -> sqlite3.Cursor:
        if self.readonly:
            raise EdgeError(f"results database {self.path} is open read-only")
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                cursor = self._conn.execute(sql, row)
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:  # SQLite rolls back by itself after some errors (disk full)
                    self._conn.execute("ROLLBACK")
                problem = _TRANSIENT_ERRORS.get(str(exc)) if isinstance(exc, sqlite3.OperationalError) else None
                if problem is None:
                    raise
                raise StoreUnavailable(problem.format(path=self.path)) from None
        return cursor

    def windows(self, last: int | None = None, session: int | None = None) -> list[WindowResult]:
        """Stored results in time order: all, or the ``last`` N, optionally of one ``session``."""
        where, params = ("WHERE session_id = ?", [session]) if session is not None else ("", [])
        limit = ""
        if last is not None:
            limit, params = "LIMIT ?", params + [int(last)]
        sql = (
            "SELECT * FROM (SELECT session_id, window_index, start_time, end_time, wall_time, skipped, skip_reason, "
            "label, smoothed_label, probabilities, smoothed_probabilities, quality, latency, bundle_id, placeholder, id "
            f"FROM windows {where} ORDER BY id DESC {limit}) ORDER BY id"
        )
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [
            WindowResult(
                window_index=r[1], start_time=r[2], end_time=r[3], wall_time=r[4], skipped=bool(r[5]),
                skip_reason=r[6], label=r[7], smoothed_label=r[8], probabilities=_load(r[9]),
                smoothed_probabilities=_load(r[10]), quality=_load(r[11]), latency_ms=_load(r[12]),
                bundle_id=r[13], placeholder=bool(r[14]), session_id=r[0],
            )
            for r in rows
        ]

    def sessions(self) -> list[dict]:
        """All sessions, oldest first, as dicts (labels/channels/info decoded)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, started_wall_time, bundle_id, placeholder, labels, channels, info FROM sessions ORDER BY id"
            ).fetchall()
        return [
            {"id": r[0], "started_wall_time": r[1], "bundle_id": r[2], "placeholder": bool(r[3]),
             "labels": _load(r[4]), "channels": _load(r[5]), "info": _load(r[6])}
            for r in rows
        ]

    def events(self, kind: str | None = None) -> list[dict]:
        """Stored events, oldest first, optionally of one ``kind``."""
        where, params = ("WHERE kind = ?", [kind]) if kind else ("", [])
        with self._lock:
            rows = self._conn.execute(
                f"SELECT session_id, wall_time, kind, detail FROM events {where} ORDER BY id", params
            ).fetchall()
        return [{"session_id": r[0], "wall_time": r[1], "kind": r[2], "detail": _load(r[3])} for r in rows]

    def count(self, skipped: bool | None = None) -> int:
        """Number of stored windows (only skipped, or only processed ones, when given)."""
        sql, params = "SELECT count(*) FROM windows", []
        if skipped is not None:
            sql, params = sql + " WHERE skipped = ?", [int(skipped)]
        with self._lock:
            return self._conn.execute(sql, params).fetchone()[0]

    def close(self) -> None:
        """Close the database (every stored window is already committed)."""
        with self._lock:
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _create_private(path: Path) -> None:
    """Create the database readable by its owner only (``0600``): it holds patient results.

    SQLite gives its ``-wal`` and ``-shm`` files the database's mode; an
    existing file keeps its own.
    """
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _json_safe(value):
    """Replace non-finite floats by None, recursively, so the JSON is standard."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


def _dump(value) -> str | None:
    return None if value is None else json.dumps(_json_safe(value), separators=(",", ":"), allow_nan=False)


def _load(text):
    return None if text is None else json.loads(text)
