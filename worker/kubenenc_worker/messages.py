"""Messages between executors and the worker loop.

Executors never call the backend for lifecycle steps; they report to the worker loop, which
batches claims and finishes and is the only place that pauses and resumes. That keeps slot
accounting in one thread and lets every mode (thread, process, async) share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubenenc.errors import CycleDetectedError, InvocationCancelled, ResultTimeout
from kubenenc.ids import InvocationId
from kubenenc.waitgraph import format_loop

from kubenenc_worker.execution import RunResult


@dataclass(frozen=True, slots=True)
class Done:
    """An execution ended (``result`` says how)."""

    result: RunResult


@dataclass(frozen=True, slots=True)
class Stopped:
    """An execution that :meth:`~kubenenc_worker.executors.Executor.abort` could not stop at
    once has now really ended (its slot may be given to another body)."""

    id: InvocationId


@dataclass(frozen=True, slots=True)
class WaitRequest:
    """A running invocation wants to wait until ``targets`` are final."""

    id: InvocationId
    targets: tuple[InvocationId, ...]
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class WaitReply:
    """The worker's answer to a :class:`WaitRequest`.

    ``ready``: go on (targets final, or resumed after a pause). ``cycle``: raise
    CycleDetectedError with ``loop``. ``gone``: this invocation was cancelled, failed or handed
    back meanwhile; stop. ``timeout``: the wait's timeout passed first (raise ResultTimeout;
    the invocation runs on).
    """

    kind: str
    loop: tuple[str, ...] = ()


READY = WaitReply("ready")
GONE = WaitReply("gone")
TIMED_OUT = WaitReply("timeout")


def raise_for(
    reply: WaitReply,
    id: InvocationId,
    targets: Sequence[InvocationId],
    timeout: float | None = None,
) -> None:
    """Turn a reply into the exception a task sees, or return for ``ready``."""
    if reply.kind == "timeout":
        raise ResultTimeout(f"{len(targets)} invocation(s) not final after {timeout} s")
    if reply.kind == "cycle":
        raise CycleDetectedError(format_loop(reply.loop))
    if reply.kind == "gone":
        raise InvocationCancelled(
            f"invocation {id} is no longer running on this worker (cancelled, failed or "
            "handed back) while it waited"
        )


Event = Done | WaitRequest | Stopped
