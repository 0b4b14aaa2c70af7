"""The worker's run span (OpenTelemetry, optional; see :mod:`kubenenc.tracing`).

Each run of an invocation is a span ``kubenenc.run <task>`` of kind CONSUMER, a child of the
context the caller stored in the invocation's headers (so a call made inside a span, a retry
of it and a call re-registered by ``kubenenc retry`` all land in the caller's trace; each try
is its own span, told apart by ``kubenenc.attempt``), with the attributes
``kubenenc.task``, ``kubenenc.invocation_id``, ``kubenenc.attempt``, ``kubenenc.pool`` and
``kubenenc.worker``. The span is current while the task runs, so calls it makes carry it on,
and an exception it raises is recorded on it.

Spans are started only when a tracer provider has been set in the worker's process (the app
module, or its ``sitecustomize``, configures one); otherwise a run costs one check.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from kubenenc.tracing import otel

_OFF = contextlib.nullcontext()
"""What a run gets when nothing traces: one shared object, no generator per run."""


RECHECK = 1.0
"""Seconds between checks for a tracer provider while there is none (once one is set, it
stays: OpenTelemetry sets the global provider once per process)."""
_on = False
_checked_at = -RECHECK


def _tracing_on(trace: Any) -> bool:
    """Whether a real tracer provider is set, checked at most once a second while not (the
    check costs a few µs, and a run of a no-op task costs a few dozen)."""
    global _on, _checked_at  # noqa: PLW0603 - a per-process cache of a per-process fact
    if _on:
        return True
    now = time.monotonic()
    if now - _checked_at < RECHECK:
        return False
    _checked_at = now
    provider = trace.get_tracer_provider()
    _on = not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    return _on


def run_span(
    task: str,
    invocation_id: str,
    attempt: int,
    pool: str,
    worker: str,
    headers: Mapping[str, str] | None,
) -> contextlib.AbstractContextManager[Any]:
    """The run span around one run (a shared no-op without OpenTelemetry or a provider)."""
    api = otel()
    if api is None or not _tracing_on(api[0]):
        return _OFF
    return _span(api, task, invocation_id, attempt, pool, worker, headers)


@contextlib.contextmanager
def _span(
    api: tuple[Any, Any],
    task: str,
    invocation_id: str,
    attempt: int,
    pool: str,
    worker: str,
    headers: Mapping[str, str] | None,
) -> Iterator[None]:
    trace, propagate = api
    parent = propagate.extract(dict(headers or {}))
    tracer = trace.get_tracer("kubenenc")
    with tracer.start_as_current_span(
        f"kubenenc.run {task}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "kubenenc.task": task,
            "kubenenc.invocation_id": invocation_id,
            "kubenenc.attempt": attempt,
            "kubenenc.pool": pool,
            "kubenenc.worker": worker,
        },
    ):
        yield
