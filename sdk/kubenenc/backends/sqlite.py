"""The embedded default: one SQLite file, safe across threads and processes on one machine.

Atomicity: every contract operation is one ``BEGIN IMMEDIATE`` transaction, which takes the
database's single write lock up front, so two workers can never interleave a claim (and the
running-limit check inside it) or a pause (and the cycle check inside it). WAL journal mode
lets readers (``get``, ``wait_final``) proceed while a writer holds the lock.
``synchronous=NORMAL`` keeps every committed transaction across a crash of any process; only
an OS crash or power loss may drop the last few.

A record is stored whole as JSON in ``data`` plus the columns that queries filter or sort on.
Connections are per thread and per process (a forked or spawned worker opens its own); a
thread's connection is closed when the thread ends.

Waiting for results polls with a back-off from 0.5 ms to 5 ms: SQLite has no notifications
across processes, and a poll is one indexed read. An idle worker does not poll claims: it
sleeps until the earliest due delayed call (``next_due``) or until ``wait_for_work`` sees
another connection commit (``PRAGMA data_version``, read every ``WAKE_POLL`` seconds: no
table is read, so it costs far less than a claim).

Size: over 500 lines because each Txn method's SQL sits beside the schema it reads; the
rules themselves are in :mod:`kubenenc.backends.engine`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from kubenenc.backends import sqlite_browse
from kubenenc.backends.browse import (
    DEFAULT_BUDGET,
    ActivityBucket,
    InvocationFilter,
    InvocationPage,
    Relations,
    RunningKeys,
)
from kubenenc.backends.codec import dumps_record, dumps_worker, loads_record, loads_worker
from kubenenc.backends.embedded import EngineBackend, retention_option
from kubenenc.backends.engine import Engine
from kubenenc.backends.urloptions import DEFAULT_RETENTION
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    InvocationRecord,
    WorkerInfo,
)
from kubenenc.status import FINAL, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS invocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    app TEXT NOT NULL,
    task TEXT NOT NULL,
    pool TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    waiters INTEGER NOT NULL,
    not_before REAL NOT NULL,
    worker TEXT,
    data TEXT NOT NULL,
    parent TEXT,
    ended REAL
);
CREATE INDEX IF NOT EXISTS inv_claim
    ON invocations (pool, status, waiters DESC, priority DESC, seq);
CREATE INDEX IF NOT EXISTS inv_app_status ON invocations (app, status);
CREATE INDEX IF NOT EXISTS inv_task_status ON invocations (task, status);
CREATE INDEX IF NOT EXISTS inv_held ON invocations (worker) WHERE worker IS NOT NULL;
CREATE TABLE IF NOT EXISTS running (key TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registrations (key TEXT PRIMARY KEY, id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS edges (
    waiter TEXT NOT NULL, target TEXT NOT NULL, PRIMARY KEY (waiter, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_target ON edges (target);
CREATE TABLE IF NOT EXISTS deps (
    dependency TEXT NOT NULL, dependent TEXT NOT NULL, PRIMARY KEY (dependency, dependent)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS policies (name TEXT PRIMARY KEY, spec TEXT NOT NULL) WITHOUT ROWID;
"""

_BROWSE_COLUMNS = {"parent": "TEXT", "ended": "REAL"}
"""Columns added to files made before they existed: who called an invocation (browsing),
and when it became final (browsing, and the retention sweep). Their indexes hold only the
rows that have them, so the hot path pays for them once per call (``parent`` when
registered) and once per final status (``ended``)."""

_BROWSE_INDEXES = """
CREATE INDEX IF NOT EXISTS inv_parent_col ON invocations (parent) WHERE parent IS NOT NULL;
CREATE INDEX IF NOT EXISTS inv_ended_col ON invocations (ended) WHERE ended IS NOT NULL;
"""


class _SQLiteTxn:
    """A :class:`~kubenenc.backends.engine.Txn` over one connection inside a transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def get(self, id: InvocationId) -> InvocationRecord | None:
        row = self.db.execute("SELECT data FROM invocations WHERE id = ?", (id,)).fetchone()
        return loads_record(row[0]) if row else None

    def put(self, rec: InvocationRecord, *, new: bool = False) -> None:
        ended = rec.updated_at if rec.status.is_final else None
        values = (
            rec.app, rec.task, rec.pool, rec.status.value, rec.priority, rec.waiters,
            rec.not_before, rec.worker, dumps_record(rec), ended, rec.id,
        )  # fmt: skip
        if new:
            self.db.execute(
                "INSERT INTO invocations (app, task, pool, status, priority, waiters, "
                "not_before, worker, data, ended, id, parent) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (*values, rec.parent),
            )
        else:
            self.db.execute(
                "UPDATE invocations SET app=?, task=?, pool=?, status=?, priority=?, waiters=?, "
                "not_before=?, worker=?, data=?, ended=? WHERE id=?",
                values,
            )

    def candidates(
        self,
        pool: str,
        now: float,
        skip: int,
        count: int,
        exclude: frozenset[str] = frozenset(),
    ) -> list[InvocationRecord]:
        if exclude:  # filtered inside SQLite, so excluded rows are never decoded here
            rows = self.db.execute(
                "SELECT data FROM invocations WHERE pool = ? AND status = 'PENDING' "
                "AND not_before <= ? AND coalesce(json_extract(data, '$.running_key') "
                "NOT IN (SELECT value FROM json_each(?)), 1) "
                "ORDER BY waiters DESC, priority DESC, seq LIMIT ? OFFSET ?",
                (pool, now, json.dumps(sorted(exclude)), count, skip),
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT data FROM invocations WHERE pool = ? AND status = 'PENDING' "
                "AND not_before <= ? ORDER BY waiters DESC, priority DESC, seq LIMIT ? OFFSET ?",
                (pool, now, count, skip),
            ).fetchall()
        return [loads_record(r[0]) for r in rows]

    def running_count(self, key: str) -> int:
        row = self.db.execute("SELECT n FROM running WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def add_running(self, key: str, delta: int) -> None:
        self.db.execute(
            "INSERT INTO running (key, n) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET n = n + excluded.n",
            (key, delta),
        )
        self.db.execute("DELETE FROM running WHERE key = ? AND n <= 0", (key,))

    def registration_holder(self, key: str) -> InvocationId | None:
        row = self.db.execute("SELECT id FROM registrations WHERE key = ?", (key,)).fetchone()
        return InvocationId(row[0]) if row else None

    def set_registration(self, key: str, id: InvocationId | None) -> None:
        if id is None:
            self.db.execute("DELETE FROM registrations WHERE key = ?", (key,))
        else:
            self.db.execute(
                "INSERT OR REPLACE INTO registrations (key, id) VALUES (?,?)", (key, id)
            )

    def add_edge(self, waiter: InvocationId, target: InvocationId) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO edges (waiter, target) VALUES (?,?)", (waiter, target)
        )

    def targets_of(self, waiter: InvocationId) -> list[InvocationId]:
        rows = self.db.execute("SELECT target FROM edges WHERE waiter = ?", (waiter,))
        return [InvocationId(r[0]) for r in rows]

    def waiters_of(self, target: InvocationId) -> list[InvocationId]:
        rows = self.db.execute("SELECT waiter FROM edges WHERE target = ?", (target,))
        return [InvocationId(r[0]) for r in rows]

    def remove_edges(self, waiter: InvocationId) -> None:
        self.db.execute("DELETE FROM edges WHERE waiter = ?", (waiter,))

    def add_dependency(self, dependent: InvocationId, dependency: InvocationId) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO deps (dependency, dependent) VALUES (?,?)",
            (dependency, dependent),
        )

    def dependents_of(self, dependency: InvocationId) -> list[InvocationId]:
        rows = self.db.execute("SELECT dependent FROM deps WHERE dependency = ?", (dependency,))
        return [InvocationId(r[0]) for r in rows]

    def held(self) -> list[tuple[InvocationId, WorkerId]]:
        rows = self.db.execute(
            "SELECT id, worker FROM invocations WHERE worker IS NOT NULL "
            "AND status IN ('RUNNING', 'PAUSED')"
        )
        return [(InvocationId(r[0]), WorkerId(r[1])) for r in rows]

    def put_worker(self, info: WorkerInfo) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO workers (id, data) VALUES (?,?)", (info.id, dumps_worker(info))
        )

    def delete_worker(self, worker: WorkerId) -> None:
        self.db.execute("DELETE FROM workers WHERE id = ?", (worker,))

    def all_workers(self) -> list[WorkerInfo]:
        return [loads_worker(r[0]) for r in self.db.execute("SELECT data FROM workers")]


def _backfill_ended(db: sqlite3.Connection) -> None:
    """Fill the ``ended`` column of final rows of a file made before it existed (from their
    JSON), so that browsing and the retention sweep find them too."""
    finals = tuple(s.value for s in FINAL)
    db.execute(
        "UPDATE invocations SET ended = json_extract(data, '$.updated_at') "
        "WHERE ended IS NULL AND status IN (?,?,?)",
        finals,
    )


def path_from_url(url: str) -> Path:
    """``sqlite:///rel/path.db`` (relative), ``sqlite:////abs/path.db`` (absolute)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        raise ConfigurationError(
            f"bad SQLite URL {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    raw = unquote(parts.path)
    if raw.startswith("//") or raw.startswith("/"):
        raw = raw[1:]
    if not raw:
        raise ConfigurationError(f"bad SQLite URL {url!r}: no file path after sqlite:///")
    return Path(raw)


class _Connection:
    """One thread's connection, closed when that thread's holder is dropped: a thread that
    ends drops its thread-local holder, so short-lived threads do not leave connections (and
    their file descriptors) open for the life of the backend.

    Only the thread that uses a connection may close it while that thread lives: closing
    a connection another thread is executing on frees statements under it (a segfault in
    CPython's sqlite3). :meth:`SQLiteBackend.close` therefore marks other live threads'
    connections ``doomed``; each owner closes its own at its next use, and a waiting
    :meth:`SQLiteBackend.wait_for_work` returns early.
    """

    __slots__ = ("__weakref__", "closed", "db", "doomed", "owner", "pid")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.pid = os.getpid()
        self.owner = threading.current_thread()
        self.doomed = False
        self.closed = False

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    def __del__(self) -> None:
        if self.pid == os.getpid():  # a forked child's copy belongs to its parent
            self.close()


SWEEP_BATCH = 500
"""Final invocations deleted per write transaction of the retention sweep."""

SWEEP_ROUNDS = 20
"""Transactions per sweep at most (so one ``recover`` deletes up to 10,000)."""


WAKE_POLL = 0.005
"""Seconds between two reads of ``PRAGMA data_version`` in :meth:`SQLiteBackend.wait_for_work`."""


class SQLiteBackend(EngineBackend):
    """A SQLite file shared by every process on this machine. The default backend.

    URL option ``retention`` (seconds, default 7 days): final invocations older than that are
    deleted by the sweep that every worker's ``recover`` runs, so the file stops growing
    under a steady load (SQLite reuses the freed pages).
    """

    shared_across_processes: ClassVar[bool] = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        busy_timeout: float = 60.0,
        retention: float = DEFAULT_RETENTION,
    ) -> None:
        self.path = Path(path).absolute()
        self.busy_timeout = busy_timeout
        self.retention = retention
        self._local = threading.local()
        self._closed = False
        self._all: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._all_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._db()
            with self._write(db):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                have = {row[1] for row in db.execute("PRAGMA table_info(invocations)")}
                for column, kind in _BROWSE_COLUMNS.items():
                    if column not in have:
                        db.execute(f"ALTER TABLE invocations ADD COLUMN {column} {kind}")
                        if column == "ended":
                            _backfill_ended(db)
                for statement in _BROWSE_INDEXES.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise BackendUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc

    @classmethod
    def from_url(cls, url: str) -> SQLiteBackend:
        """Open (creating if needed) the file named by ``url`` (``?retention=SECONDS``)."""
        return cls(path_from_url(url), retention=retention_option(url))

    def _db(self) -> sqlite3.Connection:
        return self._held().db

    def _held(self) -> _Connection:
        held: _Connection | None = getattr(self._local, "conn", None)
        if held is not None and held.doomed and not held.db.in_transaction:
            held.close()  # marked by close() from another thread: this thread's to close
        if held is None or held.pid != os.getpid() or held.closed:
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            held = _Connection(db)
            self._local.conn = held
            with self._all_lock:
                self._all.add(held)
        return held

    @contextmanager
    def _write(self, db: sqlite3.Connection) -> Iterator[None]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def _engine(self) -> Iterator[Engine]:
        db = self._db()
        with self._write(db):
            yield Engine(_SQLiteTxn(db))

    def close(self) -> None:
        """Close every connection this object opened in this process: this thread's and
        those of threads that ended now; those of other live threads at their next use
        (see :class:`_Connection`). Using the backend afterwards opens a new connection."""
        with self._all_lock:
            conns = [c for c in self._all if c.pid == os.getpid()]
            self._all = weakref.WeakSet()
        me = threading.current_thread()
        for conn in conns:
            if conn.owner is me or not conn.owner.is_alive():
                conn.close()
            else:
                conn.doomed = True

    def _sweep(self, cutoff: float) -> int:
        db = self._db()
        swept = 0
        for _ in range(SWEEP_ROUNDS):
            due = db.execute(  # a read first: nothing due costs no write lock
                "SELECT 1 FROM invocations WHERE ended < ? LIMIT 1", (cutoff,)
            ).fetchone()
            if due is None:
                break
            with self._write(db):
                ids = [
                    r[0]
                    for r in db.execute(
                        "SELECT id FROM invocations WHERE ended < ? ORDER BY ended LIMIT ?",
                        (cutoff, SWEEP_BATCH),
                    )
                ]
                marks = ",".join("?" * len(ids))
                db.execute(f"DELETE FROM invocations WHERE id IN ({marks})", ids)  # noqa: S608
                # A final invocation's dependents were all released when it ended.
                db.execute(f"DELETE FROM deps WHERE dependency IN ({marks})", ids)  # noqa: S608
            swept += len(ids)
            if len(ids) < SWEEP_BATCH:
                break
        return swept

    def claim(self, pool: str, worker: WorkerId, limit: int, now: float) -> list[InvocationRecord]:
        if not self._claimable(pool, now):
            return []  # an idle poll costs one indexed read, not the write lock
        return super().claim(pool, worker, limit, now)

    def _claimable(self, pool: str, now: float) -> bool:
        row = (
            self._db()
            .execute(
                "SELECT 1 FROM invocations WHERE pool = ? AND status = 'PENDING' "
                "AND not_before <= ? LIMIT 1",
                (pool, now),
            )
            .fetchone()
        )
        return row is not None

    def wait_for_work(self, pool: str, timeout: float) -> bool:
        """See :class:`kubenenc.backends.contract.WorkNotifier`: True once another
        connection committed (anything: a heartbeat too, so a True is often spurious)."""
        held = self._held()
        db = held.db
        seen = db.execute("PRAGMA data_version").fetchone()[0]
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(min(WAKE_POLL, max(0.0, deadline - time.monotonic())))
            if held.doomed:
                return False  # the backend was closed meanwhile: stop using this connection
            if db.execute("PRAGMA data_version").fetchone()[0] != seen:
                return True
            if time.monotonic() >= deadline:
                return False

    def next_due(self, pool: str, now: float) -> float | None:
        """See :class:`kubenenc.backends.contract.DueTimes`."""
        row = (
            self._db()
            .execute(
                "SELECT MIN(not_before) FROM invocations WHERE pool = ? AND status = 'PENDING' "
                "AND not_before > ?",
                (pool, now),
            )
            .fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    # Coordination
    def heartbeat(self, info: WorkerInfo) -> None:
        db = self._db()
        with self._write(db):
            _SQLiteTxn(db).put_worker(info)

    def unregister_worker(self, worker: WorkerId) -> None:
        db = self._db()
        with self._write(db):
            _SQLiteTxn(db).delete_worker(worker)

    def workers(self) -> list[WorkerInfo]:
        return _SQLiteTxn(self._db()).all_workers()

    def wait_final(self, ids: Sequence[InvocationId], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(dict.fromkeys(ids))
        delay = 0.0005
        db = self._db()
        finals = tuple(s.value for s in FINAL)
        while True:
            for start in range(0, len(pending), 500):
                chunk = pending[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT id FROM invocations WHERE id IN ({marks}) "  # noqa: S608
                    "AND status NOT IN (?,?,?)",
                    (*chunk, *finals),
                ).fetchall()
                if rows:
                    pending = [r[0] for r in rows] + pending[start + len(chunk) :]
                    break
            else:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay if deadline is None else min(delay, deadline - time.monotonic()))
            delay = min(delay * 1.5, 0.005)

    # Policies
    def set_policy(self, name: str, spec: str | None) -> None:
        db = self._db()
        with self._write(db):
            if spec is None:
                db.execute("DELETE FROM policies WHERE name = ?", (name,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO policies (name, spec) VALUES (?, ?)", (name, spec)
                )

    def get_policy(self, name: str) -> str | None:
        row = self._db().execute("SELECT spec FROM policies WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def policies(self) -> dict[str, str]:
        return {n: s for n, s in self._db().execute("SELECT name, spec FROM policies")}

    # Records
    def get(self, id: InvocationId) -> InvocationRecord | None:
        return _SQLiteTxn(self._db()).get(id)

    def get_many(self, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]:
        if not ids:
            return []
        db = self._db()
        found: dict[str, InvocationRecord] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for (data,) in db.execute(
                f"SELECT data FROM invocations WHERE id IN ({marks})",  # noqa: S608
                chunk,
            ):
                rec = loads_record(data)
                found[rec.id] = rec
        return [found.get(i) for i in ids]

    def query(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]:
        where, params = [], []
        for column, value in (("app", app), ("task", task), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(str(value))
        sql = "SELECT data FROM invocations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = self._db().execute(sql, (*params, limit)).fetchall()
        return [loads_record(r[0]) for r in rows]

    # Admin
    def select(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        statuses: Collection[Status] | None = None,
        updated_before: float | None = None,
    ) -> list[InvocationId]:
        """See :class:`kubenenc.backends.contract.Admin`."""
        where, params = _filters(app=app, task=task)
        sql = f"SELECT id, status, data FROM invocations{where} ORDER BY seq"  # noqa: S608
        wanted = None if statuses is None else {s.value for s in statuses}
        out: list[InvocationId] = []
        for id, status, data in self._db().execute(sql, params):
            if wanted is not None and status not in wanted:
                continue
            if updated_before is not None and loads_record(data).updated_at >= updated_before:
                continue
            out.append(InvocationId(id))
        return out

    def oldest_pending(self, pool: str) -> float | None:
        """See :class:`kubenenc.backends.contract.Admin`."""
        row = (
            self._db()
            .execute(
                "SELECT data FROM invocations WHERE pool = ? AND status = ? ORDER BY seq LIMIT 1",
                (pool, Status.PENDING.value),
            )
            .fetchone()
        )
        return None if row is None else loads_record(row[0]).created_at

    def purge(self, ids: Sequence[InvocationId]) -> int:
        """See :class:`kubenenc.backends.contract.Admin`."""
        db = self._db()
        finals = tuple(s.value for s in FINAL)
        deleted = 0
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._write(db):
                gone = [
                    r[0]
                    for r in db.execute(
                        f"SELECT id FROM invocations WHERE id IN ({marks}) "  # noqa: S608
                        "AND status IN (?,?,?)",
                        (*chunk, *finals),
                    ).fetchall()
                ]
                if gone:
                    marks = ",".join("?" * len(gone))
                    db.execute(f"DELETE FROM invocations WHERE id IN ({marks})", gone)  # noqa: S608
                    db.execute(f"DELETE FROM deps WHERE dependency IN ({marks})", gone)  # noqa: S608
                    db.execute(f"DELETE FROM edges WHERE waiter IN ({marks})", gone)  # noqa: S608
            deleted += len(gone)
        return deleted

    def counts(
        self, *, app: str | None = None, pool: str | None = None, task: str | None = None
    ) -> Mapping[Status, int]:
        where, params = _filters(app=app, pool=pool, task=task)
        sql = f"SELECT status, COUNT(*) FROM invocations{where} GROUP BY status"  # noqa: S608
        return {Status(s): n for s, n in self._db().execute(sql, params)}

    def counts_by_task(
        self, *, app: str | None = None, pool: str | None = None
    ) -> Mapping[str, Mapping[Status, int]]:
        where, params = _filters(app=app, pool=pool)
        sql = f"SELECT task, status, COUNT(*) FROM invocations{where} GROUP BY task, status"  # noqa: S608
        out: dict[str, dict[Status, int]] = {}
        for task, status, n in self._db().execute(sql, params):
            out.setdefault(task, {})[Status(status)] = n
        return out

    # Browse (the queries are in kubenenc.backends.sqlite_browse)
    def browse(
        self,
        where: InvocationFilter,
        *,
        cursor: str | None = None,
        limit: int = 50,
        budget: int = DEFAULT_BUDGET,
    ) -> InvocationPage:
        """See :meth:`kubenenc.backends.browse.Browse.browse`."""
        return sqlite_browse.browse(self._db(), where, cursor, limit, budget)

    def activity(
        self, *, since: float, width: float, buckets: int, app: str | None = None
    ) -> list[ActivityBucket]:
        """See :meth:`kubenenc.backends.browse.Browse.activity`."""
        return sqlite_browse.activity(self._db(), since, width, buckets, app)

    def relations(self, id: InvocationId, *, limit: int = 200) -> Relations | None:
        """See :meth:`kubenenc.backends.browse.Browse.relations`."""
        return sqlite_browse.relations(self._db(), id, limit)

    def running_keys(
        self, *, limit: int = 100, holders: int = 10, budget: int = DEFAULT_BUDGET
    ) -> RunningKeys:
        """See :meth:`kubenenc.backends.browse.KeyUsage.running_keys`."""
        return sqlite_browse.running_keys(self._db(), limit, holders, budget)


def _filters(**columns: str | None) -> tuple[str, list[str]]:
    """`` WHERE a = ? AND ...`` over the given non-None columns (names are ours, not input)."""
    where = [f"{column} = ?" for column, value in columns.items() if value is not None]
    params = [value for value in columns.values() if value is not None]
    return (" WHERE " + " AND ".join(where) if where else ""), params
