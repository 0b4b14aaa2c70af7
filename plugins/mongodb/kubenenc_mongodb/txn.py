"""One step's :class:`~kubenenc.backends.engine.Txn` over the process's replica.

The shared :class:`~kubenenc.backends.engine.Engine` runs one contract operation against a
:class:`StepTxn`. It reads through an overlay (copies, so a step that raises leaves the
:class:`~kubenenc_mongodb.replica.Replica` untouched) and, at the end, turns the overlay
into one redo record: the documents to write and delete (see :mod:`kubenenc_mongodb.layout`).
Nothing here talks to the server but through the two readers it is given.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable
from typing import Any

from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import InvocationRecord, WorkerInfo
from kubenenc.status import Status

from kubenenc_mongodb.replica import HELD, SEQ_STRIDE, Redo, Replica, record_doc


def _copy(rec: InvocationRecord) -> InvocationRecord:
    return dataclasses.replace(rec, history=list(rec.history))


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
            if rec is not None and rec.status in HELD and rec.worker is not None:
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
