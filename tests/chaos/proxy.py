"""A TCP proxy on loopback that the chaos scenarios cut and restore: the network between one
worker and its backend.

Runs an asyncio loop in a daemon thread. :meth:`Proxy.cut` stops forwarding in both
directions without closing anything (what a partition does: bytes are not delivered, TCP
keeps the connections, and everything sent meanwhile arrives once the path heals);
``cut(reset=True)`` also aborts every connection with a TCP reset and resets the new ones
(a firewall rejecting, a NAT or load balancer that dropped its state). :meth:`Proxy.restore`
forwards again. Only loopback addresses are used. A worker reaches a Redis Cluster through
one proxy per node (:func:`via_cluster`; the cluster bus between the nodes stays direct).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit


def via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by 127.0.0.1:``port`` (credentials, path and
    query kept)."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def via_cluster(url: str, ports: dict[int, int]) -> str:
    """A ``redis+cluster://`` ``url`` whose nodes (on 127.0.0.1, node port -> proxy port in
    ``ports``) are all reached through their proxies: the proxies as its hosts, and an
    ``address_map`` from each node to its proxy for the nodes the cluster names."""
    base, _, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    _, _, path = rest.partition("/")
    hosts = ",".join(f"127.0.0.1:{proxy}" for proxy in ports.values())
    mapped = ",".join(f"127.0.0.1:{node}=127.0.0.1:{proxy}" for node, proxy in ports.items())
    query = "&".join(filter(None, [query, f"address_map={mapped}"]))
    return f"{scheme}://{hosts}/{path}?{query}"


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Proxy:
    """Forwards ``127.0.0.1:port`` to ``target_port`` on 127.0.0.1."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()
        self._refuse = False
        self._closing = False
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> Proxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    async def _serve(self) -> None:
        self._open.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection's life. It always returns (never raises, is never cancelled):
        asyncio runs it as a task whose end Python 3.11's ``StreamReaderProtocol`` checks
        with ``task.exception()``, which raises for a cancelled task and is logged as an
        ERROR (fixed in 3.12), so :meth:`stop` ends it by closing its connections."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refuse:
            _rst(writer)
            return
        await self._open.wait()  # a connection made during a cut waits for the path to heal
        if self._closing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _rst(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            if not self._closing:  # stop() may have begun while this one connected
                await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                await self._open.wait()  # held here, undelivered, while cut
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    def _call(self, fn: object) -> None:
        async def run() -> None:
            fn()  # type: ignore[operator]

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def cut(self, reset: bool = False) -> None:
        """Stop forwarding; with ``reset``, also reset every connection, old and new."""

        def do() -> None:
            self._open.clear()
            self._refuse = reset
            if reset:
                for pair in list(self._pairs):
                    for w in pair:
                        _rst(w)

        self._call(do)

    def restore(self) -> None:
        """Forward again (what was held during a cut without reset is delivered now)."""

        def do() -> None:
            self._refuse = False
            self._open.set()

        self._call(do)

    async def _shutdown(self) -> None:
        """End every connection's handler by closing its connections (a handler waiting
        for a cut to heal is woken and sees ``_closing``; one that starts now closes at
        once), then stop accepting. No handler is cancelled (see :meth:`_handle`). The
        listener closes last, in the same step that found no task left: Python 3.11 drops
        a connection accepted just before a close without closing it (its transport's
        ``Server._attach`` fails), which left a client connected to nothing."""
        self._closing = True
        for pair in list(self._pairs):
            for w in pair:
                w.transport.abort()
        self._open.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (others := asyncio.all_tasks() - {asyncio.current_task()}) and (
            left := deadline - loop.time()
        ) > 0:
            await asyncio.wait(others, timeout=left)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def stop(self) -> None:
        """Close everything and end the loop's thread."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()
