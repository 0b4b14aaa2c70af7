"""The tables, and the :class:`kubenenc.backends.Txn` over one open PostgreSQL transaction.

A record is stored whole (``data``: the SDK's own JSON encoding, :func:`dumps_record`) plus the
columns that queries filter or sort on. The claim query takes its rows with ``FOR UPDATE SKIP
LOCKED``: two workers claiming from one pool at once each take rows the other has not locked,
instead of queueing behind each other's row locks.
"""

from __future__ import annotations

from typing import Any

import psycopg
from kubenenc.backends import dumps_record, dumps_worker, loads_record, loads_worker
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import InvocationRecord, WorkerInfo

SCHEMA = """
CREATE TABLE IF NOT EXISTS invocations (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    app text NOT NULL,
    task text NOT NULL,
    pool text NOT NULL,
    status text NOT NULL,
    priority integer NOT NULL,
    waiters integer NOT NULL,
    not_before double precision NOT NULL,
    running_key text,
    worker text,
    parent text,
    ended double precision,
    data text NOT NULL
);
CREATE INDEX IF NOT EXISTS inv_claim
    ON invocations (pool, status, waiters DESC, priority DESC, seq);
CREATE INDEX IF NOT EXISTS inv_app_status ON invocations (app, status);
CREATE INDEX IF NOT EXISTS inv_task_status ON invocations (task, status);
CREATE INDEX IF NOT EXISTS inv_held ON invocations (worker) WHERE worker IS NOT NULL;
CREATE INDEX IF NOT EXISTS inv_parent ON invocations (parent) WHERE parent IS NOT NULL;
CREATE INDEX IF NOT EXISTS inv_ended ON invocations (ended) WHERE ended IS NOT NULL;
CREATE TABLE IF NOT EXISTS running (key text PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE IF NOT EXISTS registrations (key text PRIMARY KEY, id text NOT NULL);
CREATE TABLE IF NOT EXISTS edges (waiter text, target text, PRIMARY KEY (waiter, target));
CREATE INDEX IF NOT EXISTS edges_target ON edges (target);
CREATE TABLE IF NOT EXISTS deps (
    dependency text, dependent text, PRIMARY KEY (dependency, dependent)
);
CREATE TABLE IF NOT EXISTS workers (id text PRIMARY KEY, data text NOT NULL);
CREATE TABLE IF NOT EXISTS policies (name text PRIMARY KEY, spec text NOT NULL)
"""


def row_values(rec: InvocationRecord) -> dict[str, Any]:
    """The columns of ``rec``'s row."""
    return {
        "id": rec.id, "app": rec.app, "task": rec.task, "pool": rec.pool,
        "status": rec.status.value, "priority": rec.priority, "waiters": rec.waiters,
        "not_before": rec.not_before, "running_key": rec.running_key, "worker": rec.worker,
        "parent": rec.parent, "ended": rec.updated_at if rec.status.is_final else None,
        "data": dumps_record(rec),
    }  # fmt: skip


class PostgresTxn:
    """A :class:`kubenenc.backends.Txn`: plain reads and writes, no rules (the Engine has
    them). Runs inside a SERIALIZABLE transaction, so it needs no locks of its own."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.db = db

    def ids(self, sql: str, *params: object) -> list[InvocationId]:
        return [InvocationId(r[0]) for r in self.db.execute(sql, params)]

    def get(self, id: InvocationId) -> InvocationRecord | None:
        row = self.db.execute("SELECT data FROM invocations WHERE id = %s", (id,)).fetchone()
        return loads_record(row[0]) if row else None

    def put(self, rec: InvocationRecord, *, new: bool = False) -> None:
        values = row_values(rec)
        if new:
            columns = ", ".join(values)
            marks = ", ".join(f"%({c})s" for c in values)
            self.db.execute(f"INSERT INTO invocations ({columns}) VALUES ({marks})", values)  # noqa: S608
        else:
            sets = ", ".join(f"{c} = %({c})s" for c in values if c not in ("id", "parent"))
            self.db.execute(f"UPDATE invocations SET {sets} WHERE id = %(id)s", values)  # noqa: S608

    def candidates(
        self, pool: str, now: float, skip: int, count: int, exclude: frozenset[str] = frozenset()
    ) -> list[InvocationRecord]:
        rows = self.db.execute(
            "SELECT data FROM invocations WHERE pool = %s AND status = 'PENDING' "
            "AND not_before <= %s AND (running_key IS NULL OR NOT running_key = ANY(%s)) "
            "ORDER BY waiters DESC, priority DESC, seq LIMIT %s OFFSET %s "
            "FOR UPDATE SKIP LOCKED",
            (pool, now, sorted(exclude), count, skip),
        )
        return [loads_record(r[0]) for r in rows]

    def running_count(self, key: str) -> int:
        row = self.db.execute("SELECT n FROM running WHERE key = %s", (key,)).fetchone()
        return int(row[0]) if row else 0

    def add_running(self, key: str, delta: int) -> None:
        self.db.execute(
            "INSERT INTO running (key, n) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET n = running.n + excluded.n",
            (key, delta),
        )
        self.db.execute("DELETE FROM running WHERE key = %s AND n <= 0", (key,))

    def registration_holder(self, key: str) -> InvocationId | None:
        row = self.db.execute("SELECT id FROM registrations WHERE key = %s", (key,)).fetchone()
        return InvocationId(row[0]) if row else None

    def set_registration(self, key: str, id: InvocationId | None) -> None:
        if id is None:
            self.db.execute("DELETE FROM registrations WHERE key = %s", (key,))
        else:
            self.db.execute(
                "INSERT INTO registrations (key, id) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET id = excluded.id",
                (key, id),
            )

    def add_edge(self, waiter: InvocationId, target: InvocationId) -> None:
        self.db.execute(
            "INSERT INTO edges (waiter, target) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (waiter, target),
        )

    def targets_of(self, waiter: InvocationId) -> list[InvocationId]:
        return self.ids("SELECT target FROM edges WHERE waiter = %s", waiter)

    def waiters_of(self, target: InvocationId) -> list[InvocationId]:
        return self.ids("SELECT waiter FROM edges WHERE target = %s", target)

    def remove_edges(self, waiter: InvocationId) -> None:
        self.db.execute("DELETE FROM edges WHERE waiter = %s", (waiter,))

    def add_dependency(self, dependent: InvocationId, dependency: InvocationId) -> None:
        self.db.execute(
            "INSERT INTO deps (dependency, dependent) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (dependency, dependent),
        )

    def dependents_of(self, dependency: InvocationId) -> list[InvocationId]:
        return self.ids("SELECT dependent FROM deps WHERE dependency = %s", dependency)

    def held(self) -> list[tuple[InvocationId, WorkerId]]:
        rows = self.db.execute(
            "SELECT id, worker FROM invocations "
            "WHERE worker IS NOT NULL AND status IN ('RUNNING', 'PAUSED')"
        )
        return [(InvocationId(r[0]), WorkerId(r[1])) for r in rows]

    def put_worker(self, info: WorkerInfo) -> None:
        self.db.execute(
            "INSERT INTO workers (id, data) VALUES (%s, %s) "
            "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            (info.id, dumps_worker(info)),
        )

    def delete_worker(self, worker: WorkerId) -> None:
        self.db.execute("DELETE FROM workers WHERE id = %s", (worker,))

    def all_workers(self) -> list[WorkerInfo]:
        return [loads_worker(r[0]) for r in self.db.execute("SELECT data FROM workers")]
