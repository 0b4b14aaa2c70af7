"""The step protocol of the MongoDB backend, as one process runs it (design: ``layout``).

:class:`Steps` runs one contract operation as a *step*: take the lease lock
(:mod:`kubenenc_mongodb.lock`), bring this process's :class:`~kubenenc_mongodb.replica.Replica`
up to the last committed step, compute the operation with the shared Engine over it, commit
its redo (``Layout.commit``), apply the redo to the replica and write its documents. It also
brings the replica up to date *without* the lock for readers (:meth:`Steps.observe`): each
next commit marker, then its redo.

What a fault does: a fault before the commit leaves nothing written, and the step runs again
(:class:`Retry`, or the connection fault the caller retries). A server or connection fault
(an error reply, or none) *during* the commit may or may not have committed: the lock is
left in place, a connection fault's step is remembered (``uncertain``), and the next attempt
settles the version in the log before it runs anything (its result stands if its redo holds
the version). Any fault after the commit leaves the lock in place too, so whoever takes it
next writes that step again first (see "Late commits").

The fence: the log entry of a version is never replaced (a holder whose lease ran out
between its two commit inserts cannot lose a committed step to a successor: see
``Layout.commit``), and catching up checks that the redo it reads carries the step id of the
version's marker, so a log written otherwise (an older kubenenc sharing the prefix) is never
followed silently: the replica is rebuilt from the collections instead.

Late commits (issue 13, session 7)
----------------------------------
A holder checks its lease before it commits and again before it writes the step's
documents, but it may stall longer than its lease between the first check and its commit
(a frozen process, an insert held in the network). Its commit then lands *late*: the lock
may have been taken over meanwhile, so it must not write the documents (they could overwrite
a later step's), and it leaves that to the next holder. Before session 7 nothing made sure
there was one: the successor met the late step as a version already taken (and wrote only
steps it adopted), or the step landed after the successor had let the lock go and the next
holder, which took a free lock, just followed the log past it. Its documents were never
written: final documents, registrations, counters and edges were lost once the step left
the log (spills cover non-final changes only).

The rule now: a lock is deleted only by its holder's clean release, or after a *tombstone*
``t<token>`` is inserted into ``<p>_steps`` (``LeaseLock.bury_holder``: a take-over of an
expired lock, or a process deleting its own lock left in place after a fault). A holder
that finds a tombstone when it catches up (the read that asks "is there a later marker?"
sees it for free, as tombstones sort after every marker) writes the last step again, then
commits a step of its own at the next version (empty, but for a spill that is due: the
*seal*), writing whatever it finds there instead (adopted, or taken by a late commit), and
only then deletes the tombstones it read. A step that meets its version taken while its
lease is valid writes that step too, if it is still the last (:meth:`Steps._write_taken`).

Why that is enough. Call a *tenure* the life of one lock document. A holder commits at
(the version it caught up to) + 1, one step at a time, each written before its next step
begins; a step it could not write leaves the lock in place (``LeaseLock.leave``), and the
tenure does not commit again. So:

1. A tenure that ends by a clean release has written every step it committed and has no
   commit in flight (release follows the step; a commit that failed in a way that may have
   written leaves the lock).
2. A tenure that ends otherwise leaves a tombstone first, which stays until a holder that
   read it has sealed; every tenure after the deletion, whoever began it (the taker, or a
   process whose insert came first), reads it when it catches up, before it commits.
3. Every commit in flight from an earlier tenure targets a version at most L + 1, L being
   the last committed version when the tombstone's reader caught up: that tenure caught
   up before its lock was deleted, and the versions only grow. Versions up to L are taken;
   the seal takes L + 1 or finds the late step there and writes it. So no earlier commit
   lands after the seal, and the only steps that can be committed and not written are L
   (written again first) and L + 1 (written by the seal's holder).

By induction over tenures, when a holder has caught up (and dealt with tombstones), every
step up to its version is written, and only its own steps can follow. So every step is
written before the next one commits on top of it, long before it can leave the log (64
steps later). A holder stalled between its lease check and its document writes (not a
commit) can still write after its successor, but those writes are fenced by the step's
version: they never overwrite or delete a later step's documents (see "Late writes" in
:mod:`kubenenc_mongodb.layout`, with the few documents a late upsert can bring back after
a later delete, and why that is left).

Every method is called with ``mutex`` held but :meth:`Steps.run`, which takes it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord, WorkerInfo
from kubenenc.status import FINAL
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from kubenenc_mongodb.layout import (
    LOG_KEEP,
    PRUNE_EVERY,
    Commit,
    Doc,
    Layout,
    LogGap,
    log_id,
    redo_of,
)  # fmt: skip
from kubenenc_mongodb.lock import Busy, Lease, LeaseLock
from kubenenc_mongodb.replica import Redo, Replica, doc_to_record, worker_from_doc
from kubenenc_mongodb.txn import StepTxn

log = logging.getLogger("kubenenc.mongodb")

T = TypeVar("T")

FINAL_VALUES = [s.value for s in FINAL]
CONFIRMED = 0.1
"""For how long, after the replica was last found current, the polls of idle claims and of
``wait_final`` take "no next marker" to mean "current" without asking whether any later
marker exists (one read per poll instead of two). They could only be wrong when the log moved
on by more than it keeps meanwhile; the poll then sees it at most this much later."""
POLL_SHARE = 0.002
"""Polls of one process (threads waiting for results, the idle claims of its worker) within
this long of a read that found no new step take that answer: however many threads wait,
a process asks the server at most this often."""


class Retry(Exception):
    """The step must start over (lost lock, or another step took its version)."""


class Steps:
    """One process's replica of one prefix, and the steps it runs there."""

    def __init__(self, layout: Layout, lock: LeaseLock, mutex: threading.RLock) -> None:
        self.layout = layout
        self.lock = lock
        self.mutex = mutex
        self.replica = Replica()
        self.uncertain: tuple[int, str, Any] | None = None
        """(version, step id, result) of a step whose commit write failed: maybe committed."""
        self.confirmed = (-1, 0.0)
        """(version, monotonic time) when the marker of that version was last seen."""
        self.marked: tuple[int, str | None] = (-1, None)
        """The last version whose marker a poll saw, and its step id (it need not be read
        again: a marker never changes)."""
        self.polled = (-1, 0.0)
        """(version, monotonic time) when a read last found no step after that version."""
        self.lease: Lease | None = None
        """The lease of the step running now (renewed during it)."""
        self.tombs: list[str] = []
        """The take-over tombstones the last read of markers found (see "Late commits")."""
        self.exposed = False
        """The running step committed and its documents are not written yet: if it stops
        here on any exception, the lock is left in place (``LeaseLock.leave``)."""

    # -- one step ---------------------------------------------------------------------------

    def run(
        self,
        op: Callable[[StepTxn], T],
        linger: Callable[[T], bool] | None,
        wait: float | None = None,
    ) -> T:
        """Run ``op`` as one step (one attempt: :class:`Retry` or a connection fault means
        start over); ``linger(result)``: keep the lock a moment for a next step of this
        process (see :data:`kubenenc_mongodb.lock.LINGER`). ``wait``: at most this many
        seconds for this process's mutex and the lock, else :class:`~.lock.Busy`."""
        until = None if wait is None else time.monotonic() + wait
        if not self.mutex.acquire(timeout=-1 if wait is None else wait):
            raise Busy
        try:
            self.lease = lease = self.lock.take(until)
            done: tuple[T] | None = None
            held = True
            try:
                result, held = self._locked_step(op)
                done = (result,)
                return result
            finally:
                lease, self.lease = self.lease or lease, None
                if self.exposed:
                    self.exposed = False
                    self.lock.leave(lease)
                keep = done is not None and held and linger is not None and linger(done[0])
                self.lock.end(lease, linger=keep)
        finally:
            self.mutex.release()

    def _keep_lease(self) -> Lease:
        """The step's lease, renewed if half of it is gone (a long catch-up); :class:`Retry`
        if it was lost or ran out on this process's clock."""
        assert self.lease is not None
        renewed = self.lock.renew(self.lease)
        if renewed is None:
            self.replica.version = -1
            raise Retry
        self.lease = renewed
        return renewed

    def _locked_step(self, op: Callable[[StepTxn], T]) -> tuple[T, bool]:
        """The step under the lock (``self.lease``): its result, and whether the lock is
        still held (False: another process committed this step's redo after taking the
        lock over)."""
        layout = self.layout
        lease = self._keep_lease()
        settled = self._prepare(lease)
        if settled is not None:
            return settled[0], True
        version = self.replica.version + 1
        txn = StepTxn(self.replica, self.fetch, self.read_workers, version)
        result = op(txn)
        redo = txn.redo()
        if not redo:
            return result, True
        if layout.held is not None and version % PRUNE_EVERY == 0:
            redo.extend(self.replica.spill(version - LOG_KEEP, txn.dirty))  # see layout
        lease = self._keep_lease()
        step_id = uuid.uuid4().hex
        try:
            outcome = layout.commit(version, step_id, redo)
        except (ConnectionFailure, OperationFailure) as exc:
            # Maybe written: keep the lock, and on retry look at the log to know. (Errors
            # raised before anything was sent, such as a redo too large, let it go.)
            if isinstance(exc, ConnectionFailure):
                self.uncertain = (version, step_id, result)
            self.lock.leave(lease)
            self.replica.version = -1
            raise
        self.exposed = True
        if outcome.kind is Commit.ADOPTED:
            assert outcome.adopted is not None
            self._write(outcome.adopted, version, replay=True)
        elif outcome.kind is Commit.TAKEN:
            self._write_taken(version)
        if outcome.kind in (Commit.TAKEN, Commit.ADOPTED):
            self.exposed = False
            self.replica.version = -1
            raise Retry
        self.replica.apply(redo, version, fresh=txn.recs)
        self.replica.version = version
        self.confirmed = (version, time.monotonic())
        self.exposed = False
        if outcome.kind is Commit.DONE_FOR_US:
            # Our lease ran out before our marker, and the process that took the lock over
            # committed our redo and wrote it: the result stands, the lock is not ours.
            return result, False
        self._write(redo, version, replay=False)
        return result, True

    def _prepare(self, lease: Lease) -> tuple[Any] | None:
        """Before a step computes: catch up (unless the lock was kept since our last step),
        deal with a take-over, and settle a step whose commit was uncertain: its result, if
        it was committed after all."""
        if not lease.kept or self.replica.version < 0 or self.uncertain is not None:
            self.catch_up()
            if self.tombs:
                self._after_take_over()
        if self.uncertain is None:
            return None
        # Forgotten only once settled: a fault while settling or catching up must not turn
        # a committed step into one that runs again (a second register of the same ids, a
        # second pause, ...); the next attempt settles it again.
        version, step_id, result = self.uncertain
        settled = self._settle(version)
        self.catch_up()
        self.uncertain = None
        return (result,) if settled == step_id else None

    def _write(self, redo: Redo, version: int, *, replay: bool) -> bool:
        """Write the documents of committed step ``version``; on a fault, or when the lease
        ran out on this process's clock (another process may be writing later steps by
        now), leave the lock in place so that whoever takes it next writes them again
        (False)."""
        assert self.lease is not None
        if not self.lock.valid(self.lease):
            log.warning("step %d committed, but the lease ran out before its writes; the "
                        "next holder of the lock writes them", version)  # fmt: skip
            self.lock.leave(self.lease)
            return False
        try:
            self.layout.apply(redo, version, replay=replay)
            self.layout.prune_log(version)
        except PyMongoError:
            log.exception("step %d committed but not fully written; it will be replayed",
                          version)  # fmt: skip
            self.lock.leave(self.lease)
            return False
        return True

    def _write_taken(self, version: int) -> bool:
        """Our commit met ``version`` taken while we hold the lock: only a holder whose lease
        ran out can have committed it (see "Late commits"), and it will not write it. Write
        it, if it is still the last step (else it is not ours to write: a later holder
        dealt with it)."""
        layout = self.layout
        entry = layout.log_entry(version)
        if entry is None or layout.latest() != version:
            return False
        log.warning("step %d was committed by a holder whose lease had run out; writing it",
                    version)  # fmt: skip
        return self._write(redo_of(entry), version, replay=True)

    def _after_take_over(self) -> None:
        """The lock was taken over from a holder that may have committed without writing
        (the tombstones in :attr:`tombs`): write the last step again, then seal the next
        version with a step of our own (empty but for a due spill), so that no commit
        of an earlier holder can land after it; see "Late commits". Then bury them."""
        tombs, self.tombs = self.tombs, []
        layout, rep = self.layout, self.replica
        last = rep.version
        entry = layout.log_entry(last) if last > 0 else None
        if entry is not None:
            log.info("writing step %d again after a lock take-over", last)
            if not self._write(redo_of(entry), last, replay=True):
                raise Retry
        version = last + 1
        redo: Redo = []
        if layout.held is not None and version % PRUNE_EVERY == 0:
            redo = rep.spill(version - LOG_KEEP, {})
        lease = self._keep_lease()
        try:
            outcome = layout.commit(version, uuid.uuid4().hex, redo)
        except (ConnectionFailure, OperationFailure):
            self.lock.leave(lease)  # maybe committed: the tombstones stay for the next holder
            self.replica.version = -1
            raise
        self.exposed = True
        if outcome.kind is Commit.DONE:
            rep.apply(redo, version)
            rep.version = version
            self.confirmed = (version, time.monotonic())
            written = self._write(redo, version, replay=False)
        elif outcome.kind is Commit.ADOPTED:
            assert outcome.adopted is not None
            written = self._write(outcome.adopted, version, replay=True)
        else:
            written = self._write_taken(version)
        if not written:
            self.replica.version = -1
            raise Retry
        self.exposed = False
        if outcome.kind is not Commit.DONE:
            self.catch_up()
            self.tombs = []  # any found now are of a take-over of our own lease: not ours
        layout.bury(tombs)

    def _settle(self, version: int) -> str | None:
        """The step id that holds ``version`` in the log now (None: none), after committing
        a redo logged there without a marker (and writing it)."""
        holder, adopted = self.layout.settle(version)
        if adopted is not None:
            self._write(adopted, version, replay=True)
        return holder

    # -- following the log without the lock -------------------------------------------------

    def is_current(self) -> bool:
        """Whether the replica has every committed step: one read of the next marker (and,
        past :data:`CONFIRMED`, of its own); none while this process keeps the lock. Only
        for the shortcuts of idle claims and recoveries: a step catches up under the lock."""
        v = self.replica.version
        if v >= 0 and self.lock.holds_kept():
            return True  # nobody else can have committed since our last step
        if v < 0:
            return False
        if self._polled_recently():
            return True
        if self._has_marker(v + 1):
            return False
        self.polled = (v, time.monotonic())
        return self._still_marked(relaxed=True)

    def _polled_recently(self) -> bool:
        """Whether a read found no step after the replica's version just now (see
        :data:`POLL_SHARE`)."""
        version, at = self.polled
        return version == self.replica.version and time.monotonic() - at < POLL_SHARE

    def _has_marker(self, version: int) -> bool:
        """Whether step ``version`` is committed (a marker seen once is not read again: it
        stays committed, and if it was pruned since, its redo is gone too)."""
        if self.marked[0] == version:
            return True
        marker = self.layout.marker(version)
        if marker is None:
            return False
        self.marked = (version, marker.get("step"))
        return True

    def _still_marked(self, *, relaxed: bool) -> bool:
        """With no marker for the step after the replica's version: whether it is current
        (no later step is committed) rather than so far behind that the next marker was
        pruned already. Asked as "is any later marker there?", not "is my own marker still
        there?": a server deletes the pruned markers in no promised order (one
        ``delete_many``), so while a prune runs a reader could find its next marker gone and
        its own still there, and take a replica many steps behind for current (issue 13: a
        task process read its calls as PENDING long after they ended)."""
        v = self.replica.version
        seen_at = self.confirmed[1] if self.confirmed[0] == v else -CONFIRMED
        if relaxed and time.monotonic() - seen_at < CONFIRMED:
            return True
        marked, self.tombs = self.layout.after(v)
        if marked:
            return False
        self.confirmed = (v, time.monotonic())
        return True

    def observe(
        self, *, relaxed: bool = False, enough: Callable[[Replica], bool] | None = None
    ) -> bool:
        """Bring the replica up to the last committed step from the log alone (no lock),
        reading each next marker, then its redo (on FerretDB one ``_id`` lookup is cheaper
        than any range query); False when it cannot (never loaded, so far behind that the
        log lost steps, or a redo that is not the one its marker committed: reload under
        the lock). ``relaxed``: see :data:`CONFIRMED`. ``enough``: stop at the first step
        after which it holds (the replica is then as of that step, not necessarily the
        last)."""
        rep, layout = self.replica, self.layout
        if rep.version < 0:
            return False
        if relaxed and self._polled_recently():
            return True
        while self._has_marker(rep.version + 1):
            n = rep.version + 1
            doc = layout.log(n).find_one({"_id": log_id(n)})
            if doc is None:  # pruned meanwhile: far behind
                return False
            if doc.get("step") != self.marked[1]:
                log.error(
                    "the log entry of step %d is not the one its marker committed "
                    "(a writer that replaces log entries shares this prefix?)",
                    n,
                )
                return False
            rep.apply(redo_of(doc), n)
            rep.version = n
            self.confirmed = (n, time.monotonic())
            if enough is not None and enough(rep):
                return True
        # No next marker: current, or the next marker was pruned meanwhile (a prune can
        # run while this loop reads, and it deletes markers in no promised order). Having
        # applied steps here proves nothing: ask whether a later one exists (issue 13).
        current = self._still_marked(relaxed=relaxed)
        if current:
            self.polled = (rep.version, time.monotonic())
        return current

    def catch_up(self) -> None:
        """Bring the replica up to the last committed step: from the log, or reloaded; and
        read the take-over tombstones into :attr:`tombs`."""
        self.tombs = []
        if not self.observe():
            try:
                self._reload(self.layout.latest())
            except LogGap:
                self.replica.version = -1
                if self.lease is not None and not self.lock.valid(self.lease):
                    raise Retry from None  # the log moved on after our lease ran out
                raise
            self.confirmed = (self.replica.version, time.monotonic())
            self.tombs = self.layout.tombstones()

    # -- reloading from the collections -----------------------------------------------------

    def _reload(self, version: int) -> None:
        """Rebuild the replica from the collections as of ``version``, the last committed
        step (under the lock, so every step up to it is written). On FerretDB the changes
        still held in the log only are replayed over the documents (see ``layout``)."""
        rep = self.replica
        rep.reset()
        layout = self.layout
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
        done = self._load_finals()
        for inv in layout.shards:
            self._load_own(inv, done, later)
            if self.lease is not None:
                self._keep_lease()  # a long reload must not outlast the lease
        if layout.held is not None:
            for doc in layout.held.find():
                if doc["_id"] not in done:
                    if doc["_id"] not in later:
                        rep.load_record(doc)
                    rep.in_held.add(doc["_id"])
        self._load_index_data()
        if layout.held is not None:
            # Final or deleted since (retention): the documents say all there is to say.
            skip = done | {i for _, redo in window for op in redo if op["c"] == "forget"
                           for i in op["ids"]}  # fmt: skip
            for v, redo in window:
                rep.apply(redo, v, skip=skip)
        rep.version = version

    def _load_index_data(self) -> None:
        """Running slots, registration keys, wait edges and dependencies, into the replica."""
        layout, rep = self.layout, self.replica
        for doc in layout.running.find():
            rep.set_running(doc["_id"], doc["n"])
        for doc in layout.registrations.find():
            rep.set_registration(doc["_id"], doc["holder"])
        for doc in layout.edges.find():
            rep.add_edge(doc["w"], doc["t"])
        for doc in layout.deps.find():
            rep.add_dependency(doc["d"], doc["e"])

    def _load_own(self, inv: Collection[Doc], done: set[str], later: set[str]) -> None:
        """Load the own documents of one collection, but those of ``done`` (final) and of
        ``later`` (set by the replay of the log that follows)."""
        rep = self.replica
        # On FerretDB own documents are never final (and carry no status).
        where = {} if self.layout.final is not None else {"status": {"$nin": FINAL_VALUES}}
        for doc in inv.find(where):
            if doc["_id"] not in done and doc["_id"] not in later:
                rep.load_record(doc)
        if self.layout.final is None:
            group = {"_id": {"a": "$app", "p": "$pool", "s": "$status"}, "n": {"$sum": 1}}
            match = {"$match": {"status": {"$in": FINAL_VALUES}}}
            for row in inv.aggregate([match, {"$group": group}]):
                key = row["_id"]
                rep.count_final(key["a"], key["p"], key["s"], int(row["n"]))

    def _load_finals(self) -> set[str]:
        """Count the documents of the final collection into the replica; their ids (whose
        own documents were left as they were when they finished)."""
        done: set[str] = set()
        if self.layout.final is not None:
            for doc in self.layout.final.find({}, {"app": 1, "pool": 1, "status": 1}):
                done.add(doc["_id"])
                self.replica.count_final(doc["app"], doc["pool"], doc["status"], 1)
        return done

    # -- what a step reads beside the replica -----------------------------------------------

    def fetch(self, id: InvocationId) -> InvocationRecord | None:
        """The stored invocation, for steps: the replica holds every one that is not final,
        so this one is final (or unknown)."""
        doc = self.replica.recent.get(id)
        final = self.layout.final
        if doc is None and final is not None:
            doc = final.find_one({"_id": id})
        elif doc is None:
            doc = self.layout.shard(id).find_one({"_id": id})
        return doc_to_record(doc) if doc is not None else None

    def read_workers(self) -> list[WorkerInfo]:
        """The stored heartbeats (written directly, outside steps)."""
        return [worker_from_doc(d) for d in self.layout.workers.find()]
