"""Status triggers: ``@app.task(on_status=(charge, Status.FAILED))`` is registered by the
finish that stores that status, in the same step, once (see :mod:`kubenenc.triggers`).

The first tests write the plan by hand (as the SDK writes it, see the last ones) so every
backend is driven through the contract alone. Times are explicit.
"""

from __future__ import annotations

import json

import pytest

import kubenenc
from kubenenc.backends.contract import Backend
from kubenenc.callbacks import callback_id
from kubenenc.errors import ConfigurationError
from kubenenc.ids import InvocationId
from kubenenc.records import ErrorInfo, Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import add, nonzero, record, status
from kubenenc.testing.test_callbacks import plan, run, step

ERROR = ErrorInfo("builtins.ValueError", "boom", "Traceback ...\nValueError: boom\n")
ERROR_VALUE = {"type": ERROR.type, "message": ERROR.message, "traceback": ERROR.traceback}


def trigger_id(id: str, kind: str, task: str, attempt: int) -> InvocationId:
    return callback_id(id, f"{kind}:{task}", attempt)


def test_every_trigger_of_the_status_is_registered_with_the_callback(backend: Backend) -> None:
    on = {"failure": [step("tests.alert", pool="t1"), step("tests.refund", pool="t2")]}
    id = add(backend, 1.0, callbacks=plan(failure=step("tests.cb"), on=on))
    run(backend, id, Outcome(id, OutcomeKind.FAILED, error=ERROR), 10.0)
    assert status(backend, id) is Status.FAILED
    cb = record(backend, callback_id(id, "failure", 1))
    alert = record(backend, trigger_id(id, "failure", "tests.alert", 1))
    refund = record(backend, trigger_id(id, "failure", "tests.refund", 1))
    assert (cb.task, alert.task, refund.task) == ("tests.cb", "tests.alert", "tests.refund")
    assert (alert.pool, refund.pool) == ("t1", "t2")
    assert json.loads(alert.args) == {"inv": id, "value": ERROR_VALUE}
    assert alert.status is Status.PENDING and alert.created_at == 11.0
    # The same finish again (a retried write whose reply was lost) registers nothing more.
    assert backend.finish([Outcome(id, OutcomeKind.FAILED, error=ERROR)], "host:1:w1", 12.0) == [  # type: ignore[arg-type]
        False
    ]
    assert nonzero(backend.counts(task="tests.alert")) == {Status.PENDING: 1}
    assert nonzero(backend.counts(task="tests.refund")) == {Status.PENDING: 1}


def test_a_trigger_follows_only_its_status(backend: Backend) -> None:
    on = {"success": [step("tests.paid")], "retry": [step("tests.again")]}
    id = add(backend, 1.0, max_retries=1, callbacks=plan(on=on))
    run(backend, id, Outcome(id, OutcomeKind.RETRY, error=ERROR, retry_at=15.0), 10.0)
    assert record(backend, trigger_id(id, "retry", "tests.again", 1)).task == "tests.again"
    assert backend.get(trigger_id(id, "success", "tests.paid", 1)) is None
    run(backend, id, Outcome(id, OutcomeKind.SUCCESS, result='{"ok":true}'), 20.0)
    paid = record(backend, trigger_id(id, "success", "tests.paid", 1))
    assert json.loads(paid.args) == {"inv": id, "value": {"ok": True}}
    assert nonzero(backend.counts(task="tests.again")) == {Status.PENDING: 1}


def charge(order: int) -> int:
    if order < 0:
        raise ValueError("no such order")
    return order * 10


def alert(invocation_id: str, error: dict[str, str]) -> str:
    return f"{invocation_id}:{error['message']}"


def receipt(invocation_id: str, total: int) -> int:
    return total


def test_the_app_plans_the_triggers_watching_a_task(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    charged = app.task(charge)
    watcher = app.task(pool="alerts", on_status=(charged, Status.FAILED))(alert)
    both = app.task(pool="books", on_status=[(charged, Status.SUCCESS), (charged.id, "FAILED")])(
        receipt
    )
    inv = charged(-1)
    error = ErrorInfo("builtins.ValueError", "no such order", "")
    run(backend, inv.id, Outcome(inv.id, OutcomeKind.FAILED, error=error), 10.0,
        app.queue("default"))  # fmt: skip
    fired = record(backend, trigger_id(inv.id, "failure", watcher.id, 1))
    assert (fired.task, fired.pool) == (watcher.id, app.queue("alerts"))
    assert watcher.run(**app.serializer.loads(fired.args)) == f"{inv.id}:no such order"
    assert record(backend, trigger_id(inv.id, "failure", both.id, 1)).task == both.id
    ok = charged(3)
    run(backend, ok.id, Outcome(ok.id, OutcomeKind.SUCCESS, result="30"), 20.0,
        app.queue("default"))  # fmt: skip
    assert backend.get(trigger_id(ok.id, "success", watcher.id, 0)) is None
    paid = record(backend, trigger_id(ok.id, "success", both.id, 0))
    assert app.serializer.loads(paid.args) == {"invocation_id": ok.id, "total": 30}


def test_on_status_is_checked_when_the_task_is_declared(backend: Backend) -> None:
    app = kubenenc.App("t", backend=backend)
    charged = app.task(charge)
    with pytest.raises(ConfigurationError, match="SUCCESS, FAILED or RETRY"):
        app.task(on_status=(charged, Status.CANCELLED))(alert)
    with pytest.raises(ConfigurationError, match="pair"):
        app.task(on_status=[charged])(alert)
    with pytest.raises(ConfigurationError, match="two arguments"):
        app.task(on_status=(charged, Status.FAILED))(charge)
        charged(1)
