"""``/healthz``, ``/readyz`` and ``/metrics`` for probes and scraping — and nothing else.

The server answers GET of those three paths only (any other method: 501, any other path:
404), reads each request with a timeout, and binds where it is told: the pod's own IP in a
worker pod, ``127.0.0.1`` by default elsewhere.

Liveness means the worker loop is turning (a stuck loop is restarted by Kubernetes);
readiness means it can reach its backend and is not draining, so a draining pod leaves the
Service before it stops.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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

    class Handler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT  # a client that sends nothing holds a thread this long at most

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._reply(200 if alive() else 503, "ok\n" if alive() else "stuck\n")
            elif self.path == "/readyz":
                ok = ready()
                self._reply(200 if ok else 503, "ready\n" if ok else "not ready\n")
            elif self.path == "/metrics":
                self._reply(200, metrics(), "text/plain; version=0.0.4")
            else:
                self._reply(404, "not found\n")

        def _reply(self, code: int, body: str, ctype: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Silence per-request logs (probes hit this every few seconds)."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="kubenenc-http", daemon=True).start()
    return server
