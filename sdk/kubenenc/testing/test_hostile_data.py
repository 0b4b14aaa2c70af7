"""Stored data never runs code: hostile arguments and results, on every backend.

Whoever can write one record to the backend chooses its arguments and, for a finished call,
its result text. A tagged class path in either must never pick code to run: the worker's
decoding of arguments and the caller's decoding of a result fail the call with
``SerializationError`` naming the tag, and nothing the payload names is called.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubenenc_worker.worker import Worker
from pydantic import BaseModel, field_validator

import kubenenc
from kubenenc.backends.contract import Backend
from kubenenc.ids import TaskId, new_invocation_id
from kubenenc.records import NewInvocation, Outcome, OutcomeKind, RegisterKind
from kubenenc.settings import WorkerSettings
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, claim_ids

MARKER: list[Path] = []
"""Where a side effect would leave its trace (set per test)."""


def _touch() -> None:
    MARKER[0].write_text("ran")


@dataclasses.dataclass
class SideEffectOnInit:
    """A dataclass nobody declared, whose construction has a side effect."""

    a: int = 0

    def __post_init__(self) -> None:
        _touch()


class SideEffectOnValidate(BaseModel):
    """A pydantic model nobody declared, whose validator has a side effect."""

    a: int = 0

    @field_validator("a")
    @classmethod
    def _check(cls, value: int) -> int:
        _touch()
        return value


class SideEffectOnSetState:
    """A plain class with side effects in every hook a decoder might call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _touch()

    def __setstate__(self, state: Any) -> None:
        _touch()


@dataclasses.dataclass
class Declared:
    """Declared by the app (via ``take``'s annotation), so it must decode — as a dataclass."""

    a: int


def take(x: object, declared: Declared | None = None) -> object:
    return x


def hostile_payloads(marker: Path) -> list[tuple[str, Any]]:
    """``(tag, tagged value)`` pairs that would run code if a decoder trusted the path."""
    here = __name__
    return [
        ("enum", ["subprocess:Popen", ["touch", str(marker)]]),
        ("enum", ["os:system", f"touch {marker}"]),
        ("enum", ["builtins:eval", f"open({str(marker)!r}, 'w')"]),
        ("enum", ["pathlib:Path", str(marker)]),  # a class, not an Enum
        ("enum", [f"{here}:SideEffectOnSetState", 1]),
        ("dataclass", [f"{here}:SideEffectOnInit", {"a": 1}]),
        ("dataclass", [f"{here}:SideEffectOnSetState", {}]),
        ("dataclass", ["subprocess:Popen", {"args": ["touch", str(marker)]}]),
        ("pydantic", [f"{here}:SideEffectOnValidate", {"a": 1}]),
        ("pydantic", [f"{here}:SideEffectOnInit", {"a": 1}]),
        ("pydantic", ["builtins:eval", {}]),
        ("enum", [f"{here}:Declared", 1]),  # declared, but as a dataclass
        ("pydantic", [f"{here}:Declared", {"a": 1}]),
    ]


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    MARKER[:] = [tmp_path / "side-effect"]
    yield MARKER[0]
    MARKER.clear()


def _hostile_call(app: kubenenc.App, backend: Backend, args: str) -> kubenenc.Invocation[Any]:
    item = NewInvocation(
        id=new_invocation_id(),
        app=app.name,
        task=TaskId(f"{__name__}.take"),
        args=args,
        call_key=f"{__name__}.take#{args}",
        display="take(...)",
        pool=app.queue("default"),
    )
    [res] = backend.register([item], 1.0)
    assert res.kind is RegisterKind.CREATED
    return app.invocation(item.id)


def test_hostile_arguments_fail_in_the_worker_and_run_nothing(
    backend: Backend, marker: Path
) -> None:
    app = kubenenc.App("t", backend=backend)
    app.task(take)
    payloads = hostile_payloads(marker)
    calls = [
        (tag, _hostile_call(app, backend, json.dumps({"x": {"__kn__": tag, "v": v}})))
        for tag, v in payloads
    ]
    fine = app.task(take)(7, Declared(3))
    settings = WorkerSettings(mode="thread", concurrency=2, poll_interval=0.01)
    worker = Worker(app, settings).start()
    try:
        for tag, inv in calls:
            assert inv.wait(timeout=20), (tag, inv.status)
            assert inv.status is Status.FAILED, tag
            with pytest.raises(kubenenc.SerializationError, match=f"'{tag}'"):
                inv.result(timeout=1)
        assert fine.result(timeout=20) == 7
    finally:
        worker.stop(grace=5)
    assert not marker.exists()


def test_a_hostile_result_fails_in_the_caller_and_runs_nothing(
    backend: Backend, marker: Path
) -> None:
    app = kubenenc.App("t", backend=backend)
    app.task(take)
    for tag, v in hostile_payloads(marker):
        inv = _hostile_call(app, backend, '{"x":1}')
        assert claim_ids(backend, W1, 1, 10.0, pool=app.queue("default")) == [inv.id]
        text = json.dumps({"__kn__": tag, "v": v})
        assert backend.finish([Outcome(inv.id, OutcomeKind.SUCCESS, result=text)], W1, 11.0)
        with pytest.raises(kubenenc.SerializationError, match=f"'{tag}'"):
            inv.result(timeout=5)
    assert not marker.exists()


def test_the_caller_refuses_to_send_an_undeclared_class(backend: Backend, marker: Path) -> None:
    app = kubenenc.App("t", backend=backend)
    task = app.task(take)
    value = SideEffectOnInit(1)  # built here, on purpose: only the encoding is checked
    marker.unlink()
    with pytest.raises(kubenenc.SerializationError, match="SideEffectOnInit is not a type"):
        task(value)
    assert sum(app.counts().values()) == 0
    assert not marker.exists()
