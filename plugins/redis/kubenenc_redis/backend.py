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

import itertools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from kubenenc.backends.codec import dumps_worker, loads_worker, record_from_dict
from kubenenc.backends.registry import redact_url
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    InvocationRecord,
    NewInvocation,
    Outcome,
    PauseKind,
    PauseResult,
    RegisterKind,
    RegisterResult,
    ResumeResult,
    WorkerInfo,
)
from kubenenc.status import Status
from redis.backoff import NoBackoff
from redis.retry import Retry

from kubenenc_redis.scripts import SCRIPTS

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFIX = "kubenenc"
DEFAULT_RETENTION = 7 * 24 * 3600.0
DEFAULT_RETRY_FOR = 60.0
BLOCK_CHUNK = 5.0
"""Longest single server-side block of ``wait_final``; it loops for longer waits."""
READ_CHUNK = 1000
"""Records read per script call (a script blocks the server while it runs)."""
WAIT_WINDOW = 1000
"""How many ids ``wait_final`` reads per round trip."""
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


def _static(n: NewInvocation, now: float) -> str:
    """The fields of ``n`` fixed at registration, as stored in the record's ``d`` field."""
    return json.dumps(
        {
            "id": n.id, "app": n.app, "task": n.task, "args": n.args, "call_key": n.call_key,
            "display": n.display, "pool": n.pool, "priority": n.priority,
            "max_retries": n.max_retries, "timeout": n.timeout, "running_key": n.running_key,
            "running_limit": n.running_limit, "registration_key": n.registration_key,
            "depends_on": list(n.depends_on), "parent": n.parent, "serializer": n.serializer,
            "created_at": float(now),
        },
        separators=(",", ":"),
    )  # fmt: skip


def _record(row: Sequence[Any]) -> InvocationRecord:
    """A record from a row of the read script: ``[d, s, u, at, lo, w, wt, nb, r, e]`` plus
    the history text when read (``false``: a field not set)."""
    d: dict[str, Any] = json.loads(row[0])
    d.update(
        status=row[1], updated_at=float(row[2]), attempt=int(row[3]), lost=int(row[4]),
        worker=row[5] or None, waiters=int(row[6]), not_before=float(row[7]),
        result=row[8] if row[8] is not False else None,
        error=json.loads(row[9]) if row[9] else None,
        history=[
            [status, float(at), worker or None, reason or None]
            for status, at, worker, reason in (
                e.split(_US, 3) for e in (row[10] or "").split(_RS) if e
            )
        ]
        if len(row) > 10
        else [],
    )  # fmt: skip
    return record_from_dict(d)


def _outcome_args(outcomes: Sequence[Outcome]) -> list[str | int]:
    """The outcomes as the finish scripts read them from ARGV, seven values each."""
    args: list[str | int] = []
    for o in outcomes:
        error = (
            ""
            if o.error is None
            else json.dumps([o.error.type, o.error.message, o.error.traceback])
        )
        args += [
            o.id, o.kind.value, "0" if o.result is None else "1", o.result or "", error,
            _now(o.retry_at), o.reason or "",
        ]  # fmt: skip
    return args


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


class RedisBackend:
    """Invocations in one Redis database (>= 6.2), shared by every process that reaches it."""

    shared_across_processes: ClassVar[bool] = True

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
        self._closed = False
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
        """Drop every pooled connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._r.close()
        if self._block is not self._r:
            self._block.close()

    # -- calls with retries ----------------------------------------------------------------

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        while True:
            try:
                return call()
            except _FAULTS as exc:
                if time.monotonic() + delay > deadline:
                    raise BackendUnavailable(
                        f"Redis at {self._name} unreachable for {self.retry_for:.0f} s ({what}): "
                        f"{exc}"
                    ) from exc
                log.warning("Redis %s failed (%s); retrying in %.2f s", what, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _run(self, op: str, now: float, *args: str | int) -> Any:
        """Run one script; a retried call carries the same request id (applied once)."""
        if os.getpid() != self._pid:  # a forked child must not reuse its parent's ids
            self._pid, self._rid = os.getpid(), uuid.uuid4().hex[:16]
        request = f"{self._rid}{next(self._calls)}"
        script = self._scripts[op]
        argv = [_now(now), repr(self.retention), request, *args]
        reply = self._retrying(op, lambda: script(keys=[self._p], args=argv))
        if isinstance(reply, list) and len(reply) == 2 and reply[0] == "replay":
            log.info("Redis %s was applied before the connection dropped; using its reply", op)
            return json.loads(reply[1]), True
        return reply, False

    def _key(self, *parts: str) -> str:
        return ":".join((self._p, *parts))

    # -- Queue -----------------------------------------------------------------------------

    def register(self, new: Sequence[NewInvocation], now: float) -> list[RegisterResult]:
        """See :meth:`kubenenc.backends.contract.Queue.register`."""
        if not new:
            return []
        args: list[str | int] = [len(new)]
        for n in new:
            args += [
                n.id, n.registration_key or "", n.registration, n.pool, n.priority, n.app,
                n.running_key or "", "" if n.running_limit is None else n.running_limit,
                n.call_key, n.display, n.parent or "", _static(n, now), len(n.depends_on),
                *n.depends_on,
            ]  # fmt: skip
        reply, _ = self._run("register", now, *args)
        return [RegisterResult(RegisterKind(kind), InvocationId(id)) for kind, id in reply]

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
        return [_record(row) for row in json.loads(reply)]

    def finish(self, outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        """See :meth:`kubenenc.backends.contract.Queue.finish`."""
        if not outcomes:
            return []
        reply, _ = self._run("finish", now, worker, len(outcomes), *_outcome_args(outcomes))
        return [bool(x) for x in reply]

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """See :class:`kubenenc.backends.contract.FinishAndClaim`: one script, one round
        trip."""
        reply, replayed = self._run(
            "finish_and_claim", now, pool, worker, max(limit, 0), len(outcomes),
            *_outcome_args(outcomes),
        )  # fmt: skip
        done, claimed = reply
        flags = [bool(x) for x in done]
        if replayed:
            found = self._read(claimed, history=False)
            return flags, [r for r in found if r is not None and r.worker == worker]
        return flags, [_record(row) for row in json.loads(claimed)] if claimed else []

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

    def wait_final(self, ids: Sequence[InvocationId], timeout: float | None) -> bool:
        """See :meth:`kubenenc.backends.contract.Coordination.wait_final`.

        Reads the statuses, then blocks on the server (``BLMOVE`` of an open one's ``done``
        list onto itself, so every waiter sees it) until it is pushed, and repeats.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(dict.fromkeys(ids))
        while pending:
            # Read a window at a time: all must end, so blocking on the last open one of the
            # window wastes no time, and in FIFO order the window then ends together.
            window = self._open(pending[:WAIT_WINDOW])
            pending = window + pending[WAIT_WINDOW:]
            if not window:
                continue
            block = BLOCK_CHUNK
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                block = min(block, left)
            last = window[-1]
            if self._block_on(self._key("done", last), max(block, 0.001)):
                # Pushed only once it is final: no need to read it again.
                pending = [i for i in pending if i != last]
        return True

    def wait_for_work(self, pool: str, timeout: float) -> bool:
        """Block until invocations may have become claimable in ``pool`` (True) or
        ``timeout`` passes (False). Not in the contract yet: an idle worker that blocks here
        instead of sleeping between empty claims picks new work up one hop after it is
        registered. A True may be spurious (another worker took the work)."""
        key = self._key("wake", pool)
        got = self._retrying(
            "wait_for_work",
            lambda: self._block.execute_command(  # type: ignore[no-untyped-call]
                "BLPOP", key, max(min(timeout, BLOCK_CHUNK), 0.001)
            ),
        )
        return got is not None

    def _block_on(self, done: str, seconds: float) -> bool:
        """Wait up to ``seconds`` for ``done`` to have an element, leaving it there."""
        got = self._retrying(
            "wait_final",
            lambda: self._block.execute_command(  # type: ignore[no-untyped-call]
                "BLMOVE", done, done, "RIGHT", "LEFT", seconds
            ),
        )
        return got is not None

    def _open(self, ids: list[InvocationId]) -> list[InvocationId]:
        """Those of ``ids`` that exist and are not final."""
        if not ids:
            return []
        script = self._scripts["open"]
        argv = ["0", "0", "", *ids]
        found = self._retrying("wait_final", lambda: script(keys=[self._p], args=argv))
        return [InvocationId(x) for x in found]

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
        script = self._scripts["read"]
        for start in range(0, len(ids), READ_CHUNK):
            argv = ["0", "0", "", "1" if history else "0", *ids[start : start + READ_CHUNK]]
            text = self._retrying("get", lambda a=argv: script(keys=[self._p], args=a))  # type: ignore[misc]
            out.extend(None if row is False else _record(row) for row in json.loads(text))
        return out

    def get(self, id: InvocationId) -> InvocationRecord | None:
        """See :meth:`kubenenc.backends.contract.Records.get`."""
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
