"""Declared dependencies (``depends_on``) of a sharded app, wherever their calls live.

On one server the register script reads every dependency's record and, when one is still
open, adds the dependent to ``P:dep:<dep>``; the finish of the dependency moves its
dependents in the same script. Across shards no script sees both records, so with more than
one shard *every* declared dependency (same-shard ones too: one path, one argument) goes
through these steps, ``D`` the dependent on its shard ``H``, ``X`` a dependency on its
shard ``S`` (``S`` may be ``H``):

1. **Coordination slot** (:meth:`kubenenc_redis.crossing.Coordination.depend`): ``D`` and
   the edges ``X -> D`` are recorded there, so the cycle check of every pause (which runs
   there, see :mod:`kubenenc_redis.crossing`) walks through ``D`` as the single server's
   walks through ``P:dep``.
2. **H, mark**: ``P:xst:<D>`` gets ``X -> open`` (``HSETNX``: news already there wins), or
   ``missing`` for a dependency found on no shard. Expires after the retention unless ``D``
   is registered waiting.
3. **S, depend** (``shard_depend.lua``, one script per shard): an open ``X`` records
   ``D US H`` in ``P:xdep:<X>`` (and ``hd``); a final or missing one is answered, and its
   status (with display) written to ``P:xst:<D>`` on ``H``.
4. **H, register** (``register.lua``): a dependent whose ``P:xst`` exists reads its
   dependencies from there instead of their records: failed/cancelled/missing fails it at
   once, all succeeded makes it PENDING, else it is WAITING_DEPENDENCIES (and its
   ``P:xst`` kept). Then the coordination record of a dependent not waiting is dropped.
5. **S, finish**: when ``X`` becomes final (finish, cancel, fail, cycle, lost, cascade),
   ``lib.lua``'s finalize moves its ``P:xdep`` entries, with its status and display, into
   the shard's outbox ``P:xout`` in the same script.
6. **Settle** (:func:`settle`, ``shard_settle.lua`` on ``H``): the process that ran step 5
   (a finish step says whether it wrote news, ``lua/finish.lua``: only then; a cancel or
   fail always) and every ``recover`` read the outboxes, writes each news into ``P:xst:<D>`` and,
   when ``D`` waits, moves it: PENDING once every entry says SUCCESS, FAILED (error
   ``DependencyFailed`` naming ``X``, cascading through step 5 on ``H``) when one ended
   otherwise. Then the news leaves the outbox, and a dependent that stopped waiting leaves
   the coordination slot.

Why this is correct. *Never claimable early*: ``D`` becomes PENDING only in a script on
``H`` that reads an entry ``SUCCESS`` for every dependency in ``P:xst:<D>``; an entry says
SUCCESS only when ``X`` was final SUCCESS when step 3 or 5 read it, and final never
changes. *No news lost*: step 3 runs on ``S`` as one script, so ``X``'s finish comes either
before it (step 3 sees the final status and writes it to ``H``) or after it (``D`` is in
``P:xdep:<X>``, so step 5 writes the outbox entry in the finish's own script). A news
reaching ``H`` before ``D`` is registered (the dependency finished between steps 3 and 4)
waits in ``P:xst:<D>``, which step 4 reads in the register script: settle and register
are serialized on ``H``, so whichever runs second sees the other. An outbox entry leaves
only after its settle ran; a process dying between 5 and 6 (or failing to reach a shard)
leaves it for the next settle: ``recover``, run by the enforcer every few seconds, settles
every outbox (as does the next finish on that shard that writes news, or a cancel or
fail there). Settle
is idempotent (a dependent not waiting is left alone; an entry written twice says the
same), so two processes settling one entry, or a retry, change nothing. *Cascade*: a
dependent failed by a settle is finalized on ``H``, which puts its own dependents' news in
``H``'s outbox; :func:`settle` goes on with the shards it touched until no news is left.
*Loops through a dependency*: step 1 runs before ``D`` exists, so while ``D`` waits its
edges are in the coordination slot, and a pause closing a loop through it is refused
there. A recorded dependent that no longer waits is dropped by the process that moved it
(step 4 or 6, ``cancel``/``fail``, a cycle's failure) and, should that process die, by the
sweep in ``recover`` (not WAITING_DEPENDENCIES, or not registered ``GRACE`` after it was
recorded); until then it can only refuse a pause conservatively, never let a loop through.

Costs: a registration with dependencies takes about four more round trips (the
coordination slot, the mark, one ``shard_depend`` per dependency shard, a status read),
every cancel and fail one read of its shard's outbox, and a finish one only when its step
reports news (so a finish of calls without dependents costs what it does on one server).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import redis
from kubenenc.errors import BackendUnavailable
from kubenenc.ids import InvocationId
from kubenenc.records import NewInvocation, RegisterKind, RegisterResult
from kubenenc.status import Status

from kubenenc_redis.keys import US

if TYPE_CHECKING:
    from kubenenc_redis.cluster import Shard
    from kubenenc_redis.crossing import Coordination
    from kubenenc_redis.shards import ShardedBackend

log = logging.getLogger(__name__)

OPEN = "open"
MISSING = "missing"
BATCH = 500
"""News read from one outbox, and settled on one shard, per call."""
MOVED = ("pending", "failed")
"""Settle replies of a dependent that stopped waiting."""


def prepare(b: ShardedBackend, item: NewInvocation, home: int, now: float) -> bool:
    """Steps 1 to 3 for ``item`` (to be registered on shard ``home``): whether any
    dependency was still open (else the registration decides at once)."""
    deps = list(dict.fromkeys(item.depends_on))
    assert b.crossing is not None
    b.crossing.depend(item.id, item.display, now, deps)
    where = b.locate(deps)
    h = b.shards[home]
    kx = h._keys.per("k_xst", item.id)
    ttl = max(int(b.retention), 1)

    def mark() -> None:
        pipe = h._r.pipeline(transaction=False)
        for d in deps:
            if d in where:
                pipe.hsetnx(kx, d, OPEN)
            else:
                pipe.hset(kx, d, MISSING)
        pipe.expire(kx, ttl)
        pipe.execute()

    h._caller.retrying("depend", mark)
    by_shard: dict[int, list[str]] = {}
    for d in deps:
        if d in where:
            by_shard.setdefault(where[d], []).append(d)
    known: dict[str, str] = {}
    open = False
    for at, group in by_shard.items():
        reply, _ = b.shards[at]._caller.run("shard_depend", now, f"{item.id}{US}{home}", *group)
        for d, state in reply:
            if state == OPEN:
                open = True
            else:
                known[str(d)] = str(state)
    if known:
        flat = [x for kv in known.items() for x in kv]
        h._caller.retrying("depend", lambda: h._r.hset(kx, items=flat))
    return open


def registered(
    b: ShardedBackend, items: Sequence[tuple[NewInvocation, RegisterResult, bool]]
) -> None:
    """Step 4's end: drop the coordination record of each dependent (item, its result,
    whether a dependency was open) that does not wait: not created (deduplicated or
    rejected), or created PENDING or FAILED."""
    assert b.crossing is not None
    drop: list[str] = []
    check: list[InvocationId] = []
    for n, res, open in items:
        if res.kind is not RegisterKind.CREATED or res.id != n.id or not open:
            drop.append(n.id)
        else:
            check.append(InvocationId(n.id))
    for id, rec in zip(check, b.get_many(check), strict=True):
        if rec is None or rec.status is not Status.WAITING_DEPENDENCIES:
            drop.append(id)
    b.crossing.undepend(drop)


def _news(shard: Shard) -> list[str]:
    key = shard._keys.fixed("K_XOUT")
    found: Any = shard._caller.retrying("settle", lambda: shard._r.srandmember(key, BATCH))
    return [str(m) for m in found or []]


def _delivered(shard: Shard, news: Sequence[str]) -> None:
    key = shard._keys.fixed("K_XOUT")
    shard._caller.retrying("settle", lambda: shard._r.srem(key, *news))


def settle(b: ShardedBackend, shards: Iterable[int], now: float) -> int:
    """Step 6: deliver the news in the outboxes of ``shards``, and of every shard a
    cascade touches, until none is left. Returns how many dependents stopped waiting."""
    return deliver(b.shards, b.crossing, shards, now)


def deliver(
    all: Sequence[Shard], crossing: Coordination | None, shards: Iterable[int], now: float
) -> int:
    """:func:`settle` over the shards ``all`` (the shard numbers in the outboxes index
    it) and the coordination slot ``crossing``: also run by a reshard before it moves
    anything, so no news names a shard number of the old layout afterwards."""
    todo = set(shards)
    moved = 0
    while todo:
        i = todo.pop()
        src = all[i]
        news = _news(src)
        if not news:
            continue
        by_home: dict[int, list[tuple[str, str, str]]] = {}
        for m in news:
            did, at, dep, status, display = m.split(US, 4)
            by_home.setdefault(int(at), []).append((did, dep, f"{status}{US}{display}"))
        stopped: list[str] = []
        for home, group in by_home.items():
            args = [x for g in group for x in g]
            reply, _ = all[home]._caller.run("shard_settle", now, *args)
            for (did, _, _), got in zip(group, reply, strict=True):
                if got in MOVED:
                    stopped.append(did)
                if got == "failed":
                    todo.add(home)  # its own dependents' news, in that shard's outbox
        _delivered(src, news)
        if crossing is not None:
            crossing.undepend(stopped)
        moved += len(stopped)
        todo.add(i)  # more than one batch, or news added meanwhile
    return moved


def settle_after(b: ShardedBackend, shards: Iterable[int], now: float) -> None:
    """:func:`settle` after a step that already happened (a finish, cancel or fail): a
    failure to reach a shard is logged, not raised, since the step itself stands and its
    news stays in the outbox for the next settle or ``recover``."""
    try:
        settle(b, shards, now)
    except (BackendUnavailable, redis.RedisError) as exc:
        log.warning("dependents not told yet (recover will): %s", exc)


def forget(b: ShardedBackend, ids: Sequence[str]) -> None:
    """Drop the coordination records of ``ids`` (cancelled, failed: they wait no more)."""
    if b.crossing is not None:
        b.crossing.undepend(ids)


def sweep(b: ShardedBackend, now: float) -> None:
    """Mend what a process that died mid-way left: every outbox settled, and recorded
    dependents that no longer wait dropped (see the module docstring)."""
    settle(b, range(len(b.shards)), now)
    if b.crossing is None:
        return
    found = b.crossing.dependents()
    if not found:
        return
    recs = b.get_many([InvocationId(id) for id, _ in found])
    stale = [
        id
        for (id, at), rec in zip(found, recs, strict=True)
        if (rec is None and at < now - b.crossing.grace)
        or (rec is not None and rec.status is not Status.WAITING_DEPENDENCIES)
    ]
    b.crossing.undepend(stale)


__all__ = ["BATCH", "deliver", "forget", "prepare", "registered", "settle", "settle_after", "sweep"]
