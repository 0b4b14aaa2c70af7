"""Declared dependencies (``depends_on``): waiting, release, and failure cascades."""

from __future__ import annotations

import pytest

from kubenenc.backends.contract import Backend
from kubenenc.ids import InvocationId
from kubenenc.records import RegisterKind
from kubenenc.status import Status
from kubenenc.testing.helpers import (
    W1,
    add,
    claim_ids,
    failed,
    new,
    record,
    start,
    status,
    succeed,
)

DEPENDENCY_FAILED = "kubenenc.errors.DependencyFailed"


def test_waits_until_every_dependency_succeeds(backend: Backend) -> None:
    a = add(backend, 1.0, "a", pool="deps")
    b = add(backend, 1.0, "b", pool="deps2")
    d = add(backend, 2.0, "d", depends_on=(a, b))
    assert status(backend, d) is Status.WAITING_DEPENDENCIES
    assert claim_ids(backend, W1, 10, 3.0) == []
    start(backend, a)
    succeed(backend, a)
    assert status(backend, d) is Status.WAITING_DEPENDENCIES
    assert claim_ids(backend, W1, 10, 21.0) == []
    start(backend, b)
    succeed(backend, b, now=22.0)
    rec = record(backend, d)
    assert rec.status is Status.PENDING
    assert [h.status for h in rec.history] == [
        Status.REGISTERED,
        Status.WAITING_DEPENDENCIES,
        Status.PENDING,
    ]
    assert claim_ids(backend, W1, 10, 23.0) == [d]


def test_already_succeeded_dependency_gives_pending_at_once(backend: Backend) -> None:
    a = add(backend, 1.0, "a")
    start(backend, a)
    succeed(backend, a)
    d = add(backend, 30.0, "d", depends_on=(a,))
    assert status(backend, d) is Status.PENDING
    assert claim_ids(backend, W1, 10, 31.0) == [d]


def test_dependency_in_the_same_batch(backend: Backend) -> None:
    a = new("a", pool="x")
    d = new("d", depends_on=(a.id,))
    results = backend.register([a, d], 1.0)
    assert [r.kind for r in results] == [RegisterKind.CREATED] * 2
    assert status(backend, d.id) is Status.WAITING_DEPENDENCIES
    start(backend, a.id)
    succeed(backend, a.id)
    assert status(backend, d.id) is Status.PENDING


def _assert_dependency_failed(backend: Backend, id: InvocationId, names: InvocationId) -> None:
    rec = record(backend, id)
    assert rec.status is Status.FAILED
    assert rec.error is not None
    assert rec.error.type == DEPENDENCY_FAILED
    assert names in rec.error.message


@pytest.mark.parametrize("how", ["failed", "cancelled", "fail"])
def test_failed_dependency_fails_dependents_in_cascade(backend: Backend, how: str) -> None:
    a = add(backend, 1.0, "a", pool="a")
    ok = add(backend, 1.0, "ok", pool="ok")
    d = add(backend, 2.0, "d", depends_on=(ok, a))
    e = add(backend, 3.0, "e", depends_on=(d,))
    unrelated = add(backend, 4.0, "u")
    if how == "failed":
        start(backend, a)
        failed(backend, a)
    elif how == "cancelled":
        assert backend.cancel(a, 5.0)
    else:
        assert backend.fail(a, "kubenenc.errors.TaskTimeout", "late", 5.0)
    _assert_dependency_failed(backend, d, a)
    _assert_dependency_failed(backend, e, d)
    assert status(backend, ok) is Status.PENDING
    assert status(backend, unrelated) is Status.PENDING
    assert claim_ids(backend, W1, 10, 30.0) == [unrelated]


@pytest.mark.parametrize("how", ["failed", "cancelled"])
def test_already_failed_dependency_fails_at_registration(backend: Backend, how: str) -> None:
    a = add(backend, 1.0, "a")
    if how == "failed":
        start(backend, a)
        failed(backend, a)
    else:
        assert backend.cancel(a, 2.0)
    d = add(backend, 30.0, "d", depends_on=(a,))
    _assert_dependency_failed(backend, d, a)
    assert claim_ids(backend, W1, 10, 31.0) == []


def test_unknown_dependency_fails_at_registration(backend: Backend) -> None:
    ghost = InvocationId("a" * 32)
    d = add(backend, 1.0, "d", depends_on=(ghost,))
    _assert_dependency_failed(backend, d, ghost)


def test_failed_at_registration_does_not_hold_its_registration_key(backend: Backend) -> None:
    ghost = InvocationId("b" * 32)
    add(backend, 1.0, "d", depends_on=(ghost,), registration_key="k", registration="reject")
    again = add(backend, 2.0, "d", registration_key="k", registration="reject")
    assert status(backend, again) is Status.PENDING


def test_waiting_dependent_can_be_cancelled(backend: Backend) -> None:
    a = add(backend, 1.0, "a", pool="a")
    d = add(backend, 2.0, "d", depends_on=(a,))
    assert backend.cancel(d, 3.0)
    start(backend, a)
    succeed(backend, a)
    assert status(backend, d) is Status.CANCELLED
    assert claim_ids(backend, W1, 10, 30.0) == []
