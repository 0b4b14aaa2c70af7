"""The Redis backend spread over N shards of a Redis Cluster (``redis+cluster://``).

Each shard is a whole single-slot backend (:class:`kubenenc_redis.cluster.Shard`: the same
scripts, its keys tagged ``{prefix:shard:salt}``), so every atomic rule that one script
enforces stays one script on one shard, as long as everything the rule compares lives on
that shard. Which shard holds an invocation is chosen for that:

1. a call with a concurrency key (running, rate or registration key) goes by the key's
   part before its ``#`` (CRC32 modulo N). The SDK builds every key as
   ``scope:task#...`` (:mod:`kubenenc.concurrency`), so that part is the scoped task, the
   same for the three keys of a call: all calls that share any key meet on one shard,
   whichever mix of keys their policies give, and running limits, rate limits and
   dedupe/reject stay exact (one script on one shard, as on one server). Keys not built by
   the SDK (no ``#``) all go to shard 0, exact too. The price: one keyed task's calls do
   not spread over shards; distinct tasks do;
2. else a call with declared dependencies goes to its first dependency's shard (any
   dependency may live on any shard: :mod:`kubenenc_redis.depending`);
3. else a call made inside another invocation goes to its parent's shard (its waits are
   then same-shard waits, the cheap case);
4. else (a *free* call: no key, no dependency, no parent) the free calls of one register
   call all go to one shard: the next of this process's rotation over the shards (each
   process starts at a random place), so a batch costs one register, one claim and one
   finish script instead of one per shard; batches spread evenly. A batch with one free
   call sends it by its id (CRC32 modulo N), as does a call whose dependencies or parent
   are found on no shard. A free id this process registered before goes where it went
   then (its re-registration is answered there, not written twice).

Nothing else assumes where a call lives: an id is found by lookup (below), and
``kubenenc reshard`` may give a free call another home (its id's under M), which is as
good a home as any.

``N`` is recorded in the data, and a URL with another ``N`` is refused
(:mod:`kubenenc_redis.layout`); ``kubenenc reshard`` changes it
(:mod:`kubenenc_redis.reshard`). Where an id lives is remembered from register and claim
(a bounded table); an id not seen by this process is looked up on every shard (one
``EXISTS`` each) and remembered.

**Claim order across shards.** Within a shard a claim takes the queue in its exact order
(more waiters, higher priority, older; one script). Across shards, sequences compare as
registration times do (:func:`seq_floor`), and a claim is usually one script on one shard,
chosen by this process's *head hints* (:mod:`kubenenc_redis.hints`: per pool and shard, the
best call it knows there). What the cluster guarantees, per claiming process:

1. *Known calls in single-queue order.* A claim takes nothing that a call known to this
   process on another shard outranks: the claim on the best hinted shard is bounded by the
   best hint of the others. Known: calls it registered itself, and every shard's queue as
   of its last reading of that shard (each claim there, each head read).
2. *Reading on doubt.* It reads every shard's head and claims in rounds over them (single
   queue order for every call present at the reading, whoever put it there) whenever a
   claim on hints comes back short of its limit or empty, when more than one shard's hint
   is unknown (a delayed call fell due there, or this process did something there that may
   have queued calls: a finish reporting a retry, hand-back, callback or a parked call let
   go, a cancel, pause, resume, boost, recovery or settle; or its wake reader saw new work
   there), and at least every :data:`kubenenc_redis.hints.REFRESH_CLAIMS` claims or
   :data:`kubenenc_redis.hints.HINT_AGE` seconds.
3. *Bounded staleness, no starvation.* A call another process put on another shard (or
   moved forward there) since this process's last reading of that shard may be passed over
   by this process's claims until its next reading, which comes at the latest after
   ``REFRESH_CLAIMS`` claims or ``HINT_AGE`` seconds; so no shard starves, nothing is
   lost, and once read a call is taken in order. (Claims of two processes at one moment
   were never ordered across shards more tightly: each claim is atomic on its shard only.)

An idle worker waits on every shard at once (one wake list per shard, one blocking reader
thread per shard and pool, all setting one event). Heartbeats are written
to every shard (each shard's ``recover`` judges its own holders), read from shard 0.
Policies live on shard 0 (no script reads them). Waits across shards go through the
coordination slot (:mod:`kubenenc_redis.crossing`), declared dependencies through
:mod:`kubenenc_redis.depending`. Reads that span shards (query, counts,
browse, activity, select) ask every shard and merge.

Size: over 500 lines: one routed method per contract operation plus the merged reads; the
next split is routing, claims and merged reads into their own modules.
"""

from __future__ import annotations

import collections
import random
import threading
import time
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from kubenenc.backends.browse import (
    DEFAULT_BUDGET,
    ActivityBucket,
    InvocationFilter,
    InvocationPage,
    Relations,
    RunningKeys,
    cursor_of,
    seq_of,
)
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    InvocationRecord,
    NewInvocation,
    Outcome,
    OutcomeKind,
    PauseKind,
    PauseResult,
    RegisterKind,
    RegisterResult,
    ResumeResult,
    WorkerInfo,
)
from kubenenc.status import Status

from kubenenc_redis import depending
from kubenenc_redis.backend import MAX_LOOP_NODES
from kubenenc_redis.cluster import ClusterURL, Shard, SlotMap, parse_cluster_url
from kubenenc_redis.crossing import Coordination
from kubenenc_redis.hints import Hints, queue_member
from kubenenc_redis.keys import coordination_prefix, shard_prefix
from kubenenc_redis.layout import check_layout
from kubenenc_redis.link import BLOCK_CHUNK

T = TypeVar("T")

REMEMBER = 200_000
"""Ids whose shard a process remembers (oldest forgotten first)."""
MEMBER_HEAD = 35
"""Characters before the id in a queue member (waiters, priority, sequence: see
:mod:`kubenenc_redis.keys`)."""
LANES = "L:"
"""How a browse cursor of one shard after the other starts (see ``_browse_lanes``)."""
CLAIM_ROUNDS = 32
"""At most this many rounds per claim (see :meth:`ShardedBackend.claim`): each round
claims or parks at least one head, so only a claim behind that many held-back heads
returns short (it parks them; the next claim goes on)."""
BEAT_WAIT = 0.5
"""Seconds :meth:`ShardedBackend.heartbeat` waits for every shard's beat (one small script:
milliseconds when its master answers). Well under half the shortest heartbeat timeout in
use (2 s in the chaos tests): the worker's next beat after a failed one comes at most half
a timeout later, so the shards that answer hear from it in time."""
WATCH_IDLE = 30.0
"""Seconds a pool's wake readers keep blocking after the last ``wait_for_work``."""


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _is_free(new: NewInvocation) -> bool:
    """A root call with no concurrency key and no declared dependency: nothing ties it to
    a shard (rule 4 of the module docstring)."""
    return (
        new.running_key is None
        and new.rate_key is None
        and new.registration_key is None
        and not new.depends_on
        and new.parent is None
    )


def _key_home(key: str, n: int) -> int:
    """The shard of calls with concurrency key ``key`` (see the module docstring)."""
    task, hash_, _ = key.partition("#")
    return _crc(task) % n if hash_ else 0


class _Wake:
    """The wake readers of one pool: a thread per shard blocking on that shard's wake list,
    all setting one event. A reader stops after ``WATCH_IDLE`` seconds without a waiter or
    when the backend closes."""

    def __init__(self, shards: Sequence[Shard], pool: str, hints: Hints) -> None:
        self.event = threading.Event()
        self._hints = hints
        self.last = time.monotonic()
        self._shards = shards
        self._pool = pool
        self._threads: list[threading.Thread | None] = [None] * len(shards)
        self._lock = threading.Lock()
        self.closed = False

    def ensure(self) -> None:
        with self._lock:
            for i, old in enumerate(self._threads):
                if old is None or not old.is_alive():
                    t = threading.Thread(
                        target=self._read, args=(i,), daemon=True, name=f"kubenenc-wake-{i}"
                    )
                    self._threads[i] = t
                    t.start()

    def _read(self, i: int) -> None:
        shard = self._shards[i]
        while not self.closed and time.monotonic() - self.last < WATCH_IDLE:
            try:
                if shard.wait_for_work(self._pool, BLOCK_CHUNK):
                    self._hints.forget(i, self._pool)  # calls came: its head is unknown
                    self.event.set()
            except Exception:  # closed or unreachable: the claim loop reports it
                self.event.set()
                return


class ShardedBackend:
    """Invocations spread over N shards of a Redis Cluster (see the module docstring)."""

    shared_across_processes: ClassVar[bool] = True
    register_batch: ClassVar[int] = 100_000

    def __init__(self, url: ClusterURL) -> None:
        self._url = url
        self.prefix = url.prefix
        self.retention = url.retention
        self.retry_for = url.retry_for
        self._slots = SlotMap(url)
        try:
            check_layout(self._slots, url)  # the data's N, recorded in it (layout.py)
        except BaseException:
            self._slots.close()
            raise
        self.shards = [
            Shard(url, self._slots, shard_prefix(url.prefix, i, url.shards))
            for i in range(url.shards)
        ]
        self.crossing = (
            Coordination(Shard(url, self._slots, coordination_prefix(url.prefix)))
            if url.shards > 1
            else None
        )
        self._where: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._where_lock = threading.Lock()
        self._floor = 0
        """The least floor this process's next registration gets (see :meth:`register`)."""
        self._floor_lock = threading.Lock()
        self._turn = random.randrange(url.shards)
        """The shard of this process's last batch of free calls (see :meth:`_free_home`):
        processes start at random places, so many of them spread too."""
        self._wakes: dict[str, _Wake] = {}
        self._hints = Hints(url.shards)
        """This process's belief of each shard's queue head (see :meth:`claim`)."""
        self._beats: list[threading.Thread | None] = [None] * url.shards
        """Each shard's beat under way, if any (see :meth:`heartbeat`)."""
        self._beats_lock = threading.Lock()
        self._beaten = False
        """Whether a beat of this process reached every shard: until then a beat waits
        for every shard (retrying for ``retry_for``, as on one server), because a
        worker's first beat is its check that it reaches the backend at all."""

    @classmethod
    def from_url(cls, url: str) -> ShardedBackend:
        """Connect (see :mod:`kubenenc_redis.cluster` for the URL and its errors)."""
        return cls(parse_cluster_url(url))

    def __repr__(self) -> str:
        return f"ShardedBackend({self._url.shown!r}, shards={len(self.shards)})"

    def close(self) -> None:
        """Drop every connection; wake readers stop. Idempotent."""
        for wake in self._wakes.values():
            wake.closed = True
            wake.event.set()
        for shard in self.shards:
            shard.close()
        if self.crossing is not None:
            self.crossing.slot.close()
        self._slots.close()

    # -- where ids live --------------------------------------------------------------------

    def _remember(self, id: str, shard: int) -> None:
        with self._where_lock:
            self._where[id] = shard
            if len(self._where) > REMEMBER:
                self._where.popitem(last=False)

    def _known(self, id: str) -> int | None:
        with self._where_lock:
            return self._where.get(id)

    def locate(self, ids: Iterable[str]) -> dict[str, int]:
        """The shard of each of ``ids`` that exists (remembered, else looked up)."""
        out: dict[str, int] = {}
        unknown: list[str] = []
        for id in ids:
            at = self._known(id)
            if at is None:
                unknown.append(id)
            else:
                out[id] = at
        if unknown:
            unknown = list(dict.fromkeys(unknown))
            for i, shard in enumerate(self.shards):
                found = shard._caller.retrying(
                    "locate",
                    lambda s=shard: self._exists(s, unknown),  # type: ignore[misc]
                )
                for id, there in zip(unknown, found, strict=True):
                    if there:
                        out[id] = i
                        self._remember(id, i)
        return out

    @staticmethod
    def _exists(shard: Shard, ids: Sequence[str]) -> list[Any]:
        pipe = shard._r.pipeline(transaction=False)
        for id in ids:
            pipe.exists(shard._keys.per("k_inv", id))
        return pipe.execute()

    def _route(self, new: NewInvocation, free: int | None = None) -> int:
        """The shard of ``new`` by the module docstring's rules; ``free`` is the shard of
        its batch's free calls (rule 4), None for the call's own id's home."""
        n = len(self.shards)
        key = new.running_key or new.rate_key or new.registration_key
        if n == 1:
            return 0
        if key is not None:
            return _key_home(key, n)
        if new.depends_on:
            located = self.locate(new.depends_on)
            homes = [located[d] for d in new.depends_on if d in located]
            if homes:
                return homes[0]
        if new.parent is not None:
            parent = self.locate([new.parent]).get(new.parent)
            if parent is not None:
                return parent
        known = self._known(new.id) if _is_free(new) else None
        if known is not None:  # registered before by this process: the same shard
            return known
        return free if free is not None and _is_free(new) else _crc(new.id) % n

    def _free_home(self, new: Sequence[NewInvocation]) -> int | None:
        """The shard of the free calls of a batch (rule 4 of the module docstring): the
        next one of this process's rotation when the batch has several, None (each by its
        id) when it has at most one."""
        n = len(self.shards)
        if n == 1 or sum(1 for item in new if _is_free(item)) < 2:
            return None
        with self._floor_lock:
            self._turn = (self._turn + 1) % n
            return self._turn

    def _by_shard(self, ids: Iterable[str]) -> dict[int, list[str]]:
        where = self.locate(ids)
        out: dict[int, list[str]] = {}
        for id, at in where.items():
            out.setdefault(at, []).append(id)
        return out

    # -- Queue -----------------------------------------------------------------------------

    def register(self, new: Sequence[NewInvocation], now: float) -> list[RegisterResult]:
        """See :meth:`kubenenc.backends.contract.Queue.register`: grouped by shard, in
        order within each shard. An item with dependencies goes through steps 1-3 of
        :mod:`kubenenc_redis.depending` first, after the items of the batch it depends on
        were registered."""
        homes = []
        free = self._free_home(new)
        for item in new:
            home = self._route(item, free)
            homes.append(home)
            self._remember(item.id, home)  # a later item of the batch may depend on it
        sharded = len(self.shards) > 1
        groups: dict[int, list[int]] = {}
        unsent: set[str] = set()
        out: list[RegisterResult | None] = [None] * len(new)
        with self._floor_lock:
            # Never below this process's earlier registrations: two at the same ``now``
            # (a caller's clock, or within 10 µs) on two shards keep their call order.
            base = max(seq_floor(now), self._floor)
            self._floor = base + len(new)
        dependents: list[tuple[int, bool]] = []

        def send() -> None:
            for home, positions in groups.items():
                # Each item's floor is the registration time plus its place in the batch,
                # so the batch keeps its call order across shards (in one step with the
                # register).
                floors = [base + k for k in positions] if sharded else None
                items = [new[k] for k in positions]
                results = self.shards[home].register(items, now, floors=floors)
                for k, res in zip(positions, results, strict=True):
                    out[k] = res
                    self._remember(res.id, home)
                    if sharded:
                        self._queued(new[k], res, home, base + k, now)
            groups.clear()
            unsent.clear()

        for k, home in enumerate(homes):
            item = new[k]
            if sharded and item.depends_on:
                if unsent.intersection(item.depends_on):
                    send()  # its dependencies in this batch must exist first
                dependents.append((k, depending.prepare(self, item, home, now)))
            groups.setdefault(home, []).append(k)
            unsent.add(item.id)
        send()
        if dependents:
            done = [(new[k], r, o) for k, o in dependents if (r := out[k]) is not None]
            depending.registered(self, done)
        return [r for r in out if r is not None]

    def _queued(
        self, item: NewInvocation, res: RegisterResult, home: int, floor: int, now: float
    ) -> None:
        """Tell the head hints what registering ``item`` on ``home`` put in its queue: a
        new call due now enters with the member its sequence floor gives (the shard may
        give it a later sequence, never an earlier one), a delayed one by when it is due;
        one with dependencies may have become PENDING or not (its hint is unknown)."""
        if res.kind is not RegisterKind.CREATED or res.id != item.id:
            return
        if item.depends_on:
            self._hints.forget(home, item.pool)
        elif item.not_before > now:
            self._hints.delayed(item.pool, home, item.not_before)
        else:
            self._hints.registered(item.pool, home, queue_member(item.priority, floor, item.id))

    def next_due(self, pool: str, now: float) -> float | None:
        """See :class:`kubenenc.backends.contract.DueTimes`: the earliest on any shard."""
        found = [t for s in self.shards if (t := s.next_due(pool, now)) is not None]
        return min(found) if found else None

    def last_tick(self, schedule: str) -> int | None:
        """See :class:`kubenenc.backends.contract.TickClaims`: the latest on any shard."""
        found = [t for s in self.shards if (t := s.last_tick(schedule)) is not None]
        return max(found) if found else None

    def claim_tick(
        self,
        schedule: str,
        previous: int | None,
        tick: int,
        new: Sequence[NewInvocation],
        now: float,
    ) -> list[RegisterResult] | None:
        """See :class:`kubenenc.backends.contract.TickClaims`: one script on one shard, so
        the tick and its calls stay one atomic step. The shard is the home of the calls'
        concurrency key when they have one (a schedule's task, and so its key's home, is
        the same at every tick, so its ticks stay on that shard), else the schedule's own
        (CRC32 of its name); calls with keys of two homes are refused."""
        n = len(self.shards)
        homes = {
            _key_home(k, n)
            for item in new
            if (k := item.running_key or item.rate_key or item.registration_key) is not None
        }
        if len(homes) > 1:
            raise ConfigurationError(
                f"schedule {schedule!r}: its calls have concurrency keys of different shards"
            )
        home = homes.pop() if homes else _crc(schedule) % n
        if n > 1:
            self.shards[home]._caller.run("shard_seq", now, seq_floor(now))
        got = self.shards[home].claim_tick(schedule, previous, tick, new, now)
        self._hints.forget(home)
        for res in got or []:
            self._remember(res.id, home)
        return got

    def claim(self, pool: str, worker: WorkerId, limit: int, now: float) -> list[InvocationRecord]:
        """See :meth:`kubenenc.backends.contract.Queue.claim`.

        Usually one script on one shard: the shard whose head hint is best (this process's
        belief of each shard's queue head, :mod:`kubenenc_redis.hints`), *bounded* by the
        best hint of the other shards, so it takes nothing that a call known on another
        shard outranks; its reply tells that shard's new head. When the hints do not tell
        (one is unknown, they are due a reading, or every queue is believed empty), or that
        claim comes back short of ``limit``, the rest is claimed from a reading of every
        shard's head (:meth:`_claim_read`), which also refreshes the hints. The claim order
        this gives is written in the module docstring."""
        if limit <= 0:
            return []
        if len(self.shards) == 1:
            return self._claim_on(0, pool, worker, limit, now, None)
        out: list[InvocationRecord] = []
        pick = self._hints.pick(pool, now)
        if pick is not None:
            out = self._claim_on(pick[0], pool, worker, limit, now, pick[1])
            if len(out) >= limit:
                return out
        return out + self._claim_read(pool, worker, limit - len(out), now)

    def _claim_read(
        self, pool: str, worker: WorkerId, limit: int, now: float
    ) -> list[InvocationRecord]:
        """A claim from the heads of every shard, read first.

        In rounds: the heads of the pool's queue on every shard are read (queue members
        sort in claim order, and sequences are comparable across shards), the best of them
        counted per shard, and each shard asked for its count, *bounded* by the first head
        of any other shard left out of the round: a shard whose planned heads are held back
        by a running limit (parked by its claim) may take later members of its own queue,
        but none that another shard's waiting head outranks. A round that claims fewer
        than wanted is followed by another over the heads left (parked ones have left the
        queues), until the claim is full or a round finds nothing to take. So the claim
        order over shards is the one of a single queue, for the calls present when the
        heads were read."""
        out: list[InvocationRecord] = []
        rank: dict[str, int] = {}
        before: list[tuple[str, int]] = []
        for _ in range(CLAIM_ROUNDS):
            want = limit - len(out)
            if want <= 0:
                break
            read = [self._heads(s, pool, want + 1, now) for s in self.shards]
            self._hints.read(pool, {i: (ms[0] if ms else None, due)
                                    for i, (ms, due) in enumerate(read)})  # fmt: skip
            heads = sorted((m, i) for i, (ms, _) in enumerate(read) for m in ms)
            take, rest = heads[:want], heads[want:]
            if not take or heads == before:
                break  # nothing, or nothing moved since the last round (not due yet)
            before = heads
            for m, _ in take:
                rank.setdefault(m[MEMBER_HEAD:], len(rank))
            counts = collections.Counter(i for _, i in take)
            first_left: dict[int, str] = {}
            for m, i in rest:
                first_left.setdefault(i, m)
            for i in dict.fromkeys(i for _, i in take):  # best head first
                others = [m for j, m in first_left.items() if j != i]
                got = self._claim_on(i, pool, worker, counts[i], now, min(others, default=None))
                out += got
        out.sort(key=lambda r: rank.get(r.id, limit))
        return out

    def _claim_on(
        self, i: int, pool: str, worker: WorkerId, n: int, now: float, bound: str | None
    ) -> list[InvocationRecord]:
        shard = self.shards[i]
        if len(self.shards) == 1:
            got = shard.claim(pool, worker, n, now)  # one shard: nothing to bound
        else:
            got, head = shard.claim_head(pool, worker, n, now, bound)
            self._hints.seen(pool, i, head)
        for rec in got:
            self._remember(rec.id, i)
        return got

    @staticmethod
    def _heads(shard: Shard, pool: str, limit: int, now: float) -> tuple[list[str], float | None]:
        """The first ``limit`` members of ``pool``'s queue on ``shard`` and of its delayed
        calls due at ``now`` (the claim moves those into the queue first), and when the
        first delayed call not due yet falls due (None: none)."""
        q, dl = shard._keys.per("k_q", pool), shard._keys.per("k_dl", pool)

        def read() -> list[Any]:
            pipe = shard._r.pipeline(transaction=False)
            pipe.zrange(q, 0, limit - 1)
            pipe.zrangebyscore(dl, "-inf", repr(now), start=0, num=limit)
            pipe.zrangebyscore(dl, f"({now!r}", "+inf", start=0, num=1, withscores=True)
            return pipe.execute()

        ready, due, later = shard._caller.retrying("heads", read)
        heads = sorted(str(m) for m in [*ready, *due])[:limit]
        return heads, (float(later[0][1]) if later else None)

    def finish(self, outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        """See :meth:`kubenenc.backends.contract.Queue.finish`. Across shards, each shard's
        finish step says whether it wrote news for dependents (then that shard's outbox is
        read and delivered: step 6 of :mod:`kubenenc_redis.depending`; a finish that wrote
        none reads nothing more) and whether it put calls in a queue (then that shard's
        head hint is unknown, see :meth:`claim`)."""
        where = self.locate(o.id for o in outcomes)
        flags = [False] * len(outcomes)
        groups: dict[int, list[int]] = {}
        for k, o in enumerate(outcomes):
            if o.id in where:
                groups.setdefault(where[o.id], []).append(k)
        news: list[int] = []
        for home, positions in groups.items():
            mine = [outcomes[k] for k in positions]
            if len(self.shards) == 1:
                got, notes = self.shards[home].finish(mine, worker, now), ""
            else:
                got, notes = self.shards[home].finish_noting(mine, worker, now)
            for k, flag in zip(positions, got, strict=True):
                flags[k] = flag
            if "x" in notes:
                news.append(home)
            if "q" in notes:
                self._hints.forget(home)
        if news:
            depending.settle_after(self, news, now)  # dependents of what ended (step 6)
            self._hints.forget_all()  # a dependent may have become PENDING anywhere
        back = [o.id for o, f in zip(outcomes, flags, strict=True)
                if f and o.kind is OutcomeKind.HANDED_BACK]  # fmt: skip
        self._unwait(back, now)  # a paused one handed back waits no more
        return flags

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """See :class:`kubenenc.backends.contract.FinishAndClaim`. One script when every
        outcome lives on the shard that the head hints pick for the claim (a worker's
        steady state: what it finishes came from where it claims), as on one server; else
        a finish, then a claim."""
        if len(self.shards) > 1 and outcomes and limit > 0:
            where = self.locate(o.id for o in outcomes)
            homes = {where.get(o.id) for o in outcomes}
            home = homes.pop() if len(homes) == 1 else None
            pick = None if home is None else self._hints.pick(pool, now, only=home)
            if home is not None and pick is not None:
                return self._finish_and_claim_on(home, outcomes, pool, worker, limit, now, pick[1])
        flags = self.finish(outcomes, worker, now) if outcomes else []
        return flags, self.claim(pool, worker, limit, now) if limit > 0 else []

    def _finish_and_claim_on(
        self,
        home: int,
        outcomes: Sequence[Outcome],
        pool: str,
        worker: WorkerId,
        limit: int,
        now: float,
        bound: str | None,
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """:meth:`finish_and_claim` as one script on shard ``home``; what :meth:`finish`
        and :meth:`claim` do after their steps follows (news settled, hints updated, a
        short claim completed from a reading of every head)."""
        flags, notes, got, head = self.shards[home].finish_and_claim_head(
            outcomes, pool, worker, limit, now, bound
        )
        if "q" in notes:
            self._hints.forget(home)  # other pools there may have gained calls
        self._hints.seen(pool, home, head)  # read after the step: this pool's is fresh
        for rec in got:
            self._remember(rec.id, home)
        if "x" in notes:
            depending.settle_after(self, [home], now)
            self._hints.forget_all()
        back = [o.id for o, f in zip(outcomes, flags, strict=True)
                if f and o.kind is OutcomeKind.HANDED_BACK]  # fmt: skip
        self._unwait(back, now)
        if len(got) < limit:
            got += self._claim_read(pool, worker, limit - len(got), now)
        return flags, got

    def _one(self, id: str) -> Shard | None:
        at = self.locate([id]).get(id)
        return None if at is None else self.shards[at]

    def cancel(self, id: InvocationId, now: float, reason: str = "cancelled") -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.cancel`."""
        shard = self._one(id)
        done = shard is not None and shard.cancel(id, now, reason)
        self._forget(shard)
        if done:
            self._ended(id, now)
        return done

    def fail(self, id: InvocationId, error: str, message: str, now: float) -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.fail`."""
        shard = self._one(id)
        done = shard is not None and shard.fail(id, error, message, now)
        self._forget(shard)
        if done:
            self._ended(id, now)
        return done

    def _forget(self, shard: Shard | None) -> None:
        """``shard``'s queues may have changed (a freed running slot lets a parked call
        go, a cancelled head leaves): its head hints are unknown (see :meth:`claim`)."""
        if shard is not None and len(self.shards) > 1:
            self._hints.forget(self.shards.index(shard))

    def _ended(self, id: InvocationId, now: float) -> None:
        """What follows a cancel or fail of ``id`` across shards: its waits undone, its
        dependents told, and, were it a waiting dependent, its record there dropped."""
        self._unwait([id], now)
        if len(self.shards) > 1:
            at = self._known(id)
            depending.settle_after(self, [] if at is None else [at], now)
            depending.forget(self, [id])
            self._hints.forget_all()

    # -- Coordination ----------------------------------------------------------------------

    def pause(
        self, id: InvocationId, worker: WorkerId, targets: Sequence[InvocationId], now: float
    ) -> PauseResult:
        """See :meth:`kubenenc.backends.contract.Coordination.pause` and, across shards,
        :mod:`kubenenc_redis.crossing`."""
        home = self.locate([id]).get(id)
        if home is None:
            return PauseResult(PauseKind.GONE, ())
        try:
            return self._pause(id, home, worker, targets, now)
        finally:
            self._forget(self.shards[home])  # its freed slot may have let a parked call go

    def _pause(
        self,
        id: InvocationId,
        home: int,
        worker: WorkerId,
        targets: Sequence[InvocationId],
        now: float,
    ) -> PauseResult:
        shard = self.shards[home]
        if self.crossing is None:
            return shard.pause(id, worker, targets, now)
        me = shard.get_many([id])[0]
        if me is None or me.status is not Status.RUNNING or me.worker != worker:
            return PauseResult(PauseKind.GONE, ())
        wanted = list(dict.fromkeys(targets))
        open = [r for r in self.get_many(wanted) if r is not None and not r.is_final]
        if not open:
            return shard.pause(id, worker, [], now)  # GONE or READY, checked atomically
        found, in_chain, lines = self.crossing.pause(
            id, me.call_key, me.display, home, now, MAX_LOOP_NODES,
            [(r.id, r.call_key, r.display) for r in open],
        )  # fmt: skip
        if found is not None:
            if not in_chain:
                at = self.locate([found]).get(found)
                if at is not None:
                    self.shards[at]._caller.run("shard_cycle", now, found, _loop_message(lines))
                    self._ended(InvocationId(found), now)
            return PauseResult(PauseKind.CYCLE, tuple(lines))
        local = [r.id for r in open if self._known(r.id) == home]
        reply, _ = shard._caller.run("shard_pause", now, id, worker, *local)
        if reply[0] != "paused":
            self.crossing.drop([id])
            return PauseResult(PauseKind.GONE, ())
        self._boost([r.id for r in open if self._known(r.id) != home], +1, now)
        return PauseResult(PauseKind.PAUSED, ())

    def _boost(self, targets: Sequence[str], delta: int, now: float) -> None:
        """Count one waiter more (``delta`` +1) or less (-1) on each of ``targets``."""
        for home, group in self._by_shard(targets).items():
            self.shards[home]._caller.run("shard_boost", now, delta, *group)
            self._hints.forget(home)  # the targets moved in their queue

    def _unwait(self, ids: Sequence[str], now: float) -> None:
        """Forget the coordination edges of waiters ``ids`` that stopped waiting without
        their targets ending (gone, resumed early, cancelled), and count them off their
        targets on other shards (their own shard's targets were counted off there)."""
        if self.crossing is None or not ids:
            return
        waits = self.crossing.targets(ids)
        where = self.locate(ids)
        remote = [t for id, ts in zip(ids, waits, strict=True) for t in ts
                  if self._known(t) != where.get(id)]  # fmt: skip
        self.locate(remote)
        self.crossing.drop(ids)
        remote = [t for id, ts in zip(ids, waits, strict=True) for t in ts
                  if t in self._where and self._known(t) != where.get(id)]  # fmt: skip
        self._boost(remote, -1, now)

    def _resumable(
        self, ids: Sequence[InvocationId], worker: WorkerId
    ) -> tuple[dict[int, list[InvocationId]], list[InvocationId]]:
        """Which of ``ids`` have every target final (by shard), and which are no longer
        paused on ``worker`` although a target is still open (gone)."""
        assert self.crossing is not None
        waits = self.crossing.targets(ids)
        targets = sorted({InvocationId(t) for ts in waits for t in ts})
        status: dict[str, InvocationRecord | None] = dict(
            zip(targets, self.get_many(targets), strict=True)
        )
        where = self.locate(ids)
        ready: dict[int, list[InvocationId]] = {}
        blocked: list[InvocationId] = []
        for id, ts in zip(ids, waits, strict=True):
            if all((r := status[t]) is None or r.is_final for t in ts):
                if id in where:
                    ready.setdefault(where[id], []).append(id)
                else:
                    blocked.append(id)
            else:
                blocked.append(id)
        gone = [
            id for id, rec in zip(blocked, self.get_many(blocked), strict=True)
            if rec is None or rec.status is not Status.PAUSED or rec.worker != worker
        ]  # fmt: skip
        return ready, gone

    def _resume(
        self, early: bool, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        if not ids:
            return ResumeResult()
        groups: dict[int, list[InvocationId]]
        if early or self.crossing is None:
            groups = {h: [InvocationId(i) for i in g] for h, g in self._by_shard(ids).items()}
            lost = [i for i in ids if not any(i in g for g in groups.values())]
        else:
            groups, lost = self._resumable(ids, worker)
        resumed: list[InvocationId] = []
        gone: list[InvocationId] = list(lost)
        for home, group in groups.items():
            shard = self.shards[home]
            step = shard.resume_early if early else shard.resume
            res = step([InvocationId(i) for i in group], worker, max(limit - len(resumed), 0), now)
            self._forget(shard)
            resumed += res.resumed
            gone += res.gone
        if self.crossing is not None:
            if early:
                self._unwait([*resumed, *gone], now)
            else:
                self.crossing.drop(list(resumed))
                self._unwait(gone, now)
        order = {id: k for k, id in enumerate(ids)}
        gone.sort(key=lambda i: order.get(i, len(order)))
        return ResumeResult(tuple(resumed), tuple(gone))

    def resume(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :meth:`kubenenc.backends.contract.Coordination.resume`."""
        return self._resume(False, ids, worker, limit, now)

    def resume_early(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :class:`kubenenc.backends.contract.ResumeEarly`."""
        return self._resume(True, ids, worker, limit, now)

    def heartbeat(self, info: WorkerInfo) -> None:
        """See :meth:`kubenenc.backends.contract.Coordination.heartbeat` (every shard).

        Each shard is beaten on a thread of its own, and this waits at most
        :data:`BEAT_WAIT` for them. A beat to a master that is down retries for
        ``retry_for``; waited for, or sent one shard after the other, it would hold back
        the beats of the shards that are up, whose ``recover`` would then take this live
        worker for dead and hand its calls back. A beat still under way after the wait is
        left to land (a shard gets no second beat while one is under way) and this raises
        :class:`BackendUnavailable` naming it, as it does when a beat failed: the worker
        then backs off and recovers nobody until it reaches every shard again (the rule for
        an outage it saw). The other shards have their beats by then. Until a beat of
        this process reached every shard once, it waits for all of them (``_beaten``)."""
        if len(self.shards) == 1:
            self.shards[0].heartbeat(info)
            return
        failed: dict[int, BaseException] = {}

        def beat(i: int) -> None:
            try:
                self.shards[i].heartbeat(info)
            except BaseException as e:  # handed to the caller below
                failed[i] = e

        with self._beats_lock:
            for i, under_way in enumerate(self._beats):
                if under_way is None or not under_way.is_alive():
                    started = threading.Thread(
                        target=beat, args=(i,), name=f"kubenenc-beat-{i}", daemon=True
                    )
                    started.start()
                    self._beats[i] = started
            beats = [thread for thread in self._beats if thread is not None]
        give_up = time.monotonic() + BEAT_WAIT
        for thread in beats:
            thread.join(max(0.0, give_up - time.monotonic()) if self._beaten else None)
        late = [i for i, thread in enumerate(beats) if thread.is_alive()]
        errors = dict(failed)  # one copy: a late beat may still add to it
        other = [e for e in errors.values() if not isinstance(e, BackendUnavailable)]
        if other:
            raise other[0]
        if late or errors:
            down = sorted({*late, *errors})
            raise BackendUnavailable(
                f"heartbeat: shard(s) {down} did not take this beat within {BEAT_WAIT} s "
                f"(their master unreachable?); the other shards took it"
            ) from next(iter(errors.values()), None)
        self._beaten = True

    def unregister_worker(self, worker: WorkerId) -> None:
        """See :meth:`kubenenc.backends.contract.Coordination.unregister_worker`."""
        for shard in self.shards:
            shard.unregister_worker(worker)

    def workers(self) -> list[WorkerInfo]:
        """See :meth:`kubenenc.backends.contract.Coordination.workers`."""
        return self.shards[0].workers()

    def recover(self, now: float, heartbeat_timeout: float, max_lost: int) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.recover`: every shard, then
        the coordination slot's sweep (see :mod:`kubenenc_redis.crossing`)."""
        out: list[InvocationId] = []
        for shard in self.shards:
            out += shard.recover(now, heartbeat_timeout, max_lost)
        self._unwait(out, now)
        if self.crossing is not None:
            self._sweep(now)
            depending.sweep(self, now)
        self._hints.forget_all()  # lost work went back to its queues, dependents settled
        return out

    def _sweep(self, now: float) -> None:
        assert self.crossing is not None
        found = self.crossing.waiters()
        if not found:
            return
        for id, _, sh in found:
            self._remember(id, sh)
        recs = self.get_many([InvocationId(id) for id, _, _ in found])
        stale = [
            id for (id, at, _), rec in zip(found, recs, strict=True)
            if rec is None or rec.is_final
            or (rec.status is not Status.PAUSED and at < now - self.crossing.grace)
        ]  # fmt: skip
        self._unwait(stale, now)

    def release_unheld(
        self, worker: WorkerId, held: Collection[InvocationId], now: float, max_lost: int
    ) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.release_unheld`."""
        out: list[InvocationId] = []
        for shard in self.shards:
            out += shard.release_unheld(worker, held, now, max_lost)
        if out:
            self._hints.forget_all()
        self._unwait(out, now)
        if out and len(self.shards) > 1:
            depending.settle_after(self, range(len(self.shards)), now)
        return out

    def wait_final(self, ids: Sequence[InvocationId], timeout: float | None) -> bool:
        """See :meth:`kubenenc.backends.contract.Coordination.wait_final`: shard after
        shard (all must end), within one deadline."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for home, group in self._by_shard(ids).items():
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if not self.shards[home].wait_final([InvocationId(i) for i in group], left):
                return False
        return True

    def wait_for_work(self, pool: str, timeout: float) -> bool:
        """See :class:`kubenenc.backends.contract.WorkNotifier`: any shard's wake list."""
        wake = self._wakes.get(pool)
        if wake is None:
            wake = self._wakes.setdefault(pool, _Wake(self.shards, pool, self._hints))
        wake.last = time.monotonic()
        wake.ensure()
        got = wake.event.wait(max(timeout, 0.0))
        wake.event.clear()
        return got

    # -- Policies --------------------------------------------------------------------------

    def set_policy(self, name: str, spec: str | None) -> None:
        """See :meth:`kubenenc.backends.contract.Policies.set_policy` (on shard 0)."""
        self.shards[0].set_policy(name, spec)

    def get_policy(self, name: str) -> str | None:
        """See :meth:`kubenenc.backends.contract.Policies.get_policy`."""
        return self.shards[0].get_policy(name)

    def policies(self) -> dict[str, str]:
        """See :meth:`kubenenc.backends.contract.Policies.policies`."""
        return self.shards[0].policies()

    # -- Records ---------------------------------------------------------------------------

    def get(self, id: InvocationId) -> InvocationRecord | None:
        """See :meth:`kubenenc.backends.contract.Records.get`."""
        shard = self._one(id)
        return None if shard is None else shard.get(id)

    def get_many(self, ids: Sequence[InvocationId]) -> list[InvocationRecord | None]:
        """See :meth:`kubenenc.backends.contract.Records.get_many`."""
        found: dict[str, InvocationRecord | None] = {}
        for home, group in self._by_shard(ids).items():
            recs = self.shards[home].get_many([InvocationId(i) for i in group])
            found.update(zip(group, recs, strict=True))
        return [found.get(id) for id in ids]

    def query(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[InvocationRecord]:
        """See :meth:`kubenenc.backends.contract.Records.query`: every shard's newest,
        merged newest first."""
        out: list[InvocationRecord] = []
        for shard in self.shards:
            out += shard.query(app=app, task=task, status=status, limit=limit)
        out.sort(key=lambda r: r.created_at, reverse=True)
        return out[:limit]

    def counts(
        self, *, app: str | None = None, pool: str | None = None, task: str | None = None
    ) -> Mapping[Status, int]:
        """See :meth:`kubenenc.backends.contract.Records.counts`: summed over shards."""
        out: dict[Status, int] = {}
        for shard in self.shards:
            for s, n in shard.counts(app=app, pool=pool, task=task).items():
                out[s] = out.get(s, 0) + n
        return out

    def counts_by_task(
        self, *, app: str | None = None, pool: str | None = None
    ) -> Mapping[str, Mapping[Status, int]]:
        """See :meth:`kubenenc.backends.contract.Records.counts_by_task`."""
        out: dict[str, dict[Status, int]] = {}
        for shard in self.shards:
            for t, by in shard.counts_by_task(app=app, pool=pool).items():
                mine = out.setdefault(t, {})
                for s, n in by.items():
                    mine[s] = mine.get(s, 0) + n
        return out

    # -- Browse and Admin ------------------------------------------------------------------

    def browse(
        self,
        where: InvocationFilter,
        *,
        cursor: str | None = None,
        limit: int = 50,
        budget: int = DEFAULT_BUDGET,
    ) -> InvocationPage:
        """See :meth:`kubenenc.backends.browse.Browse.browse`: every shard below the same
        cursor (sequences compare across shards), merged newest first. The next cursor
        stops at the newest point where a shard stopped early, so nothing is skipped."""
        if len(self.shards) == 1:
            return self.shards[0].browse(where, cursor=cursor, limit=limit, budget=budget)
        if budget < len(self.shards) or (cursor or "").startswith(LANES):
            return self._browse_lanes(where, cursor, limit, budget)
        share = budget // len(self.shards)
        found: list[tuple[int, InvocationRecord]] = []
        bound: int | None = None
        scanned = 0
        for shard in self.shards:
            page = shard.browse(where, cursor=cursor, limit=limit, budget=share)
            scanned += page.scanned
            found += zip(self._seqs(shard, [r.id for r in page.items]), page.items, strict=True)
            if page.next is not None:
                at = seq_of(page.next)
                if at is not None and (bound is None or at > bound):
                    bound = at
        found.sort(key=lambda f: f[0], reverse=True)
        keep = [f for f in found if bound is None or f[0] >= bound]
        if len(keep) > limit:
            # Calls on two shards can share a sequence (registered in the same 10 µs by
            # two processes): the page ends above such a group, never inside it, since
            # the next page continues below a sequence; a group filling the whole page
            # goes on one shard after the other (the lanes), which skips none either.
            last = keep[limit - 1][0]
            cut = [f for f in keep[:limit] if f[0] > last or keep[limit][0] != last]
            if not cut:
                lanes = [cursor or ""] * len(self.shards)
                return self._browse_lanes(where, LANES + ",".join(lanes), limit, budget)
            return InvocationPage([r for _, r in cut], cursor_of(cut[-1][0]), scanned)
        return InvocationPage(
            [r for _, r in keep], None if bound is None else cursor_of(bound), scanned
        )

    def _browse_lanes(
        self, where: InvocationFilter, cursor: str | None, limit: int, budget: int
    ) -> InvocationPage:
        """Browse with a budget smaller than the number of shards: one shard after the
        other, each newest first, the cursor ``L:`` and each shard's own cursor (``''``
        not started, ``-`` done), so every page makes progress within the budget."""
        n = len(self.shards)
        lanes = cursor[len(LANES) :].split(",") if cursor else [""] * n
        items: list[InvocationRecord] = []
        scanned = 0
        for i, lane in enumerate(lanes):
            if lane == "-":
                continue
            if scanned >= budget or len(items) >= limit:
                break
            page = self.shards[i].browse(
                where, cursor=lane or None, limit=limit - len(items), budget=budget - scanned
            )
            items += page.items
            scanned += page.scanned
            lanes[i] = page.next or "-"
        more = any(lane != "-" for lane in lanes)
        return InvocationPage(items, LANES + ",".join(lanes) if more else None, scanned)

    @staticmethod
    def _seqs(shard: Shard, ids: Sequence[str]) -> list[int]:
        """The sequence of each of ``ids`` on ``shard`` (from its id index)."""
        if not ids:
            return []
        key = shard._keys.fixed("K_IX")
        found = shard._caller.retrying("browse", lambda: shard._r.zmscore(key, list(ids)))
        return [int(x or 0) for x in found]

    def activity(
        self, *, since: float, width: float, buckets: int, app: str | None = None
    ) -> list[ActivityBucket]:
        """See :meth:`kubenenc.backends.browse.Browse.activity`: summed over shards."""
        parts = [
            s.activity(since=since, width=width, buckets=buckets, app=app) for s in self.shards
        ]
        out: list[ActivityBucket] = []
        for bs in zip(*parts, strict=True):
            out.append(
                ActivityBucket(
                    bs[0].start,
                    sum(b.finished for b in bs),
                    sum(b.failed for b in bs),
                    estimated=any(b.estimated for b in bs),
                )
            )
        return out

    def overdue(self, now: float, grace: float) -> list[InvocationRecord]:
        """See :class:`kubenenc.backends.contract.Overdue`: each shard reads only the work
        its holders hold; at most a thousand in all (the enforcer calls again later)."""
        found: list[InvocationRecord] = []
        for shard in self.shards:
            found += shard.overdue(now, grace)
        return found[:1000]

    def running_keys(
        self, *, limit: int = 100, holders: int = 10, budget: int = DEFAULT_BUDGET
    ) -> RunningKeys:
        """See :class:`kubenenc.backends.browse.KeyUsage`: every call of one running key
        lives on one shard (the routing rule), so each shard's answer is exact for its keys
        and the merge re-ranks them; ``budget`` is spent per shard."""
        parts = [s.running_keys(limit=limit, holders=holders, budget=budget) for s in self.shards]
        ranked = sorted((k for p in parts for k in p.keys), key=lambda k: (-k.running, k.key))
        return RunningKeys(ranked[:limit], more=len(ranked) > limit or any(p.more for p in parts))

    def relations(self, id: InvocationId, *, limit: int = 200) -> Relations | None:
        """See :meth:`kubenenc.backends.browse.Browse.relations` (children and waits on
        the invocation's own shard)."""
        shard = self._one(id)
        return None if shard is None else shard.relations(id, limit=limit)

    def select(
        self,
        *,
        app: str | None = None,
        task: str | None = None,
        statuses: Collection[Status] | None = None,
        updated_before: float | None = None,
    ) -> list[InvocationId]:
        """See :class:`kubenenc.backends.contract.Admin`."""
        if len(self.shards) == 1:
            return self.shards[0].select(
                app=app, task=task, statuses=statuses, updated_before=updated_before
            )
        out: list[tuple[int, InvocationId]] = []
        for i, shard in enumerate(self.shards):
            found = shard.select(
                app=app, task=task, statuses=statuses, updated_before=updated_before
            )
            for id in found:
                self._remember(id, i)
            out += zip(self._seqs(shard, found), found, strict=True)
        return [id for _, id in sorted(out, key=lambda f: f[0])]

    def oldest_pending(self, pool: str) -> float | None:
        """See :class:`kubenenc.backends.contract.Admin`."""
        found = [t for s in self.shards if (t := s.oldest_pending(pool)) is not None]
        return min(found) if found else None

    def purge(self, ids: Sequence[InvocationId]) -> int:
        """See :class:`kubenenc.backends.contract.Admin`."""
        self._hints.forget_all()  # a purged call leaves its queue
        return sum(
            self.shards[home].purge([InvocationId(i) for i in group])
            for home, group in self._by_shard(ids).items()
        )


def seq_floor(now: float) -> int:
    """The least sequence number a registration at ``now`` gets on any shard: the time in
    units of 10 µs (fits the 15 digits of a queue member until the year 2286). So
    sequences, and with them claim order (older first) and the id indexes, compare
    across shards as registration times do; a batch's items add their place in the batch
    (:meth:`ShardedBackend.register`), so one batch keeps its call order across shards."""
    return int(now * 100_000)


def _loop_message(lines: Sequence[str]) -> str:
    """The CycleDetected message, as ``pause.lua`` writes it (kubenenc.waitgraph's
    format_loop)."""
    body = "\n".join(("  " if j == 0 else "  -> waits on ") + ln for j, ln in enumerate(lines))
    return (
        f"waiting on {lines[-1]} would close a loop that can never finish:\n{body}\n"
        "  (the last call is already waiting higher up this chain)"
    )


__all__ = ["REMEMBER", "WATCH_IDLE", "ShardedBackend", "seq_floor"]
