"""Running one invocation's function: decode arguments, call, capture the outcome.

Shared by every execution mode (thread, process, async) so they cannot differ in how
arguments are decoded, results encoded or retries decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubenenc import context, logs
from kubenenc.app import App
from kubenenc.errors import BackendUnavailable, SerializationError, ValueTooLarge
from kubenenc.ids import InvocationId
from kubenenc.outcomes import error_info
from kubenenc.records import ErrorInfo
from kubenenc.serializers import JsonSerializer
from kubenenc.task import Task

from kubenenc_worker import tracing


@dataclass(frozen=True, slots=True)
class RunPayload:
    """What an executor needs to run one invocation (picklable for process mode)."""

    id: InvocationId
    task: str
    args: str
    serializer: str
    attempt: int = 0
    worker: str = ""
    pool: str = ""
    headers: Mapping[str, str] | None = None
    """The call's headers: trace context (see :mod:`kubenenc_worker.tracing`)."""
    start_by: float = 0.0
    """Monotonic time (``time.monotonic``: one clock for every process of a host) after
    which the body must not start without the worker checking again that it still holds
    the call (0: no limit). A worker frozen (SIGSTOP, a paused VM) between its claim and
    the body's start has its calls handed back meanwhile; a task process that got the call
    just before the freeze would otherwise start the body on waking, beside the rerun."""


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended: a result text, or an error and whether the task may retry on it."""

    id: InvocationId
    result: str | None = None
    error: ErrorInfo | None = None
    retryable: bool = False
    stale: bool = False
    """Not run: ``start_by`` had passed when the execution began. The worker checks that it
    still holds the call, and starts it again if it does."""
    unavailable: bool = False
    """The body raised BackendUnavailable: the backend was out longer than the client's
    retries while the body used it (a fan-out registering its calls). Not the task's fault:
    the worker hands the call back for a rerun instead of failing it."""


def decode_args(app: App, payload: RunPayload) -> dict[str, Any]:
    """The keyword arguments of the call."""
    serializer = app.serializer_for(payload.serializer)
    if isinstance(serializer, JsonSerializer):
        return serializer.loads_arguments(payload.args)
    value = serializer.loads(payload.args)
    if not isinstance(value, dict):
        raise SerializationError(
            f"stored arguments of {payload.task[:200]} are a {type(value).__name__}, not a "
            "mapping of names to values"
        )
    return value


def encode_result(app: App, task: Task[Any, Any], value: Any) -> str:
    """The stored text of a task's return value; ValueTooLarge over the task's limit, so an
    oversized result fails the call here and never reaches the backend."""
    text = app.serializer.dumps_named(value, f"{task.name}() result")
    limit = app.value_limit(task.options.max_value_bytes)
    if len(text) > limit:  # ASCII text: characters are bytes
        raise ValueTooLarge(
            f"{task.name}() returned {len(text):,} bytes encoded, over the limit of {limit:,} "
            "(max_value_bytes); store large results elsewhere and return a reference, or raise "
            "the limit with @app.task(max_value_bytes=...)"
        )
    return text


@contextlib.contextmanager
def _context(ctx: context.ExecutionContext) -> Iterator[None]:
    token = context.current.set(ctx)
    try:
        yield
    finally:
        context.current.reset(token)


def _fields(payload: RunPayload) -> logs.RunFields:
    """What a log line inside this run carries (see :mod:`kubenenc.logs`)."""
    return logs.RunFields(payload.id, payload.task, payload.attempt, payload.worker)


def _span(payload: RunPayload) -> contextlib.AbstractContextManager[Any]:
    """The run span (OpenTelemetry, when installed and configured)."""
    return tracing.run_span(
        payload.task, payload.id, payload.attempt, payload.pool, payload.worker, payload.headers
    )


def _failure(payload: RunPayload, task: Task[Any, Any] | None, exc: BaseException) -> RunResult:
    retryable = (
        task is not None
        and isinstance(exc, task.options.retry_on)
        and not isinstance(exc, ValueTooLarge)  # the same value would be refused again
    )
    unavailable = isinstance(exc, BackendUnavailable)
    return RunResult(
        payload.id, error=error_info(exc), retryable=retryable, unavailable=unavailable
    )


def stale(payload: RunPayload) -> RunResult | None:
    """The result of a run that must not start (see ``RunPayload.start_by``), or None."""
    if payload.start_by and time.monotonic() > payload.start_by:
        return RunResult(payload.id, stale=True)
    return None


def run_sync(app: App, payload: RunPayload, ctx: context.ExecutionContext) -> RunResult:
    """Run a plain function task (or a coroutine task on a private event loop)."""
    late = stale(payload)
    if late is not None:
        return late
    task: Task[Any, Any] | None = None
    try:
        task = app.get_task(payload.task)
        kwargs = decode_args(app, payload)
        # The context set and reset inline, not with _context: a generator-based context
        # manager costs a few µs, once per task.
        token = context.current.set(ctx)
        log_token = logs.bind(_fields(payload))
        try:
            with _span(payload):
                if task.is_async:
                    value = asyncio.run(task.func(**kwargs))
                else:
                    value = task.func(**kwargs)
        finally:
            logs.unbind(log_token)
            context.current.reset(token)
        return RunResult(payload.id, result=encode_result(app, task, value))
    except BaseException as exc:  # SystemExit too: user code ends its call, not the worker
        return _failure(payload, task, exc)


async def run_async(app: App, payload: RunPayload, ctx: context.ExecutionContext) -> RunResult:
    """Run a coroutine task on the current loop (sync tasks go to a thread)."""
    late = stale(payload)
    if late is not None:
        return late
    task: Task[Any, Any] | None = None
    try:
        task = app.get_task(payload.task)
        kwargs = decode_args(app, payload)
        if not task.is_async:
            return await asyncio.to_thread(run_sync, app, payload, ctx)
        with _context(ctx), logs.bound(_fields(payload)), _span(payload):
            value = await task.func(**kwargs)
        return RunResult(payload.id, result=encode_result(app, task, value))
    except asyncio.CancelledError:
        raise  # the executor tells an abort from a task's own CancelledError
    except BaseException as exc:  # SystemExit too: it must not stop the event loop
        return _failure(payload, task, exc)
