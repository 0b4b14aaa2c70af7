"""The Redis backend: the contract as Lua scripts on one Redis server.

Every operation that changes more than one key is one script (see :mod:`kubenenc_redis.scripts`
for the key schema), so it is atomic across every process that talks to the server. Reads
that need no atomicity (``get_many``, ``counts``) are plain commands.

URL: ``redis[s]://[[user]:password@]host[:port][/db][?prefix=app&retention=604800]``.
``prefix`` separates apps sharing one database (default ``kubenenc``); ``retention`` is how
many seconds a final invocation is kept (default 7 days); ``retry_for`` is how long a call
keeps retrying while the server is unreachable (default 60 s). Every other query option goes
to redis-py (``ssl_cert_reqs``, ``socket_timeout``, ...).

Faults: a call that loses its connection is sent again with backoff until ``retry_for``
passes, then raises :class:`~kubenenc.errors.BackendUnavailable`. Each script call carries a
request id and the server keeps its reply for two minutes, so a call whose reply was lost is
answered from that record instead of being applied twice (a claim is never taken twice and
so never stranded on a worker that does not know it holds it).

Results are pushed: ``wait_final`` blocks on the server (``BLMOVE`` on a list that the
finishing script pushes to), so a waiter wakes one network hop after the result is stored.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from kubenenc.backends.codec import dumps_worker, loads_worker
from kubenenc.backends.registry import redact_url
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    ErrorInfo,
    InvocationRecord,
    NewInvocation,
    Outcome,
    PauseKind,
    PauseResult,
    RegisterKind,
    RegisterResult,
    ResumeResult,
    Transition,
    WorkerInfo,
)
from kubenenc.serializers import compact_json, json_string
from kubenenc.status import Status
from redis.backoff import NoBackoff
from redis.retry import Retry

from kubenenc_redis.reads import RedisBrowse
from kubenenc_redis.scripts import SCRIPTS

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFIX = "kubenenc"
DEFAULT_RETENTION = 7 * 24 * 3600.0
DEFAULT_RETRY_FOR = 60.0
BLOCK_CHUNK = 5.0
"""Longest single server-side block of ``wait_final``; it loops for longer waits."""
REGISTER_CHUNK = 500
"""Invocations per register script call (see :meth:`RedisBackend.register`)."""
READ_CHUNK = 1000
"""Records read per script call (a script blocks the server while it runs)."""
WAIT_WINDOW = 1000
"""How many ids ``wait_final`` reads per round trip."""
KEEP_FINAL = 1.0
"""Seconds a final record read by a single-id ``wait_final`` answers the next ``get``."""
MAX_LOOP_NODES = 100_000
SWEEP_BATCH = 500
"""Final invocations past retention deleted per ``recover`` call."""
_US = "\x1f"
_RS = "\x1e"
_FAULTS = (redis.ConnectionError, redis.TimeoutError)
_OWN_OPTIONS = ("prefix", "retention", "retry_for")
MIN_SERVER = (6, 2)


def _now(now: float) -> str:
    return repr(float(now))


_compact = json.JSONEncoder(separators=(",", ":")).encode
_KINDS = {kind.value: kind for kind in RegisterKind}
_q = json_string


def _opt(text: str | None) -> str:
    return "null" if text is None else _q(text)


def _register_texts(new: Sequence[NewInvocation], now: float) -> tuple[str, list[str]]:
    """The register script's arguments for ``new``: the JSON list of the fields the script
    reads, and per invocation the JSON of the fields fixed at registration (stored as the
    record's ``d`` field).

    The same text ``json.dumps(..., separators=(",", ":"))`` writes for the lists and dicts
    these once were, but built with one format string per invocation instead of an encoder
    call per item: the encoder's set-up cost more than the encoding of these short fields.
    """
    created = compact_json(float(now))
    items: list[str] = []
    static: list[str] = []
    for n in new:
        deps = compact_json(list(n.depends_on)) if n.depends_on else "[]"
        id, pool, app, call = _q(n.id), _q(n.pool), _q(n.app), _q(n.call_key)
        display = _q(n.display)
        rkey, reg, parent = _opt(n.running_key), _opt(n.registration_key), _opt(n.parent)
        limit = "" if n.running_limit is None else str(n.running_limit)
        items.append(
            f"[{id},{_q(n.registration_key or '')},{_q(n.registration)},{pool},"
            f"{_q(str(n.priority))},{app},{_q(n.running_key or '')},{_q(limit)},{call},"
            f"{display},{_q(n.parent or '')},{deps}]"
        )
        static.append(
            f'{{"id":{id},"app":{app},"task":{_q(n.task)},"args":{_q(n.args)},'
            f'"call_key":{call},"display":{display},"pool":{pool},'
            f'"priority":{compact_json(n.priority)},"max_retries":{compact_json(n.max_retries)},'
            f'"timeout":{compact_json(n.timeout)},"running_key":{rkey},'
            f'"running_limit":{compact_json(n.running_limit)},"registration_key":{reg},'
            f'"depends_on":{deps},"parent":{parent},"serializer":{_q(n.serializer)},'
            f'"created_at":{created}}}'
        )
    return f"[{','.join(items)}]", static


_STATUS = {status.value: status for status in Status}


_FIELDS = tuple(f.name for f in dataclasses.fields(InvocationRecord))


class _LazyRecord(InvocationRecord):
    """An :class:`InvocationRecord` read from a script's row, with the fields that running
    or collecting a call reads set at once and the others filled in from the row on first
    use of any of them.

    Building a whole record costs more than a worker spends on a no-op task's run (about
    7 µs: two dozen fields, conversions, the history), and so does parsing the JSON of the
    fields fixed at registration (``d``); the worker and ``results()`` read a handful of
    fields of most records. A claimed record has id, task, args, serializer, timeout,
    status and result set (``d`` parsed: a run needs most of it); a record read by
    ``get``/``get_many`` has id, serializer, status and result set, and its ``d`` is parsed
    only when another field is read. A field not set yet is an empty slot, whose read falls
    through to :meth:`__getattr__`, which fills every field not set yet; after that it is
    an ordinary record. Equal to an :class:`InvocationRecord` with the same fields."""

    __slots__ = ("_row",)
    _row: list[Any]

    def __getattr__(self, name: str) -> Any:
        if name not in _FIELDS:
            raise AttributeError(name)
        row = self._row
        if isinstance(row[0], str):
            row[0] = json.loads(row[0])
        full = _record(row)
        for field in _FIELDS:
            try:
                object.__getattribute__(self, field)  # set already (maybe changed): kept
            except AttributeError:
                object.__setattr__(self, field, getattr(full, field))
        return object.__getattribute__(self, name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InvocationRecord):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, as InvocationRecord


def _shell(row: list[Any], id: str, serializer: str) -> _LazyRecord:
    """A :class:`_LazyRecord` of ``row`` with id, serializer, status and result set."""
    rec = object.__new__(_LazyRecord)
    rec._row = row
    rec.id = InvocationId(id)
    rec.serializer = serializer
    rec.status = _STATUS[row[1]]
    rec.result = row[8] if row[8] is not False else None
    return rec


def _lazy(row: list[Any]) -> InvocationRecord:
    """A :class:`_LazyRecord` of a row as :func:`_record` takes it (``d`` parsed), with
    what a run needs set too."""
    d: dict[str, Any] = row[0]
    rec = _shell(row, d["id"], d.get("serializer", "json"))
    rec.task = d["task"]
    rec.args = d["args"]
    rec.timeout = d.get("timeout")
    return rec


def _claimed(texts: Sequence[str]) -> list[InvocationRecord]:
    """The records of a claim: two JSON texts, the records' ``d`` objects and the rest of
    their rows with 0 in the place of ``d`` (see ``rows_json`` in
    :mod:`kubenenc_redis.scripts`)."""
    out: list[InvocationRecord] = []
    for d, row in zip(json.loads(texts[0]), json.loads(texts[1]), strict=True):
        row[0] = d
        out.append(_lazy(row))
    return out


_SERIALIZER = '"serializer":"'


def _serializer(d: str) -> str | None:
    """The ``serializer`` of a record's ``d`` JSON text, found without parsing it, or None
    when it cannot be read so (then parse). The text is compact JSON of one flat object
    (see :func:`_register_texts`), whose string values escape every quote, so the key with
    its quotes occurs once, as the key."""
    at = d.rfind(_SERIALIZER)
    if at < 0:
        return None
    start = at + len(_SERIALIZER)
    end = d.find('"', start)
    value = d[start:end]
    return None if end < 0 or "\\" in value else value


def _read_rows(texts: Sequence[str], ids: Sequence[str]) -> list[InvocationRecord | None]:
    """The records of a reply of the read script for ``ids``: the records' ``d`` texts
    joined by RS (which JSON text cannot hold unescaped; empty for a missing record), and
    the JSON of the rest of their rows with 0 in the place of ``d`` (false for a missing
    record). Each ``d`` stays text until a field other than id, serializer, status and
    result is read (see :class:`_LazyRecord`)."""
    out: list[InvocationRecord | None] = []
    rows = json.loads(texts[1])
    for id, d, row in zip(ids, texts[0].split(_RS), rows, strict=True):
        if row is False:
            out.append(None)
            continue
        row[0] = d
        serializer = _serializer(d)
        if serializer is None:
            row[0] = json.loads(d)
            out.append(_lazy(row))
            continue
        out.append(_shell(row, id, serializer))
    return out


def _record(row: Sequence[Any]) -> InvocationRecord:
    """A record from a row of the read or claim scripts: ``[d, s, u, at, lo, w, wt, nb, r,
    e]`` plus the history text when read (``false``: a field not set; ``d`` parsed).
    Built directly: on the claim path this runs once per invocation."""
    d: dict[str, Any] = row[0]
    err = json.loads(row[9]) if row[9] else None
    get = d.get
    return InvocationRecord(
        id=d["id"], app=d["app"], task=d["task"], args=d["args"], call_key=d["call_key"],
        display=d["display"], pool=d["pool"], priority=d["priority"],
        status=_STATUS[row[1]], created_at=d["created_at"], updated_at=float(row[2]),
        max_retries=get("max_retries", 0), timeout=get("timeout"),
        running_key=get("running_key"), running_limit=get("running_limit"),
        registration_key=get("registration_key"),
        depends_on=tuple(get("depends_on", ())), parent=get("parent") or None,
        serializer=get("serializer", "json"), attempt=int(row[3]), lost=int(row[4]),
        worker=row[5] or None, waiters=int(row[6]), not_before=float(row[7]),
        result=row[8] if row[8] is not False else None,
        error=ErrorInfo(err[0], err[1], err[2]) if err else None,
        history=[
            Transition(_STATUS[status], float(at), WorkerId(worker) if worker else None,
                       reason or None)
            for status, at, worker, reason in (
                e.split(_US, 3) for e in (row[10] or "").split(_RS) if e
            )
        ]
        if len(row) > 10
        else [],
    )  # fmt: skip


def _outcome_arg(outcomes: Sequence[Outcome]) -> str:
    """The outcomes as the finish scripts read them: one JSON array, seven strings each
    (written with a format string per outcome, as :func:`_register_texts` does)."""
    items = []
    for o in outcomes:
        error = o.error
        err = "" if error is None else _compact([error.type, error.message, error.traceback])
        result = o.result
        has = "0" if result is None else "1"
        items.append(
            f'[{_q(o.id)},{_q(o.kind.value)},"{has}",{_q(result or "")},{_q(err)},'
            f'"{_now(o.retry_at)}",{_q(o.reason or "")}]'
        )
    return f"[{','.join(items)}]"


_ONE = frozenset(("1", 1))


def _flags(done: Any) -> list[bool]:
    """The finish scripts' answer per outcome: a string of '1'/'0' (or, replayed from an
    earlier version's stored reply, a list of 1/0)."""
    return [x in _ONE for x in done]


class _Link:
    """Connections of one redis-py pool, used directly: a command is sent on an idle
    connection and its reply read back, without the client's per-command layers (pool
    bookkeeping, retries, event hooks), which cost about 70 µs of CPU per command -- more
    than the server spends on most scripts. Connections are created by the pool (so the URL's
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

    def calls(self, commands: Sequence[Sequence[Any]], first: bytes = b"") -> list[Any]:
        """Send ``commands`` in one write (pipelined, not a transaction) and return their
        replies in order; the first error reply raises after every reply was read.
        ``first``, when given, is one more command, already in the protocol (see
        :func:`_command`), sent ahead of them."""
        conn = self.take()
        try:
            packed = conn.pack_commands(commands)
            conn.send_packed_command([first, *packed] if first else packed)
            replies: list[Any] = []
            error: BaseException | None = None
            for _ in range(len(commands) + (1 if first else 0)):
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


def _bulk(text: str) -> bytes:
    """``text`` as one bulk string of the Redis protocol."""
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _command(head: bytes, count: int, tail: Sequence[bytes]) -> bytes:
    """One command in the Redis protocol: ``count`` arguments, ``head`` (some, as
    :func:`_bulk` writes them) and then ``tail``. ``wait_final`` sends the same ids again
    and again: encoded once, they are not encoded again on each trip (redis-py's encoder
    costs about a microsecond per argument)."""
    return b"*%d\r\n%s%s" % (count + len(tail), head, b"".join(tail))


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """Split ``url`` into the URL for redis-py and kubenenc's own options."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigurationError(
            f"bad Redis URL {redact_url(url)!r}: use redis://[[user]:password@]host[:port][/db] "
            "or rediss://... for TLS"
        )
    if not parts.hostname:
        raise ConfigurationError(f"bad Redis URL {redact_url(url)!r}: no host name")
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        (ours.__setitem__(key, value) if key in _OWN_OPTIONS else rest.append((key, value)))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def _float_option(ours: Mapping[str, str], name: str, default: float, url: str) -> float:
    raw = ours.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigurationError(
            f"bad Redis URL {redact_url(url)!r}: {name}={raw!r} must be a positive number of "
            "seconds"
        )
    return value


def _warn_on_eviction(client: redis.Redis, shown: str) -> None:
    """Log a warning when the server may evict keys: an evicted record or queue entry is an
    invocation lost. (A user without CONFIG rights is not warned.)"""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
    except redis.RedisError:
        return
    if policy and policy != "noeviction":
        log.warning(
            "Redis at %s has maxmemory-policy %s: under memory pressure it may evict "
            "invocations; set maxmemory-policy noeviction",
            shown, policy,
        )  # fmt: skip


class RedisBackend(RedisBrowse):
    """Invocations in one Redis database (>= 6.2), shared by every process that reaches it."""

    shared_across_processes: ClassVar[bool] = True
    register_batch: ClassVar[int] = 100_000
    """How many calls the SDK hands to one :meth:`register`: this backend pipelines them
    itself (see :meth:`register`), better than the SDK can from outside."""

    def __init__(
        self,
        client: redis.Redis,
        blocking: redis.Redis | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        retention: float = DEFAULT_RETENTION,
        retry_for: float = DEFAULT_RETRY_FOR,
        name: str = "redis",
    ) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise ConfigurationError(f"bad Redis key prefix {prefix!r}: non-empty, no braces")
        self._r = client
        self._block = blocking or client
        self._p = "{" + prefix + "}"
        self.prefix = prefix
        self.retention = retention
        self.retry_for = retry_for
        self._name = name
        self._scripts = {op: client.register_script(src) for op, src in SCRIPTS.items()}
        self._local = threading.local()  # .final: see wait_final
        self._loaded = False  # the scripts wait_final pipelines are on the server
        self._link = _Link(client)
        self._block_link = _Link(self._block)
        self._closes = 0  # see close and _retrying
        self._rid = uuid.uuid4().hex[:16]  # request ids: this prefix and a counter
        self._pid = os.getpid()
        self._calls = itertools.count()

    @classmethod
    def from_url(cls, url: str) -> RedisBackend:
        """Connect, check the server and the credentials, and return the backend.

        ConfigurationError for a malformed URL, a wrong password or user, a database number
        out of range or a server older than 6.2; BackendUnavailable when nothing answers.
        """
        base, ours = parse_url(url)
        prefix = ours.get("prefix", DEFAULT_PREFIX)
        if not prefix or any(c in prefix for c in "{}"):
            raise ConfigurationError(
                f"bad Redis URL {redact_url(url)!r}: prefix={prefix!r} must be non-empty, "
                "without braces"
            )
        retention = _float_option(ours, "retention", DEFAULT_RETENTION, url)
        retry_for = _float_option(ours, "retry_for", DEFAULT_RETRY_FOR, url)
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": 5.0,
            "socket_keepalive": True,
            "health_check_interval": 30,
            "retry": Retry(NoBackoff(), 0),  # our own retry loop re-sends with request ids
        }
        try:
            client = redis.Redis.from_url(base, socket_timeout=30.0, **common)
            blocking = redis.Redis.from_url(base, socket_timeout=BLOCK_CHUNK + 30.0, **common)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"bad Redis URL {redact_url(url)!r}: {exc}") from exc
        shown = redact_url(url)
        try:
            info = client.info("server")
        except redis.AuthenticationError as exc:
            raise ConfigurationError(
                f"Redis at {shown} refused the credentials: {exc}; check the user and password "
                "in the URL (redis://user:password@host:port/db)"
            ) from exc
        except redis.ResponseError as exc:
            text = str(exc)
            if any(w in text for w in ("NOAUTH", "WRONGPASS", "NOPERM", "invalid password")):
                raise ConfigurationError(
                    f"Redis at {shown} refused the credentials or permissions: {text}"
                ) from exc
            raise ConfigurationError(f"Redis at {shown} refused the connection: {text}") from exc
        except _FAULTS as exc:
            raise BackendUnavailable(f"cannot reach Redis at {shown}: {exc}") from exc
        version = tuple(int(x) for x in str(info.get("redis_version", "0.0")).split(".")[:2])
        if version < MIN_SERVER:
            raise ConfigurationError(
                f"Redis at {shown} is version {info.get('redis_version')}; kubenenc needs 6.2 "
                "or newer (BLMOVE, ZRANGE BYLEX)"
            )
        _warn_on_eviction(client, shown)
        return cls(
            client, blocking, prefix=prefix, retention=retention, retry_for=retry_for,
            name=shown,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"RedisBackend({self._name!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        """Drop every connection (a later call reconnects). A call in flight fails with
        BackendUnavailable instead of reconnecting. Idempotent."""
        self._closes += 1
        self._link.close()
        self._block_link.close()
        self._r.close()
        if self._block is not self._r:
            self._block.close()

    # -- calls with retries ----------------------------------------------------------------

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        closes = self._closes
        while True:
            try:
                return call()
            except _FAULTS as exc:
                if self._closes != closes:
                    raise BackendUnavailable(f"Redis {what}: the backend was closed") from exc
                if time.monotonic() + delay > deadline:
                    raise BackendUnavailable(
                        f"Redis at {self._name} unreachable for {self.retry_for:.0f} s ({what}): "
                        f"{exc}"
                    ) from exc
                log.warning("Redis %s failed (%s); retrying in %.2f s", what, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _argv(self, now: float, *args: str | int) -> list[str | int]:
        """A script's arguments: the time, the retention, a new request id, then ``args``."""
        if os.getpid() != self._pid:  # a forked child must not reuse its parent's ids
            self._pid, self._rid = os.getpid(), uuid.uuid4().hex[:16]
        return [_now(now), repr(self.retention), f"{self._rid}{next(self._calls)}", *args]

    def _run(self, op: str, now: float, *args: str | int) -> Any:
        """Run one script; a retried call carries the same request id (applied once)."""
        return self._run_argv(op, self._argv(now, *args))

    def _run_argv(self, op: str, argv: Sequence[str | int]) -> Any:
        reply = self._retrying(op, lambda: self._script(op, argv))
        return self._unwrap(op, reply)

    @staticmethod
    def _unwrap(op: str, reply: Any) -> tuple[Any, bool]:
        """A script's reply, and whether it is the stored reply of an earlier try."""
        if isinstance(reply, list) and len(reply) == 2 and reply[0] == "replay":
            log.info("Redis %s was applied before the connection dropped; using its reply", op)
            return json.loads(reply[1]), True
        return reply, False

    def _script(self, op: str, argv: Sequence[str | int]) -> Any:
        """One call of script ``op`` (loaded first if the server does not have it)."""
        script = self._scripts[op]
        try:
            return self._link.call("EVALSHA", script.sha, 1, self._p, *argv)
        except redis.exceptions.NoScriptError:
            return self._link.call("EVAL", script.script, 1, self._p, *argv)

    def _key(self, *parts: str) -> str:
        return ":".join((self._p, *parts))

    # -- Queue -----------------------------------------------------------------------------

    def register(self, new: Sequence[NewInvocation], now: float) -> list[RegisterResult]:
        """See :meth:`kubenenc.backends.contract.Queue.register`.

        ``REGISTER_CHUNK`` invocations per script call; more are pipelined on one
        connection, each call encoded while the server runs the one before, so the server
        is not left waiting for the client. A call whose reply is lost (or that found the
        script missing) is sent again with its request id, so it is applied once, in order.
        """
        if not new:
            return []
        calls = (
            self._register_argv(new[start : start + REGISTER_CHUNK], now)
            for start in range(0, len(new), REGISTER_CHUNK)
        )
        out: list[RegisterResult] = []
        sent: collections.deque[list[str | int]] = collections.deque()
        if len(new) > REGISTER_CHUNK:
            sha = self._scripts["register"].sha
            conn = self._link.take()
            try:
                for argv in calls:
                    sent.append(argv)
                    conn.send_packed_command(conn.pack_command("EVALSHA", sha, 1, self._p, *argv))
                    if len(sent) > 1:
                        out += self._registered(conn.read_response())
                        sent.popleft()
                while sent:
                    out += self._registered(conn.read_response())
                    sent.popleft()
            except BaseException as exc:
                conn.disconnect()  # replies may be left unread on it
                if not isinstance(exc, (*_FAULTS, redis.exceptions.NoScriptError)):
                    raise
                # Lost connection or script not loaded: the rest again, one by one (below).
            finally:
                self._link.give(conn)
        for argv in itertools.chain(sent, calls):
            out += self._registered(self._run_argv("register", argv)[0])
        return out

    def _register_argv(self, new: Sequence[NewInvocation], now: float) -> list[str | int]:
        items, static = _register_texts(new, now)
        return self._argv(now, items, *static)

    def _registered(self, reply: Any) -> list[RegisterResult]:
        if isinstance(reply, list):  # stored by an earlier try of the same request
            reply = self._unwrap("register", reply)[0]
        # One JSON text (a replayed reply too: it was stored as that text).
        return [RegisterResult(_KINDS[kind], InvocationId(id)) for kind, id in json.loads(reply)]

    def claim(self, pool: str, worker: WorkerId, limit: int, now: float) -> list[InvocationRecord]:
        """See :meth:`kubenenc.backends.contract.Queue.claim` (history left empty: a worker
        does not need it, and it would cost a read per invocation)."""
        if limit <= 0:
            return []
        reply, replayed = self._run("claim", now, pool, worker, limit)
        if replayed:
            found = self._read(reply, history=False)
            return [r for r in found if r is not None and r.worker == worker]
        if not reply:
            return []
        return _claimed(reply)

    def finish(self, outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        """See :meth:`kubenenc.backends.contract.Queue.finish`."""
        if not outcomes:
            return []
        reply, _ = self._run("finish", now, worker, _outcome_arg(outcomes))
        return _flags(reply)

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """See :class:`kubenenc.backends.contract.FinishAndClaim`: one script, one round
        trip."""
        reply, replayed = self._run(
            "finish_and_claim", now, pool, worker, max(limit, 0), _outcome_arg(outcomes),
        )  # fmt: skip
        flags = _flags(reply[0])
        if replayed:
            found = self._read(reply[1], history=False)
            return flags, [r for r in found if r is not None and r.worker == worker]
        if not reply[1]:
            return flags, []
        return flags, _claimed(reply[1:])

    def cancel(self, id: InvocationId, now: float, reason: str = "cancelled") -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.cancel`."""
        reply, _ = self._run("cancel", now, id, "cancel", reason, "")
        return bool(reply)

    def fail(self, id: InvocationId, error: str, message: str, now: float) -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.fail`."""
        reply, _ = self._run("cancel", now, id, "fail", error, message)
        return bool(reply)

    # -- Coordination ----------------------------------------------------------------------

    def pause(
        self, id: InvocationId, worker: WorkerId, targets: Sequence[InvocationId], now: float
    ) -> PauseResult:
        """See :meth:`kubenenc.backends.contract.Coordination.pause`."""
        reply, _ = self._run("pause", now, id, worker, MAX_LOOP_NODES, *targets)
        kind = PauseKind(reply[0])
        return PauseResult(kind, tuple(reply[1:]))

    def resume(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :meth:`kubenenc.backends.contract.Coordination.resume`."""
        if not ids:
            return ResumeResult()
        reply, _ = self._run("resume", now, worker, max(limit, 0), *ids)
        resumed, gone = reply
        return ResumeResult(
            tuple(InvocationId(x) for x in resumed), tuple(InvocationId(x) for x in gone)
        )

    def heartbeat(self, info: WorkerInfo) -> None:
        """See :meth:`kubenenc.backends.contract.Coordination.heartbeat`."""

        def beat() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.zadd(self._key("beats"), {info.id: info.at})
            pipe.hset(self._key("workers"), info.id, dumps_worker(info))
            pipe.execute()

        self._retrying("heartbeat", beat)

    def unregister_worker(self, worker: WorkerId) -> None:
        """See :meth:`kubenenc.backends.contract.Coordination.unregister_worker`."""

        def forget() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.zrem(self._key("beats"), worker)
            pipe.hdel(self._key("workers"), worker)
            pipe.execute()

        self._retrying("unregister_worker", forget)

    def workers(self) -> list[WorkerInfo]:
        """See :meth:`kubenenc.backends.contract.Coordination.workers`."""
        found: dict[str, str] = self._retrying(
            "workers",
            lambda: self._r.hgetall(self._key("workers")),  # type: ignore[arg-type,return-value]
        )
        return [loads_worker(v) for v in found.values()]

    def recover(self, now: float, heartbeat_timeout: float, max_lost: int) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.recover`.

        Also deletes up to ``SWEEP_BATCH`` final invocations older than the retention.
        """
        reply, _ = self._run("recover", now, repr(float(heartbeat_timeout)), max_lost, SWEEP_BATCH)
        return [InvocationId(x) for x in reply]

    def release_unheld(
        self, worker: WorkerId, held: Collection[InvocationId], now: float, max_lost: int
    ) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.release_unheld`."""
        reply, _ = self._run("release_unheld", now, worker, max_lost, *held)
        return [InvocationId(x) for x in reply]

    def wait_final(self, ids: Sequence[InvocationId], timeout: float | None) -> bool:
        """See :meth:`kubenenc.backends.contract.Coordination.wait_final`.

        One round trip per window of ids: the ``open`` script finds the last one still open,
        reading from the end (and arranges a push to its ``done`` list when it becomes
        final, or to the window's last one's at once when none is), and ``BLMOVE`` of that
        list onto itself, pipelined behind it, blocks on the server until the push. The ids
        after the last open one are final, so the next trip asks only about those before it.
        For a single id the record is read in the same round trip once it is final and
        handed to the next :meth:`get` of it in this thread (a final record does not
        change), so ``wait_final`` + ``get`` is one trip.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(dict.fromkeys(ids))
        encoded = [_bulk(id) for id in pending]  # the same order as pending
        self._local.final = None
        while pending:
            # A window at a time: all must end, so blocking on the last open one of the
            # window wastes no time, and in FIFO order the window then ends together.
            chunk, rest = pending[:WAIT_WINDOW], pending[WAIT_WINDOW:]
            echunk, erest = encoded[:WAIT_WINDOW], encoded[WAIT_WINDOW:]
            block = BLOCK_CHUNK
            if deadline is not None:
                block = min(block, deadline - time.monotonic())
            if block <= 0:  # no time left to block: only look
                if self._open(chunk):
                    return False
                pending, encoded = rest, erest
                continue
            open, pushed = self._open_and_block(chunk, echunk, block, single=len(ids) == 1)
            if pushed and open == len(chunk):
                open -= 1  # pushed only once it is final: no need to read it again
            pending, encoded = chunk[:open] + rest, echunk[:open] + erest
        return True

    def _open_and_block(
        self, chunk: list[InvocationId], encoded: list[bytes], seconds: float, single: bool
    ) -> tuple[int, bool]:
        """How many of ``chunk``, from the first, may still be open (the position of the
        last open one), and whether the last of ``chunk`` was pushed within ``seconds``
        (see :meth:`wait_final`); ``encoded``: the ids of ``chunk`` as :func:`_bulk` writes
        them."""
        last = chunk[-1]
        done = self._key("done", last)
        script = self._scripts["open"]
        head = b"".join(_bulk(x) for x in ("EVALSHA", script.sha, "1", self._p, "0", "0", ""))
        first = _command(head, 7, encoded)
        commands: list[tuple[Any, ...]] = [
            ("BLMOVE", done, done, "RIGHT", "LEFT", max(seconds, 0.001)),
        ]
        if single:
            commands.append(("EVALSHA", self._scripts["read"].sha, 1, self._p, "0", "0", "",
                             "1", last))  # fmt: skip

        def send() -> list[Any]:
            # A script missing on the server would let the pipelined block wait in vain:
            # make sure both are loaded first (again after a lost connection, which may
            # be a restarted server; a SCRIPT FLUSH costs one wait, then they are loaded).
            if not self._loaded:
                self._script("read", ["0", "0", "", "0"])
                self._script("open", ["0", "0", ""])
                self._loaded = True
            try:
                return self._block_link.calls(commands, first)
            except redis.exceptions.NoScriptError:
                self._loaded = False
                return send()
            except _FAULTS:
                self._loaded = False
                raise

        replies = self._retrying("wait_final", send)
        pushed = replies[1] is not None
        if single and pushed:
            rec = _read_rows(replies[2], [last])[0]
            if rec is not None and rec.is_final:
                self._local.final = (rec, time.monotonic())
        return int(replies[0]), pushed

    def wait_for_work(self, pool: str, timeout: float) -> bool:
        """Block until invocations may have become claimable in ``pool`` (True) or
        ``timeout`` passes (False). Not in the contract yet: an idle worker that blocks here
        instead of sleeping between empty claims picks new work up one hop after it is
        registered. A True may be spurious (another worker took the work)."""
        key = self._key("wake", pool)
        got = self._retrying(
            "wait_for_work",
            lambda: self._block_link.call("BLPOP", key, max(min(timeout, BLOCK_CHUNK), 0.001)),
        )
        return got is not None

    def _open(self, ids: list[InvocationId]) -> int:
        """How many of ``ids``, from the first, may still be open (0: none is)."""
        if not ids:
            return 0
        argv = ["0", "0", "", *ids]
        return int(self._retrying("wait_final", lambda: self._script("open", argv)))

    # -- Policies --------------------------------------------------------------------------

    def set_policy(self, name: str, spec: str | None) -> None:
        """See :meth:`kubenenc.backends.contract.Policies.set_policy`."""
        key = self._key("policies")
        if spec is None:
            self._retrying("set_policy", lambda: self._r.hdel(key, name))
        else:
            self._retrying("set_policy", lambda: self._r.hset(key, name, spec))

    def get_policy(self, name: str) -> str | None:
        """See :meth:`kubenenc.backends.contract.Policies.get_policy`."""
        key = self._key("policies")
        found = self._retrying("get_policy", lambda: self._r.hget(key, name))
        return None if found is None else str(found)

    def policies(self) -> dict[str, str]:
        """See :meth:`kubenenc.backends.contract.Policies.policies`."""
        key = self._key("policies")
        found: dict[str, str] = self._retrying(
            "policies",
            lambda: self._r.hgetall(key),  # type: ignore[arg-type,return-value]
        )
        return dict(found)

    # -- Records ---------------------------------------------------------------------------

    def _read(self, ids: Sequence[str], history: bool) -> list[InvocationRecord | None]:
        out: list[InvocationRecord | None] = []
        for start in range(0, len(ids), READ_CHUNK):
            argv = ["0", "0", "", "1" if history else "0", *ids[start : start + READ_CHUNK]]
            texts = self._retrying("get", lambda a=argv: self._script("read", a))  # type: ignore[misc]
            out.extend(_read_rows(texts, argv[4:]))
        return out

    def get(self, id: InvocationId) -> InvocationRecord | None:
        """See :meth:`kubenenc.backends.contract.Records.get`."""
        kept = getattr(self._local, "final", None)
        if kept is not None:
            self._local.final = None
            rec: InvocationRecord = kept[0]
            if rec.id == id and time.monotonic() - kept[1] < KEEP_FINAL:
                return rec  # read by wait_final just now, final, so unchanged since
        return self._read([id], history=True)[0]

    def get_many(self, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]:
        """See :meth:`kubenenc.backends.contract.Records.get_many` (history left empty)."""
        return self._read(ids, history=False)

    def _page(self, index: str, start: int, end: int) -> list[str]:
        found = self._retrying("query", lambda: self._r.zrevrange(index, start, end))
        return [str(x) for x in found]

    def query(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]:
        """See :meth:`kubenenc.backends.contract.Records.query`.

        Walks the app's (or the global) index newest first and filters the records, so a
        filter that matches few of many invocations reads many.
        """
        index = self._key("ix", "a", app) if app is not None else self._key("ix")
        out: list[InvocationRecord] = []
        start = 0
        page = max(min(limit, 1000), 50)
        while len(out) < limit:
            end = start + page - 1
            ids = self._page(index, start, end)
            if not ids:
                break
            for rec in self._read(ids, history=False):
                if rec is None or (task is not None and rec.task != task):
                    continue
                if status is not None and rec.status is not status:
                    continue
                out.append(rec)
                if len(out) >= limit:
                    break
            start += page
        return out

    def counts(
        self, *, app: str | None = None, pool: str | None = None, task: str | None = None
    ) -> Mapping[Status, int]:
        """See :meth:`kubenenc.backends.contract.Records.counts`: exact, kept as counters
        apart from the records, so expired final invocations are still counted."""
        out: dict[Status, int] = {}
        for t, by_status in self.counts_by_task(app=app, pool=pool).items():
            if task is None or t == task:
                for s, n in by_status.items():
                    out[s] = out.get(s, 0) + n
        return out

    def counts_by_task(
        self, *, app: str | None = None, pool: str | None = None
    ) -> Mapping[str, Mapping[Status, int]]:
        """See :meth:`kubenenc.backends.contract.Records.counts_by_task`: one read of the
        counters (a field written before they held the task counts under task ``""``)."""
        raw: dict[str, str] = self._retrying(
            "counts",
            lambda: self._r.hgetall(self._key("counts")),  # type: ignore[arg-type,return-value]
        )
        out: dict[str, dict[Status, int]] = {}
        for field, value in raw.items():
            a, p, s, *rest = field.split(_US)
            n = int(value)
            if n and (app is None or a == app) and (pool is None or p == pool):
                by_status = out.setdefault(rest[0] if rest else "", {})
                by_status[Status(s)] = by_status.get(Status(s), 0) + n
        return out
