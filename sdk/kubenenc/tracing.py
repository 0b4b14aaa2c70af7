"""Trace context carried by calls (OpenTelemetry, optional: ``pip install "kubenenc[otel]"``).

A call made while an OpenTelemetry span is current carries that span's context in the
invocation's ``headers`` (W3C ``traceparent``/``tracestate``, through the globally configured
propagator), which every backend stores with the record; the worker that runs it starts its
run span as a child of that context (:mod:`kubenenc_worker.tracing`). A task's wait on other
calls adds a ``kubenenc.pause`` and a ``kubenenc.resume`` event to the current span.

Without ``opentelemetry-api`` installed, or without a current span, nothing is added: the
import is tried once per process and every function here is then a cheap no-op.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

_api: tuple[Any, Any] | None = None
_tried = False


def otel() -> tuple[Any, Any] | None:
    """``(opentelemetry.trace, opentelemetry.propagate)``, or None when not installed."""
    global _api, _tried  # noqa: PLW0603 - an import cache, set once per process
    if not _tried:
        _tried = True
        try:
            # By name: a namespace package that a type checker without it cannot see.
            trace = importlib.import_module("opentelemetry.trace")
            propagate = importlib.import_module("opentelemetry.propagate")
        except ImportError:
            _api = None
        else:
            _api = (trace, propagate)
    return _api


def current_headers() -> dict[str, str] | None:
    """The current span's context as headers for a new call, or None (no span, no OTel)."""
    api = otel()
    if api is None:
        return None
    trace, propagate = api
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def add_event(name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Add an event to the current span, when there is a recording one."""
    api = otel()
    if api is None:
        return
    span = api[0].get_current_span()
    if span.is_recording():
        span.add_event(name, dict(attributes or {}))
