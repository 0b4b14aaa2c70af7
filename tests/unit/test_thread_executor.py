"""ThreadExecutor batches: a claimed batch runs on one thread without holding up its rest
behind a long execution, and an aborted execution that has not started never starts."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator

import kubenenc
import pytest
from kubenenc.backends.memory import MemoryBackend
from kubenenc.ids import InvocationId
from kubenenc_worker.execution import RunPayload
from kubenenc_worker.executors import STEAL_AFTER, ThreadExecutor
from kubenenc_worker.messages import Done, Event

app = kubenenc.App("batches", backend=MemoryBackend())
ran: list[str] = []
release = threading.Event()


@app.task
def note(name: str) -> str:
    ran.append(name)
    return name


@app.task
def hold(name: str) -> str:
    release.wait(10)
    ran.append(name)
    return name


def payload(task: object, name: str) -> RunPayload:
    return RunPayload(InvocationId(name), task.id, json.dumps({"name": name}), "json")  # type: ignore[attr-defined]


@pytest.fixture
def executor() -> Iterator[tuple[ThreadExecutor, queue.SimpleQueue[Event]]]:
    ran.clear()
    release.clear()
    events: queue.SimpleQueue[Event] = queue.SimpleQueue()
    ex = ThreadExecutor(app, events)
    yield ex, events
    release.set()
    ex.close(1.0)


def done_ids(events: queue.SimpleQueue[Event], n: int, timeout: float = 5.0) -> list[str]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.05)
        except queue.Empty:
            continue
        assert isinstance(event, Done)
        assert event.result.error is None
        out.append(event.result.id)
    return out


def test_a_batch_runs_in_order_on_one_thread_and_reports_every_execution(
    executor: tuple[ThreadExecutor, queue.SimpleQueue[Event]],
) -> None:
    ex, events = executor
    ex.start_many([payload(note, f"n{i}") for i in range(20)])
    assert sorted(done_ids(events, 20)) == sorted(f"n{i}" for i in range(20))
    assert ran == [f"n{i}" for i in range(20)]
    assert len(ex._all) == 1  # one thread served the whole batch


def test_a_long_execution_does_not_hold_up_the_rest_of_its_batch(
    executor: tuple[ThreadExecutor, queue.SimpleQueue[Event]],
) -> None:
    ex, events = executor
    ex.start_many([payload(note, "first"), payload(hold, "long"), payload(note, "a"),
                   payload(note, "b")])  # fmt: skip
    time.sleep(STEAL_AFTER * 5)
    assert ex.batches == 1
    ex.poll()  # the worker loop's call: the rest moves to threads of their own
    assert sorted(done_ids(events, 3)) == ["a", "b", "first"]
    assert ex.batches == 0
    assert "long" not in ran
    release.set()
    assert done_ids(events, 1) == ["long"]


def test_an_aborted_execution_that_has_not_started_never_runs(
    executor: tuple[ThreadExecutor, queue.SimpleQueue[Event]],
) -> None:
    ex, events = executor
    ex.start_many([payload(hold, "long"), payload(note, "dropped"), payload(note, "kept")])
    time.sleep(0.05)
    ex.abort(InvocationId("dropped"))
    release.set()
    assert sorted(done_ids(events, 2)) == ["kept", "long"]
    assert done_ids(events, 1, timeout=0.3) == []
    assert "dropped" not in ran
