"""A worker thought dead (frozen, cut off from its backend) while it waits in a paused call
sees that call handed back and, before it notices, claims it again. The old execution must
end before a new one starts (never two bodies of one call in one worker), and the new claim
must not inherit the old one's end: found by the chaos suite's network cut
(tests/chaos/test_network.py), where in process mode the call ended FAILED with
InvocationCancelled (the GONE sent to the old execution's pause ended it, and its end was
taken for the new claim's); in thread mode both bodies ran at once."""

from __future__ import annotations

import threading
import time

from kubenenc import App, Status
from kubenenc.backends.memory import MemoryBackend
from kubenenc.ids import WorkerId
from kubenenc.invocation import Invocation
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.settings import WorkerSettings
from kubenenc_worker.worker import Worker

from tests.unit.worker_steps import steps_until

app = App("claimed-again", backend=MemoryBackend())


@app.task
def leaf(i: int) -> int:
    return i


BODIES = {"now": 0, "most": 0}
LOCK = threading.Lock()


@app.task
def parent() -> int:
    with LOCK:
        BODIES["now"] += 1
        BODIES["most"] = max(BODIES["most"], BODIES["now"])
    try:
        return leaf.with_options(pool="elsewhere")(41).result() + 1
    finally:
        with LOCK:
            BODIES["now"] -= 1


def _leaf_ends_elsewhere(backend: MemoryBackend, inv: Invocation[int]) -> bool:
    """Another worker runs the leaf, if it is there to claim; whether ``inv`` has ended."""
    claimed = backend.claim(app.queue("elsewhere"), WorkerId("other:1:x"), 1, time.time())
    for rec in claimed:
        backend.finish([Outcome(rec.id, OutcomeKind.SUCCESS, "41")], rec.worker or "",
                       time.time())  # fmt: skip
    return inv.status.is_final


def test_a_paused_call_handed_back_and_claimed_again_by_the_same_worker_ends_right() -> None:
    backend = MemoryBackend()
    app.configure(backend)
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=2, poll_interval=0.05))
    try:
        inv = parent()
        steps_until(worker, lambda: inv.id in worker.paused)
        # Recovery by another worker, as if this one were silent: the paused call goes back.
        backend.finish([Outcome(inv.id, OutcomeKind.HANDED_BACK, reason="worker lost")],
                       worker.id, time.time())  # fmt: skip
        assert inv.status is Status.PENDING
        # This worker claims it again before any check of what it holds.
        assert worker._claim()

        # The leaf ends elsewhere; the call must end with its real result.
        steps_until(worker, lambda: _leaf_ends_elsewhere(backend, inv))
        assert inv.status is Status.SUCCESS, inv.record().error
        assert inv.result(timeout=1) == 42
        assert BODIES["most"] == 1  # the old body had ended before the new one started
    finally:
        worker.executor.close(1.0)


def test_a_paused_call_dropped_by_the_held_check_and_claimed_again_ends_right() -> None:
    """The same, once the worker's check of what it holds has dropped the old execution but
    before that execution has ended: its end must not be taken for the new claim's."""
    backend = MemoryBackend()
    app.configure(backend)
    BODIES.update(now=0, most=0)
    worker = Worker(app, WorkerSettings(mode="thread", concurrency=2, poll_interval=0.05))
    try:
        inv = parent()
        steps_until(worker, lambda: inv.id in worker.paused)
        backend.finish([Outcome(inv.id, OutcomeKind.HANDED_BACK, reason="worker lost")],
                       worker.id, time.time())  # fmt: skip
        worker._check_held()  # drops the old execution, which is ending now
        assert worker._claim()  # and the call is claimed again before its end is read

        steps_until(worker, lambda: _leaf_ends_elsewhere(backend, inv))
        assert inv.status is Status.SUCCESS, inv.record().error
        assert inv.result(timeout=1) == 42
        assert BODIES["most"] == 1
    finally:
        worker.executor.close(1.0)
