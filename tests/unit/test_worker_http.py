"""The worker's HTTP endpoint serves health and metrics only, on a chosen address, with a
read timeout."""

from __future__ import annotations

import http.client
import socket

import pytest
from kubenenc.settings import WorkerSettings
from kubenenc_worker import http as worker_http


def _serve() -> tuple[str, int, object]:
    server = worker_http.serve("127.0.0.1", 0, lambda: True, lambda: False, lambda: "m 1\n")
    host, port = server.server_address[:2]
    return str(host), int(port), server


def test_default_address_is_loopback() -> None:
    assert WorkerSettings().http_host == "127.0.0.1"


def test_only_get_of_the_three_paths_is_served() -> None:
    host, port, server = _serve()
    try:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        for path, code in (("/healthz", 200), ("/readyz", 503), ("/metrics", 200),
                           ("/", 404), ("/metrics/../etc", 404)):  # fmt: skip
            conn.request("GET", path)
            reply = conn.getresponse()
            reply.read()
            assert reply.status == code, path
        conn.close()
        for method in ("POST", "PUT", "DELETE"):
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request(method, "/healthz", body=b"x")
            reply = conn.getresponse()
            reply.read()
            conn.close()
            assert reply.status == 501, method
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]


def test_a_client_that_sends_nothing_is_dropped_after_the_read_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_http, "READ_TIMEOUT", 0.3)
    host, port, server = _serve()
    try:
        with socket.create_connection((host, port), timeout=10) as silent:
            assert silent.recv(1024) == b""  # the server closed it (else: socket.timeout)
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
