"""Callbacks: a finish registers the invocation's ``on_success`` / ``on_failure`` /
``on_retry`` callback in the same step, once (see :mod:`kubenenc.callbacks`).

Plans are written by hand here (as the SDK writes them, see the last test) so every backend
is driven through the contract alone. Times are explicit.
"""

from __future__ import annotations

import json
from typing import Any

import kubenenc
from kubenenc.backends.contract import Backend
from kubenenc.callbacks import callback_id
from kubenenc.records import ErrorInfo, Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, add, claim_ids, nonzero, record, status

ERROR = ErrorInfo("builtins.ValueError", "boom", "Traceback ...\nValueError: boom\n")
ERROR_VALUE = {"type": ERROR.type, "message": ERROR.message, "traceback": ERROR.traceback}


def step(task: str, then: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"task": task, "name": task.rsplit(".", 1)[-1], "pool": fields.get("pool", "cb"),
            "priority": fields.get("priority", 0), "max_retries": fields.get("max_retries", 0),
            "timeout": fields.get("timeout"), "id_arg": "inv", "value_arg": "value",
            "callbacks": then}  # fmt: skip


def plan(**kinds: dict[str, Any]) -> str:
    return json.dumps(kinds, separators=(",", ":"))


def run(backend: Backend, id: str, outcome: Outcome, now: float, pool: str = "default") -> None:
    assert claim_ids(backend, W1, 1, now, pool) == [id]
    assert backend.finish([outcome], W1, now + 1) == [True]


def test_success_registers_the_callback_in_the_same_step(backend: Backend) -> None:
    id = add(backend, 1.0, callbacks=plan(success=step("tests.cb", priority=3, timeout=2.5)))
    run(backend, id, Outcome(id, OutcomeKind.SUCCESS, result='{"total":[1,2]}'), 10.0)
    cb = record(backend, callback_id(id, "success", 0))
    assert cb.status is Status.PENDING
    assert (cb.task, cb.app, cb.pool, cb.priority, cb.timeout) == ("tests.cb", "t", "cb", 3, 2.5)
    assert json.loads(cb.args) == {"inv": id, "value": {"total": [1, 2]}}
    assert cb.created_at == 11.0
    assert [t.at for t in cb.history] == [11.0, 11.0]
    assert nonzero(backend.counts(task="tests.cb")) == {Status.PENDING: 1}
    assert claim_ids(backend, W1, 5, 12.0, "cb") == [cb.id]


def test_a_finish_stored_once_registers_the_callback_once(backend: Backend) -> None:
    id = add(backend, 1.0, callbacks=plan(success=step("tests.cb")))
    run(backend, id, Outcome(id, OutcomeKind.SUCCESS, result="1"), 10.0)
    # The same outcome again (a worker retrying a finish whose reply it lost) is dropped.
    assert backend.finish([Outcome(id, OutcomeKind.SUCCESS, result="1")], W1, 12.0) == [False]
    assert nonzero(backend.counts(task="tests.cb")) == {Status.PENDING: 1}


def test_no_callback_of_another_kind(backend: Backend) -> None:
    id = add(backend, 1.0, callbacks=plan(failure=step("tests.on_fail")))
    run(backend, id, Outcome(id, OutcomeKind.SUCCESS, result="null"), 10.0)
    assert backend.get(callback_id(id, "failure", 0)) is None
    assert nonzero(backend.counts(pool="cb")) == {}


def test_retry_then_failure_callbacks(backend: Backend) -> None:
    id = add(
        backend, 1.0, max_retries=1,
        callbacks=plan(retry=step("tests.on_retry"), failure=step("tests.on_fail")),
    )  # fmt: skip
    run(backend, id, Outcome(id, OutcomeKind.RETRY, error=ERROR, retry_at=20.0), 10.0)
    retried = record(backend, callback_id(id, "retry", 1))
    assert retried.task == "tests.on_retry"
    assert json.loads(retried.args) == {"inv": id, "value": ERROR_VALUE}
    assert backend.get(callback_id(id, "failure", 1)) is None
    run(backend, id, Outcome(id, OutcomeKind.FAILED, error=ERROR), 20.0)
    failed = record(backend, callback_id(id, "failure", 2))
    assert (failed.task, failed.status) == ("tests.on_fail", Status.PENDING)
    assert json.loads(failed.args) == {"inv": id, "value": ERROR_VALUE}
    assert status(backend, id) is Status.FAILED


def test_a_chain_of_three_callbacks(backend: Backend) -> None:
    third = plan(success=step("tests.third", pool="c3"))
    second = plan(success=step("tests.second", then=third, pool="c2"))
    id = add(backend, 1.0, callbacks=plan(success=step("tests.first", then=second, pool="c1")))
    run(backend, id, Outcome(id, OutcomeKind.SUCCESS, result="1"), 10.0)
    first = callback_id(id, "success", 0)
    run(backend, first, Outcome(first, OutcomeKind.SUCCESS, result="2"), 20.0, "c1")
    second_id = callback_id(first, "success", 0)
    assert json.loads(record(backend, second_id).args) == {"inv": first, "value": 2}
    run(backend, second_id, Outcome(second_id, OutcomeKind.SUCCESS, result="3"), 30.0, "c2")
    third_id = callback_id(second_id, "success", 0)
    assert record(backend, third_id).task == "tests.third"
    run(backend, third_id, Outcome(third_id, OutcomeKind.SUCCESS, result="4"), 40.0, "c3")
    assert backend.get(callback_id(third_id, "success", 0)) is None
    assert nonzero(backend.counts()) == {Status.SUCCESS: 4}


def total(order: int) -> int:
    return order * 10


def record_total(invocation_id: str, value: int) -> str:
    return f"{invocation_id}:{value}"


def test_the_app_writes_the_plan(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    notify = app.task(pool="notify", priority=2)(record_total)
    task = app.task(on_success=notify, on_failure=notify.id, retries=2)(total)
    inv = task(7)
    run(
        backend,
        inv.id,
        Outcome(inv.id, OutcomeKind.SUCCESS, result="70"),
        10.0,
        app.queue("default"),
    )
    assert inv.callback("failure") is None
    cb = inv.callback("success")
    assert cb is not None and cb.id == callback_id(inv.id, "success", 0)
    rec = cb.record()
    assert (rec.task, rec.pool, rec.priority) == (notify.id, app.queue("notify"), 2)
    assert app.serializer.loads(rec.args) == {"invocation_id": inv.id, "value": 70}
    assert notify.run(**app.serializer.loads(rec.args)) == f"{inv.id}:70"
