"""Delayed calls: ``NewInvocation.not_before`` (``countdown=`` / ``eta=``) on every backend.

A delayed call is registered at once (PENDING, counted, visible, cancellable, holding its
registration key) and no claim takes it while ``now < not_before``; once due it is claimed
in the ordinary claim order. Times are explicit, as everywhere in the suite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

import kubenenc
from kubenenc.backends.contract import Backend, FinishAndClaim
from kubenenc.errors import ConfigurationError
from kubenenc.records import Outcome, OutcomeKind, RegisterKind
from kubenenc.status import Status
from kubenenc.testing.helpers import (
    W1,
    W2,
    add,
    claim_ids,
    new,
    nonzero,
    record,
    status,
    succeed,
)


def test_a_delayed_call_is_registered_at_once_but_not_claimed_before_due(
    backend: Backend,
) -> None:
    id = add(backend, 1.0, not_before=50.0)
    rec = record(backend, id)
    assert rec.status is Status.PENDING
    assert rec.not_before == 50.0
    assert nonzero(backend.counts()) == {Status.PENDING: 1}
    assert claim_ids(backend, W1, 10, 10.0) == []
    assert claim_ids(backend, W2, 10, 49.999) == []
    assert status(backend, id) is Status.PENDING
    assert claim_ids(backend, W2, 10, 50.0) == [id]
    assert record(backend, id).worker == W2


def test_a_due_time_already_past_is_claimable_at_once(backend: Backend) -> None:
    id = add(backend, 10.0, not_before=5.0)
    assert claim_ids(backend, W1, 10, 10.0) == [id]


def test_delayed_calls_do_not_change_the_claim_order_among_due_calls(backend: Backend) -> None:
    low_late = add(backend, 1.0, args="low-late", priority=-1, not_before=30.0)
    plain = add(backend, 2.0, args="plain")
    high_late = add(backend, 3.0, args="high-late", priority=5, not_before=30.0)
    mid_soon = add(backend, 4.0, args="mid-soon", priority=2, not_before=20.0)
    late_old = add(backend, 5.0, args="old-equal", not_before=40.0)
    # At 10 only the undelayed call is due; at 25 the one due at 20 too.
    assert claim_ids(backend, W1, 1, 25.0) == [mid_soon]
    assert claim_ids(backend, W1, 10, 25.0) == [plain]
    # Due ones are taken by priority then age, not by due time.
    assert claim_ids(backend, W1, 10, 35.0) == [high_late, low_late]
    assert claim_ids(backend, W1, 10, 45.0) == [late_old]


def test_due_order_is_priority_then_age_not_due_time(backend: Backend) -> None:
    first = add(backend, 1.0, args="a", not_before=9.0)
    second = add(backend, 2.0, args="b", not_before=3.0)
    third = add(backend, 3.0, args="c")
    assert claim_ids(backend, W1, 10, 10.0) == [first, second, third]


def test_a_delayed_call_can_be_cancelled_and_is_never_claimed(backend: Backend) -> None:
    id = add(backend, 1.0, not_before=50.0)
    other = add(backend, 1.0, args="other", not_before=50.0)
    assert backend.cancel(id, 5.0)
    assert status(backend, id) is Status.CANCELLED
    assert claim_ids(backend, W1, 10, 100.0) == [other]
    assert status(backend, id) is Status.CANCELLED


def test_a_delayed_call_holds_its_registration_key(backend: Backend) -> None:
    first = new(args="k", registration_key="k", registration="dedupe", not_before=50.0)
    second = new(args="k", registration_key="k", registration="dedupe")
    rejected = new(args="k", registration_key="k", registration="reject", not_before=70.0)
    res = backend.register([first, second, rejected], 1.0)
    assert [r.kind for r in res] == [
        RegisterKind.CREATED,
        RegisterKind.DEDUPLICATED,
        RegisterKind.REJECTED,
    ]
    assert {r.id for r in res} == {first.id}
    assert claim_ids(backend, W1, 10, 10.0) == []
    assert claim_ids(backend, W1, 10, 50.0) == [first.id]


def test_a_delayed_call_with_dependencies_waits_for_both(backend: Backend) -> None:
    dep = add(backend, 1.0, args="dep", pool="deps")
    id = add(backend, 2.0, args="late", not_before=50.0, depends_on=(dep,))
    assert status(backend, id) is Status.WAITING_DEPENDENCIES
    assert claim_ids(backend, W1, 10, 10.0, "deps") == [dep]
    succeed(backend, dep, now=20.0)
    assert status(backend, id) is Status.PENDING
    assert claim_ids(backend, W1, 10, 30.0) == []
    assert claim_ids(backend, W1, 10, 60.0) == [id]


@pytest.mark.kubenenc_role("FinishAndClaim")
def test_finish_and_claim_respects_due_times(backend: Backend) -> None:
    assert isinstance(backend, FinishAndClaim)
    first = add(backend, 1.0, args="first")
    late = add(backend, 2.0, args="late", not_before=30.0)
    assert claim_ids(backend, W1, 1, 10.0) == [first]
    done = [Outcome(first, OutcomeKind.SUCCESS, result="1")]
    stored, claimed = backend.finish_and_claim(done, "default", W1, 5, 20.0)
    assert stored == [True]
    assert claimed == []
    _, claimed = backend.finish_and_claim([], "default", W1, 5, 30.0)
    assert [r.id for r in claimed] == [late]


def test_a_retry_after_a_delayed_start_uses_its_own_retry_time(backend: Backend) -> None:
    id = add(backend, 1.0, not_before=20.0, max_retries=1)
    assert claim_ids(backend, W1, 10, 20.0) == [id]
    retry = Outcome(id, OutcomeKind.RETRY, retry_at=40.0)
    assert backend.finish([retry], W1, 25.0) == [True]
    assert claim_ids(backend, W1, 10, 39.0) == []
    assert claim_ids(backend, W1, 10, 40.0) == [id]


def add_numbers(a: int, b: int) -> int:
    return a + b


def test_countdown_and_eta_through_the_app(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    task = app.task(add_numbers)
    before = datetime.now(UTC).timestamp()
    soon = task.with_options(countdown=300)(1, 2)
    after = datetime.now(UTC).timestamp()
    at = datetime(2100, 1, 1, 12, 0, tzinfo=UTC)
    later = task.with_options(eta=at)(3, 4)
    madrid = datetime(2100, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    same = task.with_options(eta=madrid)(5, 6)
    now_call = task(7, 8)
    assert before + 300 <= record(backend, soon.id).not_before <= after + 300
    assert record(backend, later.id).not_before == at.timestamp()
    assert record(backend, same.id).not_before == at.timestamp()
    assert record(backend, now_call.id).not_before == 0.0
    assert soon.status is Status.PENDING
    queue = app.queue("default")
    assert claim_ids(backend, W1, 10, after + 1, queue) == [now_call.id]
    assert claim_ids(backend, W1, 10, after + 300, queue) == [soon.id]
    soon_bound = task.with_options(eta=at)
    assert soon_bound.with_options(countdown=5).options.eta is None
    with pytest.raises(ConfigurationError, match="no timezone"):
        task.with_options(eta=datetime(2100, 1, 1, 12, 0))
    with pytest.raises(ConfigurationError, match="not both"):
        task.with_options(eta=at, countdown=1)
