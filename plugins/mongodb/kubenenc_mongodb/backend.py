"""The MongoDB backend: the contract, as locked, logged steps (design: ``layout``).

:class:`MongoBackend` is the face plugins are found by (entry point ``mongodb``). It opens
the backend (server detection, the collections' layout agreed with whoever used the prefix
first, indexes); runs every contract operation that writes as one step of the protocol
(:mod:`kubenenc_mongodb.steps`) through :mod:`kubenenc_mongodb.link`, which retries
connection faults for ``retry_for`` seconds, then raises
:class:`~kubenenc.errors.BackendUnavailable`; and writes heartbeats and named policies
directly (no step: each is one document that only its writer changes). The reads come from
its base class, :class:`kubenenc_mongodb.reads.MongoRecords`. A step interrupted by a fault
is either not committed (and is run again) or committed (and its result is returned), never
both.

Connections, the replica and the step mutex are per process: a forked or spawned worker
opens its own on first use.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import abc
from collections.abc import Callable, Sequence
from typing import ClassVar

from kubenenc.backends.engine import Engine
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    InvocationRecord,
    NewInvocation,
    Outcome,
    PauseResult,
    RegisterResult,
    ResumeResult,
    WorkerInfo,
)
from pymongo.errors import (
    ConfigurationError as PyMongoConfigurationError,
)
from pymongo.errors import (
    DuplicateKeyError,
    InvalidURI,
    OperationFailure,
    PyMongoError,
)

from kubenenc_mongodb import admin, liveness
from kubenenc_mongodb import overdue as overdue_role
from kubenenc_mongodb.browse import MongoBrowse
from kubenenc_mongodb.layout import Doc
from kubenenc_mongodb.link import Conn, Link
from kubenenc_mongodb.lock import Busy
from kubenenc_mongodb.options import MongoOptions, parse_url
from kubenenc_mongodb.replica import worker_doc
from kubenenc_mongodb.txn import StepTxn

log = logging.getLogger("kubenenc.mongodb")

_SWEEP_EVERY = 60.0
RECOVER_WAIT = 0.25
"""The share of the heartbeat timeout recovery may wait for the lock (see ``recover``)."""
_AUTH_FAILED = 18
_FERRET_SHARDS = 128
"""FerretDB 1.x finds a document by ``_id`` with a scan of its collection (its ``_id``
index is not used by its own queries), so invocations are spread over this many small
collections there."""
_FORMAT = 2
"""The layout format (``<p>_meta``): 2 = records as JSON text, final documents apart."""


class MongoBackend(MongoBrowse):
    """Invocations in a MongoDB-protocol database, shared by every process that opens it."""

    shared_across_processes: ClassVar[bool] = True
    select = admin.select  # the optional Admin role, in kubenenc_mongodb.admin
    purge = admin.purge
    oldest_pending = admin.oldest_pending
    overdue = overdue_role.overdue  # the optional Overdue role, in kubenenc_mongodb.overdue
    max_value_bytes: ClassVar[int] = 7 * 1024 * 1024
    """A record (arguments and result together, as JSON text) lives in one document, and a
    document holds at most 16 MiB: each value gets under half of it."""

    def __init__(self, options: MongoOptions, *, connect_timeout: float = 5.0) -> None:
        self.options = options
        super().__init__(Link(options, int(connect_timeout * 1000)))
        try:
            conn = self._conn()
            build = conn.client.admin.command("buildInfo")
            conn.client.admin.command("ping")
            ferret = build.get("ferretdbVersion")
            self._link.shards = self._agree_layout(conn, _FERRET_SHARDS if ferret else 1)
            conn.relayout(self._link.shards)
            self.ttl_index = conn.layout.ensure_indexes(options.retention, secondary=ferret is None)
        except (InvalidURI, PyMongoConfigurationError) as exc:
            raise ConfigurationError(f"bad MongoDB URL: {exc}") from exc
        except OperationFailure as exc:
            self.close()
            if exc.code == _AUTH_FAILED:
                raise BackendUnavailable(
                    f"MongoDB at {self._link.where()} refused the credentials: {exc}"
                ) from exc
            raise BackendUnavailable(
                f"MongoDB at {self._link.where()} failed at start: {exc}"
            ) from exc
        except PyMongoError as exc:
            self.close()
            raise BackendUnavailable(
                f"cannot reach MongoDB at {self._link.where()}: {exc}"
            ) from exc
        self.server = f"FerretDB {ferret}" if ferret else f"MongoDB {build.get('version', '?')}"
        """What answered: ``FerretDB <version>`` or ``MongoDB <version>``."""
        if not self.ttl_index:
            log.info("%s has no TTL indexes; finished invocations are swept by recover()",
                     self.server)  # fmt: skip

    @staticmethod
    def _agree_layout(conn: Conn, wanted: int) -> int:
        """The number of invocation collections: fixed by whoever used the prefix first."""
        meta = conn.layout.meta
        with contextlib.suppress(DuplicateKeyError):
            meta.insert_one({"_id": "layout", "shards": wanted, "format": _FORMAT})
        doc = meta.find_one({"_id": "layout"}) or {"shards": wanted, "format": _FORMAT}
        if doc.get("format") != _FORMAT:
            raise ConfigurationError(
                f"the collections of prefix {conn.layout.prefix!r} were made by an older "
                "kubenenc in another format; use another prefix"
            )
        return int(doc["shards"])

    @classmethod
    def from_url(cls, url: str) -> MongoBackend:
        """Open ``mongodb://[user:pass@]host[:port]/db?prefix=...`` (see options)."""
        return cls(parse_url(url))

    def _conn(self) -> Conn:
        return self._link.conn()

    def close(self) -> None:
        """Close this process's connections. Idempotent."""
        self._link.close()

    # -- Queue ------------------------------------------------------------------------------

    def register(self, new: Sequence[NewInvocation], now: float) -> list[RegisterResult]:
        if not new:
            return []
        return self._link.step("register", lambda t: Engine(t).register(new, now))

    def last_tick(self, schedule: str) -> int | None:
        """See :class:`kubenenc.backends.contract.TickClaims`."""
        return self._link.step("last_tick", lambda t: Engine(t).last_tick(schedule))

    def claim_tick(
        self,
        schedule: str,
        previous: int | None,
        tick: int,
        new: Sequence[NewInvocation],
        now: float,
    ) -> list[RegisterResult] | None:
        """See :class:`kubenenc.backends.contract.TickClaims`."""
        return self._link.step(
            "claim_tick", lambda t: Engine(t).claim_tick(schedule, previous, tick, new, now)
        )

    def claim(self, pool: str, worker: WorkerId, limit: int, now: float) -> list[InvocationRecord]:
        if limit <= 0:
            return []

        def nothing_to_claim(conn: Conn) -> bool:
            with conn.mutex:
                rep = conn.replica
                if rep.version < 0 or rep.claimable(pool, now):
                    return False
                return conn.steps.is_current()

        if self._link.retrying("claim", nothing_to_claim):
            return []
        # Work was claimed: its finish is this process's next step, soon.
        return self._link.step(
            "claim", lambda t: Engine(t).claim(pool, worker, limit, now), linger=bool
        )

    def next_due(self, pool: str, now: float) -> float | None:
        """See :class:`kubenenc.backends.contract.DueTimes`: from this process's replica,
        which holds every invocation that is not final and indexes the PENDING ones by pool,
        brought up to the last committed step (one marker read, as an idle claim check). The
        stored documents cannot answer it on FerretDB, where a claim lives in the log only."""
        return self._from_replica("next_due", lambda r: r.next_due(pool, now), relaxed=True)

    def finish(self, outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        if not outcomes:
            return []
        return self._link.step("finish", lambda t: Engine(t).finish(outcomes, worker, now))

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """Both in one step (one lock, one commit): the worker's hot path."""
        if not outcomes:
            return [], self.claim(pool, worker, limit, now)
        return self._link.step(
            "finish_and_claim",
            lambda t: Engine(t).finish_and_claim(outcomes, pool, worker, limit, now),
            linger=lambda done: bool(done[1]),
        )

    def cancel(self, id: InvocationId, now: float, reason: str = "cancelled") -> bool:
        return self._link.step("cancel", lambda t: Engine(t).cancel(id, now, reason))

    def fail(self, id: InvocationId, error: str, message: str, now: float) -> bool:
        return self._link.step("fail", lambda t: Engine(t).fail(id, error, message, now))

    # -- Coordination -----------------------------------------------------------------------

    def pause(
        self, id: InvocationId, worker: WorkerId, targets: Sequence[InvocationId], now: float
    ) -> PauseResult:
        return self._link.step("pause", lambda t: Engine(t).pause(id, worker, targets, now))

    def resume(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        if not ids:
            return ResumeResult()
        return self._link.step("resume", lambda t: Engine(t).resume(ids, worker, limit, now))

    def resume_early(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :class:`kubenenc.backends.contract.ResumeEarly`."""
        if not ids:
            return ResumeResult()
        return self._link.step(
            "resume", lambda t: Engine(t).resume(ids, worker, limit, now, early=True)
        )

    def heartbeat(self, info: WorkerInfo) -> None:
        """Stamped with the server's time (``seen``) unless ``clock=caller``: see
        :mod:`kubenenc_mongodb.liveness`."""
        doc = worker_doc(info)

        def beat(c: Conn) -> None:
            if self.options.clock == "server":
                meta = c.layout.meta
                now = liveness.server_now(meta)
                liveness.tick(meta, now, None)
                doc["seen"] = now
            c.layout.workers.replace_one({"_id": info.id}, doc, upsert=True)

        self._link.retrying("heartbeat", beat)

    def unregister_worker(self, worker: WorkerId) -> None:
        self._link.retrying(
            "unregister_worker", lambda c: c.layout.workers.delete_one({"_id": worker})
        )

    def workers(self) -> list[WorkerInfo]:
        return self._link.retrying("workers", lambda c: c.steps.read_workers())

    def recover(self, now: float, heartbeat_timeout: float, max_lost: int) -> list[InvocationId]:
        """Silence is measured on the server's clock, outages not counted, unless
        ``clock=caller`` (see :mod:`kubenenc_mongodb.liveness`); ``now`` stamps
        the history of what is handed back.

        Recovery runs on the worker's heartbeat thread, between two beats: its steps wait
        at most :data:`RECOVER_WAIT` of the heartbeat timeout for this process's other
        steps and for the lock, and are skipped (tried again next beat) when busy, so that
        a long step elsewhere never holds up this worker's beats."""
        wait = heartbeat_timeout * RECOVER_WAIT
        if not self.ttl_index:
            self._sweep(now, wait)
        silent: set[WorkerId] | None = None
        if self.options.clock == "server":
            silent = self._link.retrying("recover", lambda c: self._silent(c, heartbeat_timeout))

        def nothing_to_recover(conn: Conn) -> bool:
            workers = conn.steps.read_workers()
            if silent is None:
                alive = {w.id for w in workers if w.at >= now - heartbeat_timeout}
            else:
                alive = {w.id for w in workers if w.id not in silent}
            records = conn.replica.records
            return len(alive) == len(workers) and all(
                records[i].worker in alive for i in conn.replica.held
            )

        return self._hand_back_step(
            "recover", nothing_to_recover,
            lambda t: Engine(t).recover(now, heartbeat_timeout, max_lost, silent=silent),
            wait,
        )  # fmt: skip

    @staticmethod
    def _silent(conn: Conn, heartbeat_timeout: float) -> set[WorkerId]:
        """The workers silent for longer than ``heartbeat_timeout`` on the server's clock."""
        meta = conn.layout.meta
        now = liveness.server_now(meta)
        outages = liveness.tick(meta, now, heartbeat_timeout / 3)
        return {
            WorkerId(d["_id"])
            for d in conn.layout.workers.find()
            if liveness.silence(liveness.beat_time(d), now, outages) > heartbeat_timeout
        }

    def release_unheld(
        self, worker: WorkerId, held: abc.Collection[InvocationId], now: float, max_lost: int
    ) -> list[InvocationId]:
        def nothing_to_release(conn: Conn) -> bool:
            records = conn.replica.records
            return all(i in held or records[i].worker != worker for i in conn.replica.held)

        return self._hand_back_step(
            "release_unheld", nothing_to_release,
            lambda t: Engine(t).release_unheld(worker, held, now, max_lost),
        )  # fmt: skip

    def _hand_back_step(
        self,
        what: str,
        nothing: Callable[[Conn], bool],
        op: Callable[[StepTxn], list[InvocationId]],
        wait: float | None = None,
    ) -> list[InvocationId]:
        """Run ``op`` as a step unless the replica, current, shows ``nothing`` to hand back:
        recovery runs on every heartbeat of every worker, and a step takes the lock.
        ``wait``: skip it (nothing handed back now) when this process's mutex or the lock
        is not had within that many seconds."""

        def idle(conn: Conn) -> bool:
            if not conn.mutex.acquire(timeout=-1 if wait is None else wait):
                raise Busy
            try:
                return conn.steps.is_current() and nothing(conn)
            finally:
                conn.mutex.release()

        try:
            if self._link.retrying(what, idle):
                return []
            return self._link.step(what, op, wait=wait)
        except Busy:
            log.debug("%s skipped: the lock is busy; trying again next beat", what)
            return []

    def _sweep(self, now: float, wait: float) -> None:
        """Delete invocations finished longer than the retention ago (where the server has
        no TTL indexes), at most once a minute per process and a minute after start. The
        scan runs without the lock (final documents never change); the deletion is a step,
        so the replica's counts of final invocations stay exact, and it is skipped when
        another process swept meanwhile."""
        conn = self._conn()
        if conn.last_sweep == 0.0:
            conn.last_sweep = now
        if now - conn.last_sweep < _SWEEP_EVERY:
            return
        conn.last_sweep = now
        cutoff = dt.datetime.fromtimestamp(now - self.options.retention, dt.UTC)
        fields = {"app": 1, "pool": 1, "status": 1}

        def scan(conn: Conn) -> list[Doc]:
            layout = conn.layout
            expired = {"final_at": {"$lt": cutoff}}
            if layout.final is not None:
                return list(layout.final.find(expired, fields))
            found: list[Doc] = []
            for inv in layout.shards:
                found.extend(inv.find(expired, fields))
            return found

        expired = self._link.retrying("sweep", scan)
        if not expired:
            return
        meta = conn.layout.meta

        def forget(txn: StepTxn) -> int:
            last = meta.find_one({"_id": "sweep"})
            if last is not None and last["at"] > now - _SWEEP_EVERY / 2:
                return 0  # another process swept these already
            meta.replace_one({"_id": "sweep"}, {"at": now}, upsert=True)
            txn.forgotten.extend(expired)
            return len(expired)

        try:
            deleted = self._link.step("sweep", forget, wait=wait)
        except Busy:
            conn.last_sweep = now - _SWEEP_EVERY / 2  # busy: again in half the usual time
            return
        if deleted:
            log.info("deleted %d invocations finished before %s", deleted, cutoff)

    # -- Policies ---------------------------------------------------------------------------

    def set_policy(self, name: str, spec: str | None) -> None:
        def write(conn: Conn) -> None:
            if spec is None:
                conn.layout.policies.delete_one({"_id": name})
            else:
                conn.layout.policies.replace_one({"_id": name}, {"spec": spec}, upsert=True)

        self._link.retrying("set_policy", write)

    def get_policy(self, name: str) -> str | None:
        doc = self._link.retrying("get_policy", lambda c: c.layout.policies.find_one({"_id": name}))
        return None if doc is None else str(doc["spec"])

    def policies(self) -> dict[str, str]:
        docs = self._link.retrying("policies", lambda c: list(c.layout.policies.find()))
        return {d["_id"]: d["spec"] for d in docs}
