"""The in-process backend: the whole contract over dicts, under one lock.

It honours the full contract (claims, limits, pauses, recovery), so the real worker runs
against it in thread and async modes; nothing runs inline. Its state lives in one process,
so process-mode workers refuse it (``shared_across_processes = False``).
"""

from __future__ import annotations

import copy
import dataclasses
import heapq
import threading
import time
from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import ClassVar

from kubenenc.backends.browse import (
    DEFAULT_BUDGET,
    ActivityBucket,
    InvocationFilter,
    InvocationPage,
    Relations,
    RunningKeys,
    bucket_index,
    cursor_of,
    matches,
    running_keys_of,
    seq_of,
)
from kubenenc.backends.embedded import EngineBackend, retention_option
from kubenenc.backends.engine import Engine
from kubenenc.backends.urloptions import DEFAULT_RETENTION
from kubenenc.errors import ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    InvocationRecord,
    WorkerInfo,
)
from kubenenc.status import Status


def _light(rec: InvocationRecord | None) -> InvocationRecord | None:
    """A copy without history, safe to hand out while the original keeps changing."""
    return None if rec is None else dataclasses.replace(rec, history=[])


class _MemoryTxn:
    """A :class:`~kubenenc.backends.engine.Txn` over the backend's dicts (lock held)."""

    def __init__(self, b: MemoryBackend) -> None:
        self.b = b
        self.changed = False

    def get(self, id: InvocationId) -> InvocationRecord | None:
        return self.b._records.get(id)

    def put(self, rec: InvocationRecord, *, new: bool = False) -> None:
        self.changed = True
        if new:
            self.b._seq += 1
            self.b._order[rec.id] = self.b._seq
            self.b._by_seq.append(rec.id)
            if rec.parent is not None:
                self.b._children[rec.parent].append(rec.id)
        self.b._records[rec.id] = rec
        if rec.is_final:  # may be pushed twice; the sweep skips what is gone
            heapq.heappush(self.b._ended, (rec.updated_at, rec.id))

    def candidates(
        self,
        pool: str,
        now: float,
        skip: int,
        count: int,
        exclude: frozenset[str] = frozenset(),
    ) -> list[InvocationRecord]:
        recs = (
            r
            for r in self.b._records.values()
            if r.status is Status.PENDING
            and r.pool == pool
            and r.not_before <= now
            and (r.running_key is None or r.running_key not in exclude)
        )
        order = self.b._order
        best = heapq.nsmallest(
            skip + count, recs, key=lambda r: (-r.waiters, -r.priority, order[r.id])
        )
        return best[skip:]

    def running_count(self, key: str) -> int:
        return self.b._running.get(key, 0)

    def add_running(self, key: str, delta: int) -> None:
        n = self.b._running.get(key, 0) + delta
        if n > 0:
            self.b._running[key] = n
        else:  # a key seen once must not be kept for ever
            self.b._running.pop(key, None)

    def registration_holder(self, key: str) -> InvocationId | None:
        return self.b._registrations.get(key)

    def set_registration(self, key: str, id: InvocationId | None) -> None:
        if id is None:
            self.b._registrations.pop(key, None)
        else:
            self.b._registrations[key] = id

    def add_edge(self, waiter: InvocationId, target: InvocationId) -> None:
        self.b._targets[waiter].add(target)
        self.b._waiters[target].add(waiter)

    def targets_of(self, waiter: InvocationId) -> list[InvocationId]:
        return list(self.b._targets.get(waiter, ()))

    def waiters_of(self, target: InvocationId) -> list[InvocationId]:
        return list(self.b._waiters.get(target, ()))

    def remove_edges(self, waiter: InvocationId) -> None:
        for target in self.b._targets.pop(waiter, set()):
            self.b._waiters[target].discard(waiter)
            if not self.b._waiters[target]:
                del self.b._waiters[target]

    def add_dependency(self, dependent: InvocationId, dependency: InvocationId) -> None:
        self.b._dependents[dependency].add(dependent)

    def dependents_of(self, dependency: InvocationId) -> list[InvocationId]:
        return list(self.b._dependents.get(dependency, ()))

    def held(self) -> list[tuple[InvocationId, WorkerId]]:
        return [
            (r.id, r.worker)
            for r in self.b._records.values()
            if r.status in (Status.RUNNING, Status.PAUSED) and r.worker is not None
        ]

    def put_worker(self, info: WorkerInfo) -> None:
        self.b._workers[info.id] = info

    def delete_worker(self, worker: WorkerId) -> None:
        self.b._workers.pop(worker, None)

    def all_workers(self) -> list[WorkerInfo]:
        return list(self.b._workers.values())


class MemoryBackend(EngineBackend):
    """Everything in this process's memory; gone when it exits. For tests and notebooks."""

    shared_across_processes: ClassVar[bool] = False

    def __init__(self, retention: float = DEFAULT_RETENTION) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._records: dict[InvocationId, InvocationRecord] = {}
        self._order: dict[InvocationId, int] = {}
        self._seq = 0
        self._by_seq: list[InvocationId] = []  # ids in registration order (seq - 1)
        self._children: defaultdict[InvocationId, list[InvocationId]] = defaultdict(list)
        self._running: dict[str, int] = {}
        self._registrations: dict[str, InvocationId] = {}
        self._targets: defaultdict[InvocationId, set[InvocationId]] = defaultdict(set)
        self._waiters: defaultdict[InvocationId, set[InvocationId]] = defaultdict(set)
        self._dependents: defaultdict[InvocationId, set[InvocationId]] = defaultdict(set)
        self._workers: dict[WorkerId, WorkerInfo] = {}
        self._policies: dict[str, str] = {}
        self._ended: list[tuple[float, InvocationId]] = []
        """Heap of (ended at, id) of final invocations, for the retention sweep."""
        self.retention = retention

    @classmethod
    def from_url(cls, url: str) -> MemoryBackend:
        """``memory://[?retention=SECONDS]`` — each call makes a new, empty backend."""
        if not url.startswith("memory:"):
            raise ConfigurationError(f"not a memory URL: {url!r}; use memory://")
        return cls(retention=retention_option(url))

    def _sweep(self, cutoff: float) -> int:
        swept = 0
        with self._cond:
            ended = self._ended
            while ended and ended[0][0] < cutoff:
                _, id = heapq.heappop(ended)
                rec = self._records.get(id)
                if rec is None or not rec.is_final or rec.updated_at >= cutoff:
                    continue
                del self._records[id]
                del self._order[id]
                self._dependents.pop(id, None)
                self._children.pop(id, None)
                swept += 1
        return swept

    def close(self) -> None:
        """Nothing to release."""

    def _detach(self, rec: InvocationRecord) -> InvocationRecord:
        return copy.deepcopy(rec)

    @contextmanager
    def _engine(self) -> Iterator[Engine]:
        with self._cond:
            txn = _MemoryTxn(self)
            yield Engine(txn)
            if txn.changed:
                self._cond.notify_all()

    def wait_for_work(self, pool: str, timeout: float) -> bool:
        """See :class:`kubenenc.backends.contract.WorkNotifier`: any change wakes it."""
        with self._cond:
            return self._cond.wait(timeout)

    def next_due(self, pool: str, now: float) -> float | None:
        """See :class:`kubenenc.backends.contract.DueTimes`."""
        with self._cond:
            due = [
                r.not_before for r in self._records.values()
                if r.pool == pool and r.status is Status.PENDING and r.not_before > now
            ]  # fmt: skip
        return min(due, default=None)

    # Coordination (lifecycle operations come from EngineBackend)
    def heartbeat(self, info: WorkerInfo) -> None:
        with self._cond:
            self._workers[info.id] = info

    def unregister_worker(self, worker: WorkerId) -> None:
        with self._cond:
            self._workers.pop(worker, None)

    def workers(self) -> list[WorkerInfo]:
        with self._cond:
            return list(self._workers.values())

    def wait_final(self, ids: Sequence[InvocationId], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                recs = (self._records.get(i) for i in ids)
                if all(r is None or r.is_final for r in recs):
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)

    # Policies
    def set_policy(self, name: str, spec: str | None) -> None:
        with self._cond:
            if spec is None:
                self._policies.pop(name, None)
            else:
                self._policies[name] = spec

    def get_policy(self, name: str) -> str | None:
        with self._cond:
            return self._policies.get(name)

    def policies(self) -> dict[str, str]:
        with self._cond:
            return dict(self._policies)

    # Records
    def get(self, id: InvocationId) -> InvocationRecord | None:
        with self._cond:
            rec = self._records.get(id)
            return copy.deepcopy(rec) if rec is not None else None

    def get_many(self, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]:
        with self._cond:
            return [_light(self._records.get(i)) for i in ids]

    def query(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]:
        with self._cond:
            found = [
                r
                for r in self._records.values()
                if (app is None or r.app == app)
                and (task is None or r.task == task)
                and (status is None or r.status is status)
            ]
            # Copied under the lock: another thread may be changing these records.
            found.sort(key=lambda r: self._order[r.id], reverse=True)
            return [r for r in map(_light, found[:limit]) if r is not None]

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
        with self._cond:
            found = [
                r
                for r in self._records.values()
                if (app is None or r.app == app)
                and (task is None or r.task == task)
                and (statuses is None or r.status in statuses)
                and (updated_before is None or r.updated_at < updated_before)
            ]
            found.sort(key=lambda r: self._order[r.id])
            return [r.id for r in found]

    def oldest_pending(self, pool: str) -> float | None:
        """See :class:`kubenenc.backends.contract.Admin`."""
        with self._cond:
            times = [
                r.created_at
                for r in self._records.values()
                if r.status is Status.PENDING and r.pool == pool
            ]
        return min(times, default=None)

    def purge(self, ids: Sequence[InvocationId]) -> int:
        """See :class:`kubenenc.backends.contract.Admin`."""
        deleted = 0
        with self._cond:
            for id in dict.fromkeys(ids):
                rec = self._records.get(id)
                if rec is None or not rec.is_final:
                    continue
                del self._records[id]
                self._order.pop(id, None)
                self._dependents.pop(id, None)
                deleted += 1
        return deleted

    def counts(
        self, *, app: str | None = None, pool: str | None = None, task: str | None = None
    ) -> Mapping[Status, int]:
        if task is not None:
            return dict(self.counts_by_task(app=app, pool=pool).get(task, {}))
        out: dict[Status, int] = {}
        with self._cond:
            for r in self._records.values():
                if (app is None or r.app == app) and (pool is None or r.pool == pool):
                    out[r.status] = out.get(r.status, 0) + 1
        return out

    def counts_by_task(
        self, *, app: str | None = None, pool: str | None = None
    ) -> Mapping[str, Mapping[Status, int]]:
        out: dict[str, dict[Status, int]] = {}
        with self._cond:
            for r in self._records.values():
                if (app is None or r.app == app) and (pool is None or r.pool == pool):
                    by_status = out.setdefault(r.task, {})
                    by_status[r.status] = by_status.get(r.status, 0) + 1
        return out

    # Browse
    def browse(
        self,
        where: InvocationFilter,
        *,
        cursor: str | None = None,
        limit: int = 50,
        budget: int = DEFAULT_BUDGET,
    ) -> InvocationPage:
        """See :meth:`kubenenc.backends.browse.Browse.browse`."""
        with self._cond:
            top = seq_of(cursor)
            seq = len(self._by_seq) if top is None else min(top - 1, len(self._by_seq))
            items: list[InvocationRecord] = []
            scanned = 0
            while seq >= 1 and scanned < budget and len(items) < limit:
                rec = self._records.get(self._by_seq[seq - 1])  # None: swept by retention
                scanned += 1
                if rec is not None and matches(rec, where):
                    items.append(dataclasses.replace(rec, history=[]))
                seq -= 1
            return InvocationPage(items, cursor_of(seq + 1) if seq >= 1 else None, scanned)

    def activity(
        self, *, since: float, width: float, buckets: int, app: str | None = None
    ) -> list[ActivityBucket]:
        """See :meth:`kubenenc.backends.browse.Browse.activity` (reads every record: this
        backend lives in one process and holds what fits in its memory)."""
        finished, failed = [0] * buckets, [0] * buckets
        with self._cond:
            for r in self._records.values():
                if not r.is_final or (app is not None and r.app != app):
                    continue
                i = bucket_index(r.updated_at, since, width, buckets)
                if i is not None:
                    finished[i] += 1
                    failed[i] += r.status is Status.FAILED
        return [ActivityBucket(since + i * width, finished[i], failed[i]) for i in range(buckets)]

    def relations(self, id: InvocationId, *, limit: int = 200) -> Relations | None:
        """See :meth:`kubenenc.backends.browse.Browse.relations`."""
        with self._cond:
            rec = self._records.get(id)
            if rec is None:
                return None
            children = [c for c in self._children.get(id, ()) if c in self._records]
            return Relations(
                parent=rec.parent,
                children=children[:limit],
                more_children=len(children) > limit,
                waits_on=sorted(self._targets.get(id, ())),
                waited_by=sorted(self._waiters.get(id, ())),
                depends_on=rec.depends_on,
            )

    def running_keys(
        self, *, limit: int = 100, holders: int = 10, budget: int = DEFAULT_BUDGET
    ) -> RunningKeys:
        """See :meth:`kubenenc.backends.browse.KeyUsage.running_keys` (reads every record,
        as ``activity`` does: this backend holds what fits in one process's memory)."""
        with self._cond:
            counts = list(self._running.items())
            held = [
                (r.id, r.running_key)
                for r in self._records.values()
                if r.status is Status.RUNNING and r.worker is not None
            ][:budget]
        return running_keys_of(counts, held, limit, holders)
