"""Random sequences of contract calls, checked against the rules after every step.

A seeded generator drives register/claim/finish/cancel/fail/pause/resume/recover on a few
pools, running keys and workers (one of which falls silent now and then). After every call
the whole store is read back and checked: each call did what the contract says given the
state before it, no running key holds more than its limit, a claim leaves nothing claimable
behind (a leaked slot shows up here), and at the end everything can still be run to a final
status. The sequences are deterministic; a failure names the seed and the step.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    ErrorInfo,
    InvocationRecord,
    Outcome,
    OutcomeKind,
    PauseKind,
    RegisterKind,
)
from kubenenc.status import Status
from kubenenc.testing.helpers import beat, new

POOLS = ("p1", "p2")
KEYS: dict[str | None, int | None] = {None: None, "k1": 1, "k2": 2}
WORKERS = (WorkerId("host:1:r1"), WorkerId("host:2:r2"), WorkerId("host:3:r3"))
TIMEOUT = 5.0
MAX_LOST = 2
BEAT_EVERY = 3.0
"""Alive workers beat this often (well inside TIMEOUT), to keep the calls per step few."""
ERROR = ErrorInfo("builtins.RuntimeError", "random failure")


@dataclass
class World:
    backend: Backend
    rng: random.Random
    now: float = 1.0
    ids: list[InvocationId] = field(default_factory=list)
    silent: WorkerId | None = None
    silent_until: float = 0.0
    step: str = ""

    last_beat: dict[WorkerId, float] = field(default_factory=dict)
    latest: dict[InvocationId, InvocationRecord] | None = None
    """The snapshot taken after the step's only write, reused by the checks that follow."""

    def snapshot(self) -> dict[InvocationId, InvocationRecord]:
        recs = self.backend.get_many(self.ids)
        out = {}
        for id, rec in zip(self.ids, recs, strict=True):
            assert rec is not None, f"{self.step}: {id} vanished"
            out[id] = rec
        self.latest = out
        return out

    def alive(self) -> list[WorkerId]:
        return [w for w in WORKERS if w != self.silent]


def held_on(recs: dict[InvocationId, InvocationRecord], key: str) -> int:
    return sum(1 for r in recs.values() if r.status is Status.RUNNING and r.running_key == key)


def check_invariants(w: World, recs: dict[InvocationId, InvocationRecord]) -> None:
    for key, limit in KEYS.items():
        if key is not None and limit is not None:
            assert held_on(recs, key) <= limit, f"{w.step}: key {key} over its limit"
    holders = [r for r in recs.values() if r.registration_key == "r" and not r.is_final]
    assert len(holders) <= 1, f"{w.step}: two non-final holders of one registration key"
    for rec in recs.values():
        if rec.status in (Status.RUNNING, Status.PAUSED):
            assert rec.worker is not None, f"{w.step}: {rec.status} {rec.id} has no worker"
        else:
            assert rec.worker is None, f"{w.step}: {rec.status} {rec.id} held by {rec.worker}"
        if rec.status is Status.WAITING_DEPENDENCIES:
            deps = [recs.get(d) for d in rec.depends_on]
            assert all(d is not None for d in deps), w.step
            assert not any(d.status in (Status.FAILED, Status.CANCELLED) for d in deps if d), (
                f"{w.step}: {rec.id} still waits on a failed dependency"
            )
            assert not all(d.status is Status.SUCCESS for d in deps if d), (
                f"{w.step}: {rec.id} waits although every dependency succeeded"
            )
        if rec.status is Status.PENDING:
            assert rec.not_before <= w.now + 10, w.step


def claimable(rec: InvocationRecord, pool: str, now: float) -> bool:
    return rec.status is Status.PENDING and rec.pool == pool and rec.not_before <= now


def op_register(w: World, before: dict[InvocationId, InvocationRecord]) -> None:
    rng = w.rng
    key = rng.choice(list(KEYS))
    fields: dict[str, object] = {
        "pool": rng.choice(POOLS),
        "priority": rng.choice((0, 0, 1, 5)),
        "running_key": key,
        "running_limit": KEYS[key],
    }
    if rng.random() < 0.25:
        fields["registration_key"] = "r"
        fields["registration"] = rng.choice(("dedupe", "reject"))
    if w.ids and rng.random() < 0.3:
        fields["depends_on"] = tuple(rng.sample(w.ids, k=min(len(w.ids), rng.choice((1, 2)))))
    item = new("t", str(rng.randrange(6)), **fields)  # type: ignore[arg-type]
    holder = next(
        (
            r
            for r in before.values()
            if r.registration_key == "r" and not r.is_final and "registration_key" in fields
        ),
        None,
    )
    [res] = w.backend.register([item], w.now)
    if holder is not None:
        assert res.id == holder.id, w.step
        assert res.kind is not RegisterKind.CREATED, w.step
        return
    assert (res.kind, res.id) == (RegisterKind.CREATED, item.id), w.step
    w.ids.append(item.id)
    rec = w.backend.get(item.id)
    assert rec is not None
    deps = [before.get(d) for d in item.depends_on]
    if any(d is None or d.status in (Status.FAILED, Status.CANCELLED) for d in deps):
        assert rec.status is Status.FAILED, w.step
    elif all(d is not None and d.status is Status.SUCCESS for d in deps):
        assert rec.status is Status.PENDING, w.step
    else:
        assert rec.status is Status.WAITING_DEPENDENCIES, w.step


def op_claim(w: World, before: dict[InvocationId, InvocationRecord]) -> None:
    worker = w.rng.choice(w.alive())
    pool = w.rng.choice(POOLS)
    limit = w.rng.choice((1, 2, 3))
    got = w.backend.claim(pool, worker, limit, w.now)
    assert len(got) <= limit, w.step
    assert len({r.id for r in got}) == len(got), w.step
    for rec in got:
        assert claimable(before[rec.id], pool, w.now), f"{w.step}: claimed {before[rec.id]}"
    after = w.snapshot()
    for rec in got:
        assert (after[rec.id].status, after[rec.id].worker) == (Status.RUNNING, worker), w.step
    # Claim order: nothing free of running limits that was left behind outranks a claimed one.
    order = {id: n for n, id in enumerate(w.ids)}

    def rank(r: InvocationRecord) -> tuple[int, int, int]:
        return (-r.waiters, -r.priority, order[r.id])

    taken = {r.id for r in got}
    for rec in before.values():
        if rec.id in taken or rec.running_key is not None or not claimable(rec, pool, w.now):
            continue
        for c in got:
            assert rank(before[c.id]) < rank(rec), f"{w.step}: claimed {c.id} before {rec.id}"
    if len(got) < limit:
        # Nothing claimable may be left behind: a PENDING one with a free slot is a leak.
        for rec in after.values():
            if not claimable(rec, pool, w.now):
                continue
            assert rec.running_key is not None, f"{w.step}: {rec.id} left behind"
            limit_of = KEYS[rec.running_key]
            assert limit_of is not None
            assert held_on(after, rec.running_key) >= limit_of, (
                f"{w.step}: {rec.id} left behind with a free slot on {rec.running_key}"
            )


def pick(
    w: World, recs: dict[InvocationId, InvocationRecord], *statuses: Status
) -> InvocationRecord | None:
    found = [r for r in recs.values() if r.status in statuses]
    return w.rng.choice(found) if found else None


def op_finish(w: World, before: dict[InvocationId, InvocationRecord]) -> None:
    rec = pick(w, before, Status.RUNNING) if w.rng.random() < 0.9 else None
    if rec is None:
        rec = before[w.rng.choice(w.ids)] if w.ids else None
    if rec is None:
        return
    worker = rec.worker if rec.worker and w.rng.random() < 0.9 else w.rng.choice(WORKERS)
    kind = w.rng.choice(list(OutcomeKind))
    outcome = Outcome(rec.id, kind, "1", ERROR, retry_at=w.now + w.rng.choice((0, 2)))
    holds = rec.status is Status.RUNNING or (
        rec.status is Status.PAUSED and kind is OutcomeKind.HANDED_BACK
    )
    expected = holds and rec.worker == worker
    assert w.backend.finish([outcome], worker, w.now) == [expected], w.step
    after = w.backend.get(rec.id)
    assert after is not None
    if not expected:
        assert after.status is rec.status, w.step
        return
    want = {
        OutcomeKind.SUCCESS: Status.SUCCESS,
        OutcomeKind.FAILED: Status.FAILED,
        OutcomeKind.RETRY: Status.PENDING,
        OutcomeKind.HANDED_BACK: Status.PENDING,
    }[kind]
    assert after.status is want, w.step
    counted = kind in (OutcomeKind.FAILED, OutcomeKind.RETRY)
    assert after.attempt == rec.attempt + counted, w.step


def op_cancel_or_fail(w: World, before: dict[InvocationId, InvocationRecord]) -> None:
    if not w.ids:
        return
    rec = before[w.rng.choice(w.ids)]
    if w.rng.random() < 0.5:
        done = w.backend.cancel(rec.id, w.now)
        final = Status.CANCELLED
    else:
        done = w.backend.fail(rec.id, "kubenenc.errors.TaskTimeout", "late", w.now)
        final = Status.FAILED
    assert done is (not rec.is_final), w.step
    after = w.backend.get(rec.id)
    assert after is not None
    assert after.status is (final if done else rec.status), w.step


def op_pause(w: World, before: dict[InvocationId, InvocationRecord]) -> None:
    rec = pick(w, before, Status.RUNNING)
    if rec is None or rec.worker is None:
        return
    targets = w.rng.sample(w.ids, k=min(len(w.ids), w.rng.choice((1, 1, 2))))
    worker = rec.worker if w.rng.random() < 0.9 else w.rng.choice(WORKERS)
    res = w.backend.pause(rec.id, worker, targets, w.now)
    after = w.snapshot()
    if worker != rec.worker:
        assert res.kind is PauseKind.GONE, w.step
        return
    open_targets = [t for t in targets if not before[t].is_final]
    if not open_targets:
        assert res.kind is PauseKind.READY, w.step
    else:
        assert res.kind in (PauseKind.PAUSED, PauseKind.CYCLE), w.step
    if res.kind is PauseKind.PAUSED:
        assert after[rec.id].status is Status.PAUSED, w.step
        for t in open_targets:
            assert after[t].waiters >= 1, w.step
    else:
        assert after[rec.id].status is Status.RUNNING, w.step
    if res.kind is PauseKind.CYCLE:
        assert res.loop, w.step


def op_resume(w: World, before: dict[InvocationId, InvocationRecord]) -> None:
    worker = w.rng.choice(WORKERS)
    mine = [r.id for r in before.values() if r.status is Status.PAUSED and r.worker == worker]
    others = w.rng.sample(w.ids, k=min(len(w.ids), 2))
    asked = list(dict.fromkeys(mine + others))
    res = w.backend.resume(asked, worker, w.rng.choice((1, 5)), w.now)
    expected_gone = [i for i in asked if i not in mine]
    assert list(res.gone) == expected_gone, w.step
    after = w.snapshot()
    for id in res.resumed:
        assert id in mine, w.step
        assert (after[id].status, after[id].worker) == (Status.RUNNING, worker), w.step


def op_time_and_workers(w: World, before: dict[InvocationId, InvocationRecord]) -> None:
    if w.silent is None and w.rng.random() < 0.3:
        # Falls silent from now on and comes back later.
        w.silent = w.rng.choice(WORKERS)
        w.silent_until = w.now + TIMEOUT + w.rng.choice((2, 6))
    got = set(w.backend.recover(w.now, TIMEOUT, MAX_LOST))
    if w.silent is not None and w.now - w.last_beat[w.silent] > TIMEOUT:
        held = {
            r.id
            for r in before.values()
            if r.status in (Status.RUNNING, Status.PAUSED) and r.worker == w.silent
        }
        assert got == held, w.step
    else:
        assert got == set(), w.step
    after = w.snapshot()
    for id in got:
        assert after[id].lost == before[id].lost + 1, w.step
        want = Status.FAILED if after[id].lost > MAX_LOST else Status.PENDING
        assert after[id].status is want, w.step


OPS = (
    (op_register, 6),
    (op_claim, 5),
    (op_finish, 4),
    (op_pause, 3),
    (op_resume, 3),
    (op_cancel_or_fail, 1),
    (op_time_and_workers, 1),
)


def drain(w: World) -> None:
    """Run everything left to a final status with one worker; fail if anything is stuck."""
    worker = WORKERS[0]
    w.now += 1000
    beat(w.backend, worker, w.now)
    w.backend.recover(w.now, TIMEOUT, 10_000)  # hand back every other worker's work
    for _ in range(200):
        w.now += 1
        beat(w.backend, worker, w.now)
        recs = w.snapshot()
        if all(r.is_final for r in recs.values()):
            return
        paused = [r.id for r in recs.values() if r.status is Status.PAUSED]
        w.backend.resume(paused, worker, 1000, w.now)
        for pool in POOLS:
            w.backend.claim(pool, worker, 1000, w.now)
        running = [r.id for r in w.snapshot().values() if r.status is Status.RUNNING]
        outcomes = [Outcome(i, OutcomeKind.SUCCESS, "1") for i in running]
        assert all(w.backend.finish(outcomes, worker, w.now))
    stuck = Counter(r.status for r in w.snapshot().values() if not r.is_final)
    pytest.fail(f"invocations stuck after draining: {dict(stuck)}")


@pytest.mark.parametrize(
    ("seed", "steps"),
    [(11, 150), (30, 150)],  # both once formed loops through declared dependencies
)
def test_random_operations_keep_the_rules(backend: Backend, seed: int, steps: int) -> None:
    w = World(backend, random.Random(seed))
    ops = [op for op, weight in OPS for _ in range(weight)]
    before = w.snapshot()
    for n in range(steps):
        w.now += 1
        if w.silent is not None and w.now >= w.silent_until:
            w.silent = None
        for worker in w.alive():
            if w.now - w.last_beat.get(worker, -100.0) >= BEAT_EVERY:
                beat(backend, worker, w.now)
                w.last_beat[worker] = w.now
        op = w.rng.choice(ops)
        w.step = f"seed {seed} step {n} {op.__name__}"
        w.latest = None
        op(w, before)
        before = w.latest if w.latest is not None else w.snapshot()
        check_invariants(w, before)
    drain(w)
