"""``with app.batch():`` — calls made one by one, registered together.

A caller that submits many calls one at a time (a loop over requests, a handler that fans
out) pays one backend round trip per call. Inside ``with app.batch():`` a call of a task
returns its :class:`~kubenenc.invocation.Invocation` at once, checked and encoded (a wrong
argument still raises at the call), and the calls are registered together, in call order, in
one backend step.

Durability rule: a call made in a batch is registered, and only then durable and visible to
workers, when the first of these happens:

- the ``with`` block exits (normally or by an exception: calls already made are kept);
- ``result()``, ``wait()``, ``record()``, ``status``, ``cancel()`` or ``callback()`` is used
  on one of the batch's handles (every call of the batch made so far is registered then);
- ``MAX_PENDING`` calls are pending (they are registered then, and the batch goes on);
- a call that cannot be deferred is made in the block: one whose task has a concurrency
  policy (its registration may return another call's id, or refuse it, which only the
  backend knows), ``parallelize`` (already one step) or ``app.emit``: the pending calls are
  registered first, so the order of calls is kept, then that call at once.

Until then a call exists only in the caller's memory: if the process dies, it is lost, and
``app.invocation(id)`` elsewhere does not find it. When registering fails, the error is
raised where it happened (the block's exit, or ``result()``) and the pending calls are
dropped, as their registration may not be known.

The batch belongs to the thread (or asyncio task) that entered it, through a context
variable: calls of other threads go straight to the backend. Batches do not nest: an inner
``app.batch()`` joins the one already open for that app.
"""

from __future__ import annotations

import contextvars
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from kubenenc.ids import InvocationId
from kubenenc.invocation import Invocation
from kubenenc.records import InvocationRecord, NewInvocation

if TYPE_CHECKING:
    from kubenenc.runtime import Runtime

T = TypeVar("T")

MAX_PENDING = 1000
"""A batch registers what it holds once this many calls are pending (one backend step)."""

_current: contextvars.ContextVar[Batch | None] = contextvars.ContextVar(
    "kubenenc_batch", default=None
)


def open_for(runtime: Runtime) -> Batch | None:
    """The batch open for the app of ``runtime`` in this thread (or asyncio task), if any."""
    batch = _current.get()
    return batch if batch is not None and batch.runtime is runtime else None


class Batch:
    """The calls of one ``with app.batch():`` block still to be registered (held by the
    app's :class:`~kubenenc.runtime.Runtime`, as tasks and handles are, not by the App)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._pending: list[NewInvocation] = []
        self._lock = threading.Lock()
        self._token: contextvars.Token[Batch | None] | None = None

    def __enter__(self) -> Batch:
        outer = open_for(self.runtime)
        if outer is not None:
            return outer  # joins the open one: that one's exit registers everything
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is None:
            return  # joined an outer batch
        try:
            self.flush()
        finally:
            _current.reset(self._token)
            self._token = None

    def __len__(self) -> int:
        """How many calls are pending."""
        return len(self._pending)

    def add(self, new: NewInvocation) -> Invocation[Any]:
        """Hold ``new`` (registered later, see the module docstring); its handle."""
        with self._lock:
            self._pending.append(new)
            full = len(self._pending) >= MAX_PENDING
        if full:
            self.flush()
        return PendingInvocation(self.runtime, new.id, self)

    def flush(self) -> None:
        """Register every pending call now, in call order, in one backend step."""
        with self._lock:
            pending, self._pending = self._pending, []
            if pending:
                self.runtime.backend.register(pending, time.time())


class PendingInvocation(Invocation[T]):
    """A handle from a batch: reading it registers the batch's calls first."""

    __slots__ = ("_batch",)

    def __init__(self, runtime: Runtime, id: InvocationId, batch: Batch) -> None:
        super().__init__(runtime, id)
        self._batch = batch

    def record(self) -> InvocationRecord:
        self._batch.flush()
        return super().record()

    def wait(self, timeout: float | None = None) -> bool:
        self._batch.flush()
        return super().wait(timeout)

    def result(self, timeout: float | None = None) -> T:
        self._batch.flush()
        return super().result(timeout)

    async def async_result(self, timeout: float | None = None) -> T:
        self._batch.flush()
        return await super().async_result(timeout)

    def cancel(self) -> bool:
        self._batch.flush()
        return super().cancel()

    def callback(self, kind: str, attempt: int | None = None) -> Invocation[Any] | None:
        self._batch.flush()
        return super().callback(kind, attempt)
