"""Executions that end where the worker did not expect them to: a paused call's child process
killed, executions that could not be started, and a drain whose last write fails (issue 13,
items 3, 4, 8). Before, the first two left calls RUNNING for ever on a healthy worker and the
third lost finished results (their tasks ran again)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from kubenenc import Status
from kubenenc.backends.memory import MemoryBackend
from kubenenc.ids import InvocationId
from kubenenc.records import Outcome, WorkerId
from kubenenc.settings import WorkerSettings
from kubenenc_worker import Worker
from kubenenc_worker.execution import RunPayload
from kubenenc_worker.executors import Executor
from kubenenc_worker.messages import WaitReply

from tests.integration import taskapp
from tests.support import wait_until


@pytest.mark.timeout(120)
def test_a_paused_call_whose_child_process_dies_is_handed_back_and_runs_again(
    app_on: Callable[[Any], Any], run_worker: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    app_on(sqlite_url)
    run_worker(mode="process", concurrency=1)
    marker = tmp_path / "pids"
    inv = taskapp.note_pid_then_wait(str(marker), 1.5)
    wait_until("the call paused", lambda: inv.status is Status.PAUSED)
    pid = int(marker.read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    # The sleep it waited on ends while nothing runs the call any more: it must not be
    # resumed into a RUNNING that nobody executes, but handed back and run again.
    assert inv.result(timeout=90) == "slept"
    rec = inv.record()
    assert rec.lost == 1
    pids = marker.read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc to see processes")
@pytest.mark.timeout(120)
def test_the_child_of_a_killed_worker_stops_its_body(
    app_on: Callable[[Any], Any], spawn_worker: Callable[..., Any], sqlite_url: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    # Before, the child ran its body to the end while recovery gave the call to another
    # worker: two bodies of one call at once.
    app_on(sqlite_url)
    worker = spawn_worker(sqlite_url, "--mode", "process", "--concurrency", "1")
    marker = tmp_path / "pids"
    taskapp.sleepy(60.0, str(marker))
    wait_until("the body started", marker.exists, 60)
    child = int(marker.read_text().split()[0])
    assert _running(child)
    worker.kill()
    worker.wait(10)
    wait_until("the child of the killed worker to end", lambda: not _running(child), 20)


class FailingStarts(Executor):
    """Passes everything to ``inner`` but fails the first ``fails`` starts, the way a thread
    or process limit (or a broken pipe to a dead idle child) fails them: by returning them,
    or, with ``raises``, by raising."""

    def __init__(self, inner: Executor, fails: int, raises: bool) -> None:
        self.inner = inner
        self.fails = fails
        self.raises = raises

    def start(self, payload: RunPayload) -> None:
        self.inner.start(payload)

    def start_many(self, payloads: Sequence[RunPayload]) -> list[RunPayload]:
        if self.fails > 0:
            self.fails -= 1
            if self.raises:
                raise RuntimeError("can't start new thread")
            return list(payloads)
        return self.inner.start_many(payloads)

    def poll(self) -> None:
        self.inner.poll()

    @property
    def batches(self) -> int:
        return self.inner.batches

    def reply(self, id: InvocationId, reply: WaitReply) -> None:
        self.inner.reply(id, reply)

    def abort(self, id: InvocationId) -> None:
        self.inner.abort(id)

    def close(self, timeout: float) -> None:
        self.inner.close(timeout)


@pytest.fixture
def make_worker() -> Iterator[Callable[..., Worker]]:
    made: list[Worker] = []

    def make(**settings: Any) -> Worker:
        ws = WorkerSettings(mode="thread", heartbeat_interval=0.2, poll_interval=0.01, **settings)
        worker = Worker(taskapp.app, ws)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop(grace=1)


@pytest.mark.parametrize("raises", [False, True], ids=["returned", "raised"])
@pytest.mark.timeout(60)
def test_calls_that_could_not_be_started_are_handed_back_at_once(
    app_on: Callable[[Any], Any], make_worker: Callable[..., Worker], raises: bool
) -> None:
    app_on(MemoryBackend())
    invs = [taskapp.add(i, i) for i in range(5)]
    worker = make_worker(concurrency=2)
    worker.executor = FailingStarts(worker.executor, fails=2, raises=raises)
    worker.start()
    assert [inv.result(timeout=30) for inv in invs] == [i * 2 for i in range(5)]
    reasons = [h.reason for inv in invs for h in inv.record().history]
    assert reasons.count("not started") >= 2
    assert all(inv.record().lost == 0 for inv in invs)


@pytest.mark.timeout(60)
def test_a_drain_retries_its_last_write_before_giving_up(
    app_on: Callable[[Any], Any], make_worker: Callable[..., Worker]
) -> None:
    backend = MemoryBackend()
    app_on(backend)
    real_finish, real_finish_and_claim = backend.finish, backend.finish_and_claim
    failures = {"down": False, "tried": 0, "after_stop": 0}

    def outage() -> None:
        if failures["down"]:
            failures["tried"] += 1
            raise ConnectionError("backend unreachable")
        if failures["after_stop"] > 0:
            failures["after_stop"] -= 1
            raise ConnectionError("backend unreachable")

    def finish(outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        outage()
        return real_finish(outcomes, worker, now)

    def finish_and_claim(
        outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> Any:
        outage()
        return real_finish_and_claim(outcomes, pool, worker, limit, now)

    backend.finish = finish  # type: ignore[method-assign]
    backend.finish_and_claim = finish_and_claim  # type: ignore[method-assign]
    worker = make_worker(concurrency=1).start()
    assert taskapp.add(0, 1).result(timeout=30) == 1  # the worker is up and writing
    # The next result cannot be written until the drain starts; then three more writes fail
    # (as many as the old drain could make: one in flight, one more step, one at the end).
    failures["down"] = True
    inv = taskapp.add(2, 3)
    wait_until("the body ran and its write failed", lambda: failures["tried"] > 0)
    failures.update(down=False, after_stop=3)
    worker.stop(grace=0)
    assert inv.status is Status.SUCCESS
    assert inv.result() == 5
