"""Thread mode: one thread per execution, from a pool of reusable threads.

Paused executions keep their thread (their stack must survive), so threads = running +
paused. A claimed batch may run on one thread (see :meth:`ThreadExecutor.start_many`).
"""

from __future__ import annotations

import collections
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Sequence

from kubenenc.app import App
from kubenenc.errors import TaskTimeout
from kubenenc.ids import InvocationId
from kubenenc.outcomes import error_info

from kubenenc_worker.execution import RunPayload, RunResult, run_sync
from kubenenc_worker.executors.base import Boxes, EventSink, Executor, QueueContext
from kubenenc_worker.messages import Done, Stopped, WaitReply

log = logging.getLogger("kubenenc.worker")


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    ident = thread.ident
    if ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(exc_type)
        )


STEAL_AFTER = 0.002
"""Seconds an execution of a batch may run before the rest of its batch moves to threads of
their own (see :meth:`ThreadExecutor.start_many`)."""


class _Batch:
    """Executions handed to one thread to run one after another (see ``start_many``)."""

    __slots__ = ("done", "every", "finished", "started", "work")

    def __init__(self, payloads: Sequence[RunPayload]) -> None:
        self.work: collections.deque[RunPayload] = collections.deque(payloads)
        self.done: list[RunResult] = []
        self.started = time.monotonic()
        self.finished = False
        # A large batch reports its first half as soon as it is done, so that the worker
        # writes it (and claims as many again) while the second half runs.
        self.every = len(payloads) // 2 if len(payloads) >= 16 else len(payloads)


class ThreadExecutor(Executor):
    """Runs each execution on a thread of its own, from a pool of reusable threads.

    Starting a thread costs more than running a no-op task (see bench/), so finished
    threads wait for the next execution; a pool that cannot serve one grows.
    Threads idle for ``idle_timeout`` seconds exit.

    :meth:`start_many` hands a whole claimed batch to one thread, which runs the executions
    one after another and reports them together: for short tasks that saves two thread
    switches per execution and lets the worker finish them in one backend call. An
    execution that runs longer than ``STEAL_AFTER`` (or waits) does not hold up the rest:
    :meth:`poll`, called by the worker loop, moves the batch's unstarted executions to
    threads of their own and reports the finished ones at once.
    """

    def __init__(self, app: App, events: EventSink, idle_timeout: float = 30.0) -> None:
        self.app = app
        self.events = events
        self.boxes = Boxes()
        self.idle_timeout = idle_timeout
        self._threads: dict[InvocationId, threading.Thread] = {}
        self._aborting: set[InvocationId] = set()
        self._idle: list[queue.SimpleQueue[RunPayload | _Batch | None]] = []
        self._all: list[queue.SimpleQueue[RunPayload | _Batch | None]] = []
        self._batches: list[_Batch] = []
        self._queued: dict[InvocationId, _Batch] = {}
        self._lock = threading.Lock()

    def start(self, payload: RunPayload) -> None:
        self._hand(payload)

    def start_many(self, payloads: Sequence[RunPayload]) -> list[RunPayload]:
        """Run ``payloads`` one after another on one thread (see the class docstring)."""
        if len(payloads) == 1:
            return super().start_many(payloads)
        batch = _Batch(payloads)
        with self._lock:
            for payload in payloads:
                self._queued[payload.id] = batch
            self._batches.append(batch)
        try:
            self._hand(batch)
        except Exception:
            log.exception("could not start a batch of %d", len(payloads))
            with self._lock:
                for payload in payloads:
                    self._queued.pop(payload.id, None)
                self._batches.remove(batch)
            return list(payloads)
        return []

    @property
    def batches(self) -> int:
        """How many batches are running (the worker polls while there are any)."""
        return len(self._batches)

    def poll(self) -> None:
        """Break up batches whose current execution runs long; report their finished ones."""
        if not self._batches:
            return
        now = time.monotonic()
        stolen: list[RunPayload] = []
        finished: list[RunResult] = []
        with self._lock:
            for batch in list(self._batches):
                if batch.finished:
                    self._batches.remove(batch)
                elif now - batch.started >= STEAL_AFTER:
                    while batch.work:
                        payload = batch.work.pop()
                        del self._queued[payload.id]
                        stolen.append(payload)
                    finished += batch.done
                    batch.done = []
                    # Only its current execution is left, which reports when it ends:
                    # nothing more to poll for.
                    self._batches.remove(batch)
        for result in finished:
            self.events.put(Done(result))
        for payload in reversed(stolen):
            self._hand(payload)

    def _hand(self, item: RunPayload | _Batch) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            with self._lock:
                self._all.append(inbox)
            try:
                threading.Thread(
                    target=self._serve, args=(inbox,), name="kubenenc-exec", daemon=True
                ).start()
            except BaseException:  # no thread (a thread limit): nothing of ``item`` runs
                with self._lock:
                    self._all.remove(inbox)
                raise
        inbox.put(item)

    def _serve(self, inbox: queue.SimpleQueue[RunPayload | _Batch | None]) -> None:
        while True:
            try:
                if not self._serve_one(inbox):
                    return
            except TaskTimeout:
                # An abort aimed at a run that ended just before it landed: the run's outcome
                # was already dropped by the worker; this thread carries on.
                continue

    def _serve_one(self, inbox: queue.SimpleQueue[RunPayload | _Batch | None]) -> bool:
        """Run the next payload or batch; False when this thread should exit."""
        try:
            item = inbox.get(timeout=self.idle_timeout)
        except queue.Empty:
            with self._lock:
                if inbox in self._idle:
                    self._idle.remove(inbox)
                    self._all.remove(inbox)
                    return False
            return True  # handed a payload at the last moment: it is already queued
        if item is None:
            return False
        try:
            if isinstance(item, _Batch):
                self._run_batch(item)
            else:
                with self._lock:
                    self._threads[item.id] = threading.current_thread()
                result = self._run(item)
                if result is not None:
                    self.events.put(Done(result))
        finally:
            with self._lock:
                self._idle.append(inbox)
        return True

    def _run_batch(self, batch: _Batch) -> None:
        thread = threading.current_thread()
        try:
            while True:
                try:
                    with self._lock:
                        if not batch.work:
                            break
                        payload = batch.work.popleft()
                        del self._queued[payload.id]
                        self._threads[payload.id] = thread
                        batch.started = time.monotonic()
                    result = self._run(payload)
                    if result is not None:
                        with self._lock:
                            batch.done.append(result)
                            ready = len(batch.done) >= batch.every and batch.work
                            if ready:
                                results, batch.done = batch.done, []
                        if ready:
                            for result in results:
                                self.events.put(Done(result))
                except TaskTimeout:  # an abort that landed just after its run: dropped
                    continue
        finally:
            with self._lock:
                batch.finished = True
                results, batch.done = batch.done, []
            for result in results:
                self.events.put(Done(result))

    def _run(self, payload: RunPayload) -> RunResult | None:
        """Run one registered payload; None when an abort ended it (then Stopped is reported).

        The abort's exception lands at the latest when this thread takes the lock to drop
        its entry (the abort raised it while that entry was there), so inside the outer try.
        """
        ctx = QueueContext(payload.id, self.events, self.boxes)
        result: RunResult | None
        try:
            try:
                result = run_sync(self.app, payload, ctx)
            except BaseException as exc:
                result = RunResult(payload.id, error=error_info(exc))
            finally:
                with self._lock:
                    self._threads.pop(payload.id, None)
        except TaskTimeout:
            result = None
        with self._lock:
            aborted = payload.id in self._aborting
            self._aborting.discard(payload.id)
        if aborted:
            self.events.put(Stopped(payload.id))
            return None
        return result

    def reply(self, id: InvocationId, reply: WaitReply) -> None:
        self.boxes.deliver(id, reply)

    def abort(self, id: InvocationId) -> bool:
        """Raise TaskTimeout inside the thread at its next Python instruction (a thread
        blocked in C code stops when that call returns; a body that catches it runs on);
        one not started yet never starts. False while the thread may still run the body:
        :class:`Stopped` comes when it has returned."""
        with self._lock:
            thread = self._threads.get(id)
            batch = self._queued.pop(id, None)
            if batch is not None:
                batch.work = collections.deque(p for p in batch.work if p.id != id)
            if thread is not None and id not in self._aborting:
                self._aborting.add(id)
                _raise_in_thread(thread, TaskTimeout)
            stopped = thread is None
        self.boxes.deliver(id, WaitReply("gone"))
        return stopped

    def close(self, timeout: float) -> None:
        with self._lock:
            inboxes = list(self._all)
            self._all.clear()
            self._idle.clear()
        for inbox in inboxes:
            inbox.put(None)
