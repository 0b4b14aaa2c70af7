"""Handles on invocations: what a call returns.

A handle holds an id and its app's :class:`~kubenenc.runtime.Runtime` (the backend and the
serializers, not the App); every property reads the backend, so it is never stale and can be
rebuilt from an id anywhere (``app.invocation(id)``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from kubenenc import context, tracing
from kubenenc.callbacks import KINDS, callback_id
from kubenenc.errors import CycleDetectedError, InvocationCancelled, ResultTimeout
from kubenenc.ids import InvocationId
from kubenenc.outcomes import rebuild_error
from kubenenc.records import InvocationRecord
from kubenenc.status import Status

if TYPE_CHECKING:
    from kubenenc.runtime import Runtime

T = TypeVar("T")


def _own_result(ctx: context.ExecutionContext | None, ids: Sequence[InvocationId]) -> None:
    if ctx is not None and ctx.invocation_id in ids:
        raise CycleDetectedError(
            f"invocation {ctx.invocation_id} waits on its own result, which can never exist "
            "while it waits"
        )


def _wait(runtime: Runtime, ids: Sequence[InvocationId], timeout: float | None) -> None:
    ctx = context.current.get()
    _own_result(ctx, ids)
    if ctx is not None:
        tracing.add_event("kubenenc.pause", {"kubenenc.waiting_on": len(ids)})
        ctx.wait(ids, timeout)
        tracing.add_event("kubenenc.resume")
        return
    if not runtime.backend.wait_final(ids, timeout):
        raise ResultTimeout(f"{len(ids)} invocation(s) not final after {timeout} s")


async def _wait_async(runtime: Runtime, ids: Sequence[InvocationId], timeout: float | None) -> None:
    ctx = context.current.get()
    _own_result(ctx, ids)
    if ctx is not None:
        tracing.add_event("kubenenc.pause", {"kubenenc.waiting_on": len(ids)})
        await ctx.wait_async(ids, timeout)
        tracing.add_event("kubenenc.resume")
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    backend = runtime.backend
    while True:
        if await asyncio.to_thread(backend.wait_final, ids, min(delay * 10, 0.05)):
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise ResultTimeout(f"{len(ids)} invocation(s) not final after {timeout} s")
        delay = min(delay * 2, 0.05)


def outcome_of(runtime: Runtime, rec: InvocationRecord | None, id: InvocationId) -> Any:
    """The value of a final record, or raise its error."""
    if rec is None:
        raise LookupError(f"invocation {id} does not exist in {runtime.name!r}")
    if rec.status is Status.SUCCESS:
        return (
            None if rec.result is None else runtime.serializer_for(rec.serializer).loads(rec.result)
        )
    if rec.status is Status.CANCELLED:
        raise InvocationCancelled(f"invocation {rec.display} [{rec.id}] was cancelled")
    if rec.status is Status.FAILED and rec.error is not None:
        raise rebuild_error(rec.error, runtime.types)
    raise RuntimeError(f"invocation {rec.id} is {rec.status}, not final")


class Invocation(Generic[T]):
    """One call of a task. Cheap to copy; compare by id."""

    __slots__ = ("id", "runtime")

    def __init__(self, runtime: Runtime, id: InvocationId) -> None:
        self.runtime = runtime
        self.id = id

    def __repr__(self) -> str:
        return f"Invocation({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Invocation) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def record(self) -> InvocationRecord:
        """The stored record, history included."""
        rec = self.runtime.backend.get(self.id)
        if rec is None:
            raise LookupError(f"invocation {self.id} does not exist in {self.runtime.name!r}")
        return rec

    @property
    def status(self) -> Status:
        """The current status (one read)."""
        return self.record().status

    def wait(self, timeout: float | None = None) -> bool:
        """Block until final; False when ``timeout`` ran out. Inside a task it pauses."""
        try:
            _wait(self.runtime, [self.id], timeout)
        except ResultTimeout:
            return False
        return True

    def result(self, timeout: float | None = None) -> T:
        """The task's return value, or raise its exception (type and message kept).

        Inside a running task this pauses the caller (its slot is given away) until the
        result exists, and raises CycleDetectedError if the wait would close a loop.
        Raises ResultTimeout when ``timeout`` seconds pass first.
        """
        _wait(self.runtime, [self.id], timeout)
        value: T = outcome_of(self.runtime, self.runtime.backend.get(self.id), self.id)
        return value

    async def async_result(self, timeout: float | None = None) -> T:
        """:meth:`result` for asyncio callers; never blocks the event loop."""
        await _wait_async(self.runtime, [self.id], timeout)
        value: T = outcome_of(self.runtime, self.runtime.backend.get(self.id), self.id)
        return value

    def cancel(self) -> bool:
        """Cancel unless already final (a running one is stopped by its worker)."""
        return self.runtime.backend.cancel(self.id, time.time())

    def callback(self, kind: str, attempt: int | None = None) -> Invocation[Any] | None:
        """The callback this invocation's finish registered: ``kind`` is ``"success"``,
        ``"failure"`` or ``"retry"`` (then ``attempt`` picks the failed try, from 1; default
        the last one). None while there is none (not finished that way yet, or no such
        option)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if attempt is None:
            attempt = self.record().attempt
        found = Invocation[Any](self.runtime, callback_id(self.id, kind, attempt))
        return found if self.runtime.backend.get(found.id) is not None else None


class InvocationGroup(Generic[T]):
    """The invocations of one ``parallelize``, in call order."""

    def __init__(self, runtime: Runtime, invocations: Sequence[Invocation[T]]) -> None:
        self.runtime = runtime
        self.invocations = list(invocations)

    def __iter__(self) -> Iterator[Invocation[T]]:
        return iter(self.invocations)

    def __len__(self) -> int:
        return len(self.invocations)

    def __getitem__(self, index: int) -> Invocation[T]:
        return self.invocations[index]

    @property
    def ids(self) -> list[InvocationId]:
        """The ids, in call order."""
        return [inv.id for inv in self.invocations]

    def results(self, timeout: float | None = None) -> list[T]:
        """Every result in call order; raises the first failure's exception (in order).

        Inside a task this is one pause for the whole group.
        """
        ids = list(dict.fromkeys(self.ids))
        _wait(self.runtime, ids, timeout)
        return self._collect()

    async def async_results(self, timeout: float | None = None) -> list[T]:
        """:meth:`results` for asyncio callers."""
        await _wait_async(self.runtime, list(dict.fromkeys(self.ids)), timeout)
        return self._collect()

    def _collect(self) -> list[T]:
        records = self.runtime.backend.get_many(self.ids)
        return [
            outcome_of(self.runtime, rec, id) for rec, id in zip(records, self.ids, strict=True)
        ]
