"""Records and heartbeats to JSON and back, for backends that store documents."""

from __future__ import annotations

import json

from kubenenc.backends.codec import (
    dumps_record,
    dumps_worker,
    loads_record,
    loads_worker,
    record_from_dict,
    record_to_dict,
)
from kubenenc.ids import InvocationId, TaskId, WorkerId
from kubenenc.records import ErrorInfo, InvocationRecord, Transition, WorkerInfo
from kubenenc.status import Status


def full_record() -> InvocationRecord:
    return InvocationRecord(
        id=InvocationId("a" * 32),
        app="shop",
        task=TaskId("shop.tasks.pay"),
        args='{"customer":1}',
        call_key="shop.tasks.pay#abc",
        display="pay(1)",
        pool="fast",
        priority=-2,
        status=Status.RETRY,
        created_at=1.5,
        updated_at=2.25,
        max_retries=3,
        timeout=9.5,
        running_key="rk",
        running_limit=2,
        registration_key="reg",
        depends_on=(InvocationId("b" * 32), InvocationId("c" * 32)),
        parent=InvocationId("d" * 32),
        serializer="pickle",
        attempt=2,
        lost=1,
        worker=WorkerId("host:1:x"),
        waiters=4,
        not_before=30.0,
        result='"ok"',
        error=ErrorInfo("builtins.ValueError", "bad", "Traceback ..."),
        history=[
            Transition(Status.REGISTERED, 1.5),
            Transition(Status.PENDING, 1.5, None, "why"),
            Transition(Status.RUNNING, 2.0, WorkerId("host:1:x")),
        ],
    )


def minimal_record() -> InvocationRecord:
    return InvocationRecord(
        id=InvocationId("e" * 32),
        app="a",
        task=TaskId("m.f"),
        args="{}",
        call_key="m.f#x",
        display="f()",
        pool="default",
        priority=0,
        status=Status.PENDING,
        created_at=0.0,
        updated_at=0.0,
    )


def test_record_round_trip_keeps_every_field() -> None:
    for rec in (full_record(), minimal_record()):
        back = loads_record(dumps_record(rec))
        assert back == rec
        assert isinstance(back.status, Status)
        assert isinstance(back.depends_on, tuple)


def test_unknown_fields_are_ignored_and_missing_optional_ones_default() -> None:
    d = record_to_dict(full_record())
    d["added_by_a_newer_version"] = {"x": 1}
    assert record_from_dict(d) == full_record()
    minimal = record_to_dict(minimal_record())
    for optional in ("max_retries", "attempt", "lost", "waiters", "history", "depends_on"):
        minimal.pop(optional)
    assert record_from_dict(minimal) == minimal_record()


def test_record_text_is_json() -> None:
    data = json.loads(dumps_record(full_record()))
    assert data["status"] == "RETRY"
    assert data["history"][1] == ["PENDING", 1.5, None, "why"]


def test_worker_round_trip() -> None:
    info = WorkerInfo(WorkerId("h:2:y"), "gpu", slots=8, running=3, paused=1, at=5.5, host="h")
    assert loads_worker(dumps_worker(info)) == info
    assert loads_worker(dumps_worker(info).encode()) == info
