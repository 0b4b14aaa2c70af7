"""``/healthz``, ``/readyz`` and ``/metrics`` for probes and scraping — and nothing else.

The server answers GET of those three paths only (any other method: 501, any other path:
404), reads each request with a timeout, and binds where it is told: the pod's own IP in a
worker pod, ``127.0.0.1`` by default elsewhere.

Liveness means the worker loop is turning (a stuck loop is restarted by Kubernetes);
readiness means it can reach its backend and is not draining, so a draining pod leaves the
Service before it stops.
"""

from __future__ import annotations

from collections.abc import Callable
from http.server import ThreadingHTTPServer

from kubenenc.plainhttp import METRICS_TYPE, Reply
from kubenenc.plainhttp import serve as serve_paths

READ_TIMEOUT = 5.0
"""Seconds a connection may take to send its request; then it is closed."""


def serve(
    host: str,
    port: int,
    alive: Callable[[], bool],
    ready: Callable[[], bool],
    metrics: Callable[[], str],
) -> ThreadingHTTPServer:
    """Start the endpoint in a daemon thread; ``server.shutdown()`` stops it."""

    def healthz() -> Reply:
        ok = alive()
        return (200, "ok\n", "text/plain") if ok else (503, "stuck\n", "text/plain")

    def readyz() -> Reply:
        ok = ready()
        return (200, "ready\n", "text/plain") if ok else (503, "not ready\n", "text/plain")

    routes = {"/healthz": healthz, "/readyz": readyz,
              "/metrics": lambda: (200, metrics(), METRICS_TYPE)}  # fmt: skip
    return serve_paths(host, port, routes, name="kubenenc-http", read_timeout=READ_TIMEOUT)
