"""The raw connection to Redis and the calls made over it: scripts with request ids, any
call with retries.

:class:`Link` sends commands on redis-py's connections without the client's per-command
layers; :class:`Caller` runs the scripts of :mod:`kubenenc_redis.scripts` through it, each
call with a request id (so a call retried after a lost reply is applied once), and retries
any call with backoff while the server is unreachable.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from kubenenc.backends.faults import retry_faults

from kubenenc_redis.rows import time_arg
from kubenenc_redis.scripts import FUNCTIONS, LIBRARY, SCRIPTS

log = logging.getLogger(__name__)

T = TypeVar("T")

FAULTS = (redis.ConnectionError, redis.TimeoutError)
"""What a lost or unreachable server raises: retried until ``retry_for`` passes."""
BLOCK_CHUNK = 5.0
"""Longest single server-side block (``wait_final`` and ``wait_for_work`` loop for longer
waits); the blocking connections' socket timeout allows for it."""


class Link:
    """Connections of one redis-py pool, used directly: a command is sent on an idle
    connection and its reply read back, without the client's per-command layers (pool
    bookkeeping, retries, event hooks). Speed: those layers cost more CPU per command than
    the server spends on most scripts. Connections are created by the pool (so the URL's
    TLS, credentials, database and timeouts apply) but kept here; a connection that failed
    is disconnected and reconnects on its next use. Thread-safe: a connection is used by one
    thread at a time (list pop/append are atomic)."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._idle: list[Any] = []
        self._made: list[Any] = []
        self._pid = os.getpid()

    def take(self) -> Any:
        """An idle connection (a new one when none is); hand it back with :meth:`give`."""
        if os.getpid() != self._pid:  # a forked child must not share its parent's sockets
            self._pid, self._idle, self._made = os.getpid(), [], []
        try:
            return self._idle.pop()
        except IndexError:
            conn = self._pool.make_connection()
            self._made.append(conn)
            return conn

    def give(self, conn: Any) -> None:
        """Hand back a connection from :meth:`take` (a failed one disconnected first)."""
        self._idle.append(conn)

    def call(self, *args: Any) -> Any:
        """Send one command, return its reply (a Redis error raises ResponseError)."""
        return self.calls([args])[-1]

    def calls(self, commands: Sequence[Sequence[Any] | bytes]) -> list[Any]:
        """Send ``commands`` in one write (pipelined, not a transaction) and return their
        replies in order; the first error reply raises after every reply was read. A
        command given as ``bytes`` is already in the protocol (see :func:`command`)."""
        conn = self.take()
        try:
            packed = b"".join(c if isinstance(c, bytes) else pack(c) for c in commands)
            conn.send_packed_command([packed])  # one write, one system call
            replies: list[Any] = []
            error: BaseException | None = None
            for _ in range(len(commands)):
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
                    error = error or exc
        except BaseException:
            conn.disconnect()
            self._idle.append(conn)
            raise
        self._idle.append(conn)
        if error is not None:
            raise error
        return replies

    def close(self) -> None:
        """Disconnect the idle connections and shut down the sockets of those in use, so a
        blocked command ends at once with a ConnectionError (its thread disconnects it
        then: closing a socket under another thread's read is not safe). Each reconnects
        on its next use."""
        idle = list(self._idle)
        for conn in idle:
            conn.disconnect()
        for conn in self._made:
            sock = getattr(conn, "_sock", None)
            if conn not in idle and sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def _arg(value: Any) -> bytes:
    kind = type(value)
    if kind is str:
        data: bytes = value.encode()
    elif kind is bytes:
        data = value
    elif kind is int:
        data = b"%d" % value
    elif kind is float:
        data = repr(value).encode()
    elif isinstance(value, str):  # a str enum (Status) too, as redis-py encodes it
        data = value.encode()
    elif isinstance(value, (bytes, memoryview)):
        data = bytes(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        data = b"%d" % value
    elif isinstance(value, float):
        data = repr(value).encode()
    else:
        raise TypeError(f"Redis command argument of type {kind.__name__}: {value!r}")
    return b"$%d\r\n%s\r\n" % (len(data), data)


def pack(args: Sequence[Any]) -> bytes:
    """One command in the Redis protocol, its arguments ``str`` (UTF-8; a str enum by its
    value), ``bytes``, ``int`` or ``float`` (as ``repr`` writes it), as redis-py's encoder
    writes them; any other type (``bool``, ``None``) raises TypeError. Speed: redis-py's
    general packer and encoder were a large share of a lone call's client CPU."""
    return b"*%d\r\n%s" % (len(args), b"".join(map(_arg, args)))


def bulk(text: str) -> bytes:
    """``text`` as one bulk string of the Redis protocol."""
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def command(head: bytes, count: int, tail: Sequence[bytes]) -> bytes:
    """One command in the Redis protocol: ``count`` arguments, ``head`` (some, as
    :func:`bulk` writes them) and then ``tail``. Speed: ``wait_final`` sends the same ids
    again and again, and encoded once they skip redis-py's encoder on every later trip."""
    return b"*%d\r\n%s%s" % (count + len(tail), head, b"".join(tail))


class Caller:
    """The backend's calls: every script with a request id over one :class:`Link`, and any
    call (a script, a redis-py command, a pipelined block) with retries.

    A call that fails on the connection is sent again with backoff until ``retry_for``
    seconds pass (see :mod:`kubenenc.backends.faults`), then raises BackendUnavailable; a
    script call
    sent again carries the same request id, so the server answers it from the stored reply
    instead of applying it twice (see ``reply`` in ``lua/lib.lua``).
    """

    def __init__(
        self, client: redis.Redis, prefix: str, retention: float, retry_for: float, name: str
    ) -> None:
        self.link = Link(client)
        self.prefix = prefix
        """``KEYS[1]`` of every script: the braced prefix."""
        self.retention = retention
        self.retry_for = retry_for
        self.name = name
        """The server as shown in messages (password redacted)."""
        self._server = f"Redis at {name}"
        self._scripts = {op: client.register_script(src) for op, src in SCRIPTS.items()}
        self.functions: bool | None = None
        """Whether the steps run as Redis functions (``FCALL``, Redis >= 7) rather than
        scripts (``EVALSHA``): None until the first call finds out by loading the library."""
        self.closes = 0
        """Incremented by the backend's ``close``: a call in flight then gives up."""
        self._rid = uuid.uuid4().hex[:16]  # request ids: this prefix and a counter
        self._pid = os.getpid()
        self._calls = itertools.count()

    def sha(self, op: str) -> str:
        """The SHA1 of script ``op``, for an ``EVALSHA`` sent by hand."""
        return str(self._scripts[op].sha)

    def head(self, op: str) -> tuple[str, str]:
        """The start of a call of step ``op`` sent by hand, ``("FCALL", name)`` or
        ``("EVALSHA", sha)``; the number of keys, the prefix and the arguments follow. The
        library must be loaded (see :meth:`ensure`)."""
        if self.functions:
            return "FCALL", FUNCTIONS[op]
        return "EVALSHA", self.sha(op)

    def ensure(self) -> None:
        """Find out whether the server runs functions, loading the library when it does
        (again after :meth:`missing` said a call found it gone: a restarted server)."""
        try:
            self.link.call("FUNCTION", "LOAD", LIBRARY)
            self.functions = True
        except redis.ResponseError as exc:
            text = str(exc).lower()
            if "already exists" in text:
                self.functions = True
            elif "unknown command" in text or "no permission" in text or "noperm" in text:
                # Redis 6.2, or a user not allowed to load functions: scripts instead.
                log.info("Redis functions unavailable (%s); using EVALSHA", exc)
                self.functions = False
            else:
                raise

    @staticmethod
    def missing(exc: BaseException) -> bool:
        """Whether ``exc`` says the script or the function called is not on the server."""
        if isinstance(exc, redis.exceptions.NoScriptError):
            return True
        return isinstance(exc, redis.ResponseError) and "function not found" in str(exc).lower()

    def retrying(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, sent again with backoff while it fails on the connection (see
        :func:`kubenenc.backends.faults.retry_faults`); a close gives up at once."""
        closes = self.closes
        return retry_faults(
            call, what=what, server=self._server, faults=FAULTS,
            retry_for=self.retry_for, log=log, closed=lambda: self.closes != closes,
        )  # fmt: skip

    def argv(self, now: float, *args: str | int) -> list[str | int]:
        """A script's arguments: the time, the retention, a new request id, then ``args``."""
        if os.getpid() != self._pid:  # a forked child must not reuse its parent's ids
            self._pid, self._rid = os.getpid(), uuid.uuid4().hex[:16]
        return [time_arg(now), repr(self.retention), f"{self._rid}{next(self._calls)}", *args]

    def run(self, op: str, now: float, *args: str | int) -> tuple[Any, bool]:
        """Run script ``op`` with retries; its reply, and whether it was replayed (see
        :meth:`unwrap`)."""
        return self.run_argv(op, self.argv(now, *args))

    def run_argv(self, op: str, argv: Sequence[str | int]) -> tuple[Any, bool]:
        """:meth:`run` with the arguments built already (a retry sends the same ones)."""
        reply = self.retrying(op, lambda: self.script(op, argv))
        return self.unwrap(op, reply)

    @staticmethod
    def unwrap(op: str, reply: Any) -> tuple[Any, bool]:
        """A script's reply, and whether it is the stored reply of an earlier try."""
        if isinstance(reply, list) and len(reply) == 2 and reply[0] == "replay":
            log.info("Redis %s was applied before the connection dropped; using its reply", op)
            return json.loads(reply[1]), True
        return reply, False

    def script(self, op: str, argv: Sequence[str | int]) -> Any:
        """One call of step ``op``, no retry: ``FCALL`` of its function on Redis >= 7
        (the library loaded first if the server lacks it), ``EVALSHA`` of its script
        otherwise (the script loaded first likewise). Speed: a function runs the shared
        Lua defined once at load, a script defines all of it again on every call."""
        if self.functions is None:
            self.ensure()
        if self.functions:
            try:
                return self.link.call("FCALL", FUNCTIONS[op], 1, self.prefix, *argv)
            except redis.ResponseError as exc:
                if not self.missing(exc):
                    raise
                self.ensure()
                return self.link.call("FCALL", FUNCTIONS[op], 1, self.prefix, *argv)
        script = self._scripts[op]
        try:
            return self.link.call("EVALSHA", script.sha, 1, self.prefix, *argv)
        except redis.exceptions.NoScriptError:
            return self.link.call("EVAL", script.script, 1, self.prefix, *argv)
