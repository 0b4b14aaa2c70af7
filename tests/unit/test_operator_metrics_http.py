"""The operator's metrics endpoint (kubenenc.plainhttp, shared with the worker's)."""

from __future__ import annotations

import http.client

from kubenenc_operator.metrics import Metrics, serve


def test_metrics_are_served_and_nothing_else() -> None:
    metrics = Metrics()
    metrics.inc("kubenenc_operator_cycles_found_total", 2)
    server = serve("127.0.0.1", 0, metrics.render)
    host, port = server.server_address[:2]
    try:
        conn = http.client.HTTPConnection(str(host), int(port), timeout=5)
        conn.request("GET", "/metrics")
        reply = conn.getresponse()
        body = reply.read().decode()
        assert reply.status == 200
        assert reply.getheader("Content-Type") == "text/plain; version=0.0.4"
        assert "kubenenc_operator_cycles_found_total 2" in body
        conn.request("GET", "/healthz")
        reply = conn.getresponse()
        reply.read()
        assert reply.status == 404
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
