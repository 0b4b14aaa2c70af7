"""Queue.finish, cancel and fail, and the history they leave."""

from __future__ import annotations

import pytest

from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId
from kubenenc.records import ErrorInfo, InvocationRecord, Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import (
    W1,
    W2,
    add,
    claim_ids,
    pause,
    record,
    running,
    start,
    status,
    succeed,
)

ERROR = ErrorInfo("builtins.ValueError", "bad value", "Traceback (most recent call last):\n...")


def _steps(rec: InvocationRecord) -> list[tuple[Status, float, str | None]]:
    return [(h.status, h.at, h.worker) for h in rec.history]


def test_success_stores_the_result_and_history(backend: Backend) -> None:
    id = add(backend, 1.0)
    start(backend, id, W1, 2.0)
    assert backend.finish([Outcome(id, OutcomeKind.SUCCESS, result='{"v":3}')], W1, 3.0) == [True]
    rec = record(backend, id)
    assert rec.status is Status.SUCCESS
    assert rec.result == '{"v":3}'
    assert rec.error is None
    assert rec.updated_at == 3.0
    assert _steps(rec) == [
        (Status.REGISTERED, 1.0, None),
        (Status.PENDING, 1.0, None),
        (Status.RUNNING, 2.0, W1),
        (Status.SUCCESS, 3.0, W1),
    ]


def test_failed_stores_the_error_and_counts_the_try(backend: Backend) -> None:
    id = add(backend, 1.0)
    start(backend, id, W1, 2.0)
    assert backend.finish([Outcome(id, OutcomeKind.FAILED, error=ERROR)], W1, 3.0) == [True]
    rec = record(backend, id)
    assert rec.status is Status.FAILED
    assert rec.error == ERROR
    assert rec.attempt == 1
    assert _steps(rec)[-1] == (Status.FAILED, 3.0, W1)
    assert claim_ids(backend, W1, 10, 4.0) == []


def test_retry_requeues_after_retry_at_counting_the_try(backend: Backend) -> None:
    id = add(backend, 1.0)
    start(backend, id, W1, 2.0)
    retry = Outcome(id, OutcomeKind.RETRY, error=ERROR, retry_at=50.0, reason="ValueError")
    assert backend.finish([retry], W1, 3.0) == [True]
    rec = record(backend, id)
    assert rec.status is Status.PENDING
    assert rec.not_before == 50.0
    assert rec.attempt == 1
    assert rec.error == ERROR
    assert rec.worker is None
    assert [s for s, _, _ in _steps(rec)] == [
        Status.REGISTERED,
        Status.PENDING,
        Status.RUNNING,
        Status.RETRY,
        Status.PENDING,
    ]
    assert _steps(rec)[3] == (Status.RETRY, 3.0, W1)
    assert claim_ids(backend, W2, 10, 49.0) == []
    assert claim_ids(backend, W2, 10, 50.0) == [id]
    # A second try on another worker: counted again.
    again = Outcome(id, OutcomeKind.RETRY, error=ERROR, retry_at=60.0)
    assert backend.finish([again], W2, 51.0) == [True]
    rec = record(backend, id)
    assert rec.attempt == 2
    assert rec.not_before == 60.0
    assert [h.worker for h in rec.history if h.status is Status.RUNNING] == [W1, W2]


def test_handed_back_requeues_at_once_without_counting(backend: Backend) -> None:
    id = add(backend, 1.0)
    start(backend, id, W1, 2.0)
    assert backend.finish([Outcome(id, OutcomeKind.HANDED_BACK)], W1, 3.0) == [True]
    rec = record(backend, id)
    assert rec.status is Status.PENDING
    assert rec.attempt == 0
    assert rec.worker is None
    assert _steps(rec)[-1] == (Status.PENDING, 3.0, W1)
    assert claim_ids(backend, W2, 10, 3.0) == [id]


def test_finish_batch_reports_each_outcome(backend: Backend) -> None:
    a = add(backend, 1.0, args="a")
    b = add(backend, 2.0, args="b")
    c = add(backend, 3.0, args="c")
    assert claim_ids(backend, W1, 2, 4.0) == [a, b]
    outcomes = [
        Outcome(a, OutcomeKind.SUCCESS, "1"),
        Outcome(c, OutcomeKind.SUCCESS, "1"),  # still PENDING
        Outcome(b, OutcomeKind.FAILED, error=ERROR),
    ]
    assert backend.finish(outcomes, W1, 5.0) == [True, False, True]
    assert [status(backend, i) for i in (a, b, c)] == [
        Status.SUCCESS,
        Status.FAILED,
        Status.PENDING,
    ]
    assert backend.finish([], W1, 6.0) == []


def test_the_same_invocation_twice_in_one_finish_is_stored_once(backend: Backend) -> None:
    id = add(backend, 1.0)
    start(backend, id, W1, 2.0)
    outcomes = [Outcome(id, OutcomeKind.SUCCESS, "first"), Outcome(id, OutcomeKind.FAILED)]
    assert backend.finish(outcomes, W1, 3.0) == [True, False]
    rec = record(backend, id)
    assert (rec.status, rec.result, rec.error) == (Status.SUCCESS, "first", None)


@pytest.mark.parametrize("case", ["other-worker", "pending", "final", "unknown", "paused"])
def test_finish_of_an_invocation_not_running_here_changes_nothing(
    backend: Backend, case: str
) -> None:
    id = add(backend, 1.0)
    if case == "other-worker":
        start(backend, id, W2, 2.0)
    elif case == "final":
        start(backend, id, W1, 2.0)
        succeed(backend, id, W1, 3.0, result="first")
    elif case == "unknown":
        id = InvocationId("f" * 32)
    elif case == "paused":
        start(backend, id, W1, 2.0)
        pause(backend, id, [add(backend, 2.0, "target", pool="other")])
    before = backend.get(id)
    # A paused invocation may be handed back by its worker (test_pause covers that).
    kinds = [k for k in OutcomeKind if not (case == "paused" and k is OutcomeKind.HANDED_BACK)]
    for kind in kinds:
        outcome = Outcome(id, kind, result="x", error=ERROR, retry_at=9.0)
        assert backend.finish([outcome], W1, 10.0) == [False]
    assert backend.get(id) == before


def test_cancel_pending(backend: Backend) -> None:
    id = add(backend, 1.0)
    assert backend.cancel(id, 2.0)
    rec = record(backend, id)
    assert rec.status is Status.CANCELLED
    assert rec.history[-1].status is Status.CANCELLED
    assert rec.history[-1].at == 2.0
    assert claim_ids(backend, W1, 10, 3.0) == []


def test_cancel_running_drops_the_workers_outcome(backend: Backend) -> None:
    id = add(backend, 1.0)
    start(backend, id, W1, 2.0)
    assert backend.cancel(id, 3.0, reason="user asked")
    assert status(backend, id) is Status.CANCELLED
    assert backend.finish([Outcome(id, OutcomeKind.SUCCESS, "1")], W1, 4.0) == [False]
    rec = record(backend, id)
    assert rec.status is Status.CANCELLED
    assert rec.result is None
    assert rec.history[-1].reason == "user asked"


def test_cancel_paused(backend: Backend) -> None:
    waiter = running(backend, 1.0, "w")
    target = add(backend, 1.0, "t", pool="p")
    pause(backend, waiter, [target])
    assert backend.cancel(waiter, 5.0)
    assert status(backend, waiter) is Status.CANCELLED
    # The target is unaffected and still runs.
    assert claim_ids(backend, W1, 10, 6.0, pool="p") == [target]


def test_cancel_final_or_unknown_is_false(backend: Backend) -> None:
    id = add(backend, 1.0)
    start(backend, id)
    succeed(backend, id)
    before = backend.get(id)
    assert not backend.cancel(id, 30.0)
    assert backend.get(id) == before
    other = add(backend, 1.0, args="2")
    assert backend.cancel(other, 2.0)
    assert not backend.cancel(other, 3.0)
    assert not backend.cancel(InvocationId("e" * 32), 3.0)


def test_fail_moves_to_failed_with_the_error(backend: Backend) -> None:
    pending = add(backend, 1.0, args="p")
    run = running(backend, 1.0, "r")
    for id in (pending, run):
        assert backend.fail(id, "kubenenc.errors.TaskTimeout", "ran 5 s", 7.0)
        rec = record(backend, id)
        assert rec.status is Status.FAILED
        assert rec.error is not None
        assert (rec.error.type, rec.error.message) == ("kubenenc.errors.TaskTimeout", "ran 5 s")
        assert rec.history[-1].status is Status.FAILED
    assert backend.finish([Outcome(run, OutcomeKind.SUCCESS, "1")], W1, 8.0) == [False]
    assert not backend.fail(pending, "builtins.ValueError", "again", 9.0)
    assert record(backend, pending).error.type == "kubenenc.errors.TaskTimeout"  # type: ignore[union-attr]
    assert not backend.fail(InvocationId("d" * 32), "builtins.ValueError", "x", 9.0)


def test_history_records_every_transition_with_worker_ids(backend: Backend) -> None:
    id = add(backend, 1.0, pool="p")
    target = add(backend, 1.0, "target", pool="q")
    start(backend, id, W1, 2.0)
    pause(backend, id, [target], W1, 3.0)
    start(backend, target, W2, 4.0)
    succeed(backend, target, W2, 5.0)
    assert backend.resume([id], W1, 10, 6.0).resumed == (id,)
    retry = Outcome(id, OutcomeKind.RETRY, error=ERROR, retry_at=7.0)
    assert backend.finish([retry], W1, 6.5) == [True]
    start(backend, id, W2, 7.0)
    succeed(backend, id, W2, 8.0)
    assert _steps(record(backend, id)) == [
        (Status.REGISTERED, 1.0, None),
        (Status.PENDING, 1.0, None),
        (Status.RUNNING, 2.0, W1),
        (Status.PAUSED, 3.0, W1),
        (Status.RUNNING, 6.0, W1),
        (Status.RETRY, 6.5, W1),
        (Status.PENDING, 6.5, W1),
        (Status.RUNNING, 7.0, W2),
        (Status.SUCCESS, 8.0, W2),
    ]
