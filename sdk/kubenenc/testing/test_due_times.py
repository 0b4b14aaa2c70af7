"""DueTimes: the earliest due time of a pool's calls that wait on time (delayed calls and
retries), which lets an idle worker sleep until then (see the worker's idle wait)."""

from __future__ import annotations

from kubenenc.backends.contract import Backend, DueTimes, WorkNotifier
from kubenenc.records import ErrorInfo, Outcome, OutcomeKind
from kubenenc.testing.helpers import W1, add, claim_ids


def due_times(backend: Backend) -> DueTimes | None:
    """The backend as DueTimes, or None when it offers neither DueTimes nor WorkNotifier
    (MongoDB: its idle workers poll, see the README). A backend that wakes idle workers must
    tell them when delayed calls come due, or they would sleep past them."""
    if isinstance(backend, WorkNotifier):
        assert isinstance(backend, DueTimes)
    return backend if isinstance(backend, DueTimes) else None


def test_next_due_is_the_earliest_delayed_call(backend: Backend) -> None:
    b = due_times(backend)
    if b is None:
        return
    assert b.next_due("default", 1.0) is None
    add(backend, 1.0, args="late", not_before=50.0)
    add(backend, 1.0, args="soon", not_before=30.0)
    add(backend, 1.0, args="now")
    assert b.next_due("default", 10.0) == 30.0
    assert b.next_due("other", 10.0) is None
    assert len(claim_ids(backend, W1, 10, 35.0)) == 2  # "now" and "soon"
    assert b.next_due("default", 35.0) == 50.0


def test_next_due_counts_a_retry_backing_off(backend: Backend) -> None:
    b = due_times(backend)
    if b is None:
        return
    id = add(backend, 1.0, max_retries=1)
    assert claim_ids(backend, W1, 1, 2.0) == [id]
    error = ErrorInfo("builtins.ValueError", "boom", "")
    assert backend.finish([Outcome(id, OutcomeKind.RETRY, error=error, retry_at=40.0)], W1, 3.0)
    assert b.next_due("default", 4.0) == 40.0
