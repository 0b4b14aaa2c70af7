"""The MongoDB backend: contract operations as locked, logged steps (design: ``layout``).

Writes go through :meth:`MongoBackend._step` (lease lock, catch up, Engine, commit, apply);
reads take non-final invocations from the process's replica brought up to the last step from
the log (on FerretDB; on MongoDB the documents are read directly) and final ones from the
collections. Connection faults are retried with back-off for
``kubenenc_retry`` seconds, then raise :class:`~kubenenc.errors.BackendUnavailable`; a
step interrupted by a fault is either not committed (and is run again) or committed (and
its result is returned), never both — see :meth:`MongoBackend._step`.

Connections, the replica and the step mutex are per process: a forked or spawned worker
opens its own on first use.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import functools
import logging
import os
import threading
import time
import uuid
import warnings
import weakref
from collections import abc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

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
from kubenenc.status import FINAL, Status
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import (
    ConfigurationError as PyMongoConfigurationError,
)
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    InvalidURI,
    OperationFailure,
    PyMongoError,
)

from kubenenc_mongodb.layout import LOG_KEEP, PRUNE_EVERY, Doc, Layout, log_id, redo_of
from kubenenc_mongodb.options import MongoOptions, parse_url
from kubenenc_mongodb.replica import Replica, StepTxn, doc_to_record

log = logging.getLogger("kubenenc.mongodb")

T = TypeVar("T")

_FINAL = [s.value for s in FINAL]
_LOCK_NAME = "queue"
_SWEEP_EVERY = 60.0
_AUTH_FAILED = 18
_FERRET_SHARDS = 128
"""FerretDB 1.x finds a document by ``_id`` with a scan of its collection (its ``_id``
index is not used by its own queries), so invocations are spread over this many small
collections there."""
_CONFIRMED = 0.1
"""For how long, after the marker of the replica's version was last seen, the polls of idle
claims and of ``wait_final`` take "no later marker" to mean "current" without reading that
marker again (one read per poll instead of two). They could only be wrong when the log moved
on by more than it keeps meanwhile; the poll then sees it at most this much later."""
_POLL_SHARE = 0.002
"""Polls of one process (threads waiting for results, the idle claims of its worker) within
this long of a read that found no new step take that answer: however many threads wait,
a process asks the server at most this often."""
_LINGER = 0.01
"""How long a process keeps the lock after a step that claimed work, for the step that will
finish it (no lock round trips, no catch-up: nobody else can have committed meanwhile)."""
_HOLD_MAX = 0.05
"""A process that keeps the lock across steps lets it go at the end of the first step past
this long since it took it, so others get their turn."""
_WAIT_FIRST = 0.002
_WAIT_MAX = 0.01
"""``wait_final`` polls with back-off from :data:`_WAIT_FIRST` to this (seconds): a poll
costs one read of a tiny document, and a result is seen at most this late."""
_FORMAT = 2
"""The layout format (``<p>_meta``): 2 = records as JSON text, final documents apart."""
_SCAN_ABOVE = 32
"""Above this many ids, one collection scan beats one ``_id`` lookup per id."""


class _Retry(Exception):
    """The step must start over (lost lock, or a fault before the commit)."""


class _Conn:
    """What one process holds for one backend: client, collections, replica, lock state."""

    def __init__(self, opts: MongoOptions, timeout_ms: int, shards: int) -> None:
        self.pid = os.getpid()
        # pymongo only warns about unknown or malformed URL options: refuse them instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.client: MongoClient[Doc] = MongoClient(
                opts.client_url, serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms, appname="kubenenc", tz_aware=False,
            )  # fmt: skip
        bad = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        if bad:
            self.client.close()
            raise ConfigurationError(f"bad MongoDB URL option: {'; '.join(bad)}")
        self.layout = Layout(self.client[opts.database], opts.prefix, shards)
        self.replica = Replica()
        self.mutex = threading.RLock()
        self.owner = f"{os.uname().nodename}:{self.pid}"
        self.dangling: str | None = None
        """Our own lock token left in place after a fault past the commit."""
        self.uncertain: tuple[int, str, Any] | None = None
        """(version, step id, result) of a step whose commit write failed: maybe committed."""
        self.last_sweep = 0.0
        self.confirmed = (-1, 0.0)
        """(version, monotonic time) when the marker of that version was last seen."""
        self.marked = -1
        """The last version whose marker a poll saw (it need not be read again)."""
        self.polled = (-1, 0.0)
        """(version, monotonic time) when a read last found no step after that version."""
        self.kept: tuple[str, float, float] | None = None
        """(token, expires, monotonic time taken) of the lock kept between steps: the
        next step of this process uses it as it is; a thread lets it go at ``release_at``."""
        self.release_at = 0.0
        self.wake = threading.Condition(self.mutex)
        self.releaser: threading.Thread | None = None
        self.closed = False
        _CONNS.add(self)

    def keep(self, token: str, expires: float, since: float, linger: float) -> None:
        """Hold the lock past a step; it is let go after ``linger`` seconds unless a step of
        this process takes it first (call with ``mutex`` held)."""
        self.kept = (token, expires, since)
        self.release_at = time.monotonic() + linger
        if self.releaser is None:
            self.releaser = threading.Thread(
                target=self._release_loop, name="kubenenc-mongodb-lock", daemon=True
            )
            self.releaser.start()
        self.wake.notify()

    def let_go(self) -> None:
        """Release the kept lock now, if any (call with ``mutex`` held)."""
        if self.kept is None:
            return
        token, self.kept = self.kept[0], None
        try:
            self.layout.locks.delete_one({"_id": token})
        except PyMongoError:
            self.dangling = token

    def _release_loop(self) -> None:
        with self.wake:
            while not self.closed:
                left = self.release_at - time.monotonic()
                if self.kept is None or left > 0:
                    self.wake.wait(left if self.kept is not None else None)
                    continue
                self.let_go()

    def close(self) -> None:
        with self.mutex:
            if self.pid == os.getpid():
                self.let_go()
            self.closed = True
            self.wake.notify()
        if self.pid == os.getpid():
            self.client.close()


_CONNS: weakref.WeakSet[_Conn] = weakref.WeakSet()


@atexit.register
def _let_go_at_exit() -> None:
    """Release locks kept between steps, so other processes need not wait out the lease."""
    for conn in list(_CONNS):
        if conn.pid == os.getpid() and not conn.closed:
            with contextlib.suppress(Exception), conn.mutex:
                conn.let_go()


class MongoBackend:
    """Invocations in a MongoDB-protocol database, shared by every process that opens it."""

    shared_across_processes: ClassVar[bool] = True
    max_value_bytes: ClassVar[int] = 7 * 1024 * 1024
    """A record (arguments and result together, as JSON text) lives in one document, and a
    document holds at most 16 MiB: each value gets under half of it."""

    def __init__(self, options: MongoOptions, *, connect_timeout: float = 5.0) -> None:
        self.options = options
        self._timeout_ms = int(connect_timeout * 1000)
        self._conn_lock = threading.Lock()
        self._conn_obj: _Conn | None = None
        self._closed = False
        self._shards = 1
        try:
            conn = self._conn()
            build = conn.client.admin.command("buildInfo")
            conn.client.admin.command("ping")
            ferret = build.get("ferretdbVersion")
            self._shards = self._agree_layout(conn, _FERRET_SHARDS if ferret else 1)
            conn.layout = Layout(conn.layout.db, options.prefix, self._shards)
            self.ttl_index = conn.layout.ensure_indexes(options.retention, secondary=ferret is None)
        except (InvalidURI, PyMongoConfigurationError) as exc:
            raise ConfigurationError(f"bad MongoDB URL: {exc}") from exc
        except OperationFailure as exc:
            self.close()
            if exc.code == _AUTH_FAILED:
                raise BackendUnavailable(
                    f"MongoDB at {self._where()} refused the credentials: {exc}"
                ) from exc
            raise BackendUnavailable(f"MongoDB at {self._where()} failed at start: {exc}") from exc
        except PyMongoError as exc:
            self.close()
            raise BackendUnavailable(f"cannot reach MongoDB at {self._where()}: {exc}") from exc
        self.server = f"FerretDB {ferret}" if ferret else f"MongoDB {build.get('version', '?')}"
        """What answered: ``FerretDB <version>`` or ``MongoDB <version>``."""
        if not self.ttl_index:
            log.info("%s has no TTL indexes; finished invocations are swept by recover()",
                     self.server)  # fmt: skip

    @staticmethod
    def _agree_layout(conn: _Conn, wanted: int) -> int:
        """The number of invocation collections: fixed by whoever used the prefix first."""
        meta = conn.layout.meta
        with contextlib.suppress(DuplicateKeyError):
            meta.insert_one({"_id": "layout", "shards": wanted, "format": _FORMAT})
        doc = meta.find_one({"_id": "layout"}) or {"shards": wanted, "format": _FORMAT}
        if doc.get("format") != _FORMAT:
            raise ConfigurationError(
                f"the collections of prefix {conn.layout.prefix!r} were made by an older "
                "kubenenc in another format; use another kubenenc_prefix"
            )
        return int(doc["shards"])

    @classmethod
    def from_url(cls, url: str) -> MongoBackend:
        """Open ``mongodb://[user:pass@]host[:port]/db?kubenenc_prefix=...`` (see options)."""
        return cls(parse_url(url))

    def _where(self) -> str:
        from kubenenc.backends.registry import redact_url

        return redact_url(self.options.client_url)

    def _conn(self) -> _Conn:
        conn = self._conn_obj
        if conn is not None and conn.pid == os.getpid():
            return conn
        with self._conn_lock:
            if self._closed:
                raise BackendUnavailable("the MongoDB backend was closed")
            conn = self._conn_obj
            if conn is None or conn.pid != os.getpid():
                try:
                    conn = _Conn(self.options, self._timeout_ms, self._shards)
                except (InvalidURI, PyMongoConfigurationError) as exc:
                    raise ConfigurationError(f"bad MongoDB URL: {exc}") from exc
                self._conn_obj = conn
            return conn

    def close(self) -> None:
        """Close this process's connections. Idempotent."""
        with self._conn_lock:
            self._closed = True
            conn, self._conn_obj = self._conn_obj, None
        if conn is not None:
            conn.close()

    # -- retries ----------------------------------------------------------------------------

    def _retrying(self, what: str, fn: Callable[[_Conn], T]) -> T:
        deadline = time.monotonic() + self.options.retry_for
        delay = 0.05
        while True:
            conn = self._conn()
            try:
                return fn(conn)
            except ConnectionFailure as exc:
                if time.monotonic() + delay > deadline:
                    raise BackendUnavailable(
                        f"MongoDB at {self._where()} unreachable for "
                        f"{self.options.retry_for:g} s during {what}: {exc}"
                    ) from exc
                log.warning("MongoDB fault during %s (%s); retrying in %.2f s", what, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except _Retry:
                time.sleep(0.001)

    # -- steps ------------------------------------------------------------------------------

    def _step(
        self, what: str, op: Callable[[StepTxn], T], linger: Callable[[T], bool] | None = None
    ) -> T:
        """Run ``op`` as one step; ``linger(result)``: keep the lock :data:`_LINGER` seconds
        for a next step of this process (else it is let go at the end of the step)."""

        def run(conn: _Conn) -> T:
            with conn.mutex:
                return self._step_once(conn, op, linger)

        return self._retrying(what, run)

    def _acquire(self, conn: _Conn) -> tuple[str, float, bool]:
        locks = conn.layout.locks
        stolen = False
        if conn.dangling is not None:
            locks.delete_one({"_id": conn.dangling})
            conn.dangling = None
            stolen = True
        token = uuid.uuid4().hex
        lease = self.options.lease
        delay = 0.0005
        give_up = time.monotonic() + max(3 * lease, 30.0)
        while True:
            now = time.time()
            try:
                locks.insert_one(
                    {"_id": token, "name": _LOCK_NAME, "expires": now + lease, "owner": conn.owner}
                )
                return token, now + lease, stolen
            except DuplicateKeyError:
                pass
            holder = locks.find_one({"name": _LOCK_NAME})
            if holder is not None and holder["expires"] < now:
                log.warning("the lock held by %s expired; taking it over", holder.get("owner"))
                locks.delete_one({"_id": holder["_id"]})
                stolen = True
                continue
            if time.monotonic() > give_up:
                who = holder.get("owner") if holder else "?"
                raise BackendUnavailable(f"the coordination lock stayed held by {who}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.005)

    def _take_kept(self, conn: _Conn) -> tuple[str, float, float] | None:
        """The lock this process kept since its last step, while its lease has well over half
        to run (nobody can have taken it over); else None (and it is let go)."""
        kept, conn.kept = conn.kept, None
        if kept is not None and time.time() < kept[1] - self.options.lease / 2:
            return kept
        if kept is not None:
            conn.kept = kept
            conn.let_go()
        return None

    def _step_once(
        self, conn: _Conn, op: Callable[[StepTxn], T], linger: Callable[[T], bool] | None
    ) -> T:
        kept = self._take_kept(conn)
        if kept is not None:
            token, expires, since = kept
            stolen = False
        else:
            token, expires, stolen = self._acquire(conn)
            since = time.monotonic()
        done: tuple[T] | None = None
        try:
            result, expires = self._locked_step(conn, op, token, expires, stolen, kept is not None)
            done = (result,)
            return result
        finally:
            if conn.dangling == token:
                pass  # left in place on purpose (see _locked_step)
            elif (
                done is not None
                and linger is not None
                and linger(done[0])
                and time.monotonic() - since < _HOLD_MAX
            ):
                conn.keep(token, expires, since, _LINGER)
            else:
                try:
                    conn.layout.locks.delete_one({"_id": token})
                except PyMongoError:
                    conn.dangling = token

    def _locked_step(
        self,
        conn: _Conn,
        op: Callable[[StepTxn], T],
        token: str,
        expires: float,
        stolen: bool,
        continued: bool,
    ) -> tuple[T, float]:
        """The step under the lock: its result and the lease's end. ``continued``: the lock
        was kept since this process's last step, so its replica is current. A fault after
        the commit leaves the lock in place (``conn.dangling``) for the replay."""
        layout = conn.layout
        if stolen:
            self._finish_last_step(conn)
        if conn.uncertain is not None:
            version, step_id, result = conn.uncertain
            conn.uncertain = None
            entry = layout.marker(version)
            if entry is not None and entry.get("step") == step_id:
                self._catch_up(conn)
                return result, expires
        if not continued or conn.replica.version < 0:
            self._catch_up(conn)
        version = conn.replica.version + 1
        txn = StepTxn(
            conn.replica, lambda id: self._fetch(conn, id), lambda: self._read_workers(conn),
            version,
        )  # fmt: skip
        result = op(txn)
        redo = txn.redo()
        if not redo:
            return result, expires
        if layout.held is not None and version % PRUNE_EVERY == 0:
            redo.extend(conn.replica.spill(version - LOG_KEEP, txn.dirty))  # see layout
        expires = self._renew(conn, token, expires)
        step_id = uuid.uuid4().hex
        try:
            committed = layout.commit(version, step_id, redo)
        except ConnectionFailure:
            # Maybe written: keep the lock, and on retry look at the log to know.
            conn.uncertain = (version, step_id, result)
            conn.dangling = token
            conn.replica.version = -1
            raise
        if not committed:
            # Another holder committed this version (our lease ran out): start over.
            conn.replica.version = -1
            raise _Retry
        conn.replica.apply(redo, version, fresh=txn.recs)
        conn.replica.version = version
        conn.confirmed = (version, time.monotonic())
        try:
            layout.apply(redo)
            layout.prune_log(version)
        except PyMongoError:
            # Committed: the result stands. Whoever takes the lock next re-applies.
            log.exception("step %d committed but not fully written; it will be replayed",
                          version)  # fmt: skip
            conn.dangling = token
        return result, expires

    def _renew(self, conn: _Conn, token: str, expires: float) -> float:
        """Extend the lease when half of it is gone (its new end); _Retry if it was lost."""
        if time.time() <= expires - self.options.lease / 2:
            return expires
        renewed = time.time() + self.options.lease
        res = conn.layout.locks.update_one({"_id": token}, {"$set": {"expires": renewed}})
        if res.matched_count != 1:
            conn.replica.version = -1
            raise _Retry
        return renewed

    def _finish_last_step(self, conn: _Conn) -> None:
        """After taking over an expired lock: the last committed step may be half-written
        (its holder died after the commit); write it again (idempotent)."""
        layout = conn.layout
        latest = layout.latest()
        entry = layout.log_entry(latest) if latest else None
        if entry is not None:
            log.info("re-applying step %d after a lock take-over", latest)
            layout.apply(redo_of(entry), replay=True)

    def _is_current(self, conn: _Conn) -> bool:
        """Whether the replica has every committed step: one read of the next marker (and,
        past :data:`_CONFIRMED`, of its own); none while this process keeps the lock. Only
        for the shortcuts of idle claims and recoveries: a step catches up under the lock."""
        v = conn.replica.version
        kept = conn.kept
        if v >= 0 and kept is not None and time.time() < kept[1] - self.options.lease / 2:
            return True  # nobody else can have committed since our last step
        if v < 0:
            return False
        if self._polled_recently(conn):
            return True
        if self._has_marker(conn, v + 1):
            return False
        conn.polled = (v, time.monotonic())
        return self._still_marked(conn, relaxed=True)

    @staticmethod
    def _polled_recently(conn: _Conn) -> bool:
        """Whether a read found no step after the replica's version just now (see
        :data:`_POLL_SHARE`)."""
        version, at = conn.polled
        return version == conn.replica.version and time.monotonic() - at < _POLL_SHARE

    @staticmethod
    def _has_marker(conn: _Conn, version: int) -> bool:
        """Whether step ``version`` is committed (a marker seen once is not read again: it
        stays committed, and if it was pruned since, its redo is gone too)."""
        if conn.marked == version:
            return True
        if conn.layout.marker(version) is None:
            return False
        conn.marked = version
        return True

    @staticmethod
    def _still_marked(conn: _Conn, *, relaxed: bool) -> bool:
        """With no marker after the replica's version: whether it is current (its own marker
        is still there) rather than so far behind that the next one was pruned already (then,
        as markers go oldest first, its own is gone too)."""
        v = conn.replica.version
        seen_at = conn.confirmed[1] if conn.confirmed[0] == v else -_CONFIRMED
        if v == 0 or (relaxed and time.monotonic() - seen_at < _CONFIRMED):
            return True
        if conn.layout.marker(v) is None:
            return False
        conn.confirmed = (v, time.monotonic())
        return True

    def _observe(
        self,
        conn: _Conn,
        *,
        relaxed: bool = False,
        enough: Callable[[Replica], bool] | None = None,
    ) -> bool:
        """Bring the replica up to the last committed step from the log alone (no lock),
        reading each next marker, then its redo (on FerretDB one ``_id`` lookup is cheaper
        than any range query); False when it cannot (never loaded, or so far behind that
        the log lost steps: reload under the lock). ``relaxed``: see :data:`_CONFIRMED`.
        ``enough``: stop at the first step after which it holds (the replica is then as of
        that step, not necessarily the last)."""
        rep, layout = conn.replica, conn.layout
        if rep.version < 0:
            return False
        if relaxed and self._polled_recently(conn):
            return True
        start = rep.version
        while self._has_marker(conn, rep.version + 1):
            n = rep.version + 1
            doc = layout.log(n).find_one({"_id": log_id(n)})
            if doc is None:  # pruned meanwhile: far behind
                return False
            rep.apply(redo_of(doc), n)
            rep.version = n
            conn.confirmed = (n, time.monotonic())
            if enough is not None and enough(rep):
                return True
        conn.polled = (rep.version, time.monotonic())
        return rep.version > start or self._still_marked(conn, relaxed=relaxed)

    def _catch_up(self, conn: _Conn) -> None:
        if not self._observe(conn):
            self._reload(conn, conn.layout.latest())
            conn.confirmed = (conn.replica.version, time.monotonic())

    def _reload(self, conn: _Conn, version: int) -> None:
        """Rebuild the replica from the collections as of ``version``, the last committed
        step (under the lock, so every step up to it is written). On FerretDB the changes
        still held in the log only are replayed over the documents (see ``layout``)."""
        rep = conn.replica
        rep.reset()
        layout = conn.layout
        window = layout.unspilled(version) if layout.held is not None else []
        if layout.held is not None and (version == 0 or window[0][0] == 1):
            # The log still holds every step since the first: replaying it over an empty
            # replica is what following the log live does, and reads a few compressed
            # documents instead of every invocation's own one.
            for v, redo in window:
                rep.apply(redo, v)
            rep.version = version
            return
        # Invocations that the kept steps touch get their state from the replay below:
        # their own and held documents are not decoded.
        later = {op["doc"]["_id"] for _, redo in window for op in redo if op["c"] == "inv"}
        done = self._load_finals(conn)
        for inv in layout.shards:
            self._load_own(conn, inv, done, later)
        if layout.held is not None:
            for doc in layout.held.find():
                if doc["_id"] not in done:
                    if doc["_id"] not in later:
                        rep.load_record(doc)
                    rep.in_held.add(doc["_id"])
        self._load_index_data(conn)
        if layout.held is not None:
            # Final or deleted since (retention): the documents say all there is to say.
            skip = done | {i for _, redo in window for op in redo if op["c"] == "forget"
                           for i in op["ids"]}  # fmt: skip
            for v, redo in window:
                rep.apply(redo, v, skip=skip)
        rep.version = version

    @staticmethod
    def _load_index_data(conn: _Conn) -> None:
        """Running slots, registration keys, wait edges and dependencies, into the replica."""
        layout, rep = conn.layout, conn.replica
        for doc in layout.running.find():
            rep.set_running(doc["_id"], doc["n"])
        for doc in layout.registrations.find():
            rep.set_registration(doc["_id"], doc["holder"])
        for doc in layout.edges.find():
            rep.add_edge(doc["w"], doc["t"])
        for doc in layout.deps.find():
            rep.add_dependency(doc["d"], doc["e"])

    def _load_own(self, conn: _Conn, inv: Collection[Doc], done: set[str], later: set[str]) -> None:
        """Load the own documents of one collection, but those of ``done`` (final) and of
        ``later`` (set by the replay of the log that follows)."""
        rep = conn.replica
        # On FerretDB own documents are never final (and carry no status).
        where = {} if conn.layout.final is not None else {"status": {"$nin": _FINAL}}
        for doc in inv.find(where):
            if doc["_id"] not in done and doc["_id"] not in later:
                rep.load_record(doc)
        if conn.layout.final is None:
            group = {"_id": {"a": "$app", "p": "$pool", "s": "$status"}, "n": {"$sum": 1}}
            for row in inv.aggregate([{"$match": {"status": {"$in": _FINAL}}}, {"$group": group}]):
                key = row["_id"]
                rep.count_final(key["a"], key["p"], key["s"], int(row["n"]))

    @staticmethod
    def _load_finals(conn: _Conn) -> set[str]:
        """Count the documents of the final collection into the replica; their ids (whose
        own documents were left as they were when they finished)."""
        done: set[str] = set()
        if conn.layout.final is not None:
            for doc in conn.layout.final.find({}, {"app": 1, "pool": 1, "status": 1}):
                done.add(doc["_id"])
                conn.replica.count_final(doc["app"], doc["pool"], doc["status"], 1)
        return done

    def _fetch(self, conn: _Conn, id: InvocationId) -> InvocationRecord | None:
        """The stored invocation, for steps: the replica holds every one that is not final,
        so this one is final (or unknown)."""
        doc = conn.replica.recent.get(id)
        final = conn.layout.final
        if doc is None and final is not None:
            doc = final.find_one({"_id": id})
        elif doc is None:
            doc = conn.layout.shard(id).find_one({"_id": id})
        return doc_to_record(doc) if doc is not None else None

    def _read_workers(self, conn: _Conn) -> list[WorkerInfo]:
        return [_worker_from_doc(d) for d in conn.layout.workers.find()]

    # -- Queue ------------------------------------------------------------------------------

    def register(self, new: Sequence[NewInvocation], now: float) -> list[RegisterResult]:
        if not new:
            return []
        return self._step("register", lambda t: Engine(t).register(new, now))

    def claim(self, pool: str, worker: WorkerId, limit: int, now: float) -> list[InvocationRecord]:
        if limit <= 0:
            return []

        def nothing_to_claim(conn: _Conn) -> bool:
            with conn.mutex:
                rep = conn.replica
                if rep.version < 0 or rep.claimable(pool, now):
                    return False
                return self._is_current(conn)

        if self._retrying("claim", nothing_to_claim):
            return []
        # Work was claimed: its finish is this process's next step, soon.
        return self._step("claim", lambda t: Engine(t).claim(pool, worker, limit, now), linger=bool)

    def finish(self, outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        if not outcomes:
            return []
        return self._step("finish", lambda t: Engine(t).finish(outcomes, worker, now))

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """Both in one step (one lock, one commit): the worker's hot path."""
        if not outcomes:
            return [], self.claim(pool, worker, limit, now)
        return self._step(
            "finish_and_claim",
            lambda t: Engine(t).finish_and_claim(outcomes, pool, worker, limit, now),
            linger=lambda done: bool(done[1]),
        )

    def cancel(self, id: InvocationId, now: float, reason: str = "cancelled") -> bool:
        return self._step("cancel", lambda t: Engine(t).cancel(id, now, reason))

    def fail(self, id: InvocationId, error: str, message: str, now: float) -> bool:
        return self._step("fail", lambda t: Engine(t).fail(id, error, message, now))

    # -- Coordination -----------------------------------------------------------------------

    def pause(
        self, id: InvocationId, worker: WorkerId, targets: Sequence[InvocationId], now: float
    ) -> PauseResult:
        return self._step("pause", lambda t: Engine(t).pause(id, worker, targets, now))

    def resume(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        if not ids:
            return ResumeResult()
        return self._step("resume", lambda t: Engine(t).resume(ids, worker, limit, now))

    def resume_early(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :class:`kubenenc.backends.contract.ResumeEarly`."""
        if not ids:
            return ResumeResult()
        return self._step("resume", lambda t: Engine(t).resume(ids, worker, limit, now, early=True))

    def heartbeat(self, info: WorkerInfo) -> None:
        doc = _worker_doc(info)
        self._retrying(
            "heartbeat",
            lambda c: c.layout.workers.replace_one({"_id": info.id}, doc, upsert=True),
        )

    def unregister_worker(self, worker: WorkerId) -> None:
        self._retrying("unregister_worker", lambda c: c.layout.workers.delete_one({"_id": worker}))

    def workers(self) -> list[WorkerInfo]:
        return self._retrying("workers", self._read_workers)

    def recover(self, now: float, heartbeat_timeout: float, max_lost: int) -> list[InvocationId]:
        if not self.ttl_index:
            self._sweep(now)

        def nothing_to_recover(conn: _Conn) -> bool:
            workers = self._read_workers(conn)
            alive = {w.id for w in workers if w.at >= now - heartbeat_timeout}
            records = conn.replica.records
            return len(alive) == len(workers) and all(
                records[i].worker in alive for i in conn.replica.held
            )

        return self._hand_back_step(
            "recover", nothing_to_recover,
            lambda t: Engine(t).recover(now, heartbeat_timeout, max_lost),
        )  # fmt: skip

    def release_unheld(
        self, worker: WorkerId, held: abc.Collection[InvocationId], now: float, max_lost: int
    ) -> list[InvocationId]:
        def nothing_to_release(conn: _Conn) -> bool:
            records = conn.replica.records
            return all(i in held or records[i].worker != worker for i in conn.replica.held)

        return self._hand_back_step(
            "release_unheld", nothing_to_release,
            lambda t: Engine(t).release_unheld(worker, held, now, max_lost),
        )  # fmt: skip

    def _hand_back_step(
        self,
        what: str,
        nothing: Callable[[_Conn], bool],
        op: Callable[[StepTxn], list[InvocationId]],
    ) -> list[InvocationId]:
        """Run ``op`` as a step unless the replica, current, shows ``nothing`` to hand back:
        recovery runs on every heartbeat of every worker, and a step takes the lock."""

        def idle(conn: _Conn) -> bool:
            with conn.mutex:
                return self._is_current(conn) and nothing(conn)

        if self._retrying(what, idle):
            return []
        return self._step(what, op)

    def _sweep(self, now: float) -> None:
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

        def scan(conn: _Conn) -> list[Doc]:
            layout = conn.layout
            expired = {"final_at": {"$lt": cutoff}}
            if layout.final is not None:
                return list(layout.final.find(expired, fields))
            found: list[Doc] = []
            for inv in layout.shards:
                found.extend(inv.find(expired, fields))
            return found

        expired = self._retrying("sweep", scan)
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

        deleted = self._step("sweep", forget)
        if deleted:
            log.info("deleted %d invocations finished before %s", deleted, cutoff)

    def wait_final(self, ids: Sequence[InvocationId], timeout: float | None) -> bool:
        """Polls with back-off (2 ms to 10 ms, see :data:`_WAIT_MAX`): FerretDB has no
        change streams. Each poll follows the step log into this process's replica, where
        every invocation that is not final is held, so a poll costs one read of a tiny marker
        (plus one per new step) however many ids are waited on."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(dict.fromkeys(ids))
        delay = _WAIT_FIRST
        committed = False
        while True:
            if not committed:
                pending = self._from_replica(
                    "wait_final", functools.partial(_open, pending), relaxed=True,
                    enough=functools.partial(_all_final, pending),
                )  # fmt: skip
                if not pending and self._shards > 1:
                    # Readers take non-final records from the replica and final ones from
                    # it or from <p>_final, written before any later step could start.
                    return True
                if not pending:
                    # Final in the log; now wait until the documents say so too (the
                    # committing step may still be writing them), so reads that follow agree.
                    committed = True
                    pending = list(dict.fromkeys(ids))
            if committed:
                check = functools.partial(self._not_final, ids=pending)
                pending = self._retrying("wait_final", check)
            if not pending:
                return True
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(delay, left))
            else:
                time.sleep(delay)
            delay = min(delay * 1.5, _WAIT_MAX)

    def _from_replica(
        self,
        what: str,
        read: Callable[[Replica], T],
        *,
        relaxed: bool = False,
        enough: Callable[[Replica], bool] | None = None,
    ) -> T:
        """``read`` over this process's replica brought up to the last committed step: from
        the log without the lock, or, when it cannot be (never loaded, or too far behind),
        reloaded in a step that writes nothing. ``relaxed``, ``enough``: for polls, see
        :meth:`_observe`."""

        def attempt(conn: _Conn) -> tuple[bool, T | None]:
            with conn.mutex:
                if self._observe(conn, relaxed=relaxed, enough=enough):
                    return True, read(conn.replica)
            return False, None

        ok, found = self._retrying(what, attempt)
        if ok:
            return found  # type: ignore[return-value]
        return self._step(what, lambda t: read(t.r))

    def _not_final(self, conn: _Conn, ids: list[InvocationId]) -> list[InvocationId]:
        """Those of ``ids`` whose stored document is not final (unknown ones count as final);
        one collection holds every invocation here (MongoDB)."""
        inv = conn.layout.shards[0]
        if len(ids) > _SCAN_ABOVE:
            where = {"_id": {"$in": ids}, "status": {"$nin": _FINAL}}
            open_ids = {d["_id"] for d in inv.find(where, {"_id": 1})}
            return [i for i in ids if i in open_ids]
        found = ((i, inv.find_one({"_id": i}, {"status": 1})) for i in ids)
        return [i for i, d in found if d is not None and d["status"] not in _FINAL]

    def _final_docs(
        self, conn: _Conn, ids: list[InvocationId], projection: Doc | None
    ) -> list[Doc]:
        """Documents of ``ids`` in ``<p>_final`` (FerretDB layout); above :data:`_SCAN_ABOVE`
        ids one scan instead of one ``_id`` lookup each."""
        final = conn.layout.final
        assert final is not None
        if len(ids) > _SCAN_ABOVE:
            return list(final.find({"_id": {"$in": ids}}, projection))
        found = (final.find_one({"_id": i}, projection) for i in ids)
        return [d for d in found if d is not None]

    # -- Records ----------------------------------------------------------------------------
    #
    # On MongoDB every document is current: read them. On FerretDB the records that are not
    # final are read from the replica (their changes may be in the log only) and final ones
    # from the replica's recent finals or from <p>_final.

    def get(self, id: InvocationId) -> InvocationRecord | None:
        if self._shards == 1:
            doc = self._retrying("get", lambda c: c.layout.shards[0].find_one({"_id": id}))
            return doc_to_record(doc) if doc is not None else None

        # A final record never changes: one this process saw in the log needs no read.
        recent = self._conn().replica.recent.get(id)
        if recent is not None:
            return doc_to_record(recent)

        def pick(r: Replica) -> InvocationRecord | Doc | None:
            rec = r.records.get(id)
            return replace(rec, history=list(rec.history)) if rec is not None else r.recent.get(id)

        found = self._from_replica("get", pick)
        if isinstance(found, InvocationRecord):
            return found
        if found is None:
            docs = self._retrying("get", lambda c: self._final_docs(c, [id], None))
            found = docs[0] if docs else None
        return doc_to_record(found) if found is not None else None

    def get_many(self, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]:
        if not ids:
            return []
        unique = list(dict.fromkeys(ids))

        def pick(r: Replica) -> dict[str, InvocationRecord]:
            out: dict[str, InvocationRecord] = {}
            for i in unique:
                rec = r.records.get(i)
                if rec is not None:
                    out[i] = replace(rec, history=[])
                elif (doc := r.recent.get(i)) is not None:
                    out[i] = doc_to_record(doc)
            return out

        if self._shards > 1:
            recent = self._conn().replica.recent
            if all(i in recent for i in unique):  # final: they change no more
                return [doc_to_record(recent[i]) for i in ids]
            found = self._from_replica("get_many", pick)
            rest = [i for i in unique if i not in found]
            if rest:
                docs = self._retrying("get_many", lambda c: self._final_docs(c, rest, None))
                found.update((d["_id"], doc_to_record(d)) for d in docs)
            return [found.get(i) for i in ids]

        def read(conn: _Conn) -> dict[str, InvocationRecord]:
            out: dict[str, InvocationRecord] = {}
            with conn.mutex:
                # Invocations that are not final are in the replica, as of the last step.
                if self._observe(conn):
                    out = pick(conn.replica)
            rest = [i for i in unique if i not in out]
            inv = conn.layout.shards[0]
            if len(rest) > _SCAN_ABOVE:
                docs = list(inv.find({"_id": {"$in": rest}}, {"history": 0}))
            else:
                docs = [d for i in rest if (d := inv.find_one({"_id": i}, {"history": 0}))]
            out.update((d["_id"], doc_to_record(d)) for d in docs)
            return out

        found = self._retrying("get_many", read)
        return [found.get(i) for i in ids]

    def query(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]:
        where: dict[str, Any] = {}
        for field, value in (("app", app), ("task", task), ("status", status)):
            if value is not None:
                where[field] = str(value)

        def read(coll: Collection[Doc]) -> Callable[[_Conn], list[Doc]]:
            return lambda c: list(coll.find(where).sort("seq", -1).limit(limit))

        if self._shards == 1:
            docs = self._retrying("query", lambda c: read(c.layout.shards[0])(c))
            return [doc_to_record(d) for d in docs]

        def pick(r: Replica) -> list[tuple[int, InvocationRecord]]:
            return [
                (r.seq.get(i, 0), replace(rec, history=[]))
                for i, rec in r.records.items()
                if all(str(getattr(rec, k)) == v for k, v in where.items())
            ]

        found = self._from_replica("query", pick)
        finals = self._retrying("query", lambda c: read(_final_of(c.layout))(c))
        found.extend((int(d["seq"]), doc_to_record(d)) for d in finals)
        found.sort(key=lambda pair: pair[0], reverse=True)
        return [rec for _, rec in found[:limit]]

    def counts(
        self, *, app: str | None = None, pool: str | None = None, task: str | None = None
    ) -> Mapping[Status, int]:
        if task is not None:
            return dict(self.counts_by_task(app=app, pool=pool, task=task).get(task, {}))
        where: dict[str, Any] = {}
        if app is not None:
            where["app"] = app
        if pool is not None:
            where["pool"] = pool

        def read(conn: _Conn) -> dict[Status, int] | None:
            if len(conn.layout.shards) > 1:
                # Several collections cannot be scanned at one instant: count the replica,
                # brought up to the last committed step (from the log, no lock needed).
                with conn.mutex:
                    if not self._observe(conn):
                        return None
                    return conn.replica.counts(app, pool)
            rows = conn.layout.shards[0].aggregate(
                [{"$match": where}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
            )
            return {Status(r["_id"]): int(r["n"]) for r in rows}

        found = self._retrying("counts", read)
        if found is None:  # the replica needs a reload, which needs the lock
            return self._step("counts", lambda t: t.r.counts(app, pool))
        return found

    def counts_by_task(
        self, *, app: str | None = None, pool: str | None = None, task: str | None = None
    ) -> Mapping[str, Mapping[Status, int]]:
        """See :meth:`kubenenc.backends.contract.Records.counts_by_task`: one aggregation.

        With several collections, the non-final invocations come from the replica (brought
        up to the last committed step) and the final ones from one aggregation per
        collection: each part is exact, but they are not read at one instant.
        """
        where = {k: v for k, v in (("app", app), ("pool", pool), ("task", task)) if v is not None}
        group = {"_id": {"t": "$task", "s": "$status"}, "n": {"$sum": 1}}

        def add(out: dict[str, dict[Status, int]], task: str, status: Status, n: int) -> None:
            by_status = out.setdefault(task, {})
            by_status[status] = by_status.get(status, 0) + n

        def live(records: Iterable[InvocationRecord]) -> dict[str, dict[Status, int]]:
            out: dict[str, dict[Status, int]] = {}
            for r in records:
                if all(getattr(r, k) == v for k, v in where.items()):
                    add(out, r.task, r.status, 1)
            return out

        def read(conn: _Conn) -> dict[str, dict[Status, int]] | None:
            match: dict[str, Any] = dict(where)
            out: dict[str, dict[Status, int]] = {}
            collections = conn.layout.shards
            if len(collections) > 1:
                with conn.mutex:
                    if not self._observe(conn):
                        return None
                    out = live(conn.replica.records.values())
                match["status"] = {"$in": _FINAL}
                # Final documents live in their own collection in a layout that has one.
                final = getattr(conn.layout, "final", None)
                collections = [final] if final is not None else collections
            for inv in collections:
                for row in inv.aggregate([{"$match": match}, {"$group": group}]):
                    add(out, row["_id"]["t"], Status(row["_id"]["s"]), int(row["n"]))
            return out

        found = self._retrying("counts_by_task", read)
        if found is None:  # the replica needs a reload, which needs the lock
            self._step("counts_by_task", lambda t: None)
            found = self._retrying("counts_by_task", read)
        return found or {}

    # -- Policies ---------------------------------------------------------------------------

    def set_policy(self, name: str, spec: str | None) -> None:
        def write(conn: _Conn) -> None:
            if spec is None:
                conn.layout.policies.delete_one({"_id": name})
            else:
                conn.layout.policies.replace_one({"_id": name}, {"spec": spec}, upsert=True)

        self._retrying("set_policy", write)

    def get_policy(self, name: str) -> str | None:
        doc = self._retrying("get_policy", lambda c: c.layout.policies.find_one({"_id": name}))
        return None if doc is None else str(doc["spec"])

    def policies(self) -> dict[str, str]:
        docs = self._retrying("policies", lambda c: list(c.layout.policies.find()))
        return {d["_id"]: d["spec"] for d in docs}


def _final_of(layout: Layout) -> Collection[Doc]:
    assert layout.final is not None
    return layout.final


def _open(ids: list[InvocationId], replica: Replica) -> list[InvocationId]:
    """Those of ``ids`` that are not final in ``replica``."""
    return [i for i in ids if i in replica.records]


def _all_final(ids: list[InvocationId], replica: Replica) -> bool:
    """Whether none of ``ids`` is held in ``replica`` as not final."""
    records = replica.records
    return not any(i in records for i in ids)


def _worker_doc(info: WorkerInfo) -> Doc:
    return {"pool": info.pool, "slots": info.slots, "running": info.running,
            "paused": info.paused, "at": info.at, "host": info.host}  # fmt: skip


def _worker_from_doc(d: Doc) -> WorkerInfo:
    return WorkerInfo(
        WorkerId(d["_id"]), d["pool"], d["slots"], d["running"], d["paused"], d["at"], d["host"]
    )
