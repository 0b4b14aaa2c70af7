"""Rate limits: at most N claims per sliding window per rate key, in the claim's own step.

Windows are half-open: starts at ``t`` and at ``t + window`` are in different windows. A
call over the rate stays PENDING (its ``not_before`` moved to when the rate may allow it)
and does not hold back other keys' calls. Times are explicit.
"""

from __future__ import annotations

import kubenenc
from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, add, claim_ids, record, status


def limited(
    backend: Backend, n: int, rate: str, key: str = "k", at: float = 1.0
) -> list[InvocationId]:
    return [add(backend, at + i / 100, args=f"{key}{i}", rate_key=key, rate=rate) for i in range(n)]


def test_no_more_than_n_claims_per_window(backend: Backend) -> None:
    ids = limited(backend, 5, "3/1/3")
    assert claim_ids(backend, W1, 10, 10.0) == ids[:3]
    waiting = [record(backend, i) for i in ids[3:]]
    assert all(r.status is Status.PENDING and r.not_before > 10.0 for r in waiting)
    assert claim_ids(backend, W2, 10, 10.5) == []
    assert claim_ids(backend, W2, 10, 10.999) == []
    # The window is half-open: at 11.0 the starts at 10.0 are out of it.
    assert claim_ids(backend, W2, 10, 11.0) == ids[3:]


def test_the_window_slides_with_each_start(backend: Backend) -> None:
    ids = limited(backend, 4, "2/1/2")
    assert claim_ids(backend, W1, 1, 10.0) == ids[:1]
    assert claim_ids(backend, W1, 1, 10.6) == ids[1:2]
    assert claim_ids(backend, W1, 5, 10.9) == []
    assert claim_ids(backend, W1, 5, 11.0) == ids[2:3]  # 10.0 left the window, 10.6 not
    assert claim_ids(backend, W1, 5, 11.5) == []
    assert claim_ids(backend, W1, 5, 11.6) == ids[3:]


def test_burst_spreads_the_allowance_over_the_window(backend: Backend) -> None:
    ids = limited(backend, 7, "4/1/2")
    assert claim_ids(backend, W1, 10, 10.0) == ids[:2]
    assert claim_ids(backend, W1, 10, 10.4) == []  # 2 in the last half second
    assert claim_ids(backend, W1, 10, 10.5) == ids[2:4]
    assert claim_ids(backend, W1, 10, 10.9) == []  # 4 in the last second
    assert claim_ids(backend, W1, 10, 11.0) == ids[4:6]
    assert claim_ids(backend, W1, 10, 11.5) == ids[6:]


def test_a_call_over_the_rate_does_not_hold_back_other_keys(backend: Backend) -> None:
    a = limited(backend, 3, "1/60/1", key="a")
    b = limited(backend, 2, "1/60/1", key="b", at=2.0)
    plain = add(backend, 3.0, args="plain")
    assert claim_ids(backend, W1, 10, 10.0) == [a[0], b[0], plain]
    assert claim_ids(backend, W1, 10, 30.0) == []
    assert claim_ids(backend, W1, 10, 70.0) == [a[1], b[1]]
    assert claim_ids(backend, W1, 10, 130.0) == [a[2]]


def test_order_within_a_key_is_kept_while_it_waits(backend: Backend) -> None:
    ids = limited(backend, 6, "2/1/2")
    got: list[str] = []
    now = 10.0
    while len(got) < 6 and now < 20:
        got += claim_ids(backend, W1, 10, now)
        now += 0.25
    assert got == ids


def test_rate_and_running_limit_together(backend: Backend) -> None:
    ids = [
        add(backend, 1 + i / 100, args=str(i), rate_key="k", rate="5/1/5", running_key="r",
            running_limit=1)
        for i in range(3)
    ]  # fmt: skip
    assert claim_ids(backend, W1, 10, 10.0) == ids[:1]
    # Held back by the running limit, the others were not counted as starts.
    done = [Outcome(ids[0], OutcomeKind.SUCCESS, result="1")]
    assert backend.finish(done, W1, 10.1) == [True]
    assert claim_ids(backend, W1, 10, 10.2) == ids[1:2]
    assert backend.finish([Outcome(ids[1], OutcomeKind.SUCCESS, result="1")], W1, 10.3) == [True]
    assert claim_ids(backend, W1, 10, 10.4) == ids[2:]


def test_a_waiting_call_can_be_cancelled(backend: Backend) -> None:
    ids = limited(backend, 2, "1/1/1")
    assert claim_ids(backend, W1, 10, 10.0) == ids[:1]
    assert backend.cancel(ids[1], 10.5)
    assert claim_ids(backend, W1, 10, 12.0) == []
    assert status(backend, ids[1]) is Status.CANCELLED


def stamp(customer: int, i: int) -> int:
    return i


def test_the_app_keys_the_rate_by_the_policy_key(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    policy = kubenenc.ConcurrencyPolicy(rate="1/m", key=("customer",))
    task = app.task(concurrency=policy)(stamp)
    first, second, other = task(1, 0), task(1, 1), task(2, 2)
    assert record(backend, first.id).rate == "1/60/1"
    assert record(backend, first.id).rate_key == record(backend, second.id).rate_key
    assert record(backend, first.id).rate_key != record(backend, other.id).rate_key
    queue = app.queue("default")
    assert claim_ids(backend, W1, 10, 10.0, queue) == [first.id, other.id]
    assert claim_ids(backend, W1, 10, 69.0, queue) == []
    assert claim_ids(backend, W1, 10, 70.0, queue) == [second.id]
