"""The lifecycle written once, over a small transactional store.

Embedded backends (memory, SQLite) implement only :class:`Txn` — reads and writes of records,
counters and edges inside one transaction — and run every contract operation through
:class:`Engine`, which holds the policy: status checks, registration, claim order with
running limits, pausing with cycle detection, dependency release, recovery. A backend whose
atomicity comes from server-side scripts (Redis) re-expresses the same rules in its script
language, and the conformance suite holds both to the same behaviour.

Every Engine method must run inside one transaction of the store (the caller opens it), so
it is atomic.

Size: over 500 lines because the rules share their helpers (transitions, wait edges, slot
counters) and one place for every rule is what the other backends are checked against.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from kubenenc.callbacks import error_json, spawn
from kubenenc.concurrency import parse_rate_spec
from kubenenc.errors import CycleDetectedError, DependencyFailed, WorkerLost
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    ErrorInfo,
    InvocationRecord,
    NewInvocation,
    Outcome,
    OutcomeKind,
    PauseKind,
    PauseResult,
    RegisterKind,
    RegisterResult,
    ResumeResult,
    Transition,
    WorkerInfo,
)
from kubenenc.status import Status, check_transition
from kubenenc.waitgraph import Node, find_loop, format_loop


def error_path(cls: type[BaseException]) -> str:
    """``module.QualName`` of an exception class, as stored in :class:`ErrorInfo`."""
    return f"{cls.__module__}.{cls.__qualname__}"


class Txn(Protocol):
    """Reads and writes inside one open transaction of an embedded store."""

    def get(self, id: InvocationId) -> InvocationRecord | None:
        """The record with its history, or None."""
        ...

    def put(self, rec: InvocationRecord, *, new: bool = False) -> None:
        """Insert (``new``) or overwrite a record, history included."""
        ...

    def candidates(
        self,
        pool: str,
        now: float,
        skip: int,
        count: int,
        exclude: frozenset[str] = frozenset(),
    ) -> list[InvocationRecord]:
        """PENDING records of ``pool`` with ``not_before <= now``, in claim order (more
        waiters, higher priority, older first), skipping the first ``skip``; records whose
        running key is in ``exclude`` are left out (they would only be skipped)."""
        ...

    def running_count(self, key: str) -> int:
        """Slots held on a running key."""
        ...

    def add_running(self, key: str, delta: int) -> None:
        """Add ``delta`` to the slots held on ``key``."""
        ...

    def registration_holder(self, key: str) -> InvocationId | None:
        """The invocation holding a registration key, if any."""
        ...

    def set_registration(self, key: str, id: InvocationId | None) -> None:
        """Give a registration key to ``id`` (None: free it)."""
        ...

    def add_edge(self, waiter: InvocationId, target: InvocationId) -> None:
        """Record that ``waiter`` waits on ``target``."""
        ...

    def targets_of(self, waiter: InvocationId) -> list[InvocationId]:
        """What ``waiter`` waits on."""
        ...

    def waiters_of(self, target: InvocationId) -> list[InvocationId]:
        """Who waits on ``target``."""
        ...

    def remove_edges(self, waiter: InvocationId) -> None:
        """Forget every wait of ``waiter``."""
        ...

    def add_dependency(self, dependent: InvocationId, dependency: InvocationId) -> None:
        """Record a declared dependency."""
        ...

    def dependents_of(self, dependency: InvocationId) -> list[InvocationId]:
        """Invocations that declared ``dependency``."""
        ...

    def held(self) -> list[tuple[InvocationId, WorkerId]]:
        """Every RUNNING or PAUSED invocation with the worker holding it."""
        ...

    def put_worker(self, info: WorkerInfo) -> None:
        """Store a heartbeat."""
        ...

    def delete_worker(self, worker: WorkerId) -> None:
        """Forget a worker."""
        ...

    def all_workers(self) -> list[WorkerInfo]:
        """Every stored heartbeat."""
        ...


RATE_PREFIX = "rate:"
"""Counter keys of the rate logs (see :class:`RateLog`): never a running key, which is a
task id (no ``:`` in it) and ``#``."""


class RateLog:
    """The recent starts on one rate key, kept in the store's counters (``running_count`` /
    ``add_running``), so every store keeps it in the same transaction as the claim with no
    table of its own: a ring of the last N start times (integer microseconds) at
    ``rate:<key>:<i>`` and the number of starts ever at ``rate:<key>:n``.

    A start at ``now`` is allowed when the N-th start before it is older than the window
    (so no sliding window holds more than N) and the ``burst``-th one is older than
    ``window * burst / N``. Its size is N + 1 counters per key; keys are few (one per
    distinct value of the policy's key arguments), and N is what the user set.
    """

    def __init__(self, txn: Txn, key: str, spec: str) -> None:
        self.txn = txn
        self.base = f"{RATE_PREFIX}{key}:"
        self.count, self.window, self.burst = parse_rate_spec(spec)
        self.n = txn.running_count(self.base + "n")
        self.waiting = 0
        """Calls found over the rate in this claim: each waits one start later."""

    def _nth_back(self, k: int) -> int | None:
        """The k-th most recent start (1: the last), microseconds; None when there is none."""
        if k > self.n:
            return None
        return self.txn.running_count(f"{self.base}{(self.n - k) % self.count}")

    def _within(self, k: int, us: int, span: int) -> bool:
        """Whether the k-th most recent start is less than ``span`` before ``us``."""
        at = self._nth_back(k)
        return at is not None and at > us - span

    def start(self, now: float) -> bool:
        """Record a start at ``now`` if the rate allows it (True); else leave all as is."""
        us = round(now * 1_000_000)
        span = round(self.window * 1_000_000)
        if self._within(self.count, us, span):
            return False
        if self.burst < self.count and self._within(
            self.burst, us, span * self.burst // self.count
        ):
            return False
        slot = f"{self.base}{self.n % self.count}"
        self.txn.add_running(slot, us - self.txn.running_count(slot))
        self.txn.add_running(self.base + "n", 1)
        self.n += 1
        return True

    def next_free(self, now: float) -> float:
        """When the next call found over the rate may try again: the j-th such call of
        this claim waits for the j-th start to leave the window (and the burst's window);
        if another call took that start by then, it is checked again and waits on."""
        self.waiting += 1
        j = self.waiting
        at = self._free_at(j, self.count, self.window)
        if self.burst < self.count:
            at = max(at, self._free_at(j, self.burst, self.window * self.burst / self.count))
        return max(now + 1e-6, at)

    def _free_at(self, j: int, count: int, window: float) -> float:
        at = self._nth_back(count - (j - 1) % count)
        if at is None:
            return 0.0
        return at / 1_000_000 + window * ((j - 1) // count + 1)


TICK_PREFIX = "tick:"
"""Counter keys of schedules' last claimed ticks (see :meth:`Engine.claim_tick`): kept in
the store's counters like the rate logs, so no store needs a table of its own for them."""


def move(
    rec: InvocationRecord,
    dst: Status,
    now: float,
    worker: WorkerId | None = None,
    reason: str | None = None,
) -> None:
    """Apply one checked transition to ``rec`` and record it in its history."""
    check_transition(rec.status, dst)
    rec.status = dst
    rec.updated_at = now
    rec.history.append(Transition(dst, now, worker, reason))


def _node(rec: InvocationRecord) -> Node:
    return Node(rec.id, rec.call_key, rec.display)


class Engine:
    """The contract's operations over one :class:`Txn`."""

    def __init__(self, txn: Txn) -> None:
        self.txn = txn

    # -- Queue -----------------------------------------------------------------------------

    def register(self, new: Sequence[NewInvocation], now: float) -> list[RegisterResult]:
        """See :meth:`kubenenc.backends.contract.Queue.register`."""
        return [self._register_one(item, now) for item in new]

    def last_tick(self, schedule: str) -> int | None:
        """See :class:`kubenenc.backends.contract.TickClaims`."""
        return self.txn.running_count(TICK_PREFIX + schedule) or None

    def claim_tick(
        self,
        schedule: str,
        previous: int | None,
        tick: int,
        new: Sequence[NewInvocation],
        now: float,
    ) -> list[RegisterResult] | None:
        """See :class:`kubenenc.backends.contract.TickClaims`."""
        key = TICK_PREFIX + schedule
        stored = self.txn.running_count(key)
        if stored != (previous or 0) or tick <= stored:
            return None
        self.txn.add_running(key, tick - stored)
        return self.register(new, now)

    def _register_one(self, n: NewInvocation, now: float) -> RegisterResult:
        t = self.txn
        if t.get(n.id) is not None:
            # Ids are unique per call: an id that exists was registered by an earlier try of
            # this same registration (a step re-run after its commit, when its answer was
            # lost). It is answered, never written again: writing it would reset a call that
            # may be running or final already to a fresh PENDING one.
            return RegisterResult(RegisterKind.CREATED, n.id)
        if n.registration_key is not None:
            holder_id = t.registration_holder(n.registration_key)
            holder = t.get(holder_id) if holder_id else None
            if holder is not None and not holder.is_final:
                kind = (
                    RegisterKind.REJECTED
                    if n.registration == "reject"
                    else (RegisterKind.DEDUPLICATED)
                )
                return RegisterResult(kind, holder.id)
        rec = InvocationRecord(
            id=n.id, app=n.app, task=n.task, args=n.args, call_key=n.call_key,
            display=n.display, pool=n.pool, priority=n.priority, status=Status.REGISTERED,
            created_at=now, updated_at=now, max_retries=n.max_retries, timeout=n.timeout,
            running_key=n.running_key, running_limit=n.running_limit,
            registration_key=n.registration_key, depends_on=n.depends_on, parent=n.parent,
            serializer=n.serializer, history=[Transition(Status.REGISTERED, now)],
            not_before=n.not_before, rate_key=n.rate_key, rate=n.rate, callbacks=n.callbacks,
            headers=dict(n.headers) if n.headers else {},
        )  # fmt: skip
        waiting: list[InvocationId] = []
        broken: InvocationRecord | InvocationId | None = None
        for dep_id in n.depends_on:
            dep = t.get(dep_id)
            if dep is None or dep.status in (Status.FAILED, Status.CANCELLED):
                broken = dep if dep is not None else dep_id
                break
            if dep.status is not Status.SUCCESS:
                waiting.append(dep_id)
        if broken is not None:
            self._fail_dependency(rec, broken, now)
        elif waiting:
            move(rec, Status.WAITING_DEPENDENCIES, now)
            for dep_id in waiting:
                t.add_dependency(rec.id, dep_id)
        else:
            move(rec, Status.PENDING, now)
        t.put(rec, new=True)
        if n.registration_key is not None and not rec.is_final:
            t.set_registration(n.registration_key, rec.id)
        return RegisterResult(RegisterKind.CREATED, rec.id)

    def _fail_dependency(
        self, rec: InvocationRecord, dep: InvocationRecord | InvocationId, now: float
    ) -> None:
        if isinstance(dep, InvocationRecord):
            what = f"dependency {dep.display} [{dep.id}] ended {dep.status}"
        else:
            what = f"dependency {dep} does not exist"
        rec.error = ErrorInfo(error_path(DependencyFailed), what)
        move(rec, Status.FAILED, now, reason="DependencyFailed")

    def claim(self, pool: str, worker: WorkerId, limit: int, now: float) -> list[InvocationRecord]:
        """See :meth:`kubenenc.backends.contract.Queue.claim`."""
        t = self.txn
        out: list[InvocationRecord] = []
        page = max(limit, 1)  # grows only when limits make us skip (each row costs a decode)
        full: set[str] = set()
        rates: dict[str, RateLog] = {}
        while len(out) < limit:
            # Keys found full are left out of the next page, so a long queue behind one
            # busy key is not read again and again (each page ends with claims or new keys).
            batch = t.candidates(pool, now, 0, page, frozenset(full))
            for rec in batch:
                if len(out) >= limit:
                    break
                key, cap = rec.running_key, rec.running_limit
                if (
                    key is not None
                    and cap is not None
                    and (key in full or t.running_count(key) >= cap)
                ):
                    full.add(key)
                    continue
                if rec.rate_key is not None and rec.rate is not None:
                    log = rates.get(rec.rate_key)
                    if log is None:
                        log = rates[rec.rate_key] = RateLog(t, rec.rate_key, rec.rate)
                    if not log.start(now):
                        # Over the rate: it waits, out of the way of the claims that follow,
                        # until the earliest moment the rate allows it (a write once per
                        # wait, not a read on every claim).
                        rec.not_before = log.next_free(now)
                        t.put(rec)
                        continue
                if key is not None and cap is not None:
                    t.add_running(key, 1)
                rec.worker = worker
                move(rec, Status.RUNNING, now, worker)
                t.put(rec)
                out.append(rec)
            if len(batch) < page:
                break
            page = min(page * 2, 512)
        return out

    def _release_slot(self, rec: InvocationRecord) -> None:
        if rec.status is Status.RUNNING and rec.running_key and rec.running_limit is not None:
            self.txn.add_running(rec.running_key, -1)

    def finish(self, outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        """See :meth:`kubenenc.backends.contract.Queue.finish`."""
        return [self._finish_one(o, worker, now) for o in outcomes]

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """See :class:`kubenenc.backends.contract.FinishAndClaim`."""
        return self.finish(outcomes, worker, now), self.claim(pool, worker, limit, now)

    def _finish_one(self, o: Outcome, worker: WorkerId, now: float) -> bool:
        t = self.txn
        rec = t.get(o.id)
        if rec is None or rec.worker != worker:
            return False
        if rec.status is Status.PAUSED and o.kind is OutcomeKind.HANDED_BACK:
            # A draining worker gives back what it paused: no slot to free, its waits undone.
            self._unwait(rec)
            rec.worker = None
            move(rec, Status.PENDING, now, worker, o.reason or "handed back")
            t.put(rec)
            return True
        if rec.status is not Status.RUNNING:
            return False
        self._release_slot(rec)
        if o.kind is OutcomeKind.SUCCESS:
            rec.result = o.result
            move(rec, Status.SUCCESS, now, worker)
            self._finalize(rec, now)
            self._callback(rec, "success", o.result, now)
        elif o.kind is OutcomeKind.FAILED:
            rec.error = o.error
            rec.attempt += 1
            move(rec, Status.FAILED, now, worker, o.reason)
            self._finalize(rec, now)
            self._callback(rec, "failure", error_json(o.error), now)
        elif o.kind is OutcomeKind.RETRY:
            rec.error = o.error
            rec.attempt += 1
            rec.not_before = o.retry_at
            rec.worker = None
            move(rec, Status.RETRY, now, worker, o.reason)
            move(rec, Status.PENDING, now, worker)
            self._callback(rec, "retry", error_json(o.error), now)
        else:
            rec.worker = None
            move(rec, Status.PENDING, now, worker, o.reason or "handed back")
        t.put(rec)
        return True

    def _callback(self, rec: InvocationRecord, kind: str, value: str | None, now: float) -> None:
        """Register ``rec``'s ``kind`` callback and status triggers, if it has any, in this
        same step."""
        if rec.callbacks is None:
            return
        for new in spawn(rec.callbacks, kind, rec.id, rec.app, rec.attempt, value):
            if self.txn.get(new.id) is None:
                self._register_one(new, now)

    def _finalize(self, rec: InvocationRecord, now: float, cascade_cycle: bool = False) -> None:
        """Side effects of reaching a final status (``rec`` is saved by the caller)."""
        t = self.txn
        rec.worker = None
        if rec.registration_key is not None and t.registration_holder(rec.registration_key) == (
            rec.id
        ):
            t.set_registration(rec.registration_key, None)
        # Only a PAUSED invocation has wait edges (resume and recovery remove them), so the
        # hot path (RUNNING -> SUCCESS) skips two queries.
        was_paused = len(rec.history) >= 2 and rec.history[-2].status is Status.PAUSED
        for target_id in t.targets_of(rec.id) if was_paused else ():
            target = t.get(target_id)
            if target is None or target.is_final:
                continue
            target.waiters = max(0, target.waiters - 1)
            if cascade_cycle and target.parent == rec.id and target.waiters == 0:
                self._abort(target, Status.FAILED, now, rec.error, "CycleDetected", True)
            t.put(target)
        if was_paused:
            t.remove_edges(rec.id)
        for dep_id in t.dependents_of(rec.id):
            dependent = t.get(dep_id)
            if dependent is None or dependent.status is not Status.WAITING_DEPENDENCIES:
                continue
            if rec.status is Status.SUCCESS:
                # ``rec`` is not saved yet: read it from here, not from the store.
                deps = [rec if d == rec.id else t.get(d) for d in dependent.depends_on]
                if all(d is not None and d.status is Status.SUCCESS for d in deps):
                    move(dependent, Status.PENDING, now, reason="dependencies succeeded")
                    t.put(dependent)
            else:
                self._fail_dependency(dependent, rec, now)
                self._finalize(dependent, now)
                t.put(dependent)

    def _abort(
        self,
        rec: InvocationRecord,
        dst: Status,
        now: float,
        error: ErrorInfo | None,
        reason: str,
        cascade_cycle: bool = False,
    ) -> None:
        self._release_slot(rec)
        rec.error = error
        move(rec, dst, now, reason=reason)
        self._finalize(rec, now, cascade_cycle)

    def cancel(self, id: InvocationId, now: float, reason: str = "cancelled") -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.cancel`."""
        rec = self.txn.get(id)
        if rec is None or rec.is_final:
            return False
        self._abort(rec, Status.CANCELLED, now, None, reason)
        self.txn.put(rec)
        return True

    def fail(self, id: InvocationId, error: str, message: str, now: float) -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.fail`."""
        rec = self.txn.get(id)
        if rec is None or rec.is_final:
            return False
        reason = error.rsplit(".", 1)[-1]
        self._abort(rec, Status.FAILED, now, ErrorInfo(error, message), reason)
        self.txn.put(rec)
        return True

    # -- Coordination ----------------------------------------------------------------------

    def pause(
        self, id: InvocationId, worker: WorkerId, targets: Sequence[InvocationId], now: float
    ) -> PauseResult:
        """See :meth:`kubenenc.backends.contract.Coordination.pause`."""
        t = self.txn
        rec = t.get(id)
        if rec is None or rec.status is not Status.RUNNING or rec.worker != worker:
            return PauseResult(PauseKind.GONE)
        open_targets: list[InvocationRecord] = []
        for target_id in dict.fromkeys(targets):
            target = t.get(target_id)
            if target is not None and not target.is_final:
                open_targets.append(target)
        if not open_targets:
            return PauseResult(PauseKind.READY)

        def waiters_of(x: InvocationId) -> list[Node]:
            found = (t.get(w) for w in t.waiters_of(x))
            nodes = [_node(r) for r in found if r is not None and r.status is Status.PAUSED]
            # A dependent that has not started waits on ``x`` too: a loop may pass through
            # declared dependencies. It runs no code yet, so it matches by id only.
            for dep in (t.get(d) for d in t.dependents_of(x)):
                if dep is not None and dep.status is Status.WAITING_DEPENDENCIES:
                    nodes.append(Node(dep.id, f"\0dependent:{dep.id}", dep.display))
            return nodes

        loop = find_loop(_node(rec), [_node(r) for r in open_targets], waiters_of)
        if loop is not None:
            if loop.target.id not in loop.chain:
                closing = next(r for r in open_targets if r.id == loop.target.id)
                error = ErrorInfo(error_path(CycleDetectedError), format_loop(loop.lines))
                self._abort(closing, Status.FAILED, now, error, "CycleDetected", True)
                t.put(closing)
            return PauseResult(PauseKind.CYCLE, loop.lines)
        for target in open_targets:
            t.add_edge(rec.id, target.id)
            target.waiters += 1
            t.put(target)
        self._release_slot(rec)
        move(rec, Status.PAUSED, now, worker)
        t.put(rec)
        return PauseResult(PauseKind.PAUSED)

    def resume(
        self,
        ids: Sequence[InvocationId],
        worker: WorkerId,
        limit: int,
        now: float,
        *,
        early: bool = False,
    ) -> ResumeResult:
        """See :meth:`kubenenc.backends.contract.Coordination.resume`; with ``early``,
        :meth:`kubenenc.backends.contract.ResumeEarly.resume_early`."""
        t = self.txn
        resumed: list[InvocationId] = []
        gone: list[InvocationId] = []
        for id in ids:
            rec = t.get(id)
            if rec is None or rec.status is not Status.PAUSED or rec.worker != worker:
                gone.append(id)
                continue
            if len(resumed) >= limit:
                continue
            if not early:
                targets = (t.get(x) for x in t.targets_of(id))
                if any(x is not None and not x.is_final for x in targets):
                    continue
            key = rec.running_key
            if key is not None and rec.running_limit is not None:
                if t.running_count(key) >= rec.running_limit:
                    continue
                t.add_running(key, 1)
            if early:
                self._unwait(rec)
            else:
                t.remove_edges(id)
            move(rec, Status.RUNNING, now, worker, "wait timed out" if early else None)
            t.put(rec)
            resumed.append(id)
        return ResumeResult(tuple(resumed), tuple(gone))

    def recover(
        self,
        now: float,
        heartbeat_timeout: float,
        max_lost: int,
        *,
        silent: Collection[WorkerId] | None = None,
    ) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.recover`.

        ``silent``, when given, names the workers the backend judged silent on its own
        clock (MongoDB: the server's); every other worker with a heartbeat is alive, and
        ``now`` only stamps the history."""
        t = self.txn
        workers = t.all_workers()
        if silent is None:
            alive = {w.id for w in workers if w.at >= now - heartbeat_timeout}
        else:
            alive = {w.id for w in workers if w.id not in silent}
        for w in workers:
            if w.id not in alive:
                t.delete_worker(w.id)
        out: list[InvocationId] = []
        for inv_id, holder in t.held():
            if holder in alive:
                continue
            rec = t.get(inv_id)
            if rec is None:
                continue
            self._hand_back(rec, now, max_lost, holder)
            t.put(rec)
            out.append(inv_id)
        return out

    def release_unheld(
        self, worker: WorkerId, held: Collection[InvocationId], now: float, max_lost: int
    ) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.release_unheld`."""
        t = self.txn
        out: list[InvocationId] = []
        for inv_id, holder in t.held():
            if holder != worker or inv_id in held:
                continue
            rec = t.get(inv_id)
            if rec is None:
                continue
            self._hand_back(rec, now, max_lost, holder, "no longer holds it")
            t.put(rec)
            out.append(inv_id)
        return out

    def _hand_back(
        self,
        rec: InvocationRecord,
        now: float,
        max_lost: int,
        holder: WorkerId,
        why: str = "stopped heartbeating",
    ) -> None:
        rec.lost += 1
        if rec.lost > max_lost:
            message = f"worker {holder} {why}; lost {rec.lost} times"
            self._abort(  # releases the slot itself
                rec, Status.FAILED, now, ErrorInfo(error_path(WorkerLost), message), "WorkerLost"
            )
            return
        self._release_slot(rec)
        self._unwait(rec)
        rec.worker = None
        move(rec, Status.PENDING, now, reason=f"worker {holder} lost")

    def _unwait(self, rec: InvocationRecord) -> None:
        """Drop the wait edges of ``rec`` and its count on each target it waited on."""
        for target_id in self.txn.targets_of(rec.id):
            target = self.txn.get(target_id)
            if target is not None and not target.is_final:
                target.waiters = max(0, target.waiters - 1)
                self.txn.put(target)
        self.txn.remove_edges(rec.id)
