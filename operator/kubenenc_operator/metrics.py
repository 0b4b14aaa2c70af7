"""Prometheus metrics of the operator, in the text exposition format (no client library).

Counters: reconciles and errors by kind, scaling decisions by pool and direction, cycles
found, invocations handed back by the enforcer and overdue runs it failed. Gauges: backlog /
running / paused / desired replicas per pool, queue depth and oldest pending age per pool
(:mod:`kubenenc_operator.queuemetrics`), and whether this replica leads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import ClassVar

from kubenenc import plainhttp
from kubenenc.plainhttp import METRICS_TYPE

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + body + "}"


class Metrics:
    """Thread-safe counters and gauges; :meth:`render` writes the exposition text."""

    _HELP: ClassVar[dict[str, tuple[str, str]]] = {
        "kubenenc_operator_reconciles_total": ("counter", "Reconciliations by resource kind."),
        "kubenenc_operator_reconcile_errors_total": ("counter", "Failed reconciliations."),
        "kubenenc_operator_scaling_decisions_total": ("counter", "Replica changes by pool."),
        "kubenenc_operator_cycles_found_total": ("counter", "dependsOn loops reported."),
        "kubenenc_operator_recovered_total": ("counter", "Invocations handed back by sweeps."),
        "kubenenc_operator_overdue_failed_total": (
            "counter",
            "Runs a live worker left past their timeout, failed by sweeps.",
        ),
        "kubenenc_operator_scheduled_total": ("counter", "Invocations submitted by schedules."),
        "kubenenc_operator_pool_backlog": ("gauge", "Pending invocations of a pool."),
        "kubenenc_operator_pool_running": ("gauge", "Running invocations of a pool."),
        "kubenenc_operator_pool_paused": ("gauge", "Paused invocations of a pool."),
        "kubenenc_operator_pool_desired_replicas": ("gauge", "Replicas a pool's load asks for."),
        "kubenenc_operator_leader": ("gauge", "1 while this replica holds the lease."),
        "kubenenc_operator_pool_queue_depth": (
            "gauge",
            "Calls of a pool waiting for a worker (registered, pending, retry).",
        ),
        "kubenenc_operator_pool_oldest_pending_seconds": (
            "gauge",
            "Seconds the oldest pending call of a pool has waited since submitted (0: none).",
        ),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], float] = {}
        self._gauges: dict[tuple[str, Labels], float] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to counter ``name`` with ``labels``."""
        with self._lock:
            key = (name, tuple(sorted(labels.items())))
            self._counters[key] = self._counters.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set gauge ``name`` with ``labels``."""
        with self._lock:
            self._gauges[(name, tuple(sorted(labels.items())))] = value

    def value(self, name: str, **labels: str) -> float:
        """The current value of a series (0 when absent), for tests and logs."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            return self._counters.get(key, self._gauges.get(key, 0))

    def render(self) -> str:
        """The whole exposition text."""
        with self._lock:
            series = [*self._counters.items(), *self._gauges.items()]
        lines: list[str] = []
        for name, (kind, text) in self._HELP.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for (n, labels), value in sorted(series):
                if n == name:
                    lines.append(f"{name}{_labels(labels)} {value:g}")
        return "\n".join(lines) + "\n"


def serve(host: str, port: int, render: Callable[[], str]) -> ThreadingHTTPServer:
    """Serve ``/metrics`` in a daemon thread; ``server.shutdown()`` stops it."""
    routes = {"/metrics": lambda: (200, render(), METRICS_TYPE)}
    return plainhttp.serve(host, port, routes, name="operator-metrics")
