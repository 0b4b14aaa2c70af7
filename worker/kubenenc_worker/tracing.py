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
from collections.abc import Iterator, Mapping

from kubenenc.tracing import otel


def _tracing_on(trace: object) -> bool:
    provider = trace.get_tracer_provider()  # type: ignore[attr-defined]
    proxy = getattr(trace, "ProxyTracerProvider", ())
    noop = getattr(trace, "NoOpTracerProvider", ())
    return not isinstance(provider, (proxy, noop))


@contextlib.contextmanager
def run_span(
    task: str,
    invocation_id: str,
    attempt: int,
    pool: str,
    worker: str,
    headers: Mapping[str, str] | None,
) -> Iterator[None]:
    """The run span around one run (a no-op without OpenTelemetry or a provider)."""
    api = otel()
    if api is None or not _tracing_on(api[0]):
        yield
        return
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
