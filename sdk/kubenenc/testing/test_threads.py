"""Atomicity under threads: claims and running limits hold with many claimers at once."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import Outcome, OutcomeKind, PauseKind
from kubenenc.status import Status
from kubenenc.testing.helpers import new, nonzero

THREADS = 8
TOTAL = 200
NOW = 1000.0


def _hammer(backend: Backend, limit: int | None) -> tuple[Counter[InvocationId], int, int]:
    """Run TOTAL invocations through THREADS claim/finish loops; return claims per id, the
    peak number held at once as seen by the threads, and the peak RUNNING seen in counts."""
    items = [
        new("k", str(i), running_key="k" if limit else None, running_limit=limit)
        for i in range(TOTAL)
    ]
    backend.register(items, 1.0)
    lock = threading.Lock()
    claims: Counter[InvocationId] = Counter()
    finished = Counter[InvocationId]()
    state = {"held": 0, "peak": 0, "counted_peak": 0, "done": 0}
    errors: list[BaseException] = []
    stop = threading.Event()
    finished_one = threading.Condition()
    deadline = time.monotonic() + 40

    def work(n: int) -> None:
        me = WorkerId(f"host:{n}:t")
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                recs = backend.claim("default", me, 2, NOW)
                if not recs:
                    # Idle: sleep until some thread finishes one, then all claim at once.
                    with finished_one:
                        finished_one.wait(0.05)
                    continue
                with lock:
                    state["held"] += len(recs)
                    state["peak"] = max(state["peak"], state["held"])
                    claims.update(r.id for r in recs)
                for rec in recs:
                    time.sleep(0.0002)  # hold it a moment so overlaps would show
                    with lock:
                        state["held"] -= 1
                    ok = backend.finish([Outcome(rec.id, OutcomeKind.SUCCESS, "1")], me, NOW)
                    with finished_one:
                        finished_one.notify_all()
                    with lock:
                        if ok == [True]:
                            finished[rec.id] += 1
                        state["done"] += 1
                        if state["done"] >= TOTAL:
                            stop.set()
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    def sample() -> None:
        while not stop.is_set():
            running_now = backend.counts().get(Status.RUNNING, 0)
            with lock:
                state["counted_peak"] = max(state["counted_peak"], running_now)
            time.sleep(0.002)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    threads.append(threading.Thread(target=sample))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert finished == Counter({i.id: 1 for i in items})
    return claims, state["peak"], state["counted_peak"]


@pytest.mark.parametrize("limit", [1, None])
def test_threads_claim_each_invocation_once_within_the_running_limit(
    backend: Backend, limit: int | None
) -> None:
    claims, peak, counted_peak = _hammer(backend, limit)
    assert set(claims.values()) == {1}, "an invocation was claimed twice"
    assert len(claims) == TOTAL
    if limit == 1:
        assert peak == 1
        assert counted_peak <= 1
    assert nonzero(backend.counts()) == {Status.SUCCESS: TOTAL}
    for rec in backend.get_many(list(claims)):
        assert rec is not None
        assert rec.status is Status.SUCCESS
    for rec in backend.query(limit=TOTAL):
        full = backend.get(rec.id)
        assert full is not None
        steps = [h.status for h in full.history]
        assert steps.count(Status.RUNNING) == 1
        assert steps.count(Status.SUCCESS) == 1


def test_two_workers_waiting_on_each_other_at_once_never_both_pause(backend: Backend) -> None:
    """The cycle check and the edge it guards are one atomic step: of two invocations that
    wait on each other at the same moment, exactly one pauses and the other gets CYCLE."""
    w1, w2 = WorkerId("host:1:a"), WorkerId("host:2:b")
    rounds = 25
    pairs = []
    for i in range(rounds):
        a, b = new("a", str(i), pool=f"a{i}"), new("b", str(i), pool=f"b{i}")
        backend.register([a, b], 1.0)
        assert [r.id for r in backend.claim(f"a{i}", w1, 1, 2.0)] == [a.id]
        assert [r.id for r in backend.claim(f"b{i}", w2, 1, 2.0)] == [b.id]
        pairs.append((a.id, b.id))
    barrier = threading.Barrier(2, timeout=10)
    kinds: dict[tuple[int, int], PauseKind] = {}

    def side(n: int, worker: WorkerId) -> None:
        for i, (a, b) in enumerate(pairs):
            me, other = (a, b) if n == 0 else (b, a)
            barrier.wait()
            kinds[(i, n)] = backend.pause(me, worker, [other], 3.0).kind

    threads = [threading.Thread(target=side, args=(n, w)) for n, w in ((0, w1), (1, w2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    for i, pair in enumerate(pairs):
        assert sorted([kinds[(i, 0)], kinds[(i, 1)]]) == sorted(
            [PauseKind.PAUSED, PauseKind.CYCLE]
        ), (i, kinds[(i, 0)], kinds[(i, 1)])
        statuses = sorted(r.status for r in backend.get_many(pair) if r is not None)
        assert statuses == sorted([Status.PAUSED, Status.RUNNING])
