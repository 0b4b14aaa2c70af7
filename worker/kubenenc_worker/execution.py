"""Running one invocation's function: decode arguments, call, capture the outcome.

Shared by every execution mode (thread, process, async) so they cannot differ in how
arguments are decoded, results encoded or retries decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kubenenc import context
from kubenenc.app import App
from kubenenc.ids import InvocationId
from kubenenc.outcomes import error_info
from kubenenc.records import ErrorInfo
from kubenenc.serializers import from_json_tree
from kubenenc.task import Task


@dataclass(frozen=True, slots=True)
class RunPayload:
    """What an executor needs to run one invocation (picklable for process mode)."""

    id: InvocationId
    task: str
    args: str
    serializer: str


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended: a result text, or an error and whether the task may retry on it."""

    id: InvocationId
    result: str | None = None
    error: ErrorInfo | None = None
    retryable: bool = False


def decode_args(app: App, payload: RunPayload) -> dict[str, Any]:
    """The keyword arguments of the call."""
    if payload.serializer == "json":
        tree = json.loads(payload.args)
        return {k: from_json_tree(v) for k, v in tree.items()}
    value: dict[str, Any] = app.serializer_for(payload.serializer).loads(payload.args)
    return value


@contextlib.contextmanager
def _context(ctx: context.ExecutionContext) -> Iterator[None]:
    token = context.current.set(ctx)
    try:
        yield
    finally:
        context.current.reset(token)


def _failure(payload: RunPayload, task: Task[Any, Any] | None, exc: BaseException) -> RunResult:
    retryable = task is not None and isinstance(exc, task.options.retry_on)
    return RunResult(payload.id, error=error_info(exc), retryable=retryable)


def run_sync(app: App, payload: RunPayload, ctx: context.ExecutionContext) -> RunResult:
    """Run a plain function task (or a coroutine task on a private event loop)."""
    task: Task[Any, Any] | None = None
    try:
        task = app.get_task(payload.task)
        kwargs = decode_args(app, payload)
        # The context set and reset inline, not with _context: a generator-based context
        # manager costs a few µs, once per task.
        token = context.current.set(ctx)
        try:
            if task.is_async:
                value = asyncio.run(task.func(**kwargs))
            else:
                value = task.func(**kwargs)
        finally:
            context.current.reset(token)
        return RunResult(payload.id, result=app.serializer.dumps(value))
    except BaseException as exc:  # SystemExit too: user code ends its call, not the worker
        return _failure(payload, task, exc)


async def run_async(app: App, payload: RunPayload, ctx: context.ExecutionContext) -> RunResult:
    """Run a coroutine task on the current loop (sync tasks go to a thread)."""
    task: Task[Any, Any] | None = None
    try:
        task = app.get_task(payload.task)
        kwargs = decode_args(app, payload)
        if not task.is_async:
            return await asyncio.to_thread(run_sync, app, payload, ctx)
        with _context(ctx):
            value = await task.func(**kwargs)
        return RunResult(payload.id, result=app.serializer.dumps(value))
    except asyncio.CancelledError:
        raise  # the executor tells an abort from a task's own CancelledError
    except BaseException as exc:  # SystemExit too: it must not stop the event loop
        return _failure(payload, task, exc)
