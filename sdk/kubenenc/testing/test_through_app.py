"""The SDK on top of each backend: what ``App`` and tasks write, the backend must serve.

Calls go through ``kubenenc.App(..., backend=backend)`` and module-level tasks; a test plays
the worker with the contract's own calls (claim/finish/pause) and explicit times.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import kubenenc
from kubenenc.backends.contract import Backend
from kubenenc.outcomes import error_info
from kubenenc.records import Outcome, OutcomeKind, PauseKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, claim_ids, nonzero

PER_CUSTOMER = kubenenc.ConcurrencyPolicy(running_limit=1, key=("customer",))
DEDUPE = kubenenc.ConcurrencyPolicy(registration="dedupe", key=("customer",))
REJECT = kubenenc.ConcurrencyPolicy(registration="reject")


def add(a: int, b: int) -> int:
    return a + b


def charge(customer: int, amount: float) -> str:
    return f"{customer}:{amount}"


def fib(n: int) -> int:
    return n


def finish(backend: Backend, inv: kubenenc.Invocation[Any], value: object) -> None:
    text = inv.runtime.serializer.dumps(value)
    assert backend.finish([Outcome(inv.id, OutcomeKind.SUCCESS, result=text)], W1, 20.0) == [True]


def test_call_claim_finish_result(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    task = app.task(add)
    inv = task(2, 3)
    assert inv.status is Status.PENDING
    [rec] = backend.claim(app.queue("default"), W1, 10, 10.0)
    assert rec.id == inv.id
    args = app.serializer.loads(rec.args)
    assert args == {"a": 2, "b": 3}
    finish(backend, inv, task.run(**args))
    assert inv.result(timeout=5) == 5
    assert nonzero(app.counts()) == {Status.SUCCESS: 1}
    assert [i.id for i in app.invocations(task=task)] == [inv.id]


def test_failure_and_cancel_reach_the_caller_with_their_type(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    task = app.task(add)
    bad, cancelled = task(1, 0), task(2, 0)
    assert claim_ids(backend, W1, 1, 10.0, pool=app.queue("default")) == [bad.id]
    try:
        raise ZeroDivisionError("no zero")
    except ZeroDivisionError as exc:
        info = error_info(exc)
    assert backend.finish([Outcome(bad.id, OutcomeKind.FAILED, error=info)], W1, 11.0) == [True]
    with pytest.raises(ZeroDivisionError, match="no zero"):
        bad.result(timeout=5)
    assert cancelled.cancel()
    with pytest.raises(kubenenc.InvocationCancelled):
        cancelled.result(timeout=5)


def test_result_times_out_while_pending(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    inv = app.task(add)(1, 1)
    began = time.monotonic()
    with pytest.raises(kubenenc.ResultTimeout):
        inv.result(timeout=0.05)
    assert not inv.wait(timeout=0.01)
    assert time.monotonic() - began < 3


def test_running_limit_per_argument_key(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    task = app.task(concurrency=PER_CUSTOMER)(charge)
    first, second, other = task(1, 5.0), task(1, 6.0), task(2, 5.0)
    assert claim_ids(backend, W1, 10, 10.0, pool=app.queue("default")) == [first.id, other.id]
    finish(backend, first, "done")
    assert claim_ids(backend, W2, 10, 21.0, pool=app.queue("default")) == [second.id]


def test_dedupe_and_reject_through_the_sdk(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    deduped = app.task(concurrency=DEDUPE)(charge)
    first = deduped(1, 5.0)
    assert deduped(1, 9.0) == first  # same key (customer), other amount
    assert deduped(2, 5.0) != first
    rejected = app.task(concurrency=REJECT)(add)
    held = rejected(1, 2)
    with pytest.raises(kubenenc.RegistrationRejected) as info:
        rejected(1, 2)
    assert info.value.existing_id == held.id
    assert rejected(2, 2) != held


def test_cycle_through_sdk_call_keys(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    f = app.task(fib)
    g = app.task(add)
    top = f.with_options(pool="top")(5)
    assert claim_ids(backend, W1, 1, 10.0, pool=app.queue("top")) == [top.id]
    mid = g.with_options(pool="mid")(5, 0)
    assert backend.pause(top.id, W1, [mid.id], 11.0).kind is PauseKind.PAUSED
    assert claim_ids(backend, W2, 1, 12.0, pool=app.queue("mid")) == [mid.id]
    fine = f.with_options(pool="leaf")(4)  # other arguments: no loop
    again = f.with_options(pool="leaf")(n=5)  # the same call as top, written differently
    res = backend.pause(mid.id, W2, [fine.id, again.id], 13.0)
    assert res.kind is PauseKind.CYCLE
    assert res.loop == ("fib(5)", "add(5, 0)", "fib(5)")
    assert again.status is Status.FAILED
    with pytest.raises(kubenenc.CycleDetectedError, match="fib\\(5\\)"):
        again.result(timeout=5)
    assert fine.status is Status.PENDING
