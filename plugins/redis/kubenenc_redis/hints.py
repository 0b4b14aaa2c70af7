"""Head hints: what one process believes is at the head of each shard's queue, per pool,
so that a claim over shards is usually one script call on one shard.

A sharded claim (:meth:`kubenenc_redis.shards.ShardedBackend.claim`) needs to know which
shard holds the best waiting call (queue members sort in claim order, and sequences compare
across shards). Reading every shard's head before every claim costs N calls; instead the
process keeps, per pool and shard, a *hint*: the best member it knows in that shard's queue
(or that the queue is empty), and the earliest ``not_before`` of its delayed calls. Hints
are learned where they cost nothing more:

- from every claim on a shard: the claim script reads the queue's head and first delayed
  call after claiming, in the same atomic step (``lua/claim.lua``);
- from this process's own registrations: a new call's member is computed from its priority
  and its sequence floor (:func:`queue_member`); the shard may give it a higher sequence,
  never a lower one, so the hint is at least as good as the truth (optimistic);
- from head reads, when a claim reads every shard's head (see below).

A hint is *unknown* (and the claim reads the heads) when the process has no reading of it
yet, when a delayed call there fell due, or after a step of this process that may have put
calls in that shard's queue which it cannot compute (a finish that reported a retry,
hand-back, callback or a parked call let go; a cancel, pause, resume, recovery, boost or
settle there; a wake-up read from that shard's wake list).

What a stale hint can do: calls another process put in a shard's queue (or moved forward
there) since this process last read that shard are unknown to it. A hint too good (the
head was claimed by another process) only makes a claim take less: its bound stops it
early, it comes back short, and a short claim reads every head. A hint too poor lets this
process claim on another shard a call that the unknown head outranks. That is bounded:
all hints of a pool are read again after :data:`REFRESH_CLAIMS` claims on hints, or
:data:`HINT_AGE` seconds after the last reading, so no shard's calls are passed over for
longer (no shard starves).
"""

from __future__ import annotations

import dataclasses
import threading
import time

REFRESH_CLAIMS = 64
"""Claims made on hints after which a pool's hints are read again (the starvation bound,
in claims of this process)."""
HINT_AGE = 1.0
"""Seconds after which a pool's hints are read again (the starvation bound in time)."""

Head = tuple[str | None, float | None]
"""A shard's queue as a claim or a head read saw it: its best member (None: empty) and
the earliest ``not_before`` of its delayed calls (None: none)."""


def queue_member(priority: int, seq: int, id: str, waiters: int = 0) -> str:
    """The queue member of a PENDING call (``member`` in ``lua/lib.lua``, the format in
    :mod:`kubenenc_redis.keys`): more waiters, then higher priority, then older first."""
    wt = min(max(waiters, 0), 99_999_999)
    pr = max(min(priority, 400_000_000_000), -400_000_000_000)
    return f"{99_999_999 - wt:08d}{500_000_000_000 - pr:012d}{seq:015d}{id}"


@dataclasses.dataclass
class _Pool:
    """One pool's hints: per shard the best member (None: empty), whether it is known,
    and the earliest delayed ``not_before``."""

    head: list[str | None]
    known: list[bool]
    due: list[float | None]
    fast: int = 0
    """Claims made on these hints since the last reading."""
    read_at: float = float("-inf")
    """``time.monotonic()`` of the last reading of every shard."""


class Hints:
    """The head hints of one process over ``n`` shards, every pool (thread-safe)."""

    def __init__(self, n: int) -> None:
        self._n = n
        self._pools: dict[str, _Pool] = {}
        self._lock = threading.Lock()

    def _pool(self, pool: str) -> _Pool:
        found = self._pools.get(pool)
        if found is None:
            n = self._n
            found = self._pools[pool] = _Pool([None] * n, [False] * n, [None] * n)
        return found

    def pick(self, pool: str, now: float, only: int | None = None) -> tuple[int, str | None] | None:
        """The shard to claim on first and the bound to pass (the best hint of the other
        shards), or None when the hints do not tell and every head must be read: they are
        due a reading (:data:`REFRESH_CLAIMS`, :data:`HINT_AGE`), more than one shard is
        unknown, or every queue is believed empty. One unknown shard is picked itself
        (bounded by the others), since its claim reports its head anyway. With ``only``:
        None (and no claim counted) unless the pick is shard ``only``."""
        with self._lock:
            h = self._pools.get(pool)
            if h is None or h.fast >= REFRESH_CLAIMS or time.monotonic() - h.read_at > HINT_AGE:
                return None
            unknown = [
                i for i in range(self._n)
                if not h.known[i] or ((d := h.due[i]) is not None and d <= now)
            ]  # fmt: skip
            if len(unknown) > 1:
                return None
            ranked = sorted(
                (m, i) for i in range(self._n) if i not in unknown and (m := h.head[i]) is not None
            )
            if unknown:
                pick, bound = unknown[0], (ranked[0][0] if ranked else None)
            elif ranked:
                pick, bound = ranked[0][1], (ranked[1][0] if len(ranked) > 1 else None)
            else:
                return None
            if only is not None and pick != only:
                return None
            h.fast += 1
            return pick, bound

    def seen(self, pool: str, shard: int, head: Head | None) -> None:
        """What a claim on ``shard`` reported (None: nothing, it was a replay)."""
        with self._lock:
            h = self._pool(pool)
            if head is None:
                h.known[shard] = False
            else:
                h.head[shard], h.due[shard] = head
                h.known[shard] = True

    def read(self, pool: str, heads: dict[int, Head]) -> None:
        """A reading of every shard's head (``heads`` has every shard)."""
        with self._lock:
            h = self._pool(pool)
            for i, (head, due) in heads.items():
                h.head[i], h.due[i], h.known[i] = head, due, True
            h.fast = 0
            h.read_at = time.monotonic()

    def registered(self, pool: str, shard: int, member: str) -> None:
        """This process put a call with queue member ``member`` on ``shard``."""
        with self._lock:
            h = self._pools.get(pool)
            if h is not None and h.known[shard]:
                old = h.head[shard]
                h.head[shard] = member if old is None else min(old, member)

    def delayed(self, pool: str, shard: int, due: float) -> None:
        """This process put a call not due before ``due`` on ``shard``."""
        with self._lock:
            h = self._pools.get(pool)
            if h is not None and h.known[shard]:
                old = h.due[shard]
                h.due[shard] = due if old is None else min(old, due)

    def forget(self, shard: int, pool: str | None = None) -> None:
        """``shard``'s queue of ``pool`` (None: of every pool) may have changed in a way
        this process cannot compute: unknown until the next claim there or reading."""
        with self._lock:
            for name, h in self._pools.items():
                if pool is None or name == pool:
                    h.known[shard] = False

    def forget_all(self) -> None:
        """Every shard's queues may have changed (news delivered to dependents)."""
        for i in range(self._n):
            self.forget(i)


__all__ = ["HINT_AGE", "REFRESH_CLAIMS", "Head", "Hints", "queue_member"]
