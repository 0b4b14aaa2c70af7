"""Waits across shards: the cycle check and the wait edges of a sharded app, kept in one
coordination slot.

On one shard, ``pause.lua`` walks the wait graph and writes the edges in the same script
that pauses the waiter, so two pauses that would close a loop are serialized by the server
and the second one sees the first one's edge. Once waiter and waited-on can live on
different shards no single script can see the whole graph. So with more than one shard
*every* pause (same-shard ones too: a loop can mix both kinds) is two steps:

1. **Coordination slot** (``{prefix:c}``, keys in :func:`kubenenc_redis.keys.coordination_prefix`):
   one script walks the waiters recorded there upward from the waiter, exactly as
   ``pause.lua`` does (ids and call keys, ``kubenenc.waitgraph.find_loop``), and either
   refuses (nothing written) or writes the waiter's edges and its node (call key, display,
   time, shard). This is the point where concurrent pauses are ordered.
2. **The waiter's shard** (``shard_pause.lua``): checks the waiter is still RUNNING on the
   worker, writes the edges to its targets on that shard (waiter counts, so they are
   claimed first), releases its running slot and moves it to PAUSED. If the waiter is gone,
   its coordination edges are dropped again.

Why this is correct. *No missed loop*: a loop needs every one of its waiters paused, and each
pause wrote its edges in the coordination slot (step 1) *before* its waiter's status changed
(step 2); the slot runs one script at a time, so of two pauses closing a loop the second one
to run step 1 sees the first one's edges and is refused: exactly one is refused, whatever
the interleaving of the step-2 halves. The edges stay until the waiter is resumed (dropped
after the shard resumed it) or the sweep finds it no longer waiting, so an edge of a PAUSED
waiter is always present. *No lasting false loop*: an edge can outlive its wait only (a)
between a step 1 and a failed step 2 (dropped at once), (b) when the process died between
the two steps, or (c) when the waiter was cancelled, failed or handed back while paused.
``recover`` (run by the enforcer every few seconds) mends these: it drops the edges of each
recorded waiter whose record is gone or final (final is absorbing, so no pause of it can be
in flight), and of one that is not PAUSED once its edges are older than ``GRACE`` (longer
than a pause's own retries, so a pause half-done in a live process is never undone). Until
then a stale edge can only refuse a wait conservatively, never let a loop through.
*Resume*: a waiter resumes only when every target recorded in the coordination slot is
final (read from their shards; final never changes back, so the check cannot go stale),
then through its shard's resume (local targets and the running limit checked atomically
there).

Declared dependencies (``depends_on``) are part of the walk: a dependent is recorded here
(``C:dp``/``C:dd``/``C:dn``) before it is registered and dropped once it no longer waits
(see :mod:`kubenenc_redis.depending`), and the walk goes from a node to its paused waiters
and then to its waiting dependents (matched by id only), as the single server's
``pause.lua`` does; both run ``lua/lib_walk.lua``'s ``find_loop``. A target on another
shard gets its waiter count (claim order) from ``shard_boost`` after the pause.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import redis

from kubenenc_redis.cluster import Shard
from kubenenc_redis.keys import coord_key, coord_lua
from kubenenc_redis.scripts import lua_file


def _script(name: str, *shared: str, coord: Sequence[str] = ()) -> tuple[str, str]:
    """The source of ``lua_coord/<name>.lua`` after the ``lua/`` files ``shared`` (key-free
    libraries it shares with the shards' steps) and the ``lua_coord/`` files ``coord``
    (libraries of the coordination scripts), and its script id."""
    text = "".join(lua_file(n) for n in shared)
    folder = files(__package__).joinpath("lua_coord")
    text += "".join(folder.joinpath(f"{n}.lua").read_text(encoding="utf-8") for n in (*coord, name))
    source = coord_lua(text)
    return source, hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis' script id


PAUSE = _script("pause", "lib_walk")
DROP = _script("drop", coord=["lib_forget"])
DEPEND = _script("depend")
UNDEPEND = _script("undepend", coord=["lib_forget"])
GRACE_EXTRA = 60.0
"""Seconds added to the backend's ``retry_for`` to make ``GRACE``."""


class Coordination:
    """The coordination slot of one sharded app (on whichever master serves it)."""

    def __init__(self, slot: Shard) -> None:
        self.slot = slot
        self.grace = slot.retry_for + GRACE_EXTRA
        """Seconds a recorded waiter that is not PAUSED keeps its edges (see above)."""

    def _eval(self, what: str, script: tuple[str, str], args: Sequence[str | int]) -> Any:
        source, sha = script
        slot = self.slot

        def call() -> Any:
            try:
                return slot._caller.link.call("EVALSHA", sha, 1, slot._p, *args)
            except redis.exceptions.NoScriptError:
                return slot._caller.link.call("EVAL", source, 1, slot._p, *args)

        return slot._caller.retrying(what, call)

    def pause(
        self, id: str, call_key: str, display: str, shard: int, now: float, max_nodes: int,
        targets: Sequence[tuple[str, str, str]],
    ) -> tuple[str | None, bool, list[str]]:  # fmt: skip
        """Step 1: ``(None, False, [])`` when the edges were written; else the target that
        closes the loop, whether it is in the chain, and the loop's lines."""
        args: list[str | int] = [id, call_key, display, repr(now), shard, max_nodes]
        for t in targets:
            args.extend(t)
        reply = self._eval("pause", PAUSE, args)
        if reply[0] == "ok":
            return None, False, []
        return str(reply[1]), reply[2] == "1", [str(x) for x in reply[3:]]

    def drop(self, ids: Sequence[str]) -> int:
        """Forget the edges of waiters ``ids``."""
        if not ids:
            return 0
        return int(self._eval("drop", DROP, list(ids)))

    def depend(self, id: str, display: str, now: float, deps: Sequence[str]) -> None:
        """Record dependent ``id`` and what it declared it depends on (before it is
        registered: see :mod:`kubenenc_redis.depending`)."""
        self._eval("depend", DEPEND, [id, display, repr(now), *deps])

    def undepend(self, ids: Sequence[str]) -> int:
        """Forget dependents ``ids`` (no longer waiting on their dependencies)."""
        if not ids:
            return 0
        return int(self._eval("undepend", UNDEPEND, list(dict.fromkeys(ids))))

    def dependents(self, limit: int = 1000) -> list[tuple[str, float]]:
        """The recorded dependents, oldest first: id, when written."""
        slot = self.slot
        key = coord_key(slot._p, "K_DEPENDENTS")

        def read() -> list[tuple[str, float]]:
            found: list[Any] = slot._r.zrange(key, 0, limit - 1, withscores=True)
            return [(str(id), float(at)) for id, at in found]

        return slot._caller.retrying("dependents", read)

    def targets(self, ids: Sequence[str]) -> list[list[str]]:
        """What each of ``ids`` waits on, as recorded here."""
        slot = self.slot

        def read() -> list[Any]:
            pipe = slot._r.pipeline(transaction=False)
            for id in ids:
                pipe.smembers(coord_key(slot._p, "k_tg", id))
            return pipe.execute()

        return [sorted(s) for s in slot._caller.retrying("waits", read)]

    def waiters(self, limit: int = 1000) -> list[tuple[str, float, int]]:
        """The recorded waiters, oldest first: id, when written, shard. A waiter dropped
        between the two reads (resumed meanwhile: its node is gone) is left out, not given
        shard 0: the sweep remembers these shards, and a wrong one sent the waiter's finish
        to a shard without it (tests/rediscluster/test_sweep_race.py)."""
        slot = self.slot

        def read() -> list[tuple[str, float, int]]:
            key = coord_key(slot._p, "K_WAITERS")
            found: list[Any] = slot._r.zrange(key, 0, limit - 1, withscores=True)
            pipe = slot._r.pipeline(transaction=False)
            for id, _ in found:
                pipe.hget(coord_key(slot._p, "k_node", str(id)), "sh")
            shards = pipe.execute()
            return [
                (str(id), float(at), int(sh))
                for (id, at), sh in zip(found, shards, strict=True)
                if sh is not None
            ]

        return slot._caller.retrying("waiters", read)


__all__ = ["DEPEND", "DROP", "GRACE_EXTRA", "PAUSE", "UNDEPEND", "Coordination"]
