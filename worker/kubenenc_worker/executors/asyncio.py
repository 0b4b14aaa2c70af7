"""Async mode: one event loop thread for coroutine tasks; plain functions go to threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from kubenenc.app import App
from kubenenc.errors import ConfigurationError
from kubenenc.ids import InvocationId
from kubenenc.outcomes import error_info

from kubenenc_worker.execution import RunPayload, RunResult, run_async
from kubenenc_worker.executors.base import EventSink, Executor, ForgetOnDone
from kubenenc_worker.executors.threads import ThreadExecutor
from kubenenc_worker.messages import GONE, Done, Stopped, WaitReply, WaitRequest, raise_for


class _AsyncContext:
    """Waits of a coroutine task: asked of the worker, answered through a future.

    Waits of one invocation are taken one after another (an ``asyncio.gather`` of several
    results waits on each in turn): the worker pauses the invocation as a whole, and a
    second wait at once would take the first one's reply. A blocking ``.result()`` from a
    thread that the task started goes through the same queue of waits."""

    def __init__(
        self, id: InvocationId, executor: AsyncExecutor, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._id = id
        self._executor = executor
        self._loop = loop
        self._one_wait = asyncio.Lock()

    @property
    def invocation_id(self) -> InvocationId:
        return self._id

    def wait(self, ids: Sequence[InvocationId], timeout: float | None = None) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise ConfigurationError(
                "a coroutine task must not block its event loop: use "
                "`await invocation.async_result()` instead of `.result()`"
            )
        asyncio.run_coroutine_threadsafe(self.wait_async(ids, timeout), self._loop).result()

    async def wait_async(self, ids: Sequence[InvocationId], timeout: float | None = None) -> None:
        async with self._one_wait:
            future: asyncio.Future[WaitReply] = self._loop.create_future()
            self._executor.futures[self._id] = future
            self._executor.events.put(WaitRequest(self._id, tuple(ids), timeout))
            reply = await future
        raise_for(reply, self._id, ids, timeout)


class AsyncExecutor(Executor):
    """Runs coroutine tasks on one event loop in a thread of its own; plain functions go to
    a :class:`ThreadExecutor` (a paused one holds its thread, so a bounded thread pool
    would deadlock on a deep chain of waits)."""

    def __init__(self, app: App, events: EventSink) -> None:
        self.app = app
        self.events = events
        self._sync_ids: set[InvocationId] = set()
        self._threaded = ThreadExecutor(app, ForgetOnDone(events, self._sync_ids))
        self.futures: dict[InvocationId, asyncio.Future[WaitReply]] = {}
        self._tasks: dict[InvocationId, asyncio.Task[None]] = {}
        self._aborted: set[InvocationId] = set()  # touched on the loop thread only
        self._live: set[InvocationId] = set()
        """Coroutine executions started and not ended (added before the loop spawns them)."""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="kubenenc-loop", daemon=True
        )
        self._thread.start()

    def start(self, payload: RunPayload) -> None:
        task = self.app.tasks.get(payload.task)  # type: ignore[call-overload]
        if task is not None and not task.is_async:
            self._sync_ids.add(payload.id)
            try:
                self._threaded.start(payload)
            except BaseException:
                self._sync_ids.discard(payload.id)
                raise
            return
        if not self._thread.is_alive():  # a loop that stopped would take it and never run it
            raise RuntimeError("the event loop thread of the async executor has stopped")
        self._live.add(payload.id)
        try:
            self.loop.call_soon_threadsafe(self._spawn, payload)
        except BaseException:
            self._live.discard(payload.id)
            raise

    def _spawn(self, payload: RunPayload) -> None:
        ctx = _AsyncContext(payload.id, self, self.loop)
        self._tasks[payload.id] = self.loop.create_task(self._run(payload, ctx))

    async def _run(self, payload: RunPayload, ctx: _AsyncContext) -> None:
        """Run one coroutine task and report how it ended, however it ended.

        Only a cancellation that :meth:`abort` asked for ends without a report; a task that
        raises CancelledError itself, or anything else (SystemExit included: it must not
        stop the loop that every async call runs on), ends FAILED.
        """
        try:
            result = await run_async(self.app, payload, ctx)
        except asyncio.CancelledError as exc:
            result = RunResult(payload.id, error=error_info(exc))
        except BaseException as exc:  # run_async reports everything else; belt and braces
            result = RunResult(payload.id, error=error_info(exc))
        self._tasks.pop(payload.id, None)
        self._live.discard(payload.id)
        if payload.id in self._aborted:
            self._aborted.discard(payload.id)
            self.events.put(Stopped(payload.id))
            return
        self.events.put(Done(result))

    def reply(self, id: InvocationId, reply: WaitReply) -> None:
        if id in self._sync_ids:
            self._threaded.reply(id, reply)
            return

        def deliver() -> None:
            future = self.futures.pop(id, None)
            if future is not None and not future.done():
                future.set_result(reply)

        self.loop.call_soon_threadsafe(deliver)

    def abort(self, id: InvocationId) -> bool:
        """Sync tasks: as :meth:`ThreadExecutor.abort`. Coroutines are cancelled, which a
        coroutine may catch: False, and :class:`Stopped` once its task has ended."""
        if id in self._sync_ids:
            self._sync_ids.discard(id)
            return self._threaded.abort(id)
        if id not in self._live:
            return True

        def cancel() -> None:
            future = self.futures.pop(id, None)
            if future is not None and not future.done():
                future.set_result(GONE)  # a blocking wait from another thread must end too
            task = self._tasks.get(id)
            if task is not None:
                self._aborted.add(id)
                task.cancel()
            else:  # it ended between the check and now
                self.events.put(Stopped(id))

        self.loop.call_soon_threadsafe(cancel)
        return False

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
