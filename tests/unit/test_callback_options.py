"""Callback task options: what is refused, and the plan the SDK writes."""

from __future__ import annotations

import json

import kubenenc
import pytest
from kubenenc.callbacks import callback_id
from kubenenc.errors import ConfigurationError


def one_arg(x: int) -> int:
    return x


def two_args(invocation_id: str, value: object) -> object:
    return value


def loop(invocation_id: str, value: object) -> object:
    return value


def test_a_callback_must_be_a_task_or_its_id() -> None:
    app = kubenenc.App("t", backend="memory://")
    with pytest.raises(ConfigurationError, match="on_success must be a task"):
        app.task(on_success=print)(one_arg)


def test_a_callback_must_take_two_arguments() -> None:
    app = kubenenc.App("t", backend="memory://")
    bad = app.task(one_arg)
    task = app.task(on_failure=bad)(two_args)
    with pytest.raises(ConfigurationError, match="must take two arguments"):
        task("x", 1)
    assert app.counts() == {}


def test_a_callback_chain_that_calls_itself_is_refused() -> None:
    app = kubenenc.App("t", backend="memory://")
    app.task(on_success="tests.unit.test_callback_options.loop")(loop)
    with pytest.raises(ConfigurationError, match="nest deeper"):
        app.tasks[kubenenc.ids.TaskId("tests.unit.test_callback_options.loop")]("x", 1)


def test_callbacks_need_the_json_serializer() -> None:
    app = kubenenc.App("t", backend="memory://", serializer="pickle")
    cb = app.task(two_args)
    task = app.task(on_success=cb)(one_arg)
    with pytest.raises(ConfigurationError, match="json serializer"):
        task(1)


def test_the_plan_names_the_callbacks_arguments_and_options() -> None:
    app = kubenenc.App("t", backend="memory://")
    cb = app.task(pool="p", retries=2, timeout=3.0, priority=4)(two_args)
    task = app.task(on_success=cb, on_retry=cb)(one_arg)
    inv = task(1)
    plan = json.loads(inv.record().callbacks or "")
    assert set(plan) == {"success", "retry"}
    assert plan["success"] == {
        "task": cb.id, "name": "two_args", "pool": "p", "priority": 4, "max_retries": 2,
        "timeout": 3.0, "id_arg": "invocation_id", "value_arg": "value", "callbacks": None,
    }  # fmt: skip
    assert task.with_options(priority=1)(2).record().callbacks == inv.record().callbacks


def test_callback_ids_are_stable_and_distinct() -> None:
    a = callback_id("0" * 32, "success", 0)
    assert a == callback_id("0" * 32, "success", 0)
    assert len(a) == 32 and int(a, 16) >= 0
    others = {callback_id("0" * 32, "retry", 1), callback_id("0" * 32, "retry", 2), a,
              callback_id(a, "success", 0)}  # fmt: skip
    assert len(others) == 4
