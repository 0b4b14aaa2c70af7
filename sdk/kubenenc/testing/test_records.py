"""Records: get, get_many, query, counts, and blocking with wait_final."""

from __future__ import annotations

import threading
import time

from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import (
    W1,
    add,
    claim_ids,
    nonzero,
    record,
    running,
    start,
    succeed,
)

GHOST = InvocationId("7" * 32)


def test_get_returns_a_snapshot_with_history(backend: Backend) -> None:
    id = add(backend, 1.0)
    rec = record(backend, id)
    assert [h.status for h in rec.history] == [Status.REGISTERED, Status.PENDING]
    start(backend, id, W1, 2.0)
    assert rec.status is Status.PENDING  # an earlier snapshot does not change
    assert record(backend, id).status is Status.RUNNING
    assert backend.get(GHOST) is None


def test_get_many_keeps_the_order_asked_with_none_for_unknown(backend: Backend) -> None:
    a = add(backend, 1.0, args="a")
    b = add(backend, 2.0, args="b")
    got = backend.get_many([b, GHOST, a, b])
    assert [r.id if r else None for r in got] == [b, None, a, b]
    assert got[0] is not None
    assert got[0].display == "f(b)"
    assert got[0].status is Status.PENDING
    assert backend.get_many([]) == []


def test_query_filters_newest_first_with_limit(backend: Backend) -> None:
    a1 = add(backend, 1.0, "a", "1", app="shop")
    b1 = add(backend, 2.0, "b", "1", app="shop")
    a2 = add(backend, 3.0, "a", "2", app="shop", pool="a2")
    other = add(backend, 4.0, "a", "3", app="other")
    start(backend, a2, W1, 5.0)

    def ids(**filters: object) -> list[InvocationId]:
        return [r.id for r in backend.query(**filters)]  # type: ignore[arg-type]

    assert ids() == [other, a2, b1, a1]
    assert ids(app="shop") == [a2, b1, a1]
    assert ids(app="shop", task="tests.a") == [a2, a1]
    assert ids(task="tests.a") == [other, a2, a1]
    assert ids(status=Status.PENDING) == [other, b1, a1]
    assert ids(app="shop", task="tests.a", status=Status.RUNNING) == [a2]
    assert ids(app="shop", status=Status.SUCCESS) == []
    assert ids(app="nope") == []
    assert ids(limit=2) == [other, a2]
    assert ids(app="shop", limit=1) == [a2]
    [rec] = backend.query(app="shop", status=Status.RUNNING)
    assert (rec.status, rec.worker, rec.display) == (Status.RUNNING, W1, "a(2)")


def test_counts_are_exact(backend: Backend) -> None:
    assert nonzero(backend.counts()) == {}
    run = running(backend, 0.5, "r", app="shop", pool="gpu")
    pending = [add(backend, float(i), args=str(i), app="shop") for i in range(5)]
    add(backend, 6.0, args="other", app="other", pool="gpu")
    assert claim_ids(backend, W1, 2, 8.0) == pending[:2]
    succeed(backend, pending[0])
    assert backend.cancel(pending[4], 9.0)
    assert nonzero(backend.counts(app="shop")) == {
        Status.PENDING: 2,
        Status.RUNNING: 2,
        Status.SUCCESS: 1,
        Status.CANCELLED: 1,
    }
    assert nonzero(backend.counts()) == {
        Status.PENDING: 3,
        Status.RUNNING: 2,
        Status.SUCCESS: 1,
        Status.CANCELLED: 1,
    }
    assert nonzero(backend.counts(pool="gpu")) == {Status.PENDING: 1, Status.RUNNING: 1}
    assert nonzero(backend.counts(app="shop", pool="gpu")) == {Status.RUNNING: 1}
    assert nonzero(backend.counts(app="nope")) == {}
    assert run in {r.id for r in backend.query(status=Status.RUNNING)}


def test_wait_final_true_when_already_final(backend: Backend) -> None:
    a = running(backend, 1.0, "a")
    succeed(backend, a)
    b = add(backend, 1.0, "b")
    assert backend.cancel(b, 2.0)
    began = time.monotonic()
    assert backend.wait_final([a, b], 5.0)
    assert backend.wait_final([a], None)
    assert backend.wait_final([], 0.0)
    assert time.monotonic() - began < 1.0


def test_wait_final_false_on_timeout(backend: Backend) -> None:
    done = running(backend, 1.0, "done")
    succeed(backend, done)
    open_one = add(backend, 1.0, "open")
    began = time.monotonic()
    assert not backend.wait_final([done, open_one], 0.1)
    elapsed = time.monotonic() - began
    assert 0.09 <= elapsed < 2.0
    assert not backend.wait_final([open_one], 0.0)


def test_wait_final_returns_promptly_once_another_thread_finishes(backend: Backend) -> None:
    a = running(backend, 1.0, "a")
    b = running(backend, 1.0, "b")
    finished_at: list[float] = []

    def finish_later() -> None:
        time.sleep(0.15)
        assert backend.finish([Outcome(a, OutcomeKind.SUCCESS, "1")], W1, 20.0) == [True]
        time.sleep(0.05)
        assert backend.cancel(b, 21.0)
        finished_at.append(time.monotonic())

    thread = threading.Thread(target=finish_later)
    began = time.monotonic()
    thread.start()
    try:
        assert backend.wait_final([a, b], 10.0)
        returned = time.monotonic()
    finally:
        thread.join(5.0)
    assert finished_at, "the finishing thread did not complete"
    assert returned - began >= 0.19
    assert returned - finished_at[0] < 1.0
