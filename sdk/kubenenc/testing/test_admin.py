"""The Admin role (select, purge) and headers, on every backend: what ``kubenenc cancel``,
``retry`` and ``purge`` build on."""

from __future__ import annotations

import pytest

from kubenenc.backends.contract import Admin, Backend
from kubenenc.ids import InvocationId
from kubenenc.records import ErrorInfo, Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import (
    W1,
    add,
    claim_ids,
    failed,
    new,
    record,
    running,
    succeed,
)

GHOST = InvocationId("8" * 32)


def admin(backend: Backend) -> Admin:
    assert isinstance(backend, Admin), f"{type(backend).__name__} lacks the Admin role"
    return backend


pytestmark = pytest.mark.kubenenc_role("Admin")


def test_every_backend_offers_the_admin_role(backend: Backend) -> None:
    admin(backend)


def test_select_filters_by_task_status_app_and_age_in_registration_order(
    backend: Backend,
) -> None:
    a1 = add(backend, 1.0, name="a", args="1")
    a2 = add(backend, 2.0, name="a", args="2")
    b1 = add(backend, 3.0, name="b", args="1")
    other = add(backend, 4.0, name="a", args="3", app="other")
    done = running(backend, 5.0, name="a", args="4")
    succeed(backend, done, now=30.0)
    bad = running(backend, 6.0, name="a", args="5")
    failed(backend, bad, now=40.0)
    b = admin(backend)
    assert b.select() == [a1, a2, b1, other, done, bad]
    assert b.select(task="tests.a") == [a1, a2, other, done, bad]
    assert b.select(task="tests.a", app="t") == [a1, a2, done, bad]
    assert b.select(task="tests.a", statuses=[Status.PENDING]) == [a1, a2, other]
    assert b.select(statuses=[Status.SUCCESS, Status.FAILED]) == [done, bad]
    assert b.select(statuses=[Status.SUCCESS, Status.FAILED], updated_before=35.0) == [done]
    assert b.select(updated_before=2.5) == [a1, a2]
    assert b.select(task="tests.nothing") == []


def test_purge_deletes_final_records_only(backend: Backend) -> None:
    pending = add(backend, 1.0, name="p")
    busy = running(backend, 2.0, name="r")
    done = running(backend, 3.0, name="d")
    succeed(backend, done, now=10.0)
    bad = running(backend, 4.0, name="f")
    failed(backend, bad, now=11.0)
    gone = add(backend, 5.0, name="c")
    assert backend.cancel(gone, 12.0)
    b = admin(backend)
    assert b.purge([pending, busy, done, bad, gone, GHOST, done]) == 3
    for id in (done, bad, gone):
        assert backend.get(id) is None
    light = backend.get_many([done, pending])
    assert light[0] is None and light[1] is not None and light[1].id == pending
    assert record(backend, pending).status is Status.PENDING
    assert record(backend, busy).status is Status.RUNNING
    assert b.select() == [pending, busy]
    assert done not in [r.id for r in backend.query(limit=100)]
    assert b.purge([done]) == 0  # already gone
    # The backend goes on working: the running one finishes, new work registers.
    succeed(backend, busy, now=20.0)
    assert record(backend, add(backend, 21.0, name="n")).status is Status.PENDING


def test_headers_are_stored_and_read_back(backend: Backend) -> None:
    item = new("h", "1")._replace(headers={"traceparent": "00-abc-def-01", "k": "v"})
    backend.register([item], 1.0)
    assert record(backend, item.id).headers == {"traceparent": "00-abc-def-01", "k": "v"}
    [light] = backend.get_many([item.id])
    assert light is not None and light.headers == {"traceparent": "00-abc-def-01", "k": "v"}
    [claimed] = backend.claim("default", W1, 1, 2.0)
    assert claimed.headers == {"traceparent": "00-abc-def-01", "k": "v"}
    succeed(backend, item.id, now=3.0)
    assert record(backend, item.id).headers == {"traceparent": "00-abc-def-01", "k": "v"}
    assert record(backend, add(backend, 4.0, name="plain")).headers == {}


def test_oldest_pending_of_a_pool_counts_due_delayed_and_parked_calls(backend: Backend) -> None:
    b = admin(backend)
    assert b.oldest_pending("q") is None
    # A call parked behind a full running limit is still pending.
    holder = add(backend, 1.0, name="lim", args="1", pool="q", running_key="k", running_limit=1)
    parked = add(backend, 2.0, name="lim", args="2", pool="q", running_key="k", running_limit=1)
    assert claim_ids(backend, pool="q", now=3.0) == [holder]
    assert claim_ids(backend, pool="q", now=3.5) == []  # parks it
    assert b.oldest_pending("q") == 2.0
    later = add(backend, 4.0, name="x", pool="q")
    assert b.oldest_pending("q") == 2.0
    assert backend.cancel(parked, 5.0)
    assert b.oldest_pending("q") == 4.0
    # A retry waiting for its back-off (not due yet) is pending too.
    flaky = add(backend, 0.5, name="flaky", pool="r")
    assert claim_ids(backend, pool="r", now=6.0) == [flaky]
    error = ErrorInfo("builtins.OSError", "again", "")
    retry = Outcome(flaky, OutcomeKind.RETRY, error=error, retry_at=1000.0)
    assert backend.finish([retry], W1, 7.0) == [True]
    assert b.oldest_pending("r") == 0.5
    assert b.oldest_pending("q") == 4.0 and b.oldest_pending("none") is None
    assert claim_ids(backend, pool="q", now=8.0) == [later]
    assert b.oldest_pending("q") is None
