"""Queue.claim: order, pools, not_before, limits and running limits."""

from __future__ import annotations

import pytest

from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId
from kubenenc.records import ErrorInfo, Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import (
    W1,
    W2,
    add,
    claim_ids,
    new,
    pause,
    record,
    running,
    start,
    status,
)


def test_claim_moves_pending_to_running_on_the_worker(backend: Backend) -> None:
    id = add(backend, 1.0)
    [rec] = backend.claim("default", W1, 5, 10.0)
    assert rec.id == id
    assert rec.status is Status.RUNNING
    assert rec.worker == W1
    stored = record(backend, id)
    assert stored.status is Status.RUNNING
    assert stored.worker == W1
    assert stored.history[-1].status is Status.RUNNING
    assert stored.history[-1].worker == W1
    assert stored.history[-1].at == 10.0
    # Nothing left to claim, for anyone.
    assert claim_ids(backend, W2) == []


def test_claim_is_fifo_among_equals(backend: Backend) -> None:
    ids = [add(backend, float(t), args=str(t)) for t in range(1, 6)]
    got = [claim_ids(backend, W1, 1, 10.0) for _ in ids]
    assert got == [[i] for i in ids]


def test_claim_batch_is_in_claim_order(backend: Backend) -> None:
    ids = [add(backend, float(t), args=str(t)) for t in range(1, 6)]
    assert claim_ids(backend, W1, 10, 10.0) == ids


def test_higher_priority_first_then_older(backend: Backend) -> None:
    low = add(backend, 1.0, args="low", priority=-1)
    zero = add(backend, 2.0, args="zero")
    high_old = add(backend, 3.0, args="high-old", priority=5)
    high_new = add(backend, 4.0, args="high-new", priority=5)
    mid = add(backend, 5.0, args="mid", priority=2)
    assert claim_ids(backend, W1, 10, 10.0) == [high_old, high_new, mid, zero, low]


def test_more_waiters_first_even_over_priority(backend: Backend) -> None:
    plain_high = add(backend, 1.0, args="high", priority=9)
    one = add(backend, 2.0, args="one-waiter")
    two = add(backend, 3.0, args="two-waiters", priority=-5)
    # Waiters run in their own pools, so claiming "default" sees only the targets.
    w1 = running(backend, 4.0, "w", "1")
    w2 = running(backend, 4.0, "w", "2")
    w3 = running(backend, 4.0, "w", "3")
    pause(backend, w1, [one, two])
    pause(backend, w2, [two])
    assert claim_ids(backend, W1, 1, 20.0) == [two]
    assert claim_ids(backend, W1, 1, 20.0) == [one]
    assert claim_ids(backend, W1, 1, 20.0) == [plain_high]
    # w3 is not waiting on anything and stays as it was.
    assert status(backend, w3) is Status.RUNNING


def test_pools_are_isolated(backend: Backend) -> None:
    a = add(backend, 1.0, args="a", pool="a")
    b = add(backend, 2.0, args="b", pool="b")
    assert claim_ids(backend, W1, 10, 10.0, pool="nope") == []
    assert claim_ids(backend, W1, 10, 10.0, pool="a") == [a]
    assert claim_ids(backend, W1, 10, 10.0, pool="a") == []
    assert status(backend, b) is Status.PENDING
    assert claim_ids(backend, W2, 10, 10.0, pool="b") == [b]


def test_limit_is_respected(backend: Backend) -> None:
    ids = [add(backend, float(t), args=str(t)) for t in range(1, 6)]
    assert claim_ids(backend, W1, 0, 10.0) == []
    assert claim_ids(backend, W1, 2, 10.0) == ids[:2]
    assert claim_ids(backend, W1, 10, 10.0) == ids[2:]
    assert claim_ids(backend, W1, 10, 10.0) == []


def test_not_before_is_respected(backend: Backend) -> None:
    id = add(backend, 1.0)
    start(backend, id, W1, 2.0)
    error = ErrorInfo("builtins.OSError", "blip")
    retry = Outcome(id, OutcomeKind.RETRY, error=error, retry_at=100.0)
    assert backend.finish([retry], W1, 3.0) == [True]
    later = add(backend, 4.0, args="later")
    # The retried one is older but not due yet; the later one is claimable.
    assert claim_ids(backend, W1, 10, 99.5) == [later]
    assert claim_ids(backend, W1, 10, 99.9) == []
    assert claim_ids(backend, W2, 10, 100.0) == [id]


def _keyed(backend: Backend, now: float, n: int, limit: int, key: str = "k") -> list[InvocationId]:
    return [
        add(backend, now + i, args=f"{key}{i}", running_key=key, running_limit=limit)
        for i in range(n)
    ]


@pytest.mark.parametrize("limit", [1, 3])
def test_running_limit_per_key(backend: Backend, limit: int) -> None:
    ids = _keyed(backend, 1.0, limit + 2, limit)
    assert claim_ids(backend, W1, 100, 10.0) == ids[:limit]
    assert claim_ids(backend, W2, 100, 10.0) == []
    assert [status(backend, i) for i in ids[limit:]] == [Status.PENDING] * 2
    # Finishing one frees exactly one slot, taken by the oldest waiting one.
    assert backend.finish([Outcome(ids[0], OutcomeKind.SUCCESS, "1")], W1, 11.0) == [True]
    assert claim_ids(backend, W2, 100, 12.0) == [ids[limit]]
    assert claim_ids(backend, W2, 100, 12.0) == []


def test_skipped_invocations_stay_queued_in_place(backend: Backend) -> None:
    k1, k2 = _keyed(backend, 1.0, 2, 1)
    free = add(backend, 5.0, args="free")
    k3 = add(backend, 6.0, args="k3", running_key="k", running_limit=1)
    assert claim_ids(backend, W1, 100, 10.0) == [k1, free]
    assert backend.finish([Outcome(k1, OutcomeKind.SUCCESS, "1")], W1, 11.0) == [True]
    assert claim_ids(backend, W1, 100, 12.0) == [k2]
    assert backend.finish([Outcome(k2, OutcomeKind.SUCCESS, "1")], W1, 13.0) == [True]
    assert claim_ids(backend, W1, 100, 14.0) == [k3]


def test_running_limit_keys_are_independent(backend: Backend) -> None:
    a = _keyed(backend, 1.0, 2, 1, "a")
    b = _keyed(backend, 10.0, 2, 1, "b")
    assert claim_ids(backend, W1, 100, 20.0) == [a[0], b[0]]


def test_limited_and_unlimited_share_a_pool(backend: Backend) -> None:
    k = _keyed(backend, 1.0, 3, 1)
    free = [add(backend, 10.0 + i, args=f"free{i}") for i in range(3)]
    assert claim_ids(backend, W1, 100, 20.0) == [k[0], *free]


def _release_by(backend: Backend, how: str, id: InvocationId) -> None:
    error = ErrorInfo("builtins.ValueError", "x")
    if how == "success":
        outcome = Outcome(id, OutcomeKind.SUCCESS, "1")
    elif how == "failed":
        outcome = Outcome(id, OutcomeKind.FAILED, error=error)
    elif how == "retry":
        outcome = Outcome(id, OutcomeKind.RETRY, error=error, retry_at=1000.0)
    elif how == "handed_back":
        # Handed back goes back to PENDING at once; claiming would take it again, so the
        # check below uses another worker and expects either of the two.
        outcome = Outcome(id, OutcomeKind.HANDED_BACK)
    elif how == "pause":
        target = add(backend, 11.0, "target", pool="elsewhere")
        pause(backend, id, [target])
        return
    elif how == "cancel":
        assert backend.cancel(id, 11.0)
        return
    else:
        assert backend.fail(id, "kubenenc.errors.TaskTimeout", "late", 11.0)
        return
    assert backend.finish([outcome], W1, 11.0) == [True]


@pytest.mark.parametrize(
    "how", ["success", "failed", "retry", "handed_back", "pause", "cancel", "fail"]
)
def test_slot_is_freed(backend: Backend, how: str) -> None:
    first, second = _keyed(backend, 1.0, 2, 1)
    assert claim_ids(backend, W1, 100, 10.0) == [first]
    _release_by(backend, how, first)
    got = claim_ids(backend, W2, 1, 12.0)
    if how == "handed_back":
        assert got in ([first], [second])
    else:
        assert got == [second]
    assert claim_ids(backend, W2, 100, 12.0) == []


def test_many_busy_keys_and_a_long_queue_behind_them(backend: Backend) -> None:
    items = [
        new("k", f"{key}-{n}", running_key=f"key{key}", running_limit=1)
        for n in range(3)
        for key in range(40)
    ]
    backend.register(items, 1.0)
    free = add(backend, 2.0, args="free")
    got = claim_ids(backend, W1, 1000, 3.0)
    assert got == [i.id for i in items[:40]] + [free]  # the first of each key, then free
    assert claim_ids(backend, W2, 1000, 4.0) == []
    assert backend.finish([Outcome(items[5].id, OutcomeKind.SUCCESS, "1")], W1, 5.0) == [True]
    assert claim_ids(backend, W2, 1000, 6.0) == [items[45].id]  # the next one of key 5
