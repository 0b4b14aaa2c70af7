"""Heartbeats, the list of workers, and recovery of silent workers' invocations."""

from __future__ import annotations

import pytest

from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import Outcome, OutcomeKind, PauseKind, WorkerInfo
from kubenenc.status import Status
from kubenenc.testing.helpers import (
    W1,
    W2,
    W3,
    add,
    beat,
    claim_ids,
    pause,
    record,
    start,
    status,
    succeed,
)

WORKER_LOST = "kubenenc.errors.WorkerLost"


def _by_id(backend: Backend) -> dict[WorkerId, WorkerInfo]:
    return {w.id: w for w in backend.workers()}


def test_heartbeat_is_listed_and_replaced(backend: Backend) -> None:
    assert backend.workers() == []
    first = beat(backend, W1, 1.0)
    other = WorkerInfo(W2, "gpu", slots=2, running=0, paused=1, at=2.0, host="h2")
    backend.heartbeat(other)
    assert _by_id(backend) == {W1: first, W2: other}
    newer = WorkerInfo(W1, "default", slots=4, running=3, paused=2, at=5.0, host="host")
    backend.heartbeat(newer)
    assert _by_id(backend) == {W1: newer, W2: other}
    assert len(backend.workers()) == 2


def test_unregister_worker(backend: Backend) -> None:
    beat(backend, W1, 1.0)
    info2 = beat(backend, W2, 1.0)
    backend.unregister_worker(W1)
    assert backend.workers() == [info2]
    backend.unregister_worker(W1)  # unknown: nothing happens
    backend.unregister_worker(W3)
    assert backend.workers() == [info2]


def _silent_setup(backend: Backend) -> dict[str, InvocationId]:
    """W1 falls silent holding a RUNNING and a PAUSED invocation; W2 stays alive."""
    beat(backend, W1, 1.0)
    beat(backend, W2, 1.0)
    run = add(backend, 1.0, "run", running_key="k", running_limit=1)
    target = add(backend, 1.0, "target", pool="t")
    paused = add(backend, 1.0, "paused", pool="p", running_key="j", running_limit=1)
    alive = add(backend, 1.0, "alive", pool="a")
    assert claim_ids(backend, W1, 10, 2.0) == [run]
    start(backend, paused, W1, 2.0)
    pause(backend, paused, [target], W1, 3.0)
    start(backend, alive, W2, 2.0)
    beat(backend, W2, 95.0)
    return {"run": run, "paused": paused, "target": target, "alive": alive}


def test_recover_hands_back_a_silent_workers_invocations(backend: Backend) -> None:
    ids = _silent_setup(backend)
    waiting = add(backend, 4.0, "waiting", running_key="k", running_limit=1)
    got = backend.recover(100.0, 30.0, 3)
    assert sorted(got) == sorted([ids["run"], ids["paused"]])
    for key in ("run", "paused"):
        rec = record(backend, ids[key])
        assert rec.status is Status.PENDING
        assert rec.lost == 1
        assert rec.worker is None
        assert rec.attempt == 0
        assert rec.history[-1].status is Status.PENDING
        assert rec.history[-1].at == 100.0
    # The alive worker's invocation and the target are untouched.
    alive = record(backend, ids["alive"])
    assert (alive.status, alive.worker) == (Status.RUNNING, W2)
    assert status(backend, ids["target"]) is Status.PENDING
    # The silent worker is forgotten; the alive one is kept.
    assert set(_by_id(backend)) == {W2}
    # The dead worker's outcome is dropped.
    assert backend.finish([Outcome(ids["run"], OutcomeKind.SUCCESS, "1")], W1, 101.0) == [False]
    assert backend.pause(ids["paused"], W1, [ids["target"]], 101.0).kind is PauseKind.GONE
    # Slots are released: 'run' (older) is claimable again, 'waiting' stays behind it.
    assert claim_ids(backend, W2, 10, 102.0) == [ids["run"]]
    assert status(backend, waiting) is Status.PENDING
    assert claim_ids(backend, W2, 10, 102.0, pool="p") == [ids["paused"]]


def test_recover_is_idempotent(backend: Backend) -> None:
    ids = _silent_setup(backend)
    assert len(backend.recover(100.0, 30.0, 3)) == 2
    snapshot = [backend.get(i) for i in ids.values()]
    assert backend.recover(100.0, 30.0, 3) == []
    assert backend.recover(101.0, 30.0, 3) == []
    assert [backend.get(i) for i in ids.values()] == snapshot


def test_recover_leaves_alive_workers_alone(backend: Backend) -> None:
    beat(backend, W1, 70.0)
    id = add(backend, 1.0)
    start(backend, id, W1, 2.0)
    assert backend.recover(100.0, 30.0, 3) == []  # silent exactly 30 s: still alive
    assert status(backend, id) is Status.RUNNING
    assert set(_by_id(backend)) == {W1}
    succeed(backend, id, W1, 101.0)


def test_recovered_paused_invocation_no_longer_waits(backend: Backend) -> None:
    ids = _silent_setup(backend)
    backend.recover(100.0, 30.0, 3)
    # Re-run on W2; it can wait on the same target again, which is boosted once, not twice.
    start(backend, ids["paused"], W2, 101.0)
    pause(backend, ids["paused"], [ids["target"]], W2, 102.0)
    assert record(backend, ids["target"]).waiters == 1
    start(backend, ids["target"], W2, 103.0)
    succeed(backend, ids["target"], W2, 104.0)
    assert backend.resume([ids["paused"]], W2, 10, 105.0).resumed == (ids["paused"],)


@pytest.mark.parametrize("max_lost", [0, 1])
def test_worker_lost_too_often_fails(backend: Backend, max_lost: int) -> None:
    # W2 stays alive holding one of the two slots of key k the whole time.
    holder = add(backend, 0.5, "holder", running_key="k", running_limit=2)
    assert claim_ids(backend, W2, 1, 0.5) == [holder]
    id = add(backend, 1.0, running_key="k", running_limit=2)
    others = [
        add(backend, 2.0 + i, args=str(i), running_key="k", running_limit=2) for i in range(2)
    ]
    now = 10.0
    for n in range(1, max_lost + 2):
        worker = WorkerId(f"host:9:lost{n}")
        beat(backend, worker, now)
        assert claim_ids(backend, worker, 1, now) == [id]
        beat(backend, W2, now + 100)
        assert backend.recover(now + 100, 30.0, max_lost) == [id]
        rec = record(backend, id)
        assert rec.lost == n
        now += 200
    assert rec.status is Status.FAILED
    assert rec.error is not None
    assert rec.error.type == WORKER_LOST
    assert rec.history[-1].status is Status.FAILED
    assert status(backend, holder) is Status.RUNNING
    # Its slot was released exactly once: one slot is free, not two.
    assert claim_ids(backend, W3, 10, now) == others[:1]
    assert claim_ids(backend, W3, 10, now) == []


def test_release_unheld_hands_back_what_a_live_worker_no_longer_holds(backend: Backend) -> None:
    # W1 is alive (it beats), but the backend has more on it than it holds: a finish or a
    # claim's reply lost in a server crash.
    beat(backend, W1, 10.0)
    kept = add(backend, 1.0, "kept", running_key="k", running_limit=1)
    forgotten = add(backend, 2.0, "forgotten", running_key="j", running_limit=1)
    target = add(backend, 3.0, "target", pool="p")
    waiting = add(backend, 4.0, "waiting", pool="q")
    blocked = add(backend, 5.0, "blocked", running_key="j", running_limit=1)
    other = add(backend, 6.0, "other", pool="o")
    assert claim_ids(backend, W1, 2, 10.0) == [kept, forgotten]
    start(backend, waiting, W1, 10.5)
    pause(backend, waiting, [target], W1, 11.0)
    assert record(backend, target).waiters == 1
    start(backend, other, W2, 11.5)

    got = backend.release_unheld(W1, {kept}, 20.0, 3)
    assert sorted(got) == sorted([forgotten, waiting])
    for id in (forgotten, waiting):
        rec = record(backend, id)
        assert (rec.status, rec.worker, rec.lost, rec.attempt) == (Status.PENDING, None, 1, 0)
        assert rec.history[-1].at == 20.0
    # What it holds and what another worker holds are left alone; the wait is undone.
    assert (record(backend, kept).status, record(backend, kept).worker) == (Status.RUNNING, W1)
    assert (record(backend, other).status, record(backend, other).worker) == (Status.RUNNING, W2)
    assert record(backend, target).waiters == 0
    # A late outcome of the released call is refused; its slot of key j is free again, and
    # it is older than 'blocked', so it goes first.
    assert backend.finish([Outcome(forgotten, OutcomeKind.SUCCESS, "1")], W1, 21.0) == [False]
    assert claim_ids(backend, W2, 10, 22.0) == [forgotten]
    assert status(backend, blocked) is Status.PENDING
    # Idempotent: nothing more to release.
    assert backend.release_unheld(W1, {kept}, 23.0, 3) == []
    assert status(backend, kept) is Status.RUNNING


@pytest.mark.parametrize("max_lost", [0, 1])
def test_release_unheld_fails_a_call_lost_too_often(backend: Backend, max_lost: int) -> None:
    id = add(backend, 1.0)
    now = 10.0
    for n in range(1, max_lost + 2):
        assert claim_ids(backend, W1, 1, now) == [id]
        assert backend.release_unheld(W1, set(), now + 1, max_lost) == [id]
        assert record(backend, id).lost == n
        now += 10
    rec = record(backend, id)
    assert rec.status is Status.FAILED
    assert rec.error is not None
    assert rec.error.type == WORKER_LOST
    assert "no longer holds it" in rec.error.message
