"""The process-local replica of the coordination state, and one step's Txn over it.

Nothing here talks to the server: :class:`Replica` is plain dicts rebuilt from documents and
kept current by applying redo records (see :mod:`kubenenc_mongodb.layout`), and
:class:`StepTxn` is the :class:`kubenenc.backends.engine.Txn` that the shared
:class:`~kubenenc.backends.engine.Engine` runs one contract operation against. The Txn reads
through an overlay (copies, so a step that raises leaves the replica untouched) and, at the
end, turns the overlay into one redo record: the documents to write and delete.

The replica holds every *non-final* invocation and the index data (running slots,
registration keys, wait edges, declared dependencies). Final invocations are left out (they
change no more and there are many); the Txn reads them from the server through ``fetch``.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kubenenc.backends.codec import dumps_record, loads_record, record_from_dict
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import InvocationRecord, WorkerInfo
from kubenenc.status import Status

Redo = list[dict[str, Any]]
"""One committed step: ``{"c": kind, ...}`` operations, applied in order, idempotent."""

SEQ_STRIDE = 1_000_000

RECENT_FINALS = 20_000
"""How many of the last final documents seen in the log a process keeps (see
:attr:`Replica.recent`)."""
"""Claim order among equals is creation order: ``seq = version * SEQ_STRIDE + n``."""

_HELD = (Status.RUNNING, Status.PAUSED)
_FINAL_VALUES = frozenset(s.value for s in Status if s.is_final)


def _copy(rec: InvocationRecord) -> InvocationRecord:
    return dataclasses.replace(rec, history=list(rec.history))


def doc_to_record(doc: dict[str, Any]) -> InvocationRecord:
    """An ``invocations`` document back to a record (``_id`` is the id)."""
    if "j" in doc:
        return loads_record(doc["j"])
    # Written before documents carried the record as JSON text.
    data = dict(doc)
    data["id"] = data.pop("_id")
    data["history"] = [[h["s"], h["at"], h["w"], h["r"]] for h in data.get("history", ())]
    return record_from_dict(data)


def record_doc(rec: InvocationRecord, seq: int) -> dict[str, Any]:
    """The ``invocations`` document of ``rec`` (``final_at`` is added by the writer).

    The record itself is JSON text (``j``); beside it only the fields that queries, indexes
    and sorts use. FerretDB's cost to store or scan a document grows with its number of
    fields (it keeps a type schema per field), so this keeps every write and scan cheap;
    ``_id`` first, as FerretDB takes a slow path (tens of ms) for a document where it is not.
    """
    return {
        "_id": rec.id, "app": rec.app, "task": rec.task, "pool": rec.pool,
        "status": rec.status.value, "priority": rec.priority, "waiters": rec.waiters,
        "worker": rec.worker, "updated_at": rec.updated_at, "seq": seq,
        "j": dumps_record(rec),
    }  # fmt: skip


class Replica:
    """Non-final invocations and index data as of log version ``version`` (-1: not loaded)."""

    def __init__(self) -> None:
        self.version = -1
        self.records: dict[InvocationId, InvocationRecord] = {}
        self.seq: dict[InvocationId, int] = {}
        self.pending: dict[str, set[InvocationId]] = {}
        self.queues: dict[str, list[tuple[int, int, int, InvocationId]]] = {}
        """The PENDING invocations of each pool in claim order (more waiters, higher
        priority, older first), so a claim reads only the head."""
        self.queued: dict[InvocationId, tuple[int, int, int, InvocationId]] = {}
        self.held: set[InvocationId] = set()
        self.running: dict[str, int] = {}
        self.registrations: dict[str, InvocationId] = {}
        self.targets: dict[InvocationId, set[InvocationId]] = {}
        self.waiters: dict[InvocationId, set[InvocationId]] = {}
        self.dependents: dict[InvocationId, set[InvocationId]] = {}
        self.finals: dict[tuple[str, str, str], int] = {}
        """Final invocations still stored, by (app, pool, status): with the non-final
        records, exact counts at ``version`` without reading the collections."""
        self.in_held: set[InvocationId] = set()
        """Invocations that have a document in ``<p>_held`` (FerretDB layout; it may be
        older than the record here, see :attr:`changed`)."""
        self.changed: dict[InvocationId, int] = {}
        """Invocations that are not final and changed since their last document was written
        (FerretDB layout: such changes live in the log only), with the version of the
        change; a step spills those about to leave the log (see ``layout``)."""
        self.recent: OrderedDict[InvocationId, dict[str, Any]] = OrderedDict()
        """The documents of the last :data:`RECENT_FINALS` invocations this process saw
        become final in the log (committed, so true whether or not their writes are done):
        waiting for results and reading them needs no read of the collections."""

    def reset(self) -> None:
        """Forget everything (before a full reload)."""
        self.__init__()  # type: ignore[misc]

    # -- loading ----------------------------------------------------------------------------

    def load_record(self, doc: dict[str, Any], rec: InvocationRecord | None = None) -> None:
        """Take in one ``invocations`` document (dropping it when final); ``rec``: the
        record it was made from, when at hand (saves decoding it; it must not be changed
        afterwards: steps change copies)."""
        status = doc.get("status")
        if status is None or (rec is None and status not in _FINAL_VALUES):
            rec = doc_to_record(doc)
            status = rec.status.value
        if status in _FINAL_VALUES:
            self._drop(doc["_id"], status)
            return
        assert rec is not None
        self._unindex(rec.id)
        self.index(rec, int(doc.get("seq", 0)))

    def _drop(self, id: InvocationId, status: str) -> None:
        """Forget an invocation that became final (counting it)."""
        self._unindex(id)
        self.in_held.discard(id)
        old = self.records.pop(id, None)
        if old is not None:
            self.count_final(old.app, old.pool, status, 1)
        self.seq.pop(id, None)
        self.dependents.pop(id, None)

    def index(self, rec: InvocationRecord, seq: int) -> None:
        """Hold ``rec`` (not final; its old version was unindexed) in claim order."""
        self.records[rec.id] = rec
        self.seq[rec.id] = seq
        if rec.status is Status.PENDING:
            self.pending.setdefault(rec.pool, set()).add(rec.id)
            key = (-rec.waiters, -rec.priority, seq, rec.id)
            self.queued[rec.id] = key
            bisect.insort(self.queues.setdefault(rec.pool, []), key)
        if rec.status in _HELD and rec.worker is not None:
            self.held.add(rec.id)

    def _apply_record(
        self,
        op: dict[str, Any],
        version: int,
        skip: set[str] | None,
        fresh: dict[InvocationId, InvocationRecord | None] | None,
    ) -> None:
        doc = op["doc"]
        id = doc["_id"]
        if skip is not None and id in skip:
            return
        final = doc["status"] in _FINAL_VALUES
        if final or op.get("new"):
            self.changed.pop(id, None)
        else:
            self.changed[id] = version
        if final:
            self.remember_final(doc)
        if op.get("new") and final:
            # Registered straight to FAILED: never held here, only counted.
            self.count_final(doc["app"], doc["pool"], doc["status"], 1)
        else:
            self.load_record(doc, fresh.get(id) if fresh is not None else None)

    def spill(self, horizon: int, exclude: dict[InvocationId, None]) -> Redo:
        """The redo operation writing the documents of invocations whose last change is
        before ``horizon`` (and will leave the log), but those of ``exclude`` (written by
        this step anyway); empty when there are none."""
        docs = []
        for id, v in self.changed.items():
            if v < horizon and id not in exclude:
                rec = self.records[id]
                doc = record_doc(rec, self.seq.get(id, 0))
                docs.append({"_id": id, "status": doc["status"], "seq": doc["seq"], "j": doc["j"]})
        return [{"c": "spill", "docs": docs}] if docs else []

    def remember_final(self, doc: dict[str, Any]) -> None:
        """Keep a final document in :attr:`recent`, dropping the oldest past the bound."""
        recent = self.recent
        recent[doc["_id"]] = doc
        if len(recent) > RECENT_FINALS:
            recent.popitem(last=False)

    def _unindex(self, id: InvocationId) -> None:
        old = self.records.get(id)
        if old is None:
            return
        ids = self.pending.get(old.pool)
        if ids is not None and id in ids:
            ids.discard(id)
            queue = self.queues[old.pool]
            del queue[bisect.bisect_left(queue, self.queued.pop(id))]
            if not ids:
                del self.pending[old.pool]
                del self.queues[old.pool]
        self.held.discard(id)

    def count_final(self, app: str, pool: str, status: str, n: int) -> None:
        key = (app, pool, status)
        self.finals[key] = self.finals.get(key, 0) + n
        if self.finals[key] <= 0:
            del self.finals[key]

    def counts(self, app: str | None, pool: str | None) -> dict[Status, int]:
        """Invocations by status, as of ``version``."""
        out: dict[Status, int] = {}
        for rec in self.records.values():
            if (app is None or rec.app == app) and (pool is None or rec.pool == pool):
                out[rec.status] = out.get(rec.status, 0) + 1
        for (a, p, status), n in self.finals.items():
            if (app is None or a == app) and (pool is None or p == pool):
                out[Status(status)] = out.get(Status(status), 0) + n
        return out

    def set_running(self, key: str, n: int) -> None:
        if n > 0:
            self.running[key] = n
        else:
            self.running.pop(key, None)

    def set_registration(self, key: str, holder: InvocationId | None) -> None:
        if holder is None:
            self.registrations.pop(key, None)
        else:
            self.registrations[key] = holder

    def add_edge(self, waiter: InvocationId, target: InvocationId) -> None:
        self.targets.setdefault(waiter, set()).add(target)
        self.waiters.setdefault(target, set()).add(waiter)

    def remove_edge(self, waiter: InvocationId, target: InvocationId) -> None:
        found = self.targets.get(waiter)
        if found is not None:
            found.discard(target)
            if not found:
                del self.targets[waiter]
        back = self.waiters.get(target)
        if back is not None:
            back.discard(waiter)
            if not back:
                del self.waiters[target]

    def add_dependency(self, dependency: InvocationId, dependent: InvocationId) -> None:
        self.dependents.setdefault(dependency, set()).add(dependent)

    def claimable(self, pool: str, now: float) -> bool:
        """Whether a claim on ``pool`` could take anything (a PENDING invocation that is due
        and whose running key has a free slot)."""
        for id in self.pending.get(pool, ()):
            rec = self.records[id]
            if rec.not_before > now:
                continue
            key, limit = rec.running_key, rec.running_limit
            if key is None or limit is None or self.running.get(key, 0) < limit:
                return True
        return False

    # -- redo -------------------------------------------------------------------------------

    def apply(
        self,
        redo: Redo,
        version: int,
        skip: set[str] | None = None,
        fresh: dict[InvocationId, InvocationRecord | None] | None = None,
    ) -> None:
        """Apply committed step ``version`` (the same redo that was written to the server).

        ``skip``: replaying the log over freshly loaded documents, where the invocations in
        ``skip`` are final and counted already (and so are the deletions of ``forget``).
        ``fresh``: the records the redo was made from (the committing process has them).
        """
        for op in redo:
            kind = op["c"]
            if kind == "inv":
                self._apply_record(op, version, skip, fresh)
            elif kind == "spill":
                for doc in op["docs"]:
                    self.in_held.add(doc["_id"])
                    self.changed.pop(doc["_id"], None)
            elif kind == "forget" and skip is not None:
                for id in op["ids"]:
                    self.recent.pop(id, None)
            elif kind == "run":
                self.set_running(op["id"], op["n"])
            elif kind == "reg":
                self.set_registration(op["id"], op["holder"])
            else:
                self._apply_graph(op)

    def _apply_graph(self, op: dict[str, Any]) -> None:
        kind = op["c"]
        if kind == "edge":
            for target in op["add"]:
                self.add_edge(op["w"], target)
            for target in op["rm"]:
                self.remove_edge(op["w"], target)
        elif kind == "dep":
            for dependent in op["add"]:
                self.add_dependency(op["d"], dependent)
            if op.get("drop"):
                self.dependents.pop(op["d"], None)
        elif kind == "forget":
            for c in op["counts"]:  # sub-documents: FerretDB rejects nested arrays
                self.count_final(c["app"], c["pool"], c["status"], -c["n"])
            for id in op["ids"]:
                self.recent.pop(id, None)
        # "wrk" (a forgotten worker) changes nothing held here


class StepTxn:
    """A :class:`~kubenenc.backends.engine.Txn` over a :class:`Replica`, buffering writes.

    ``fetch`` reads a record that the replica does not hold (final or unknown) from the
    server; ``workers`` reads the stored heartbeats; ``version`` is the log version this step
    will commit as (it orders new invocations).
    """

    def __init__(
        self,
        replica: Replica,
        fetch: Callable[[InvocationId], InvocationRecord | None],
        workers: Callable[[], list[WorkerInfo]],
        version: int,
    ) -> None:
        self.r = replica
        self._fetch = fetch
        self._workers = workers
        self._seq_base = version * SEQ_STRIDE
        self._new_count = 0
        self.recs: dict[InvocationId, InvocationRecord | None] = {}
        self.dirty: dict[InvocationId, None] = {}
        self.new_seq: dict[InvocationId, int] = {}
        self.running: dict[str, int] = {}
        self.regs: dict[str, InvocationId | None] = {}
        self.targets: dict[InvocationId, set[InvocationId]] = {}
        self.deps: dict[InvocationId, set[InvocationId]] = {}
        self.gone_workers: dict[WorkerId, float] = {}
        self.forgotten: list[dict[str, Any]] = []
        """Final invocations to delete (retention): ``{_id, app, pool, status}``."""
        self._seen_at: dict[WorkerId, float] = {}

    # -- records ----------------------------------------------------------------------------

    def get(self, id: InvocationId) -> InvocationRecord | None:
        if id in self.recs:
            return self.recs[id]
        held = self.r.records.get(id)
        rec = _copy(held) if held is not None else self._fetch(id)
        self.recs[id] = rec
        return rec

    def put(self, rec: InvocationRecord, *, new: bool = False) -> None:
        if new:
            self.new_seq[rec.id] = self._seq_base + self._new_count
            self._new_count += 1
        self.recs[rec.id] = rec
        self.dirty[rec.id] = None

    def _current(self, id: InvocationId) -> InvocationRecord | None:
        if id in self.recs:
            return self.recs[id]
        return self.r.records.get(id)

    def _seq(self, id: InvocationId) -> int:
        return self.new_seq[id] if id in self.new_seq else self.r.seq.get(id, 0)

    def candidates(
        self,
        pool: str,
        now: float,
        skip: int,
        count: int,
        exclude: frozenset[str] = frozenset(),
    ) -> list[InvocationRecord]:
        need = skip + count
        keyed: list[tuple[int, int, int, InvocationId]] = []
        # The head of the replica's queue, but records this step changed...
        records = self.r.records
        for key in self.r.queues.get(pool, ()):
            if len(keyed) >= need:
                break
            id = key[3]
            if id in self.recs:
                continue
            held = records[id]
            if held.not_before <= now and held.running_key not in exclude:
                keyed.append(key)
        # ...which are taken as they are now.
        for id, cur in self.recs.items():
            if (
                cur is not None
                and cur.status is Status.PENDING
                and cur.pool == pool
                and cur.not_before <= now
                and cur.running_key not in exclude
            ):
                keyed.append((-cur.waiters, -cur.priority, self._seq(id), id))
        best = heapq.nsmallest(need, keyed)[skip:]
        out = []
        for *_, id in best:
            rec = self.get(id)
            assert rec is not None
            out.append(rec)
        return out

    def held(self) -> list[tuple[InvocationId, WorkerId]]:
        ids = set(self.r.held) | set(self.recs)
        out = []
        for id in ids:
            rec = self._current(id)
            if rec is not None and rec.status in _HELD and rec.worker is not None:
                out.append((id, rec.worker))
        return out

    # -- running slots and registration keys ------------------------------------------------

    def running_count(self, key: str) -> int:
        return self.running[key] if key in self.running else self.r.running.get(key, 0)

    def add_running(self, key: str, delta: int) -> None:
        self.running[key] = self.running_count(key) + delta

    def registration_holder(self, key: str) -> InvocationId | None:
        return self.regs[key] if key in self.regs else self.r.registrations.get(key)

    def set_registration(self, key: str, id: InvocationId | None) -> None:
        self.regs[key] = id

    # -- wait edges and dependencies --------------------------------------------------------

    def targets_of(self, waiter: InvocationId) -> list[InvocationId]:
        if waiter in self.targets:
            return list(self.targets[waiter])
        return list(self.r.targets.get(waiter, ()))

    def add_edge(self, waiter: InvocationId, target: InvocationId) -> None:
        self.targets[waiter] = {*self.targets_of(waiter), target}

    def remove_edges(self, waiter: InvocationId) -> None:
        self.targets[waiter] = set()

    def waiters_of(self, target: InvocationId) -> list[InvocationId]:
        found = set(self.r.waiters.get(target, ()))
        for waiter, targets in self.targets.items():
            if target in targets:
                found.add(waiter)
            else:
                found.discard(waiter)
        return list(found)

    def add_dependency(self, dependent: InvocationId, dependency: InvocationId) -> None:
        self.deps.setdefault(dependency, set()).add(dependent)

    def dependents_of(self, dependency: InvocationId) -> list[InvocationId]:
        return list(self.r.dependents.get(dependency, set()) | self.deps.get(dependency, set()))

    # -- workers ----------------------------------------------------------------------------

    def put_worker(self, info: WorkerInfo) -> None:
        raise NotImplementedError("heartbeats are written directly, outside steps")

    def delete_worker(self, worker: WorkerId) -> None:
        self.gone_workers[worker] = self._seen_at.get(worker, 0.0)

    def all_workers(self) -> list[WorkerInfo]:
        found = [w for w in self._workers() if w.id not in self.gone_workers]
        self._seen_at.update((w.id, w.at) for w in found)
        return found

    # -- the result -------------------------------------------------------------------------

    def redo(self) -> Redo:
        """Everything this step wrote, as idempotent operations (empty: nothing changed)."""
        out: Redo = []
        finished: set[InvocationId] = set()
        for id in self.dirty:
            rec = self.recs[id]
            assert rec is not None
            out.append({"c": "inv", "new": id in self.new_seq,
                        "was_held": id in self.r.in_held,
                        "doc": record_doc(rec, self._seq(id))})  # fmt: skip
            if rec.is_final:
                finished.add(id)
        out.extend(self._index_ops())
        out.extend(self._dependency_ops(finished))
        if self.forgotten:
            tally: dict[tuple[str, str, str], int] = {}
            for d in self.forgotten:
                key = (d["app"], d["pool"], d["status"])
                tally[key] = tally.get(key, 0) + 1
            out.append({"c": "forget", "ids": [d["_id"] for d in self.forgotten],
                        "counts": [{"app": a, "pool": p, "status": st, "n": n}
                                   for (a, p, st), n in tally.items()]})  # fmt: skip
        # A worker is forgotten only if it did not beat again meanwhile (``at`` unchanged).
        out.extend({"c": "wrk", "id": w, "at": at} for w, at in self.gone_workers.items())
        return out

    def _index_ops(self) -> Redo:
        out: Redo = []
        for key, n in self.running.items():
            if n != self.r.running.get(key, 0):
                out.append({"c": "run", "id": key, "n": n})
        for key, holder in self.regs.items():
            if holder != self.r.registrations.get(key):
                out.append({"c": "reg", "id": key, "holder": holder})
        for waiter, targets in self.targets.items():
            before = self.r.targets.get(waiter, set())
            add, rm = sorted(targets - before), sorted(before - targets)
            if add or rm:
                out.append({"c": "edge", "w": waiter, "add": add, "rm": rm})
        return out

    def _dependency_ops(self, finished: set[InvocationId]) -> Redo:
        out: Redo = []
        for dependency, dependents in self.deps.items():
            if dependency not in finished:
                out.append({"c": "dep", "d": dependency, "add": sorted(dependents), "rm": []})
        for dependency in finished:
            # Dependents of a final invocation were settled by this step; drop the index.
            stale = self.r.dependents.get(dependency, set()) | self.deps.get(dependency, set())
            if stale:
                out.append({"c": "dep", "d": dependency, "add": [], "rm": sorted(stale),
                            "drop": True})  # fmt: skip
        return out
