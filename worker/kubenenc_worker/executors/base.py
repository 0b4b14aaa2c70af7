"""The executor interface, and the reply boxes and context that thread-based executors share.

Executors never call the backend for lifecycle steps: they report
:class:`~kubenenc_worker.messages.Done` and :class:`~kubenenc_worker.messages.WaitRequest` to
the worker's event queue and take :class:`~kubenenc_worker.messages.WaitReply` back through
:meth:`Executor.reply`. The worker loop talks to an executor only through :class:`Executor`.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import queue
import threading
from collections.abc import Sequence
from typing import Protocol

from kubenenc.ids import InvocationId

from kubenenc_worker.execution import RunPayload
from kubenenc_worker.messages import Done, Event, WaitReply, WaitRequest, raise_for

log = logging.getLogger("kubenenc.worker")


class EventSink(Protocol):
    """Where executors report: the worker's event queue (or a filter in front of it)."""

    def put(self, item: Event, /) -> None:
        """Report one event."""
        ...


class Executor(abc.ABC):
    """Where task bodies run: the one interface the worker loop uses.

    ``start_many``, ``poll`` and ``batches`` have plain defaults (start one by one, nothing to
    poll); an executor that batches (:class:`~kubenenc_worker.executors.threads.ThreadExecutor`)
    overrides them.
    """

    @abc.abstractmethod
    def start(self, payload: RunPayload) -> None:
        """Begin running ``payload``; report through the event queue. Raises when it could
        not be started (no thread, no process, a broken pipe): then nothing of it runs."""

    def start_many(self, payloads: Sequence[RunPayload]) -> list[RunPayload]:
        """Begin running every one of ``payloads`` (an executor may run them as a batch).

        Returns those it could not start, which the worker hands back at once; it does not
        raise for a start failure, so one that failed never leaves the rest unaccounted.
        """
        failed: list[RunPayload] = []
        for payload in payloads:
            try:
                self.start(payload)
            except Exception:
                log.exception("could not start %s", payload.id)
                failed.append(payload)
        return failed

    def poll(self) -> None:
        """Called by the worker loop on every turn (cheap when there is nothing to do)."""
        return

    @property
    def batches(self) -> int:
        """How many batches are running; the worker loop polls more often while any are."""
        return 0

    @abc.abstractmethod
    def reply(self, id: InvocationId, reply: WaitReply) -> None:
        """Answer the pending wait of ``id``."""

    @abc.abstractmethod
    def abort(self, id: InvocationId) -> bool:
        """Stop ``id`` (running or paused) as soon as possible; its Done, if any, is to be
        ignored. True when its body is known to have stopped (killed, never started, already
        over); False when it may still run, and then a
        :class:`~kubenenc_worker.messages.Stopped` is reported once it has really ended."""

    @abc.abstractmethod
    def close(self, timeout: float) -> None:
        """Stop everything; wait up to ``timeout`` seconds."""


class ForgetOnDone:
    """Forwards events, dropping an id from ``ids`` once its execution is done."""

    def __init__(self, sink: EventSink, ids: set[InvocationId]) -> None:
        self.sink = sink
        self.ids = ids

    def put(self, item: Event, /) -> None:
        if isinstance(item, Done):
            self.ids.discard(item.result.id)
        self.sink.put(item)


class Boxes:
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


class QueueContext:
    """An execution context that waits through the worker's event queue."""

    def __init__(self, id: InvocationId, events: EventSink, boxes: Boxes) -> None:
        self._id = id
        self._events = events
        self._boxes = boxes
        # One wait at a time: the reply box is keyed by the invocation, and the worker pauses
        # the invocation as a whole (a second wait at once would take the first one's box).
        self._one_wait = threading.Lock()

    @property
    def invocation_id(self) -> InvocationId:
        return self._id

    def wait(self, ids: Sequence[InvocationId], timeout: float | None = None) -> None:
        with self._one_wait:
            box = self._boxes.open(self._id)
            self._events.put(WaitRequest(self._id, tuple(ids), timeout))
            raise_for(box.get(), self._id, ids, timeout)

    async def wait_async(self, ids: Sequence[InvocationId], timeout: float | None = None) -> None:
        await asyncio.to_thread(self.wait, ids, timeout)
