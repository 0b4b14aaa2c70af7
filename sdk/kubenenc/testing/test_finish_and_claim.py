"""The optional FinishAndClaim fast path: finish then claim, as one atomic step."""

from __future__ import annotations

import pytest

from kubenenc.backends.contract import Backend, FinishAndClaim
from kubenenc.records import ErrorInfo, Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, add, claim_ids, record, start, status

pytestmark = pytest.mark.kubenenc_role("FinishAndClaim")


def fast(backend: Backend) -> FinishAndClaim:
    assert isinstance(backend, FinishAndClaim)
    return backend


def test_finish_then_claim_in_one_call(backend: Backend) -> None:
    fc = fast(backend)
    first = add(backend, 1.0, args="1", running_key="k", running_limit=1)
    second = add(backend, 2.0, args="2", running_key="k", running_limit=1)
    free = add(backend, 3.0, args="3")
    assert claim_ids(backend, W1, 1, 4.0) == [first]
    done, claimed = fc.finish_and_claim(
        [Outcome(first, OutcomeKind.SUCCESS, "ok")], "default", W1, 5, 5.0
    )
    assert done == [True]
    # The slot freed by the finish is taken by the claim of the same call.
    assert [r.id for r in claimed] == [second, free]
    assert all(r.status is Status.RUNNING and r.worker == W1 for r in claimed)
    rec = record(backend, first)
    assert (rec.status, rec.result) == (Status.SUCCESS, "ok")
    assert status(backend, second) is Status.RUNNING


def test_outcomes_that_do_not_apply_are_dropped_and_the_claim_still_runs(
    backend: Backend,
) -> None:
    fc = fast(backend)
    mine = add(backend, 1.0, args="mine", pool="p")
    theirs = add(backend, 1.0, args="theirs", pool="q")
    start(backend, mine, W1, 2.0)
    start(backend, theirs, W2, 2.0)
    waiting = add(backend, 3.0, args="w", pool="p")
    error = ErrorInfo("builtins.ValueError", "x")
    outcomes = [
        Outcome(theirs, OutcomeKind.SUCCESS, "1"),  # held by W2: dropped
        Outcome(mine, OutcomeKind.RETRY, error=error, retry_at=50.0),
    ]
    done, claimed = fc.finish_and_claim(outcomes, "p", W1, 5, 4.0)
    assert done == [False, True]
    assert [r.id for r in claimed] == [waiting]  # the retried one is not due yet
    assert status(backend, theirs) is Status.RUNNING
    assert record(backend, mine).not_before == 50.0


def test_empty_outcomes_or_zero_limit(backend: Backend) -> None:
    fc = fast(backend)
    one = add(backend, 1.0, args="1")
    assert fc.finish_and_claim([], "default", W1, 0, 2.0) == ([], [])
    done, claimed = fc.finish_and_claim([], "default", W1, 3, 2.0)
    assert done == []
    assert [r.id for r in claimed] == [one]
    done, claimed = fc.finish_and_claim([Outcome(one, OutcomeKind.SUCCESS, "1")], "x", W1, 0, 3.0)
    assert (done, claimed) == ([True], [])
    assert status(backend, one) is Status.SUCCESS
