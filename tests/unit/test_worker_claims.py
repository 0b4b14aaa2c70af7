"""When the worker loop claims: not again at once after a claim that emptied the queue (a
round trip for nothing, which a lone call's finish would wait behind), but when woken, after
a finish, or when an idle wait ends."""

from __future__ import annotations

import threading
from typing import Any

from kubenenc import App
from kubenenc.backends.memory import MemoryBackend
from kubenenc.settings import WorkerSettings
from kubenenc_worker.worker import _WAKE, Worker

release = threading.Event()


def hold(i: int) -> int:
    release.wait(10)
    return i


class CountedClaims(MemoryBackend):
    """A memory backend that notes how many invocations each claim took."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[int] = []

    def claim(self, *args: Any) -> Any:
        found = super().claim(*args)
        self.got.append(len(found))
        return found


def test_a_claim_that_empties_the_queue_is_followed_by_another_only_when_woken() -> None:
    backend = CountedClaims()
    app = App("claims", backend=backend)
    task = app.task(hold)
    got = backend.got
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=4))
    release.clear()
    try:
        task(1)
        assert worker._step()  # claims the call (1 of 4 asked for) and starts it
        assert got == [1]
        task(2)
        for _ in range(3):
            worker._step()
        assert got == [1]  # the queue was empty at the last claim: no claim until woken
        worker.events.put(_WAKE)
        worker._step()
        assert got == [1, 1] and len(worker.running) == 2
        worker._step()
        assert got == [1, 1]
        worker._drained = False  # what an idle wait that ends does (the poll)
        worker._step()
        assert got == [1, 1, 0]
    finally:
        release.set()
        worker.executor.close(1.0)
