"""The backend: kubenenc's Engine over SERIALIZABLE PostgreSQL transactions.

URL: ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?schema=NAME&retention=SECONDS]``.
Everything else in the URL goes to libpq as it is. The tables live in ``schema`` (default
``kubenenc``), made on first use.

Why it is correct with little code: every lifecycle operation is one Engine run inside one
SERIALIZABLE transaction, so PostgreSQL makes concurrent runs behave as if one ran after the
other, or fails one with a serialization error -- which :class:`kubenenc.backends.EngineBackend`
runs again from the start (:meth:`PostgresBackend._retry_transaction`). Reads that stand alone
(``get``, ``counts``, ...) run outside transactions, one statement each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from kubenenc.backends import (
    ActivityBucket,
    Engine,
    EngineBackend,
    InvocationFilter,
    InvocationPage,
    Relations,
    RunningKeys,
    bucket_index,
    cursor_of,
    loads_record,
    matches,
    retention_option,
    running_keys_of,
    seq_of,
)
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import InvocationRecord, WorkerInfo
from kubenenc.status import FINAL, Status
from psycopg import errors, sql

from kubenenc_postgres.txn import SCHEMA, PostgresTxn

FINALS = [s.value for s in FINAL]


def parse_url(url: str) -> tuple[str, str, str]:
    """``(libpq URL, schema, URL with only the retention option)`` of a ``postgresql://`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "postgresql":
        raise ConfigurationError(f"bad PostgreSQL URL {url!r}: use postgresql://host/database")
    ours = {"schema", "retention"}
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = dict(query).get("schema", "kubenenc")
    if not schema.isidentifier():
        raise ConfigurationError(f"bad PostgreSQL URL {url!r}: schema={schema!r}")
    libpq = urlencode([(k, v) for k, v in query if k not in ours])
    own = urlencode([(k, v) for k, v in query if k == "retention"])
    return urlunsplit(parts._replace(query=libpq)), schema, urlunsplit(parts._replace(query=own))


class PostgresBackend(EngineBackend):
    """PostgreSQL: shared by every process that reaches the server."""

    shared_across_processes: ClassVar[bool] = True

    def __init__(self, conninfo: str, schema: str, retention: float) -> None:
        self.conninfo = conninfo
        self.schema = schema
        self.retention = retention
        self._local = threading.local()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        try:
            db = self._db()
            with db.transaction():
                # One creator at a time: CREATE ... IF NOT EXISTS races with itself.
                db.execute("SELECT pg_advisory_xact_lock(hashtext('kubenenc-schema'))")
                db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                for statement in SCHEMA.split(";"):
                    db.execute(statement)
        except psycopg.Error as exc:
            self.close()
            raise BackendUnavailable(f"cannot open PostgreSQL schema {schema}: {exc}") from exc

    @classmethod
    def from_url(cls, url: str) -> PostgresBackend:
        """Open the schema the URL names, creating its tables if needed."""
        libpq, schema, own = parse_url(url)
        return cls(libpq, schema, retention_option(own))

    def _db(self) -> psycopg.Connection[Any]:
        """This thread's connection (autocommit: a transaction is opened where one is due)."""
        db: psycopg.Connection[Any] | None = getattr(self._local, "db", None)
        if db is None or db.closed:
            db = psycopg.connect(
                self.conninfo, autocommit=True, options=f"-c search_path={self.schema}"
            )
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._lock:
            conns, self._all = self._all, []
        for db in conns:
            db.close()
        self._local = threading.local()

    # The Engine route: one SERIALIZABLE transaction per operation, retried on conflicts.
    @contextmanager
    def _engine(self) -> Iterator[Engine]:
        db = self._db()
        with db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            yield Engine(PostgresTxn(db))

    def _retry_transaction(self, exc: Exception) -> bool:
        return isinstance(exc, errors.SerializationFailure | errors.DeadlockDetected)

    def _sweep(self, cutoff: float) -> int:
        with self._db().transaction():
            gone = self._db().execute(
                "WITH gone AS (DELETE FROM invocations WHERE ended < %s RETURNING id) "
                "DELETE FROM deps WHERE dependency IN (SELECT id FROM gone)",
                (cutoff,),
            )
            return gone.rowcount

    # Coordination outside the Engine: single statements.
    def heartbeat(self, info: WorkerInfo) -> None:
        PostgresTxn(self._db()).put_worker(info)

    def unregister_worker(self, worker: WorkerId) -> None:
        PostgresTxn(self._db()).delete_worker(worker)

    def workers(self) -> list[WorkerInfo]:
        return PostgresTxn(self._db()).all_workers()

    def wait_final(self, ids: Sequence[InvocationId], timeout: float | None) -> bool:
        """Polls with a back-off from 1 ms to 20 ms (LISTEN/NOTIFY would wake at once; an
        example keeps it short)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while True:
            row = (
                self._db()
                .execute(
                    "SELECT count(*) FROM invocations WHERE id = ANY(%s) AND NOT status = ANY(%s)",
                    (list(ids), FINALS),
                )
                .fetchone()
            )
            if row is None or row[0] == 0:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            pause = delay if deadline is None else min(delay, deadline - time.monotonic())
            time.sleep(max(pause, 0))
            delay = min(delay * 1.5, 0.02)

    # Policies
    def set_policy(self, name: str, spec: str | None) -> None:
        if spec is None:
            self._db().execute("DELETE FROM policies WHERE name = %s", (name,))
        else:
            self._db().execute(
                "INSERT INTO policies (name, spec) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec",
                (name, spec),
            )

    def get_policy(self, name: str) -> str | None:
        row = self._db().execute("SELECT spec FROM policies WHERE name = %s", (name,)).fetchone()
        return str(row[0]) if row else None

    def policies(self) -> dict[str, str]:
        return dict(self._db().execute("SELECT name, spec FROM policies").fetchall())

    # Records
    def get(self, id: InvocationId) -> InvocationRecord | None:
        return PostgresTxn(self._db()).get(id)

    def get_many(self, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]:
        rows = self._db().execute("SELECT data FROM invocations WHERE id = ANY(%s)", (list(ids),))
        found = {rec.id: rec for rec in (loads_record(r[0]) for r in rows)}
        return [found.get(i) for i in ids]

    def _where(self, **columns: object) -> tuple[sql.Composable, list[object]]:
        """`` WHERE a = %s AND ...`` over the columns given a value."""
        given = {c: v for c, v in columns.items() if v is not None}
        if not given:
            return sql.SQL(""), []
        tests = [sql.SQL("{} = %s").format(sql.Identifier(c)) for c in given]
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(tests), [str(v) for v in given.values()]

    def query(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]:
        where, params = self._where(app=app, task=task, status=status and status.value)
        query = sql.SQL("SELECT data FROM invocations{} ORDER BY seq DESC LIMIT %s").format(where)
        return [loads_record(r[0]) for r in self._db().execute(query, [*params, limit])]

    def counts(
        self, *, app: str | None = None, pool: str | None = None, task: str | None = None
    ) -> Mapping[Status, int]:
        where, params = self._where(app=app, pool=pool, task=task)
        query = sql.SQL("SELECT status, count(*) FROM invocations{} GROUP BY status")
        return {Status(s): n for s, n in self._db().execute(query.format(where), params)}

    def counts_by_task(
        self, *, app: str | None = None, pool: str | None = None
    ) -> Mapping[str, Mapping[Status, int]]:
        where, params = self._where(app=app, pool=pool)
        query = sql.SQL("SELECT task, status, count(*) FROM invocations{} GROUP BY task, status")
        out: dict[str, dict[Status, int]] = {}
        for task, status, n in self._db().execute(query.format(where), params):
            out.setdefault(task, {})[Status(status)] = n
        return out

    # Admin (optional role: the CLI's cancel, retry and purge)
    def select(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        statuses: Collection[Status] | None = None,
        updated_before: float | None = None,
    ) -> list[InvocationId]:
        where, params = self._where(app=app, task=task)
        query = sql.SQL("SELECT id, status, data FROM invocations{} ORDER BY seq").format(where)
        wanted = None if statuses is None else {s.value for s in statuses}
        return [
            InvocationId(id)
            for id, status, data in self._db().execute(query, params)
            if (wanted is None or status in wanted)
            and (updated_before is None or loads_record(data).updated_at < updated_before)
        ]

    def oldest_pending(self, pool: str) -> float | None:
        row = (
            self._db()
            .execute(
                "SELECT data FROM invocations WHERE pool = %s AND status = 'PENDING' "
                "ORDER BY seq LIMIT 1",
                (pool,),
            )
            .fetchone()
        )
        return None if row is None else loads_record(row[0]).created_at

    def purge(self, ids: Sequence[InvocationId]) -> int:
        with self._db().transaction():
            gone = (
                self._db()
                .execute(
                    "WITH gone AS (DELETE FROM invocations "
                    "WHERE id = ANY(%s) AND status = ANY(%s) RETURNING id), "
                    "d AS (DELETE FROM deps WHERE dependency IN (SELECT id FROM gone)), "
                    "e AS (DELETE FROM edges WHERE waiter IN (SELECT id FROM gone)) "
                    "SELECT count(*) FROM gone",
                    (list(ids), FINALS),
                )
                .fetchone()
            )
        return int(gone[0]) if gone else 0

    # Browse (optional role: the dashboard)
    def browse(
        self,
        where: InvocationFilter,
        *,
        cursor: str | None = None,
        limit: int = 50,
        budget: int = 5000,
    ) -> InvocationPage:
        top = seq_of(cursor)
        if top is None:
            row = self._db().execute("SELECT coalesce(max(seq), 0) FROM invocations").fetchone()
            top = (row[0] if row else 0) + 1
        low = max(top - budget, 1)
        rows = self._db().execute(
            "SELECT seq, data FROM invocations WHERE seq < %s AND seq >= %s ORDER BY seq DESC",
            (top, low),
        )
        items: list[InvocationRecord] = []
        for seq, data in rows:
            rec = loads_record(data)
            if matches(rec, where):
                rec.history = []
                items.append(rec)
                if len(items) >= limit:
                    return InvocationPage(items, cursor_of(seq), top - seq)
        older = self._db().execute("SELECT 1 FROM invocations WHERE seq < %s LIMIT 1", (low,))
        return InvocationPage(items, cursor_of(low) if older.fetchone() else None, top - low)

    def activity(
        self, *, since: float, width: float, buckets: int, app: str | None = None
    ) -> list[ActivityBucket]:
        finished, failed = [0] * buckets, [0] * buckets
        rows = self._db().execute(
            "SELECT ended, status FROM invocations WHERE ended >= %s AND ended < %s "
            "AND (%s::text IS NULL OR app = %s)",
            (since, since + width * buckets, app, app),
        )
        for ended, status in rows:
            i = bucket_index(float(ended), since, width, buckets)
            if i is not None:
                finished[i] += 1
                failed[i] += status == Status.FAILED.value
        return [ActivityBucket(since + i * width, finished[i], failed[i]) for i in range(buckets)]

    def relations(self, id: InvocationId, *, limit: int = 200) -> Relations | None:
        rec = self.get(id)
        if rec is None:
            return None
        txn = PostgresTxn(self._db())
        children = txn.ids(
            "SELECT id FROM invocations WHERE parent = %s ORDER BY seq LIMIT %s", id, limit + 1
        )
        return Relations(
            parent=rec.parent,
            children=children[:limit],
            more_children=len(children) > limit,
            waits_on=sorted(txn.targets_of(id)),
            waited_by=sorted(txn.waiters_of(id)),
            depends_on=rec.depends_on,
        )

    # KeyUsage (optional role: the dashboard's running limits)
    def running_keys(
        self, *, limit: int = 100, holders: int = 10, budget: int = 5000
    ) -> RunningKeys:
        """The slot counters, and up to ``budget`` RUNNING calls through the partial index on
        ``worker`` (held calls only); :func:`kubenenc.backends.running_keys_of` ranks them."""
        counts = self._db().execute("SELECT key, n FROM running WHERE n > 0").fetchall()
        held = self._db().execute(
            "SELECT id, running_key FROM invocations "
            "WHERE worker IS NOT NULL AND status = 'RUNNING' LIMIT %s",
            (budget,),
        )
        return running_keys_of(counts, ((InvocationId(i), k) for i, k in held), limit, holders)
