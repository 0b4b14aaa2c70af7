"""A small GET-only HTTP endpoint in a daemon thread: the worker's probes and metrics
(:mod:`kubenenc_worker.http`) and the operator's metrics (:mod:`kubenenc_operator.metrics`).

It answers GET of the paths it is given and nothing else (another path: 404, another
method: 501), reads each request with a timeout (a client that sends nothing holds a thread
that long at most), and writes no log line per request: probes and scrapes come every few
seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

METRICS_TYPE = "text/plain; version=0.0.4"
"""The Content-Type of the Prometheus text exposition format."""

Reply = tuple[int, str, str]
"""``(status, body, content type)`` of one answer."""


def serve(
    host: str,
    port: int,
    routes: Mapping[str, Callable[[], Reply]],
    *,
    name: str,
    read_timeout: float = 5.0,
) -> ThreadingHTTPServer:
    """Serve ``routes`` (path -> the reply, made at each request) on ``host:port`` in a
    daemon thread called ``name``; ``server.shutdown()`` stops it."""

    class Handler(BaseHTTPRequestHandler):
        timeout = read_timeout

        def do_GET(self) -> None:
            route = routes.get(self.path)
            code, body, ctype = route() if route else (404, "not found\n", "text/plain")
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """No line per request."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server
