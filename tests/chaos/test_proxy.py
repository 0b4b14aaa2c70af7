"""The chaos scenarios' loopback TCP proxy (:mod:`tests.chaos.proxy`) on its own: it
forwards, a cut holds bytes until restored, a reset cut resets, and stopping it with
connections open (forwarding, or waiting for a cut to heal) ends them without an asyncio
error (Python 3.11 logs one for every connection task cancelled at shutdown)."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator

import pytest

from tests.chaos.proxy import Proxy


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    """A listening socket on loopback: the proxy's target."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        srv.settimeout(10)
        yield srv


def _through(proxy: Proxy, upstream: socket.socket) -> tuple[socket.socket, socket.socket]:
    """A client connection through ``proxy`` and its far end at ``upstream``."""
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    far, _ = upstream.accept()
    far.settimeout(10)
    return client, far


def test_a_cut_holds_the_bytes_until_restored_and_a_reset_cut_resets(
    upstream: socket.socket,
) -> None:
    proxy = Proxy(upstream.getsockname()[1]).start()
    try:
        client, far = _through(proxy, upstream)
        with client, far:
            client.sendall(b"ping")
            assert far.recv(4) == b"ping"
            proxy.cut()
            client.sendall(b"held")
            far.settimeout(0.5)
            with pytest.raises(TimeoutError):
                far.recv(4)  # not delivered while cut
            far.settimeout(10)
            proxy.restore()
            assert far.recv(4) == b"held"
            proxy.cut(reset=True)
            with pytest.raises(ConnectionResetError):
                client.recv(4)
        proxy.restore()
        client, far = _through(proxy, upstream)
        with client, far:  # forwards again after a reset cut
            far.sendall(b"pong")
            assert client.recv(4) == b"pong"
    finally:
        proxy.stop()


def test_stopping_with_connections_open_logs_no_asyncio_error(
    upstream: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    proxy = Proxy(upstream.getsockname()[1]).start()
    client, far = _through(proxy, upstream)  # forwarding
    client.sendall(b"x")
    assert far.recv(1) == b"x"
    proxy.cut()
    waiting = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)  # held by the cut
    with client, far, waiting:
        proxy.stop()
        for conn in (client, waiting):  # both closed by the stop
            with contextlib.suppress(ConnectionResetError):
                assert conn.recv(1) == b""
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
