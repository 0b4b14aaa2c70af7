"""Execution pools: where task bodies run.

- :class:`ThreadExecutor`: one thread per execution. Paused executions keep their thread
  (their stack must survive), so threads = running + paused.
- :class:`ProcessExecutor`: long-lived child processes, one execution each at a time; a
  paused execution keeps its child and the worker starts another for the freed slot, so a
  chain of waits never deadlocks however deep (children = running + paused + idle). Children
  start with ``forkserver``, import the app themselves and open their own backend
  connections; they talk to the worker over a pipe.
- :class:`AsyncExecutor`: one event loop thread for coroutine tasks (sync tasks go to
  threads).

Every executor reports :class:`~kubenenc_worker.messages.Done` and
:class:`~kubenenc_worker.messages.WaitRequest` to the worker's event queue and takes
:class:`~kubenenc_worker.messages.WaitReply` back through :meth:`reply`.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import queue
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from kubenenc import logs
from kubenenc.app import App, load_app
from kubenenc.errors import ConfigurationError, TaskTimeout, WorkerLost
from kubenenc.ids import InvocationId
from kubenenc.outcomes import error_info

from kubenenc_worker.execution import RunPayload, RunResult, run_async, run_sync
from kubenenc_worker.messages import Done, Event, WaitReply, WaitRequest, raise_for

log = logging.getLogger("kubenenc.worker")


class EventSink(Protocol):
    """Where executors report: the worker's event queue (or a filter in front of it)."""

    def put(self, item: Event, /) -> None:
        """Report one event."""
        ...


class _ForgetOnDone:
    """Forwards events, dropping an id from ``ids`` once its execution is done."""

    def __init__(self, sink: EventSink, ids: set[InvocationId]) -> None:
        self.sink = sink
        self.ids = ids

    def put(self, item: Event, /) -> None:
        if isinstance(item, Done):
            self.ids.discard(item.result.id)
        self.sink.put(item)


class Executor(Protocol):
    """Where task bodies run."""

    def start(self, payload: RunPayload) -> None:
        """Begin running ``payload``; report through the event queue."""
        ...

    def reply(self, id: InvocationId, reply: WaitReply) -> None:
        """Answer the pending wait of ``id``."""
        ...

    def abort(self, id: InvocationId) -> None:
        """Stop ``id`` as soon as possible; its Done, if any, is to be ignored."""
        ...

    def close(self, timeout: float) -> None:
        """Stop everything; wait up to ``timeout`` seconds."""
        ...


class _Boxes:
    """Reply boxes of executions blocked in a wait, keyed by invocation id."""

    def __init__(self) -> None:
        self._boxes: dict[InvocationId, queue.SimpleQueue[WaitReply]] = {}
        self._lock = threading.Lock()

    def open(self, id: InvocationId) -> queue.SimpleQueue[WaitReply]:
        box: queue.SimpleQueue[WaitReply] = queue.SimpleQueue()
        with self._lock:
            self._boxes[id] = box
        return box

    def deliver(self, id: InvocationId, reply: WaitReply) -> None:
        with self._lock:
            box = self._boxes.pop(id, None)
        if box is not None:
            box.put(reply)


class _QueueContext:
    """An execution context that waits through the worker's event queue."""

    def __init__(self, id: InvocationId, events: EventSink, boxes: _Boxes) -> None:
        self._id = id
        self._events = events
        self._boxes = boxes

    @property
    def invocation_id(self) -> InvocationId:
        return self._id

    def wait(self, ids: Sequence[InvocationId]) -> None:
        box = self._boxes.open(self._id)
        self._events.put(WaitRequest(self._id, tuple(ids)))
        raise_for(box.get(), self._id, ids)

    async def wait_async(self, ids: Sequence[InvocationId]) -> None:
        await asyncio.to_thread(self.wait, ids)


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


class ThreadExecutor:
    """Runs each execution on a thread of its own, from a pool of reusable threads.

    Starting a thread costs about a millisecond on a loaded machine, more than a no-op task,
    so finished threads wait for the next execution; a pool that cannot serve one grows.
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
        self.boxes = _Boxes()
        self.idle_timeout = idle_timeout
        self._threads: dict[InvocationId, threading.Thread] = {}
        self._idle: list[queue.SimpleQueue[RunPayload | _Batch | None]] = []
        self._all: list[queue.SimpleQueue[RunPayload | _Batch | None]] = []
        self._batches: list[_Batch] = []
        self._queued: dict[InvocationId, _Batch] = {}
        self._lock = threading.Lock()

    def start(self, payload: RunPayload) -> None:
        self._hand(payload)

    def start_many(self, payloads: Sequence[RunPayload]) -> None:
        """Run ``payloads`` one after another on one thread (see the class docstring)."""
        if len(payloads) == 1:
            self._hand(payloads[0])
            return
        batch = _Batch(payloads)
        with self._lock:
            for payload in payloads:
                self._queued[payload.id] = batch
            self._batches.append(batch)
        self._hand(batch)

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
            threading.Thread(
                target=self._serve, args=(inbox,), name="kubenenc-exec", daemon=True
            ).start()
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
        """Run one registered payload; None when an abort ended it (nothing to report)."""
        ctx = _QueueContext(payload.id, self.events, self.boxes)
        try:
            try:
                result = run_sync(self.app, payload, ctx)
            except BaseException as exc:
                result = RunResult(payload.id, error=error_info(exc))
            finally:
                with self._lock:
                    self._threads.pop(payload.id, None)
        except TaskTimeout:
            return None
        return result

    def reply(self, id: InvocationId, reply: WaitReply) -> None:
        self.boxes.deliver(id, reply)

    def abort(self, id: InvocationId) -> None:
        """Raise TaskTimeout inside the thread at its next Python instruction (a thread
        blocked in C code stops when that call returns); one not started yet never starts."""
        with self._lock:
            thread = self._threads.pop(id, None)
            batch = self._queued.pop(id, None)
            if batch is not None:
                batch.work = collections.deque(p for p in batch.work if p.id != id)
            if thread is not None:
                _raise_in_thread(thread, TaskTimeout)
        self.boxes.deliver(id, WaitReply("gone"))

    def close(self, timeout: float) -> None:
        with self._lock:
            inboxes = list(self._all)
            self._all.clear()
            self._idle.clear()
        for inbox in inboxes:
            inbox.put(None)


# -- processes ---------------------------------------------------------------------------------


class _PipeContext:
    """Execution context inside a child process: waits are asked of the parent by pipe."""

    def __init__(self, id: InvocationId, conn: multiprocessing.connection.Connection) -> None:
        self._id = id
        self._conn = conn

    @property
    def invocation_id(self) -> InvocationId:
        return self._id

    def wait(self, ids: Sequence[InvocationId]) -> None:
        self._conn.send(("wait", tuple(ids)))
        kind, reply = self._conn.recv()
        assert kind == "reply"
        raise_for(reply, self._id, ids)

    async def wait_async(self, ids: Sequence[InvocationId]) -> None:
        self.wait(ids)  # a child runs one execution at a time: nothing else to let run


def child_main(
    conn: multiprocessing.connection.Connection,
    app_path: str,
    backend_url: str | None,
    log_format: logs.LogFormat | None = None,
) -> None:
    """Entry point of a child process: load the app, run what the parent sends.

    A forkserver child inherits no logging set-up: with ``log_format`` it configures its
    own handler, so a task's lines carry the run fields as in the other modes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if log_format is not None:
        logs.configure(log_format)
    app = load_app(app_path)
    if backend_url is not None:
        app.backend_url = backend_url
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message[0] != "run":
                return
            payload: RunPayload = message[1]
            result = run_sync(app, payload, _PipeContext(payload.id, conn))
            conn.send(("done", result))
    finally:
        app.close()


class _Child:
    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Any) -> None:
        self.process = process
        self.conn: multiprocessing.connection.Connection = conn
        self.current: InvocationId | None = None
        self.send_lock = threading.Lock()


class ProcessExecutor:
    """Runs executions in child processes (see the module docstring)."""

    def __init__(
        self,
        app_path: str,
        backend_url: str | None,
        events: EventSink,
        warm: int,
        log_format: logs.LogFormat | None = None,
    ) -> None:
        self.app_path = app_path
        self.log_format = log_format
        self.backend_url = backend_url
        self.events = events
        self._mp = multiprocessing.get_context("forkserver")
        module = app_path.partition(":")[0]
        self._mp.set_forkserver_preload(["kubenenc", "kubenenc_worker.execution", module])
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._busy: dict[InvocationId, _Child] = {}
        self._all: set[_Child] = set()
        self._warm = warm
        self._closing = False
        for _ in range(warm):
            self._idle.append(self._spawn())

    def _spawn(self) -> _Child:
        parent_conn, child_conn = self._mp.Pipe()
        process = self._mp.Process(
            target=child_main,
            args=(child_conn, self.app_path, self.backend_url, self.log_format),
            name="kubenenc-child",
            daemon=True,
        )
        process.start()
        child_conn.close()
        child = _Child(process, parent_conn)
        with self._lock:
            self._all.add(child)
        threading.Thread(
            target=self._read, args=(child,), name="kubenenc-child-reader", daemon=True
        ).start()
        return child

    def _read(self, child: _Child) -> None:
        while True:
            try:
                kind, body = child.conn.recv()
            except (EOFError, OSError):
                break
            current = child.current
            if kind == "wait" and current is not None:
                self.events.put(WaitRequest(current, tuple(body)))
            elif kind == "done":
                with self._lock:
                    child.current = None
                    self._busy.pop(body.id, None)
                    if not self._closing and len(self._idle) < self._warm:
                        self._idle.append(child)
                        keep = True
                    else:
                        keep = False
                self.events.put(Done(body))
                if not keep:
                    self._stop_child(child)
        with self._lock:
            self._all.discard(child)
            if child in self._idle:
                self._idle.remove(child)
            lost = child.current
            if lost is not None:
                self._busy.pop(lost, None)
        if lost is not None and not self._closing:
            exit_code = child.process.exitcode
            message = f"the child process running it exited (code {exit_code})"
            self.events.put(Done(RunResult(lost, error=error_info(WorkerLost(message)))))

    def start(self, payload: RunPayload) -> None:
        with self._lock:
            child = self._idle.pop() if self._idle else None
        if child is None:
            child = self._spawn()
        with self._lock:
            child.current = payload.id
            self._busy[payload.id] = child
        with child.send_lock:
            child.conn.send(("run", payload))

    def reply(self, id: InvocationId, reply: WaitReply) -> None:
        with self._lock:
            child = self._busy.get(id)
        if child is not None:
            with child.send_lock:
                try:
                    child.conn.send(("reply", reply))
                except OSError:
                    log.warning("child for %s is gone; reply dropped", id)

    def abort(self, id: InvocationId) -> None:
        """Kill the child running ``id`` (the only way to stop arbitrary code at once)."""
        with self._lock:
            child = self._busy.pop(id, None)
            if child is not None:
                child.current = None
        if child is not None:
            child.process.kill()

    def _stop_child(self, child: _Child) -> None:
        try:
            with child.send_lock:
                child.conn.send(("stop", None))
        except OSError:
            pass

    def close(self, timeout: float) -> None:
        with self._lock:
            self._closing = True
            children = list(self._all)
        for child in children:
            self._stop_child(child)
        for child in children:
            child.process.join(timeout / max(1, len(children)))
            if child.process.is_alive():
                child.process.kill()
                child.process.join(1)


# -- asyncio -------------------------------------------------------------------------------------


class _AsyncContext:
    def __init__(
        self, id: InvocationId, executor: AsyncExecutor, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._id = id
        self._executor = executor
        self._loop = loop

    @property
    def invocation_id(self) -> InvocationId:
        return self._id

    def wait(self, ids: Sequence[InvocationId]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise ConfigurationError(
                "a coroutine task must not block its event loop: use "
                "`await invocation.async_result()` instead of `.result()`"
            )
        box = self._executor.boxes.open(self._id)
        self._executor.events.put(WaitRequest(self._id, tuple(ids)))
        raise_for(box.get(), self._id, ids)

    async def wait_async(self, ids: Sequence[InvocationId]) -> None:
        future: asyncio.Future[WaitReply] = self._loop.create_future()
        self._executor.futures[self._id] = future
        self._executor.events.put(WaitRequest(self._id, tuple(ids)))
        raise_for(await future, self._id, ids)


class AsyncExecutor:
    """Runs coroutine tasks on one event loop in a thread of its own; plain functions go to
    a :class:`ThreadExecutor` (a paused one holds its thread, so a bounded thread pool
    would deadlock on a deep chain of waits)."""

    def __init__(self, app: App, events: EventSink) -> None:
        self.app = app
        self.events = events
        self._sync_ids: set[InvocationId] = set()
        self._threaded = ThreadExecutor(app, _ForgetOnDone(events, self._sync_ids))
        self.boxes = _Boxes()
        self.futures: dict[InvocationId, asyncio.Future[WaitReply]] = {}
        self._tasks: dict[InvocationId, asyncio.Task[None]] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="kubenenc-loop", daemon=True
        )
        self._thread.start()

    def start(self, payload: RunPayload) -> None:
        task = self.app.tasks.get(payload.task)  # type: ignore[call-overload]
        if task is not None and not task.is_async:
            self._sync_ids.add(payload.id)
            self._threaded.start(payload)
            return
        self.loop.call_soon_threadsafe(self._spawn, payload)

    def _spawn(self, payload: RunPayload) -> None:
        ctx = _AsyncContext(payload.id, self, self.loop)
        self._tasks[payload.id] = self.loop.create_task(self._run(payload, ctx))

    async def _run(self, payload: RunPayload, ctx: _AsyncContext) -> None:
        try:
            result = await run_async(self.app, payload, ctx)
        except asyncio.CancelledError:
            return
        finally:
            self._tasks.pop(payload.id, None)
        self.events.put(Done(result))

    def reply(self, id: InvocationId, reply: WaitReply) -> None:
        if id in self._sync_ids:
            self._threaded.reply(id, reply)
            return
        self.boxes.deliver(id, reply)

        def deliver() -> None:
            future = self.futures.pop(id, None)
            if future is not None and not future.done():
                future.set_result(reply)

        self.loop.call_soon_threadsafe(deliver)

    def abort(self, id: InvocationId) -> None:
        if id in self._sync_ids:
            self._sync_ids.discard(id)
            self._threaded.abort(id)
            return
        self.boxes.deliver(id, WaitReply("gone"))

        def cancel() -> None:
            task = self._tasks.pop(id, None)
            if task is not None:
                task.cancel()

        self.loop.call_soon_threadsafe(cancel)

    def close(self, timeout: float) -> None:
        self._threaded.close(timeout)

        async def drain() -> None:
            tasks = list(self._tasks.values())
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(drain(), self.loop).result(timeout + 1)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout + 1)
        self.loop.close()
