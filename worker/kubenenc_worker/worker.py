"""The worker loop: claim, run, pause, resume, finish — with heartbeats and a graceful drain.

One thread owns the lifecycle: it claims as many invocations as it has free slots, starts
them on the executor, and handles what executors report. A wait request becomes a backend
``pause`` (with its cycle check); a paused execution keeps its thread or process but not its
slot, which is what lets a single slot complete a chain of any depth. Paused executions
whose targets are final are resumed before anything new is claimed. Finishes are written in
batches, and kept until written, so a backend outage delays them but loses nothing.

A second thread beats the heart and, with embedded backends, acts as the enforcer: it hands
back the work of workers that stopped beating (every worker may do it; it is atomic).

SIGTERM (or :meth:`Worker.stop`) drains: no more claims, running work gets ``drain_grace``
seconds, whatever is left is handed back to the queue, and the process exits 0.

Size: over 500 lines because the loop is one state machine (running, paused, stopping, the
finish buffer) that every step reads and changes on one thread; what stands alone is in its
own module already (``executors/``, ``execution.py``, ``messages.py``, ``metrics.py``).
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from kubenenc.app import App
from kubenenc.backends.contract import FinishAndClaim, WorkNotifier
from kubenenc.errors import ConfigurationError, TaskTimeout
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.outcomes import error_info
from kubenenc.records import InvocationRecord, Outcome, OutcomeKind, PauseKind, WorkerInfo
from kubenenc.retry import backoff_delay
from kubenenc.settings import WorkerSettings
from kubenenc.signatures import describe, signature_name
from kubenenc.status import Status

from kubenenc_worker.execution import RunPayload, RunResult
from kubenenc_worker.executors import AsyncExecutor, Executor, ProcessExecutor, ThreadExecutor
from kubenenc_worker.http import serve
from kubenenc_worker.messages import (
    GONE,
    READY,
    TIMED_OUT,
    Done,
    Event,
    Stopped,
    WaitReply,
    WaitRequest,
)
from kubenenc_worker.metrics import Metrics

log = logging.getLogger("kubenenc.worker")


def new_worker_id() -> WorkerId:
    """``host:pid:random``, unique per start."""
    return WorkerId(f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")


_STATUS_OF = {
    OutcomeKind.SUCCESS: Status.SUCCESS.value, OutcomeKind.FAILED: Status.FAILED.value,
    OutcomeKind.RETRY: Status.RETRY.value, OutcomeKind.HANDED_BACK: Status.PENDING.value,
}  # fmt: skip
"""The status each outcome kind ends in, as the metrics label it."""

STOP_WAIT = 1.0
"""Seconds a drain waits for aborted bodies to stop before its last write."""

FINAL_FLUSH_WINDOW = 5.0
"""Seconds a drain keeps retrying its last write after ``drain_grace`` ran out (the pods'
termination grace leaves a margin above the drain for it)."""

DUE_READ_ABOVE = 0.02
"""A polling worker (a backend without WorkNotifier) reads the next due time (DueTimes) only
before a poll wait longer than this (seconds): a shorter wait ends about as early as the due
time would, and each read may cost a round trip."""

START_WITHIN = 0.5
"""A body must start within this fraction of ``heartbeat_timeout`` after the claim that got
it was sent, or the worker checks again that it still holds the call (see
``RunPayload.start_by``): by a heartbeat timeout after this worker's last beat its calls
may have been handed back."""

UNAVAILABLE_RERUNS = 5
"""Times one worker hands a call back because its body raised BackendUnavailable before the
body's error stands (a body that raises it for its own reasons, say a second app on a dead
server, must not go round for ever)."""

_WAKE = Done(RunResult(InvocationId("")))
"""An event that only wakes the loop (its empty id matches no execution)."""


@dataclass(slots=True)
class _Active:
    rec: InvocationRecord
    started: float
    deadline: float | None
    paused_at: float = 0.0
    targets: set[InvocationId] = field(default_factory=set)
    final: set[InvocationId] = field(default_factory=set)
    wait_deadline: float | None = None
    """When a timed wait (``result(timeout=...)``) gives up (monotonic), if it is one."""


def _app_path(app: App) -> str:
    for name, module in list(sys.modules.items()):
        if name != "__main__" and getattr(module, "__dict__", None):
            for attr, value in list(vars(module).items()):
                if value is app:
                    return f"{name}:{attr}"
    raise ConfigurationError(
        f"process mode needs the app as module:attr; cannot find where {app!r} is defined"
    )


class Worker:
    """Runs invocations of ``app`` from one pool. Use :meth:`run` (blocking) or
    :meth:`start` (background thread, for tests and the demo), then :meth:`stop`."""

    def __init__(
        self,
        app: App,
        settings: WorkerSettings | None = None,
        *,
        app_path: str | None = None,
        backend_url: str | None = None,
        worker_id: WorkerId | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or WorkerSettings()
        self.id = worker_id or new_worker_id()
        self.slots = self.settings.concurrency or os.cpu_count() or 1
        self.pool = self.settings.pool
        self.queue = app.queue(self.pool)
        """The stored queue this worker claims from: its app's own (see kubenenc.scope)."""
        if backend_url is not None and backend_url != self.app.backend_url:
            self.app.configure(backend_url)
        self.backend = app.backend
        roles = app.runtime.roles  # the optional roles, checked once (kubenenc.backends.roles)
        self._fast = roles.finish_and_claim
        self._early = roles.resume_early
        self._notifier = roles.notifier
        self._due = roles.due_times
        self._sleep_until: float | None = None
        """While idle with a notifier: when (monotonic) the loop next claims without being
        woken -- the earliest due delayed call, at the latest a heartbeat interval on.
        Read from the backend once per idle spell (None: not read yet)."""
        self._warned_early = False
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.metrics = Metrics()
        self.running: dict[InvocationId, _Active] = {}
        self.paused: dict[InvocationId, _Active] = {}
        self.stopping: dict[InvocationId, tuple[Outcome, float]] = {}
        # Executions of calls this worker no longer holds (handed back, cancelled) that an
        # abort has not ended yet: none of them may start here again until it has.
        self.ending: set[InvocationId] = set()
        """Aborted bodies that may still run (a thread cannot be killed), with the outcome
        to write for their call once they have stopped. Each keeps its slot until then."""
        self._outcomes: list[tuple[Outcome, float]] = []
        self._stop = threading.Event()
        self._drain_deadline: float | None = None
        self._done = threading.Event()
        self._tick = time.monotonic()
        self._backend_ok = False
        self._drained = False
        """The last claim got fewer than it asked for: the queue was empty then, so the loop
        does not claim again until woken (work may have come) or an idle wait ends (the
        poll). Without it, each claim that starts a lone call is followed at once by an
        empty one, a round trip that the call's finish then waits behind."""
        self._resume_at = 0.0
        """When paused executions' targets are next read (monotonic): at most once a poll
        interval, at once after this worker wrote the end of one of them (often the case: a
        parent waits on children it runs itself). Without it a busy loop read them on every
        turn."""
        self._claim_after = 0.0
        """No claims before this (monotonic): set after a start failure, so that a worker
        that cannot start anything (no threads, no processes) does not claim and hand back
        in a tight loop."""
        self._unavailable: dict[InvocationId, int] = {}
        """Call -> times this worker handed it back for BackendUnavailable in its body."""
        self._unheld_due = False
        """An execution ended while its call was paused (its child process died): check at
        once what the backend still has on this worker, instead of at the next interval."""
        self._thread: threading.Thread | None = None
        self._heart: threading.Thread | None = None
        mode = self.settings.mode
        if mode == "process" and not type(self.backend).shared_across_processes:
            raise ConfigurationError(
                f"the {type(self.backend).__name__} lives in one process, so process mode "
                "cannot share it; use --mode thread or async, or a sqlite/redis/mongodb backend"
            )
        self._app_path = app_path if app_path else (_app_path(app) if mode == "process" else "")
        self.executor: Executor = self._make_executor()

    def _make_executor(self) -> Executor:
        mode = self.settings.mode
        if mode == "thread":
            return ThreadExecutor(self.app, self.events)
        if mode == "async":
            return AsyncExecutor(self.app, self.events)
        return ProcessExecutor(
            self._app_path, self.app.backend_url, self.events, self.slots,
            self.settings.log_format,
        )  # fmt: skip

    # -- public control ------------------------------------------------------------------------

    def start(self) -> Worker:
        """Run in a background thread; returns at once."""
        self._thread = threading.Thread(target=self.run, name="kubenenc-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, grace: float | None = None, wait: bool = True) -> None:
        """Drain: stop claiming, give running work ``grace`` seconds (default from settings),
        hand back the rest."""
        grace = self.settings.drain_grace if grace is None else grace
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + grace
        self._stop.set()
        self.events.put(_WAKE)
        if wait:
            self._done.wait()
            if self._thread is not None:
                self._thread.join()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT drain; a second SIGINT hands back at once."""

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if self._stop.is_set() and signum == signal.SIGINT:
                self._drain_deadline = time.monotonic()
            log.info("signal %s: draining (grace %.0f s)", signum, self.settings.drain_grace)
            self.stop(wait=False)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        """Work until stopped; returns after the drain."""
        server = None
        try:
            self._beat()
            self._publish_signatures()
            self._heart = threading.Thread(
                target=self._heartbeat_loop, name="kubenenc-heart", daemon=True
            )
            self._heart.start()
            if self._notifier is not None:
                threading.Thread(
                    target=self._wake_on_work, args=(self._notifier,), name="kubenenc-waker",
                    daemon=True,
                ).start()  # fmt: skip
            if self.settings.http_port is not None:
                server = serve(
                    self.settings.http_host, self.settings.http_port, self._alive, self._ready,
                    lambda: self.metrics.render(self.pool),
                )  # fmt: skip
            log.info("worker %s: pool %s (queue %s), %d slots, %s mode", self.id, self.pool,
                     self.queue, self.slots, self.settings.mode)  # fmt: skip
            self._loop()
        finally:
            self._shutdown()
            if server is not None:
                server.shutdown()
                server.server_close()
            self._done.set()

    def _publish_signatures(self) -> None:
        """Store what each task takes, for those who check calls without importing it (the
        operator checks a TaskDefinition's ``arguments``: see :mod:`kubenenc.signatures`)."""
        namespace = self.app.settings.namespace
        try:
            for task in list(self.app.tasks.values()):
                text = describe(task.func).model_dump_json()
                self.backend.set_policy(signature_name(task.id, namespace), text)
        except Exception:  # only a check elsewhere depends on it: never stop the worker
            log.warning("could not publish the tasks' signatures", exc_info=True)

    def _loop(self) -> None:
        idle = 0.0005
        last_check = time.monotonic()
        while True:
            self._tick = time.monotonic()
            try:
                progressed = self._step()
                if self._unheld_due or self._tick - last_check >= self.settings.heartbeat_interval:
                    last_check = self._tick
                    self._unheld_due = False
                    self._check_held()
                    self._release_unheld()
                self._backend_ok = True
            except Exception:
                self._backend_ok = False
                log.exception("backend step failed; retrying")
                progressed = False
                idle = min(max(idle * 2, 0.1), 5.0)
            if self._stop.is_set():
                if (
                    not self.running and not self.paused and not self._outcomes
                    and not self.stopping
                ):  # fmt: skip
                    return
                if self._drain_deadline is not None and time.monotonic() >= self._drain_deadline:
                    self._hand_back_all()
                    return
            if progressed:
                idle = 0.0005
                continue
            try:
                batched = self.executor.batches > 0
                wait = min(idle, 0.001) if batched else self._idle_wait(idle)
                event = self.events.get(timeout=wait)
                self._handle(event)
                idle = 0.0005
            except queue.Empty:
                self._drained = False  # an idle wait ended: poll
                idle = min(idle * 2, self.settings.poll_interval)

    def _idle_wait(self, idle: float) -> float:
        """How long the idle loop may wait for an event before it claims again.

        With a backend that wakes waiting workers (WorkNotifier) and nothing of its own to
        watch (no paused or stopping calls, no drain), a drained worker sleeps until a
        wake-up, the earliest due delayed call (DueTimes), the first deadline of its running
        calls, or a heartbeat interval (its periodic checks), whichever comes first.
        Otherwise it polls every ``idle`` seconds (up to ``poll_interval``); on a backend
        without WorkNotifier but with DueTimes a long poll wait (see :data:`DUE_READ_ABOVE`)
        ends early when a delayed call comes due before it. Such a worker cannot sleep
        longer than its poll: only a claim shows it a new call."""
        if self._notifier is None:
            if self._due is None or idle <= DUE_READ_ABOVE or self._stop.is_set():
                return idle
            left = self._due_in()
            return idle if left is None else min(idle, left)
        if (
            not self._drained or self.paused or self.stopping or self._stop.is_set()
            or self._unheld_due
        ):  # fmt: skip
            return idle
        now = time.monotonic()
        if self._sleep_until is None:
            left = self._due_in()
            until = now + self.settings.heartbeat_interval
            self._sleep_until = until if left is None else min(until, now + left)
        until = self._sleep_until
        for active in self.running.values():
            if active.deadline is not None:
                until = min(until, active.deadline)
        return max(0.0, until - now)

    def _due_in(self) -> float | None:
        """Seconds until the earliest due delayed call of this worker's queue (0 when it is
        due already), or None when none waits or the backend cannot say (no DueTimes; a
        failed read only costs the early wake-up: the claim that follows reports the
        backend's state)."""
        if self._due is None:
            return None
        wall = time.time()
        try:
            due = self._due.next_due(self.queue, wall)
        except Exception:
            log.debug("reading the next due time failed", exc_info=True)
            return None
        return None if due is None else max(0.0, due - wall)

    def _step(self) -> bool:
        progressed = False
        self.executor.poll()
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            self._handle(event)
            progressed = True
        claiming = not self._stop.is_set() and self._tick >= self._claim_after
        fast = self._fast
        if fast is not None and self._outcomes and claiming and not self.paused and self._free():
            progressed |= self._flush_and_claim(fast)
            claiming = False  # it claimed all it could; a second claim would find nothing
        written = self._outcomes
        if self._flush():
            progressed = True
            self._drained = False  # a finish may free a slot of a running key: parked work back
            if self.paused and self._awaited(written):
                self._resume_at = 0.0
        self._expire()
        if self.paused and self._free() > 0 and self._tick >= self._resume_at:
            self._resume_at = self._tick + self.settings.poll_interval
            progressed |= self._resume()
        if claiming and self._free() > 0 and not self._drained:
            progressed |= self._claim()
        self.metrics.set_load(len(self.running), len(self.paused), self.slots)
        return progressed

    def _awaited(self, written: list[tuple[Outcome, float]]) -> bool:
        """Whether a paused execution waits on one of the outcomes just written."""
        ids = {o.id for o, _ in written}
        return any(not ids.isdisjoint(a.targets) for a in self.paused.values())

    def _free(self) -> int:
        return self.slots - len(self.running) - len(self.stopping)

    def _claim(self) -> bool:
        self._sleep_until = None  # the next idle spell reads the due time again
        free = self._free()
        asked = time.monotonic()
        claimed = self.backend.claim(self.queue, self.id, free, time.time())
        self._drained = len(claimed) < free
        return self._start(claimed, asked)

    def _flush_and_claim(self, backend: FinishAndClaim) -> bool:
        self._sleep_until = None
        batch = self._outcomes
        free = self._free()
        asked = time.monotonic()
        _, claimed = backend.finish_and_claim(
            [o for o, _ in batch], self.queue, self.id, free, time.time()
        )
        self._drained = len(claimed) < free
        self._outcomes = []
        self._observe(batch)
        self._start(claimed, asked)
        return True

    def _start(self, claimed: list[InvocationRecord], asked: float) -> bool:
        """Start what a claim sent at ``asked`` (monotonic) returned."""
        if not claimed:
            return False
        self.metrics.add_claimed(len(claimed))
        now = time.monotonic()
        start_by = asked + self.settings.heartbeat_timeout * START_WITHIN
        payloads = []
        for rec in claimed:
            if self._still_here(rec.id):
                self._claimed_again(rec.id)
                continue
            deadline = now + rec.timeout if rec.timeout else None
            self.running[rec.id] = _Active(rec, now, deadline)
            payloads.append(self._payload(rec, start_by))
        try:
            failed = self.executor.start_many(payloads)
        except Exception:  # the contract says it returns them; hold to it if it does not
            log.exception("starting %d invocation(s) failed", len(payloads))
            failed = payloads
        if failed:
            self._not_started(failed)
        return True

    def _payload(self, rec: InvocationRecord, start_by: float) -> RunPayload:
        return RunPayload(
            rec.id, rec.task, rec.args, rec.serializer, rec.attempt, self.id, self.pool,
            rec.headers or None, start_by,
        )  # fmt: skip

    def _start_stale(self, id: InvocationId) -> None:
        """An execution did not start: its ``start_by`` had passed (this worker, or the task
        process, was frozen or starved between the claim and the start). Start it again if
        the backend says this worker still holds the call; otherwise it was handed back
        meanwhile and may run elsewhere: drop it, nothing to write."""
        active = self.running.get(id)
        if active is None:
            return
        asked = time.monotonic()
        rec = self.backend.get_many([id])[0]
        if rec is None or rec.worker != self.id or rec.status is not Status.RUNNING:
            log.warning("%s was handed back before its body could start; not started", id)
            del self.running[id]
            return
        payload = self._payload(active.rec, asked + self.settings.heartbeat_timeout * START_WITHIN)
        if self.executor.start_many([payload]):
            self._not_started([payload])

    def _still_here(self, id: InvocationId) -> bool:
        return id in self.running or id in self.paused or id in self.stopping or id in self.ending

    def _claimed_again(self, id: InvocationId) -> None:
        """``id`` was handed back while this worker was thought dead (frozen, cut off, too
        slow to beat) and this worker claimed it again before it noticed: an old execution
        of it still runs or waits here. End that one and give the new claim back at once
        (claimed again later, by any worker). Starting a second execution beside the old
        one let the old one's end (or the GONE reply to its pause) land on the new claim:
        the call ended FAILED with InvocationCancelled (found by tests/chaos/test_network)."""
        log.warning("claimed %s again while an old execution of it was still here; "
                    "stopping that one and handing the call back", id)  # fmt: skip
        self.running.pop(id, None)
        self.paused.pop(id, None)
        outcome = Outcome(id, OutcomeKind.HANDED_BACK, reason="claimed again while still here")
        if id in self.stopping:  # the old one is being stopped already: what it was to write
            self.stopping[id] = (outcome, 0.0)  # belonged to the old claim
        elif id in self.ending:  # being stopped, nothing of its own to write
            self._outcomes.append((outcome, 0.0))
        else:
            self._abort(id, outcome)

    def _not_started(self, failed: Sequence[RunPayload]) -> None:
        """Hand back at once what the executor could not start (it runs nowhere), and claim
        nothing for a second, so that a worker that cannot start anything does not spin."""
        for payload in failed:
            if self.running.pop(payload.id, None) is not None:
                outcome = Outcome(payload.id, OutcomeKind.HANDED_BACK, reason="not started")
                self._outcomes.append((outcome, 0.0))
        self._claim_after = time.monotonic() + 1.0
        log.warning("could not start %d invocation(s); handed back", len(failed))

    def _handle(self, event: Event) -> None:
        if isinstance(event, WaitRequest):
            self._on_wait(event)
        elif isinstance(event, Stopped):
            self._on_stopped(event.id)
        elif event.result.id:
            self._on_done(event.result)
        else:  # a wake: work may have come
            self._drained = False

    def _on_wait(self, request: WaitRequest) -> None:
        active = self.running.get(request.id)
        if active is None:
            self.executor.reply(request.id, GONE)
            return
        result = self.backend.pause(request.id, self.id, request.targets, time.time())
        if result.kind is PauseKind.READY:
            self.executor.reply(request.id, READY)
        elif result.kind is PauseKind.CYCLE:
            self.executor.reply(request.id, WaitReply("cycle", result.loop))
        elif result.kind is PauseKind.GONE:
            self.executor.reply(request.id, GONE)
        else:
            del self.running[request.id]
            active.paused_at = time.monotonic()
            active.targets = set(request.targets)
            active.final = set()
            active.wait_deadline = None
            if request.timeout is not None:
                active.wait_deadline = active.paused_at + max(0.0, request.timeout)
                self._resume_at = min(self._resume_at, active.wait_deadline)
            self.paused[request.id] = active

    def _resume(self) -> bool:
        unknown = list({t for a in self.paused.values() for t in a.targets - a.final})
        final: set[InvocationId] = set()
        if unknown:
            for target, rec in zip(unknown, self.backend.get_many(unknown), strict=True):
                if rec is None or rec.is_final:
                    final.add(target)
        ready = []
        late = []
        now = time.monotonic()
        for pid, active in self.paused.items():
            active.final |= final & active.targets
            if active.final >= active.targets:
                ready.append(pid)
            elif active.wait_deadline is not None and now >= active.wait_deadline:
                late.append(pid)
            elif active.wait_deadline is not None:
                self._resume_at = min(self._resume_at, active.wait_deadline)
        progressed = False
        if ready:
            result = self.backend.resume(ready, self.id, self._free(), time.time())
            self._resumed(result.resumed, result.gone, READY)
            progressed = bool(result.resumed or result.gone)
        if late and self._free() > 0:
            progressed |= self._resume_late(late)
        return progressed

    def _resume_late(self, late: list[InvocationId]) -> bool:
        """Resume paused calls whose timed wait ran out; ResultTimeout is raised in each."""
        if self._early is None:
            if not self._warned_early:
                self._warned_early = True
                log.warning(
                    "%s cannot end a pause early: result(timeout=...) inside a task waits "
                    "until its targets end", type(self.backend).__name__,
                )  # fmt: skip
            for pid in late:
                self.paused[pid].wait_deadline = None
            return False
        result = self._early.resume_early(late, self.id, self._free(), time.time())
        self._resumed(result.resumed, result.gone, TIMED_OUT)
        return bool(result.resumed or result.gone)

    def _resumed(
        self, resumed: Sequence[InvocationId], gone: Sequence[InvocationId], reply: WaitReply
    ) -> None:
        now = time.monotonic()
        for pid in resumed:
            active = self.paused.pop(pid)
            if active.deadline is not None:
                active.deadline += now - active.paused_at
            active.wait_deadline = None
            self.running[pid] = active
            self.executor.reply(pid, reply)
        for pid in gone:
            if self.paused.pop(pid, None) is not None:
                self._end_unheld(pid)

    def _on_stopped(self, id: InvocationId) -> None:
        """An aborted body has really ended: its slot is free, and what was decided for its
        call when it was aborted (a timeout's FAILED or RETRY, a drain's hand-back) is
        written now, not before, so that no second body of a limited call can start while
        this one still runs."""
        self.ending.discard(id)
        pending = self.stopping.pop(id, None)
        if pending is not None:
            self._outcomes.append(pending)

    def _abort(self, id: InvocationId, outcome: Outcome, elapsed: float = 0.0) -> None:
        """Stop ``id``'s body; ``outcome`` is written once it has stopped (see _on_stopped)."""
        if self.executor.abort(id):
            self._outcomes.append((outcome, elapsed))
        else:
            self.stopping[id] = (outcome, elapsed)

    def _on_done(self, result: RunResult) -> None:
        if result.stale:
            self._start_stale(result.id)
            return
        active = self.running.pop(result.id, None)
        if active is None:
            if self.paused.pop(result.id, None) is not None:
                # Its execution ended while the call was paused (a child process killed while
                # waiting): nothing would run it when resumed. Dropped from ``paused``, it is
                # handed back now by _release_unheld (``lost`` counted, FAILED past max_lost).
                log.warning("the execution of paused %s ended: %s", result.id, result.error)
                self._unheld_due = True
            return
        self._outcomes.append((self._outcome(active, result), time.monotonic() - active.started))

    def _outcome(self, active: _Active, result: RunResult) -> Outcome:
        rec = active.rec
        if result.unavailable and self._rerun_unavailable(rec.id):
            # The backend was out for longer than the body's client retried: not the task's
            # fault. Handed back (no try counted), it runs again once the backend is back
            # (this outcome is written only then): at-least-once, see the README.
            log.warning("%s: the backend was unreachable from its body; handed back", rec.id)
            return Outcome(rec.id, OutcomeKind.HANDED_BACK, reason="backend unavailable in body")
        self._unavailable.pop(rec.id, None)
        if result.error is None:
            outcome = Outcome(rec.id, OutcomeKind.SUCCESS, result=result.result)
        elif result.retryable and rec.attempt < rec.max_retries:
            outcome = Outcome(
                rec.id, OutcomeKind.RETRY, error=result.error,
                retry_at=time.time() + self._backoff(rec),
                reason=result.error.type.rsplit(".", 1)[-1],
            )  # fmt: skip
        else:
            outcome = Outcome(
                rec.id, OutcomeKind.FAILED, error=result.error,
                reason=result.error.type.rsplit(".", 1)[-1],
            )  # fmt: skip
        return outcome

    def _rerun_unavailable(self, id: InvocationId) -> bool:
        """Whether ``id`` goes back for a rerun after BackendUnavailable in its body (at
        most :data:`UNAVAILABLE_RERUNS` times from this worker)."""
        count = self._unavailable.get(id, 0)
        if count >= UNAVAILABLE_RERUNS:
            self._unavailable.pop(id, None)
            return False
        if len(self._unavailable) > 10_000:  # calls rerun elsewhere leave entries behind
            self._unavailable.clear()
        self._unavailable[id] = count + 1
        return True

    def _backoff(self, rec: InvocationRecord) -> float:
        try:
            task = self.app.get_task(rec.task)
        except LookupError:
            return backoff_delay(rec.attempt + 1, 1.0, 300.0)
        try:
            options = self.app.task_options(task)  # the TaskDefinition's, if one is stored
        except ConfigurationError:  # what is stored is invalid: the decorator's back-off
            options = task.options
        return backoff_delay(rec.attempt + 1, options.backoff, options.max_backoff)

    def _flush(self) -> bool:
        if not self._outcomes:
            return False
        batch = self._outcomes
        self.backend.finish([o for o, _ in batch], self.id, time.time())
        self._outcomes = []
        self._observe(batch)
        return True

    def _observe(self, batch: list[tuple[Outcome, float]]) -> None:
        self.metrics.observe_many([(_STATUS_OF[o.kind], elapsed) for o, elapsed in batch])

    def _expire(self) -> None:
        now = time.monotonic()
        for id, active in list(self.running.items()):
            if active.deadline is not None and now >= active.deadline:
                timeout = active.rec.timeout
                error = error_info(TaskTimeout(f"{active.rec.display} ran past {timeout} s"))
                retryable = active.rec.attempt < active.rec.max_retries
                del self.running[id]
                outcome = self._outcome(active, RunResult(id, error=error, retryable=retryable))
                self._abort(id, outcome, now - active.started)

    def _check_held(self) -> None:
        """Stop executions whose invocation was cancelled, failed or handed back elsewhere."""
        ids = [*self.running, *self.paused]
        if not ids:
            return
        for id, rec in zip(ids, self.backend.get_many(ids), strict=True):
            ours = rec is not None and rec.worker == self.id
            if id in self.running and not (
                ours and rec is not None and rec.status is Status.RUNNING
            ):
                log.info("invocation %s is no longer running here; stopping it", id)
                del self.running[id]
                # The backend freed its slot already (cancel, recovery, fail_overdue): holding
                # a local one for a thread that runs on would guard nothing. See the README.
                self._end_unheld(id)
            elif id in self.paused and not (
                ours and rec is not None and rec.status is Status.PAUSED
            ):
                del self.paused[id]
                self._end_unheld(id)

    def _end_unheld(self, id: InvocationId) -> None:
        """Abort the execution of a call this worker no longer holds. Aborted, not told GONE:
        an execution that ends by itself reports its end (Done), which a claim of the same
        call again here, before that end is read, would take for its own (the call FAILED
        with InvocationCancelled: found by tests/chaos/test_network.py). An aborted one
        reports nothing (a killed child's last words are dropped) or only Stopped."""
        if not self.executor.abort(id):
            self.ending.add(id)

    def _release_unheld(self) -> None:
        """Give back what the backend says this worker holds but it does not (a finish or a
        claim's reply lost in a server crash). Called from the loop thread between steps,
        so none of its backend calls is in flight and ``held`` is complete: running,
        paused, and finished but not yet written."""
        held = {*self.running, *self.paused, *self.stopping, *(o.id for o, _ in self._outcomes)}
        released = self.backend.release_unheld(self.id, held, time.time(), self.settings.max_lost)
        if released:
            log.warning(
                "the backend still had %d invocation(s) on this worker that it no longer "
                "holds (lost in a server crash?); handed back: %s",
                len(released), ", ".join(released[:10]),
            )  # fmt: skip

    def _hand_back_all(self) -> None:
        """Give back everything still held, running or paused, without counting a loss.

        Paused calls go back with the same HANDED_BACK outcome (the backend drops their
        wait edges), so a drain never brings them nearer to failing with WorkerLost.
        """
        held = [*self.running, *self.paused]
        self.running.clear()
        self.paused.clear()
        for id in held:
            self._abort(id, Outcome(id, OutcomeKind.HANDED_BACK, reason="drain"))
        # Bodies that did not stop at once (a thread in C code, a body that catches the
        # abort) get a moment to end before their calls go back. Those that still run are
        # handed back anyway: this process is about to exit, which ends them (see the
        # README on what a thread-mode abort can stop).
        give_up = time.monotonic() + STOP_WAIT
        while self.stopping and time.monotonic() < give_up:
            try:
                self._handle(self.events.get(timeout=max(0.0, give_up - time.monotonic())))
            except queue.Empty:
                break
        if self.stopping:
            log.warning(
                "%d task bod(ies) did not stop within %.0f s of the abort; handed back, they "
                "run on until this process exits: %s",
                len(self.stopping), STOP_WAIT, ", ".join(self.stopping),
            )  # fmt: skip
            self._outcomes.extend(self.stopping.values())
            self.stopping.clear()
        self._final_flush()

    def _final_flush(self) -> None:
        """Write what is left, retrying for up to ``FINAL_FLUSH_WINDOW`` seconds: results
        lost here would make their tasks run again. A retried finish is safe: an outcome the
        backend already took (a reply lost on the way) is refused and dropped."""
        give_up = time.monotonic() + FINAL_FLUSH_WINDOW
        delay = 0.05
        while True:
            try:
                self._flush()
                return
            except Exception:
                if time.monotonic() + delay > give_up:
                    log.exception(
                        "could not write %d outcome(s) before exiting; recovery hands their "
                        "calls back", len(self._outcomes),
                    )  # fmt: skip
                    return
                log.warning("writing the last outcomes failed; retrying", exc_info=True)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _shutdown(self) -> None:
        self._stop.set()
        try:
            self.executor.close(timeout=5.0)
        except Exception:
            log.exception("executor did not close cleanly")
        try:
            self.backend.unregister_worker(self.id)
        except Exception:
            log.warning("could not unregister worker %s", self.id)

    # -- heartbeat and enforcer -------------------------------------------------------------------

    def _beat(self) -> float:
        """Beat; returns the time stamped on it."""
        at = time.time()
        info = WorkerInfo(
            self.id, self.queue, self.slots, len(self.running), len(self.paused), at,
            socket.gethostname(),
        )  # fmt: skip
        self.backend.heartbeat(info)
        return at

    def _heartbeat_loop(self) -> None:
        """Beat, then recover silent workers' work, judged at the time of this beat.

        ``recover`` gets the time stamped on the beat just written, not the time after it:
        a write that stalled (a client library retrying, a busy database) would otherwise
        make this worker find its own beat stale and hand back its own live work. After a
        beat or recovery failed, or a beat took longer than the heartbeat timeout (the backend
        unreachable from here meanwhile, while a client library retried), this worker does
        not recover for a heartbeat timeout: the other workers first need a chance to beat.
        (Redis also forgets outages it saw itself: see kubenenc_redis/lua/lib_live.lua.)
        """
        delay = self.settings.heartbeat_interval
        timeout = self.settings.heartbeat_timeout
        recover_after = 0.0
        while not self._done.wait(delay):
            if self._stop.is_set() and not self.running and not self.paused:
                return
            try:
                sent = time.monotonic()
                at = self._beat()
                if time.monotonic() - sent > timeout:
                    recover_after = time.monotonic() + timeout
                if time.monotonic() >= recover_after:
                    lost = self.backend.recover(at, timeout, self.settings.max_lost)
                    if lost:
                        log.warning("handed back %d invocation(s) of silent workers", len(lost))
                delay = self.settings.heartbeat_interval
            except Exception:
                log.exception("heartbeat failed; retrying")
                delay = min(delay * 2, timeout / 2)
                recover_after = time.monotonic() + timeout
                continue
            self._run_schedules()

    def _run_schedules(self) -> None:
        """Submit the app's due schedule ticks (each claimed once across every worker: see
        kubenenc.schedules). Runs on the heartbeat thread, once a beat: a tick is called
        within about a heartbeat interval of its time."""
        if not self.app.schedules.entries or self._stop.is_set():
            return
        try:
            self.app.schedules.run_due()
        except Exception:
            log.exception("running the schedules failed; trying again next beat")

    def _wake_on_work(self, notifier: WorkNotifier) -> None:
        """Wake the loop when the backend says work may have arrived (see WorkNotifier)."""
        while not self._stop.is_set():
            try:
                if notifier.wait_for_work(self.queue, 1.0):
                    self.events.put(_WAKE)
            except Exception:
                log.warning("waiting for work failed; the loop keeps polling", exc_info=True)
                self._stop.wait(1.0)

    def _alive(self) -> bool:
        return time.monotonic() - self._tick < max(30.0, 10 * self.settings.poll_interval)

    def _ready(self) -> bool:
        return self._backend_ok and not self._stop.is_set()
