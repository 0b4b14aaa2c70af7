"""The link between a running task and the worker running it.

A worker sets :data:`current` while a task body runs. ``Invocation.result()`` looks at it: in
a task it must not block a worker slot, so it asks the context to *pause* the invocation
until the targets are final (the worker frees the slot, runs other work, and resumes it).
Outside a task there is no context and ``result()`` simply blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Protocol

from kubenenc.ids import InvocationId


class ExecutionContext(Protocol):
    """What the worker offers the task it is running."""

    @property
    def invocation_id(self) -> InvocationId:
        """The invocation being run."""
        ...

    def wait(self, ids: Sequence[InvocationId], timeout: float | None = None) -> None:
        """Block until every one of ``ids`` is final, paused and without holding a slot.

        Raises CycleDetectedError when the wait would close a loop, InvocationCancelled
        when this invocation was cancelled meanwhile, and ResultTimeout when ``timeout``
        seconds passed first (the invocation then runs on as soon as its worker has a free
        slot for it). Several waits of one invocation at once (threads, ``asyncio.gather``)
        are taken one after another.
        """
        ...

    async def wait_async(self, ids: Sequence[InvocationId], timeout: float | None = None) -> None:
        """:meth:`wait` for coroutine tasks."""
        ...


current: ContextVar[ExecutionContext | None] = ContextVar("kubenenc_execution", default=None)
