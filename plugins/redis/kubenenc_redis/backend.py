"""The Redis backend: the contract as Lua scripts on one Redis server.

Every operation that changes more than one key is one script (:mod:`kubenenc_redis.scripts`,
its keys in :mod:`kubenenc_redis.keys`), so it is atomic across every process that talks to
the server. Reads that need no atomicity (``counts``, the workers, policies) are plain
commands. The URL and its options are read by :mod:`kubenenc_redis.options`; calls go
through :mod:`kubenenc_redis.link` (request ids, retries); the scripts' arguments and rows
are encoded and decoded by :mod:`kubenenc_redis.rows`. What is left here is the contract,
one short method per operation; it stays in one module, a little over 500 lines, so the
contract reads in one place.

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
import itertools
import json
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

import redis
from kubenenc.backends.codec import dumps_worker, loads_worker
from kubenenc.backends.urloptions import DEFAULT_PREFIX, DEFAULT_RETENTION
from kubenenc.errors import ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    InvocationRecord,
    NewInvocation,
    Outcome,
    PauseKind,
    PauseResult,
    RegisterResult,
    ResumeResult,
    WorkerInfo,
)
from kubenenc.status import Status

from kubenenc_redis import admin
from kubenenc_redis.keys import US, Keys
from kubenenc_redis.link import BLOCK_CHUNK, FAULTS, Caller, Link, bulk, command, pack
from kubenenc_redis.options import DEFAULT_RETRY_FOR, connect
from kubenenc_redis.readahead import ReadAhead
from kubenenc_redis.reads import RedisBrowse
from kubenenc_redis.rows import (
    KINDS,
    claimed,
    finish_flags,
    outcome_arg,
    read_rows,
    register_texts,
    time_arg,
)

REGISTER_CHUNK = 500
"""Invocations per register script call (see :meth:`RedisBackend.register`)."""
READ_CHUNK = 1000
"""Records read per script call (a script blocks the server while it runs)."""
WAIT_WINDOW = 1000
"""How many ids ``wait_final`` reads per round trip."""
KEEP_FINAL = 1.0
"""Seconds a final record read by a single-id ``wait_final`` answers the next ``get``.
Speed: ``result()`` once the worker has finished is one round trip, not two."""
MAX_LOOP_NODES = 100_000
"""Most waiters the pause script's cycle check walks; past that it stops looking and the
wait is allowed."""
SWEEP_BATCH = 500
"""Final invocations past retention deleted per sweep script call (it blocks the server
while it runs: 15-30 ms per batch measured on a loaded machine)."""
SWEEP_BUDGET = 0.5
"""Seconds one ``recover`` call may spend sweeping, batch after batch (each batch a script
of its own, so other calls run between): at 30-60 us per invocation forgotten, measured on
a loaded machine, 8,000 or more per call, more than one worker at the benchmark's rate
(~6,400 calls/s) ends between two of its heartbeats, so the indexes keep up
(bench/redis_retention.py). One batch of 500 per call fell behind above ~500 calls/s per
worker. It runs on the heartbeat thread after the beat, so it only delays the next beat,
by at most this much."""
OVERDUE_LIMIT = 1000
"""Most overdue invocations one ``overdue`` call returns."""


def _first_try(argv: list[str | int]) -> list[str | int]:
    """A register call's arguments for its first try: without the request id.

    Every other step caches its reply under its request id (a ``GET`` at its start, a
    ``SET`` at its end), so a retry after a lost reply is answered, not applied again. A
    register does not need that: its invocation ids are made by the client, so any try skips
    each item whose invocation exists already (answered CREATED, as the engine does). The
    first try, sent without a request id, saves two of a lone call's ten commands and the
    JSON copy of its reply (about 10 µs of server time per register,
    ``bench/one_by_one_parts.py``).
    """
    return [argv[0], argv[1], "", *argv[3:]]


class RedisBackend(RedisBrowse):
    """Invocations in one Redis database (>= 6.2), shared by every process that reaches it."""

    shared_across_processes: ClassVar[bool] = True
    select = admin.select  # the optional Admin role, in kubenenc_redis.admin
    purge = admin.purge
    oldest_pending = admin.oldest_pending

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
        clock: str = "server",
        name: str = "redis",
    ) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise ConfigurationError(f"bad Redis key prefix {prefix!r}: non-empty, no braces")
        self._r = client
        self._block = blocking or client
        self._keys = Keys(prefix)
        self._p = self._keys.prefix
        self.prefix = prefix
        self.retention = retention
        self.retry_for = retry_for
        self.server_clock = clock == "server"
        """Whether heartbeats are stamped and judged on the server's clock (the default) or
        on the times callers pass (``clock=caller``); see lua/lib_live.lua."""
        self._name = name
        self._caller = Caller(client, self._p, retention, retry_for, name)
        self._local = threading.local()  # .final, .ahead: see wait_final
        self._ahead = ReadAhead()
        self._loaded = False  # the scripts wait_final pipelines are on the server
        self._head_way: bool | None = None  # see _heads
        self._head = (b"", b"")
        self._block_link = Link(self._block)

    @classmethod
    def from_url(cls, url: str) -> RedisBackend:
        """Connect, check the server and the credentials, and return the backend (see
        :func:`kubenenc_redis.options.connect` for the errors it raises)."""
        c = connect(url)
        return cls(
            c.client, c.blocking, prefix=c.prefix, retention=c.retention,
            retry_for=c.retry_for, clock=c.clock, name=c.shown,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"RedisBackend({self._name!r}, prefix={self.prefix!r})"

    def close(self) -> None:
        """Drop every connection (a later call reconnects). A call in flight fails with
        BackendUnavailable instead of reconnecting. Idempotent."""
        self._caller.closes += 1
        self._caller.link.close()
        self._block_link.close()
        self._r.close()
        if self._block is not self._r:
            self._block.close()

    # -- Queue -----------------------------------------------------------------------------

    def register(
        self, new: Sequence[NewInvocation], now: float, *, floors: Sequence[int] | None = None
    ) -> list[RegisterResult]:
        """See :meth:`kubenenc.backends.contract.Queue.register`. ``floors`` (one per item,
        for :mod:`kubenenc_redis.shards`): the least sequence number each item may get, so
        one batch spread over shards keeps its call order across them.

        ``REGISTER_CHUNK`` invocations per script call; more are pipelined on one
        connection, each call encoded while the server runs the one before. Speed: the
        server is not left waiting for the client, nor the client for the server. A call
        whose reply is lost (or that found the script missing) is sent again with its
        request id, so it is applied once, in order.
        """
        if not new:
            return []
        calls = (
            self._register_argv(
                new[start : start + REGISTER_CHUNK],
                now,
                None if floors is None else floors[start : start + REGISTER_CHUNK],
            )
            for start in range(0, len(new), REGISTER_CHUNK)
        )
        out: list[RegisterResult] = []
        sent: collections.deque[list[str | int]] = collections.deque()
        if len(new) > REGISTER_CHUNK:
            if self._caller.functions is None:
                self._caller.retrying("register", self._caller.ensure)
            head = self._caller.head("register")
            conn = self._caller.link.take()
            try:
                for argv in calls:
                    sent.append(argv)
                    conn.send_packed_command([pack((*head, 1, self._p, *_first_try(argv)))])
                    if len(sent) > 1:
                        out += self._registered(conn.read_response())
                        sent.popleft()
                while sent:
                    out += self._registered(conn.read_response())
                    sent.popleft()
            except BaseException as exc:
                conn.disconnect()  # replies may be left unread on it
                if not (isinstance(exc, FAULTS) or Caller.missing(exc)):
                    raise
                # Lost connection or script not loaded: the rest again, one by one (below).
            finally:
                self._caller.link.give(conn)
        # Those sent may have run: with their request ids now (see _first_try).
        for argv in sent:
            out += self._registered(self._caller.run_argv("register", argv)[0])
        for argv in calls:
            out += self._registered(self._register_once(argv))
        ids = [r.id for r in out]
        self._ahead.registered(ids)
        final = getattr(self._local, "final", None)
        if final is not None and final[0].id in ids:  # a new run (see kubenenc_redis.readahead)
            self._local.final = None
        return out

    def _register_once(self, argv: list[str | int]) -> Any:
        """One register call, retried on a lost connection: the first try without its
        request id (see :func:`_first_try`), the retries with it."""
        tries = itertools.count()

        def send() -> Any:
            return self._caller.script("register", argv if next(tries) else _first_try(argv))

        return Caller.unwrap("register", self._caller.retrying("register", send))[0]

    def _register_argv(
        self, new: Sequence[NewInvocation], now: float, floors: Sequence[int] | None = None
    ) -> list[str | int]:
        items, static = register_texts(new, now, floors)
        return self._caller.argv(now, items, *static)

    def _registered(self, reply: Any) -> list[RegisterResult]:
        if isinstance(reply, list):  # stored by an earlier try of the same request
            reply = Caller.unwrap("register", reply)[0]
        # One JSON text (a replayed reply too: it was stored as that text).
        return [RegisterResult(KINDS[kind], InvocationId(id)) for kind, id in json.loads(reply)]

    def next_due(self, pool: str, now: float) -> float | None:
        """See :class:`kubenenc.backends.contract.DueTimes`: the first of ``P:dl:<pool>``
        (the delayed set, which holds only calls not due when they were put there)."""
        key = self._keys.per("k_dl", pool)
        first = self._caller.retrying(
            "next_due", lambda: self._r.zrange(key, 0, 0, withscores=True)
        )
        return float(first[0][1]) if first else None

    # -- TickClaims ------------------------------------------------------------------------

    def last_tick(self, schedule: str) -> int | None:
        """See :class:`kubenenc.backends.contract.TickClaims`."""
        key = self._keys.fixed("K_TICKS")
        found = self._caller.retrying("last_tick", lambda: self._r.hget(key, schedule))
        return int(found) if found else None

    def claim_tick(
        self,
        schedule: str,
        previous: int | None,
        tick: int,
        new: Sequence[NewInvocation],
        now: float,
    ) -> list[RegisterResult] | None:
        """See :class:`kubenenc.backends.contract.TickClaims` (one script call: a claim
        retried after a lost reply is answered from its stored reply)."""
        items, static = register_texts(new, now)
        prev = "" if previous is None else str(previous)
        reply, _ = self._caller.run("claim_tick", now, schedule, prev, str(tick), items, *static)
        if not reply:
            return None
        return self._registered(reply)

    def claim(self, pool: str, worker: WorkerId, limit: int, now: float) -> list[InvocationRecord]:
        """See :meth:`kubenenc.backends.contract.Queue.claim` (history left empty: a worker
        does not need it, and it would cost a read per invocation)."""
        if limit <= 0:
            return []
        reply, replayed = self._caller.run("claim", now, pool, worker, limit)
        if replayed:
            return self._claimed_again(reply, worker)
        if not reply:
            return []
        return claimed(reply)

    def _claimed_again(self, ids: Sequence[str], worker: WorkerId) -> list[InvocationRecord]:
        """The records of a claim whose reply was lost and replayed (the replay holds the
        ids only): those ``worker`` still holds."""
        found = self._read(ids, history=False)
        return [r for r in found if r is not None and r.worker == worker]

    def finish(self, outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        """See :meth:`kubenenc.backends.contract.Queue.finish`."""
        if not outcomes:
            return []
        reply, _ = self._caller.run("finish", now, worker, outcome_arg(outcomes))
        return finish_flags(reply)

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """See :class:`kubenenc.backends.contract.FinishAndClaim`: one script, one round
        trip."""
        reply, replayed = self._caller.run(
            "finish_and_claim", now, pool, worker, max(limit, 0), outcome_arg(outcomes),
        )  # fmt: skip
        flags = finish_flags(reply[0])
        if replayed:
            return flags, self._claimed_again(reply[1], worker)
        if not reply[1]:
            return flags, []
        return flags, claimed(reply[1:])

    def cancel(self, id: InvocationId, now: float, reason: str = "cancelled") -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.cancel`."""
        reply, _ = self._caller.run("cancel", now, id, "cancel", reason, "")
        return bool(reply)

    def fail(self, id: InvocationId, error: str, message: str, now: float) -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.fail`."""
        reply, _ = self._caller.run("cancel", now, id, "fail", error, message)
        return bool(reply)

    # -- Coordination ----------------------------------------------------------------------

    def pause(
        self, id: InvocationId, worker: WorkerId, targets: Sequence[InvocationId], now: float
    ) -> PauseResult:
        """See :meth:`kubenenc.backends.contract.Coordination.pause`."""
        reply, _ = self._caller.run("pause", now, id, worker, MAX_LOOP_NODES, *targets)
        kind = PauseKind(reply[0])
        return PauseResult(kind, tuple(reply[1:]))

    def resume(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :meth:`kubenenc.backends.contract.Coordination.resume`."""
        if not ids:
            return ResumeResult()
        reply, _ = self._caller.run("resume", now, worker, max(limit, 0), *ids)
        resumed, gone = reply
        return ResumeResult(
            tuple(InvocationId(x) for x in resumed), tuple(InvocationId(x) for x in gone)
        )

    def resume_early(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :class:`kubenenc.backends.contract.ResumeEarly`."""
        if not ids:
            return ResumeResult()
        reply, _ = self._caller.run("resume_early", now, worker, max(limit, 0), *ids)
        resumed, gone = reply
        return ResumeResult(
            tuple(InvocationId(x) for x in resumed), tuple(InvocationId(x) for x in gone)
        )

    def heartbeat(self, info: WorkerInfo) -> None:
        """See :meth:`kubenenc.backends.contract.Coordination.heartbeat`.

        Stamped with the server's time, not ``info.at`` (which ``workers`` still shows),
        unless the backend was opened with ``clock=caller``: see lua/lib_live.lua. No
        request id: a beat sent twice is a beat."""
        argv = [
            time_arg(info.at), repr(self.retention), "", info.id, dumps_worker(info),
            "1" if self.server_clock else "0",
        ]  # fmt: skip
        self._caller.retrying("heartbeat", lambda: self._caller.script("heartbeat", argv))

    def unregister_worker(self, worker: WorkerId) -> None:
        """See :meth:`kubenenc.backends.contract.Coordination.unregister_worker`."""

        def forget() -> None:
            pipe = self._r.pipeline(transaction=True)
            pipe.zrem(self._keys.fixed("K_BEATS"), worker)
            pipe.hdel(self._keys.fixed("K_WORKERS"), worker)
            pipe.execute()

        self._caller.retrying("unregister_worker", forget)

    def workers(self) -> list[WorkerInfo]:
        """See :meth:`kubenenc.backends.contract.Coordination.workers`."""
        found: dict[str, str] = self._caller.retrying(
            "workers",
            lambda: self._r.hgetall(self._keys.fixed("K_WORKERS")),  # type: ignore[arg-type,return-value]
        )
        return [loads_worker(v) for v in found.values()]

    def recover(self, now: float, heartbeat_timeout: float, max_lost: int) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.recover`.

        Silence is measured on the server's clock, outages not counted (see
        lua/lib_live.lua), unless the backend was opened with ``clock=caller``; ``now``
        stamps the history of what is handed back. Then sweeps final invocations older than
        the retention: batch after batch while batches come back full, for up to
        ``SWEEP_BUDGET`` seconds.
        """
        reply, _ = self._caller.run(
            "recover", now, repr(float(heartbeat_timeout)), max_lost,
            "1" if self.server_clock else "0",
        )  # fmt: skip
        self.sweep(now)
        return [InvocationId(x) for x in reply]

    def sweep(self, now: float, budget: float = SWEEP_BUDGET) -> int:
        """Forget final invocations that ended more than the retention before ``now``, in
        batches of ``SWEEP_BATCH`` while batches come back full, for up to ``budget``
        seconds; how many went. Each batch is one script, so other calls run between."""
        argv: list[str | int] = [time_arg(now), repr(self.retention), "", SWEEP_BATCH]
        give_up = time.monotonic() + budget
        total = 0
        while True:
            n = int(self._caller.retrying("sweep", lambda: self._caller.script("sweep", argv)))
            total += n
            if n:
                self._ahead.forgotten()  # see kubenenc_redis.readahead
            if n < SWEEP_BATCH or time.monotonic() >= give_up:
                return total

    def overdue(self, now: float, grace: float) -> list[InvocationRecord]:
        """See :class:`kubenenc.backends.contract.Overdue`: reads only the work workers
        hold, not the index of every invocation."""
        argv: list[str | int] = [
            time_arg(now), repr(self.retention), "", repr(float(grace)), OVERDUE_LIMIT,
        ]  # fmt: skip
        ids = self._caller.retrying("overdue", lambda: self._caller.script("overdue", argv))
        return [r for r in self.get_many(ids) if r is not None and r.status is Status.RUNNING]

    def release_unheld(
        self, worker: WorkerId, held: Collection[InvocationId], now: float, max_lost: int
    ) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.release_unheld`."""
        reply, _ = self._caller.run("release_unheld", now, worker, max_lost, *held)
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
        change), so ``wait_final`` + ``get`` is one trip. A thread that reads behind the
        workers (its last single wait found the call final already) reads first, and
        reads ahead the calls it registered next (:mod:`kubenenc_redis.readahead`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = list(dict.fromkeys(ids))
        self._local.final = None
        if len(pending) == 1:
            self._ahead.waited(pending[0])
            rec = self._ahead.take(pending[0])
            if rec is None and getattr(self._local, "ahead", False):
                # A reader that found its last result final already (draining a backlog,
                # or reading calls submitted long before) most likely finds this one final
                # too: one plain read answers this wait and the next get, without the open
                # step's writes and the block, and reads ahead the ids this thread
                # registered next (see kubenenc_redis.readahead). A wrong guess costs one
                # read and switches this thread back to blocking first. Speed: drain and
                # one-by-one end to end.
                epoch = self._ahead.epoch  # before the read: a deletion during it counts
                read = self._read([pending[0], *self._ahead.following(pending[0])], True)
                self._ahead.keep(read[1:], epoch)
                rec = read[0]
                if rec is None or not rec.is_final:
                    rec, self._local.ahead = None, False
                else:
                    self._local.final = (rec, time.monotonic(), epoch)
                    return True
            if rec is not None:
                self._local.final = (rec, time.monotonic(), self._ahead.epoch)
                return True
        encoded = [bulk(id) for id in pending]  # the same order as pending
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
            if len(pending) == 1:
                self._local.ahead = open == 0  # it was final before this wait asked
            if pushed and open == len(chunk):
                open -= 1  # pushed only once it is final: no need to read it again
            pending, encoded = chunk[:open] + rest, echunk[:open] + erest
        return True

    def _open_and_block(
        self, chunk: list[InvocationId], encoded: list[bytes], seconds: float, single: bool
    ) -> tuple[int, bool]:
        """How many of ``chunk``, from the first, may still be open (the position of the
        last open one), and whether the last of ``chunk`` was pushed within ``seconds``
        (see :meth:`wait_final`); ``encoded``: the ids of ``chunk`` as :func:`bulk` writes
        them."""
        last = chunk[-1]
        done = self._keys.per("k_done", last)
        epoch = self._ahead.epoch  # before the read (see kubenenc_redis.readahead)

        def send() -> list[Any]:
            # A script missing on the server would let the pipelined block wait in vain:
            # make sure both are loaded first (again after a lost connection, which may
            # be a restarted server; a SCRIPT FLUSH costs one wait, then they are loaded).
            if not self._loaded:
                self._caller.script("read", ["0", "0", "", "0"])
                self._caller.script("open", ["0", "0", ""])
                self._loaded = True
            opening, reading = self._heads()
            commands: list[tuple[Any, ...] | bytes] = [
                command(opening, 7, encoded),
                ("BLMOVE", done, done, "RIGHT", "LEFT", max(seconds, 0.001)),
            ]
            if single:  # read after the block: the record as the push left it
                commands.append(command(reading, 8, [encoded[-1]]))
            try:
                return self._block_link.calls(commands)
            except redis.ResponseError as exc:
                if not Caller.missing(exc):
                    raise
                self._loaded = False
                return send()
            except FAULTS:
                self._loaded = False
                raise

        replies = self._caller.retrying("wait_final", send)
        pushed = replies[1] is not None
        if single and pushed:
            rec = read_rows(replies[2], [last])[0]
            if rec is not None and rec.is_final:
                self._local.final = (rec, time.monotonic(), epoch)
        return int(replies[0]), pushed

    def _heads(self) -> tuple[bytes, bytes]:
        """The fixed start of the ``open`` and ``read`` calls ``wait_final`` sends, in the
        protocol (see :func:`kubenenc_redis.link.command`), made once per way of calling
        (functions or scripts). Speed: ``result()`` sends them on every call."""
        way = bool(self._caller.functions)
        if self._head_way is not way:
            opening = (*self._caller.head("open"), "1", self._p, "0", "0", "")
            reading = (*self._caller.head("read"), "1", self._p, "0", "0", "", "1")
            self._head = (
                b"".join(bulk(x) for x in opening), b"".join(bulk(x) for x in reading)
            )  # fmt: skip
            self._head_way = way
        return self._head

    def wait_for_work(self, pool: str, timeout: float) -> bool:
        """The optional :class:`~kubenenc.backends.contract.WorkNotifier` role: block on
        the pool's wake list until invocations may have become claimable (True) or
        ``timeout`` passes (False). A True may be spurious (another worker took the work)."""
        key = self._keys.per("k_wake", pool)
        got = self._caller.retrying(
            "wait_for_work",
            lambda: self._block_link.call("BLPOP", key, max(min(timeout, BLOCK_CHUNK), 0.001)),
        )
        return got is not None

    def _open(self, ids: list[InvocationId]) -> int:
        """How many of ``ids``, from the first, may still be open (0: none is)."""
        if not ids:
            return 0
        argv = ["0", "0", "", *ids]
        return int(self._caller.retrying("wait_final", lambda: self._caller.script("open", argv)))

    # -- Policies --------------------------------------------------------------------------

    def set_policy(self, name: str, spec: str | None) -> None:
        """See :meth:`kubenenc.backends.contract.Policies.set_policy`."""
        key = self._keys.fixed("K_POLICIES")
        if spec is None:
            self._caller.retrying("set_policy", lambda: self._r.hdel(key, name))
        else:
            self._caller.retrying("set_policy", lambda: self._r.hset(key, name, spec))

    def get_policy(self, name: str) -> str | None:
        """See :meth:`kubenenc.backends.contract.Policies.get_policy`."""
        key = self._keys.fixed("K_POLICIES")
        found = self._caller.retrying("get_policy", lambda: self._r.hget(key, name))
        return None if found is None else str(found)

    def policies(self) -> dict[str, str]:
        """See :meth:`kubenenc.backends.contract.Policies.policies`."""
        key = self._keys.fixed("K_POLICIES")
        found: dict[str, str] = self._caller.retrying(
            "policies",
            lambda: self._r.hgetall(key),  # type: ignore[arg-type,return-value]
        )
        return dict(found)

    # -- Records ---------------------------------------------------------------------------

    def _read(self, ids: Sequence[str], history: bool) -> list[InvocationRecord | None]:
        out: list[InvocationRecord | None] = []
        for start in range(0, len(ids), READ_CHUNK):
            argv = ["0", "0", "", "1" if history else "0", *ids[start : start + READ_CHUNK]]
            texts = self._caller.retrying("get", lambda a=argv: self._caller.script("read", a))  # type: ignore[misc]
            out.extend(read_rows(texts, argv[4:]))
        return out

    def get(self, id: InvocationId) -> InvocationRecord | None:
        """See :meth:`kubenenc.backends.contract.Records.get`."""
        kept = getattr(self._local, "final", None)
        if kept is not None:
            self._local.final, epoch = None, self._ahead.epoch
            rec: InvocationRecord = kept[0]
            if rec.id == id and time.monotonic() - kept[1] < KEEP_FINAL and kept[2] == epoch:
                return rec  # read by wait_final just now, final, so unchanged since
        return self._read([id], history=True)[0]

    def get_many(self, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]:
        """See :meth:`kubenenc.backends.contract.Records.get_many` (history left empty)."""
        return self._read(ids, history=False)

    def _page(self, index: str, start: int, end: int) -> list[str]:
        found = self._caller.retrying("query", lambda: self._r.zrevrange(index, start, end))
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
        index = self._keys.per("k_ixa", app) if app is not None else self._keys.fixed("K_IX")
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
        counters."""
        raw: dict[str, str] = self._caller.retrying(
            "counts",
            lambda: self._r.hgetall(self._keys.fixed("K_COUNTS")),  # type: ignore[arg-type,return-value]
        )
        out: dict[str, dict[Status, int]] = {}
        for field, value in raw.items():
            a, p, s, t = field.split(US)
            n = int(value)
            if n and (app is None or a == app) and (pool is None or p == pool):
                by_status = out.setdefault(t, {})
                by_status[Status(s)] = by_status.get(Status(s), 0) + n
        return out
