"""The process-local replica of the coordination state, and the documents it is made of.

Nothing here talks to the server: :class:`Replica` is plain dicts rebuilt from documents and
kept current by applying redo records (see :mod:`kubenenc_mongodb.layout`); one step's
changes are computed over it by :class:`kubenenc_mongodb.txn.StepTxn`. The document codecs
of invocations and heartbeats live here too, beside the only reader of the former.

The replica holds every *non-final* invocation and the index data (running slots,
registration keys, wait edges, declared dependencies). Final invocations are left out (they
change no more and there are many); a step reads them from the server.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from typing import Any

from kubenenc.backends.codec import dumps_record, loads_record, record_from_dict
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import InvocationRecord, WorkerInfo
from kubenenc.status import Status

Redo = list[dict[str, Any]]
"""One committed step: ``{"c": kind, ...}`` operations, applied in order, idempotent."""

SEQ_STRIDE = 1_000_000
"""Claim order among equals is creation order: ``seq = version * SEQ_STRIDE + n``."""

RECENT_FINALS = 20_000
"""How many of the last final documents seen in the log a process keeps (see
:attr:`Replica.recent`)."""

HELD = (Status.RUNNING, Status.PAUSED)
"""The statuses of invocations that a worker holds."""
_FINAL_VALUES = frozenset(s.value for s in Status if s.is_final)


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


def worker_doc(info: WorkerInfo) -> dict[str, Any]:
    """The ``<p>_workers`` document of a heartbeat (``_id`` is the worker id)."""
    return {"pool": info.pool, "slots": info.slots, "running": info.running,
            "paused": info.paused, "at": info.at, "host": info.host}  # fmt: skip


def worker_from_doc(d: dict[str, Any]) -> WorkerInfo:
    """A ``<p>_workers`` document back to a heartbeat."""
    return WorkerInfo(
        WorkerId(d["_id"]), d["pool"], d["slots"], d["running"], d["paused"], d["at"], d["host"]
    )


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
        if rec.status in HELD and rec.worker is not None:
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

    def next_due(self, pool: str, now: float) -> float | None:
        """The earliest ``not_before`` later than ``now`` among PENDING invocations of
        ``pool`` (see :class:`kubenenc.backends.contract.DueTimes`), or None."""
        records = self.records
        return min(
            (t for id in self.pending.get(pool, ()) if (t := records[id].not_before) > now),
            default=None,
        )

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
