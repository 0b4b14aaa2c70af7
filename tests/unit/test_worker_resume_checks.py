"""How often the worker loop reads the targets of its paused executions: at most once a poll
interval while it is busy with other work, and at once after it wrote the end of one of
them itself."""

from __future__ import annotations

import time
from typing import Any

from kubenenc import App, Status
from kubenenc.backends.memory import MemoryBackend
from kubenenc.ids import WorkerId
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.settings import WorkerSettings
from kubenenc_worker.worker import Worker

from tests.unit.worker_steps import steps_until

POLL = 0.3

app = App("resume-checks", backend=MemoryBackend())


@app.task
def leaf(i: int) -> int:
    return i


@app.task
def parent_elsewhere() -> int:
    return leaf.with_options(pool="elsewhere")(41).result() + 1


@app.task
def parent_here() -> int:
    return leaf(41).result() + 1


class TimedReads(MemoryBackend):
    """A memory backend that notes when ``get_many`` read a record of queue ``watched``."""

    def __init__(self, watched: str) -> None:
        super().__init__()
        self.watched = watched
        self.reads: list[float] = []

    def get_many(self, ids: Any) -> Any:
        found = super().get_many(ids)
        if any(r is not None and r.pool == self.watched for r in found):
            self.reads.append(time.monotonic())
        return found


def test_paused_targets_are_read_once_a_poll_interval_not_every_busy_turn() -> None:
    backend = TimedReads(app.queue("elsewhere"))
    app.configure(backend)
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=2, poll_interval=POLL))
    reads = backend.reads
    try:
        inv = parent_elsewhere()
        steps_until(worker, lambda: bool(worker.paused))
        # Busy with other work: many turns, each finishing calls none of which is awaited.
        started, before = time.monotonic(), len(reads)
        group = leaf.parallelize(range(300))
        steps_until(worker, lambda: all(i.status is Status.SUCCESS for i in group))
        busy = time.monotonic() - started
        assert len(reads) - before <= 1 + busy / POLL, (len(reads) - before, busy)
        # Another worker ends the target: seen at a later poll, and resumed.
        [rec] = backend.claim(app.queue("elsewhere"), WorkerId("other:1:x"), 1, time.time())
        backend.finish([Outcome(rec.id, OutcomeKind.SUCCESS, "41")], rec.worker or "", time.time())
        steps_until(worker, lambda: inv.status is Status.SUCCESS)
        assert inv.result(timeout=1) == 42
    finally:
        worker.executor.close(1.0)


def test_a_target_this_worker_finishes_resumes_its_waiter_at_once() -> None:
    app.configure(MemoryBackend())
    # A poll interval far longer than any wait here: only the own finish can resume it.
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=1, poll_interval=3600))
    try:
        inv = parent_here()
        steps_until(worker, lambda: bool(worker.paused))
        [target] = next(iter(worker.paused.values())).targets
        steps_until(worker, lambda: app.invocation(target).status.is_final)
        # Resumed in the step that wrote the target's end, not a poll interval on.
        assert inv.id not in worker.paused
        steps_until(worker, lambda: inv.status is Status.SUCCESS)
        assert inv.result(timeout=1) == 42
    finally:
        worker.executor.close(1.0)
