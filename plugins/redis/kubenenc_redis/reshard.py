"""Changing N: move a sharded app's data (``redis+cluster://``) from N shards to M.

``kubenenc reshard --backend URL --to M`` runs :func:`reshard`. Where a call lives is a
function of N (:mod:`kubenenc_redis.shards`), so every stored invocation whose home under M
is another shard is moved there; everything else that a shard keeps is carried over or,
when it only lives while workers run, dropped. The steps, in order:

1. **Refuse while workers live.** A worker that beat within ``quiet`` seconds (default 60)
   could claim or finish on the old layout while its calls move: the reshard stops and says
   to stop the app's workers (scale its WorkerPools to 0) and its callers first. This is
   checked again on every resume.
2. **Mark the reshard** in the layout record (``to`` = M, ``run`` = a new id; see
   :mod:`kubenenc_redis.layout`): from here until step 7 every process that opens the data,
   with either N, is refused and told to finish the reshard.
3. **Hand back what dead workers held** (``release_unheld`` with nothing held, on each old
   shard: each call counted ``lost`` once, as recovery would), so no call is RUNNING or
   PAUSED, no running slot is held; the wait edges in the coordination slot are dropped
   (and counted off their targets). **The outboxes of declared dependencies across
   shards are delivered** (:func:`kubenenc_redis.depending.deliver`, as ``recover``
   does; a cascade too): their entries name dependents' shards by number under N, and
   nothing ends after this (no worker or caller runs), so they stay empty from here on
   and no news naming an old shard number is left. Then **close the old shards
   that the new layout does not have** to registrations (their sequence counter set to
   text: a caller still connected with the old N gets a ConfigurationError from then on,
   instead of writing calls where no one looks; kept after they are retired).
4. **Homes under M**, computed once for every invocation on the old and the new shards by
   the registration rule of :meth:`ShardedBackend._route` (the concurrency key's home,
   else the first dependency's, else the parent's, else the id's: a free call that its
   registration put on its batch's shard moves to its id's home, which locates as well),
   following parents and dependencies to their roots. The status, display and declared
   dependencies of each are kept for step 5's end, and what each waiting dependent knows
   (``P:xst``).
5. **Move, a batch at a time** (``batch`` invocations, per old shard, as ``ZSCAN`` of its
   index returns them):
   read them (``move_read.lua``), write them on their new shards (``move_in.lua``: record,
   TTL, queue place, indexes, children index, registration key, edge sets, counter, the
   sequence counter raised past theirs; a call whose sequence a call there has already,
   as calls registered at one time on two old shards by two processes can, gets the next
   free one and its queue member to match, so each shard's sequences stay one per call and
   browsing pages by them skips none), then delete them from the old shard
   (``move_out.lua``: the same, counter lowered). Each script is atomic on its shard and
   idempotent per invocation (``move_in`` skips one already there, ``move_out`` one already
   gone), and ``move_out`` runs only after ``move_in`` succeeded, so a crash (``kill -9``)
   anywhere leaves every invocation on its old shard, its new one, or both, each counted on
   the shards that hold it: the resumed run finds those on old shards and finishes their
   moves, and nothing is lost or counted twice. An invocation whose home is its own shard
   (the same prefix in both layouts) is not touched. ``move_out`` deletes the
   dependency edges kept per invocation too (``P:xdep``, ``P:xst``); then **the edges are
   written anew for M** (``move_edges.lua``, per shard, each set replaced whole, so a
   repeat writes the same) from what step 4 read, which nothing changes meanwhile: for
   each open dependency with dependents still waiting, those dependents with their shard
   numbers under M in ``P:xdep`` (M > 1) or in the single-server ``P:dep`` (M = 1); for
   each waiting dependent (M > 1), ``P:xst`` (each dependency ``open``, or its final
   status and display; one whose record is gone keeps what the dependent knew, else
   ``missing``) and its record in the coordination slot; every other recorded dependent
   leaves the slot. A crash before this step ends is mended by running it again.
6. **Retire the old shards** that are not shards of the new layout: their remaining
   counters (invocations already expired or purged, still counted) are added to new shard
   0 once (``merge_counts.lua`` remembers ``run:prefix``), their policies copied to new
   shard 0, their schedules' last ticks to every new shard (the highest tick wins, as
   ``last_tick`` reads), then their keys deleted (what is left: heartbeats, reply cache,
   wake lists, rate-limit windows: a rate-limited key starts a fresh window).
7. **Record M** (``shards`` = M, ``to`` and ``run`` deleted): the data opens with
   ``shards=M`` only.

Resume: run the same command again (any step may be repeated; a run interrupted before
step 7 is refused to everyone else until then). A run that finds ``to`` set to another M
refuses and names it.

Dependencies across shards stay exact: nothing ends while the reshard runs, so every
dependent waits on exactly the open dependencies its record names, and step 5's end
writes each such edge where the layout under M looks for it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis
from kubenenc.errors import ConfigurationError
from kubenenc.status import FINAL, Status

from kubenenc_redis import depending
from kubenenc_redis.cluster import ClusterURL, Shard, SlotMap, parse_cluster_url
from kubenenc_redis.crossing import Coordination
from kubenenc_redis.depending import MISSING, OPEN
from kubenenc_redis.keys import US, coordination_prefix, shard_prefix
from kubenenc_redis.layout import RUN, SHARDS, TO, read_layout, write_layout
from kubenenc_redis.shards import _crc, _key_home

T = TypeVar("T")

QUIET = 60.0
"""Seconds without a heartbeat after which a worker counts as stopped."""
BATCH = 500
"""Invocations read, written and deleted per step."""
SCAN = 1000
WAITING = Status.WAITING_DEPENDENCIES.value
FINAL_NAMES = frozenset(s.value for s in FINAL)
TOMBSTONE = "resharded"
"""The sequence counter of a shard the data left (see ``_tombstone``)."""


@dataclasses.dataclass
class Report:
    """What a reshard did."""

    before: int
    after: int
    moved: int = 0
    kept: int = 0
    handed_back: int = 0
    retired: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Info:
    """What the dependency edges of one invocation are written from."""

    status: str
    display: str
    deps: tuple[str, ...]
    dependents: bool


@dataclasses.dataclass(frozen=True)
class _Route:
    key: str | None
    deps: tuple[str, ...]
    parent: str | None


def reshard(
    url: str, to: int, *, quiet: float = QUIET, max_lost: int = 3, batch: int = BATCH,
    progress: Callable[[str], None] = lambda line: None,
) -> Report:  # fmt: skip
    """Move the data of the sharded app at ``url`` to ``to`` shards (see the module
    docstring); resumes an interrupted run. ``url``'s ``shards`` is used only when the data
    has no layout record yet. ConfigurationError when workers are live or another reshard
    is under way."""
    parsed = parse_cluster_url(url)
    if not 1 <= to <= 1024:
        raise ConfigurationError(f"--to {to}: the number of shards must be from 1 to 1024")
    slots = SlotMap(parsed)
    try:
        return _Reshard(parsed, slots, to, quiet, max_lost, batch, progress).run()
    finally:
        slots.close()


class _Reshard:
    def __init__(
        self, url: ClusterURL, slots: SlotMap, to: int, quiet: float, max_lost: int,
        batch: int, progress: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.url, self.slots, self.to = url, slots, to
        self.quiet, self.max_lost, self.batch, self.say = quiet, max_lost, batch, progress
        self._open: dict[str, Shard] = {}
        self._info: dict[str, _Info] = {}
        self._known: dict[str, dict[str, str]] = {}

    def shard(self, prefix: str) -> Shard:
        if prefix not in self._open:
            self._open[prefix] = Shard(self.url, self.slots, prefix)
        return self._open[prefix]

    def run(self) -> Report:
        p = self.url.prefix
        meta = read_layout(self.slots, p)
        before = int(meta.get(SHARDS, self.url.shards))
        if TO in meta and meta[TO] != str(self.to):
            raise ConfigurationError(
                f"a reshard of {p!r} from {before} to {meta[TO]} shards is under way or was "
                f"interrupted: finish it first (--to {meta[TO]})"
            )
        try:
            old = [shard_prefix(p, i, before) for i in range(before)]
            new = [shard_prefix(p, j, self.to) for j in range(self.to)]
            self._refuse_live_workers(old)
            run = meta.get(RUN) or uuid.uuid4().hex[:12]
            write_layout(self.slots, p, {SHARDS: str(before), TO: str(self.to), RUN: run})
            if TO in meta:
                self.say(f"resuming the reshard of {p!r} from {before} to {self.to} shards")
            report = Report(before, self.to)
            for dest in new:  # a shard retired by an earlier reshard may be one again
                self._tombstone(dest, False)
            report.handed_back = self._hand_back(old)
            self._settle(old)
            for src in old:
                if src not in new:
                    self._tombstone(src, True)
            homes = self._homes(list(dict.fromkeys([*old, *new])))
            for i, src in enumerate(old):
                self._move_out_of(src, i, before, new, homes, report)
            self._edges(new, homes)
            for src in old:
                if src not in new:
                    self._retire(src, new, run)
                    report.retired.append(src)
            write_layout(self.slots, p, {SHARDS: str(self.to)}, drop=(TO, RUN))
        finally:
            for shard in self._open.values():
                shard.close()
        self.say(f"done: {report.moved} moved, {report.kept} stayed; {p!r} is on {self.to} "
                 f"shards (use shards={self.to} in its URL)")  # fmt: skip
        return report

    # -- 1 and 3 ---------------------------------------------------------------------------

    def _refuse_live_workers(self, old: Sequence[str]) -> None:
        first = self.shard(old[0])
        now = max(time.time(), _server_time(first))
        live = [w for w in first.workers() if w.at > now - self.quiet]
        if live:
            names = ", ".join(sorted(str(w.id) for w in live)[:5])
            raise ConfigurationError(
                f"{len(live)} worker(s) of this app beat in the last {self.quiet:.0f} s "
                f"({names}): stop every worker first (scale its WorkerPools to 0 and wait "
                "until `kubenenc status` lists none), and every process that calls its tasks; "
                "then run the reshard again"
            )

    def _hand_back(self, old: Sequence[str]) -> int:
        n = 0
        for prefix in old:
            shard = self.shard(prefix)
            holders = shard._caller.retrying(
                "holders",
                lambda s=shard: s._r.smembers(s._keys.fixed("K_HOLDERS")),  # type: ignore[misc]
            )
            for worker in sorted(holders):
                n += len(shard.release_unheld(worker, (), time.time(), self.max_lost))
        if n:
            self.say(f"handed back {n} invocation(s) held by stopped workers")
        if len(old) > 1:
            self._drop_waits(old)
        return n

    # -- 4 ---------------------------------------------------------------------------------

    def _homes(self, prefixes: Sequence[str]) -> dict[str, int]:
        routes: dict[str, _Route] = {}
        for prefix in prefixes:
            shard = self.shard(prefix)
            for ids in self._ids(shard):
                rows = _pipelined(shard, [("hmget", shard._keys.per("k_inv", i), "s", "rk",
                                           "tk", "gk", "dn", "pa", "dp", "hd")
                                          for i in ids])  # fmt: skip
                waiting: list[str] = []
                for id, (s, rk, tk, gk, dn, pa, dp, hd) in zip(ids, rows, strict=True):
                    if s is None:
                        continue  # expired between the reads
                    deps = tuple(d for d in (dn or "").split(",") if d)
                    routes[id] = _Route(rk or tk or gk or None, deps, pa or None)
                    self._info[id] = _Info(s, dp or "", deps, bool(hd))
                    if s == WAITING:
                        waiting.append(id)
                known = _pipelined(shard, [("hgetall", shard._keys.per("k_xst", i))
                                           for i in waiting])  # fmt: skip
                for id, got in zip(waiting, known, strict=True):
                    self._known.setdefault(id, {}).update(got)
        return _resolve(routes, self.to)

    def _ids(self, shard: Shard) -> Iterable[list[str]]:
        """Every id in ``shard``'s index, a batch at a time (``ZSCAN``: every id there from
        start to end is returned, whatever is deleted meanwhile; one returned twice is
        given once). Not paged by sequence: data merged by an earlier version (before
        ``move_in`` gave a moved call whose sequence was taken the next free one) can
        hold calls sharing a sequence, and a page boundary between two would skip one."""
        key = shard._keys.fixed("K_IX")
        seen: set[str] = set()
        cursor = 0
        while True:
            cursor, found = _on(shard, lambda r, at=cursor: r.zscan(key, at, count=self.batch))  # type: ignore[misc]
            ids = [i for i in (str(m) for m, _ in found) if i not in seen]
            seen.update(ids)
            for k in range(0, len(ids), self.batch):
                yield ids[k : k + self.batch]
            if cursor == 0:
                return

    # -- 5 ---------------------------------------------------------------------------------

    def _move_out_of(
        self, src: str, i: int, before: int, new: Sequence[str], homes: dict[str, int],
        report: Report,
    ) -> None:  # fmt: skip
        shard = self.shard(src)
        total = int(
            shard._caller.retrying("reshard", lambda: shard._r.zcard(shard._keys.fixed("K_IX")))
        )
        seen = 0
        for ids in self._ids(shard):
            reply, _ = shard._caller.run("move_read", time.time(), *ids)
            items = json.loads(reply)
            groups: dict[str, list[dict[str, Any]]] = {}
            for item in items:
                dest = new[homes.get(item["id"], _crc(item["id"]) % len(new))]
                if dest == src:
                    report.kept += 1
                else:
                    groups.setdefault(dest, []).append(item)
            for dest, group in groups.items():
                self.shard(dest)._caller.run("move_in", time.time(), json.dumps(group))
                shard._caller.run("move_out", time.time(), *[g["id"] for g in group])
                report.moved += len(group)
            seen += len(ids)
            self.say(f"shard {i + 1}/{before}: {seen}/{total} read, {report.moved} moved so far")

    def _edges(self, new: Sequence[str], homes: dict[str, int]) -> None:
        """Step 5's end: write every declared-dependency edge as the layout under M keeps
        it (see the module docstring), on the shards that now hold its calls."""
        info, many = self._info, len(new) > 1
        waiting = sorted(i for i, x in info.items() if x.status == WAITING)
        of: dict[str, list[str]] = {}
        for d in waiting:
            for x in info[d].deps:
                if x in info and info[x].status not in FINAL_NAMES:
                    of.setdefault(x, []).append(d)
        edges: dict[int, dict[str, Any]] = {}
        for x, at in sorted(info.items()):
            if at.status in FINAL_NAMES or not (at.dependents or x in of):
                continue
            ds = sorted(set(of.get(x, [])))
            edge = {"dep": [] if many else ds,
                    "xdep": [f"{d}{US}{homes[d]}" for d in ds] if many else []}  # fmt: skip
            edges.setdefault(homes[x], {})[x] = edge
        marks = self._marks(waiting, homes) if many else {}
        crossing = Coordination(self.shard(coordination_prefix(self.url.prefix)))
        keep = set(waiting) if many else set()  # one shard does not read the slot
        crossing.undepend([i for i, _ in crossing.dependents(1 << 30) if i not in keep])
        for j in sorted(set(edges) | set(marks)):
            e, m = list(edges.get(j, {}).items()), list(marks.get(j, {}).items())
            for k in range(0, max(len(e), len(m)), self.batch):
                self.shard(new[j])._caller.run(
                    "move_edges", time.time(), json.dumps(dict(e[k : k + self.batch])),
                    json.dumps(dict(m[k : k + self.batch])),
                )  # fmt: skip
        if edges or marks:
            self.say(f"dependency edges written for {len(of)} dependency(ies)")

    def _marks(
        self, waiting: Sequence[str], homes: dict[str, int]
    ) -> dict[int, dict[str, list[str]]]:
        """What each waiting dependent knows of its dependencies (``P:xst``), by its shard
        under M, rebuilt from the records read (a dependency gone keeps what it knew), and
        each recorded in the coordination slot (``depend`` is idempotent): a layout of one
        shard kept neither."""
        info = self._info
        crossing = Coordination(self.shard(coordination_prefix(self.url.prefix)))
        marks: dict[int, dict[str, list[str]]] = {}
        for d in waiting:
            known = self._known.get(d, {})
            flat: list[str] = []
            for x in info[d].deps:
                s = info.get(x)
                if s is None:
                    news = known.get(x, MISSING)
                else:
                    news = f"{s.status}{US}{s.display}" if s.status in FINAL_NAMES else OPEN
                flat += [x, news]
            marks.setdefault(homes[d], {})[d] = flat
            crossing.depend(d, info[d].display, time.time(), info[d].deps)
        return marks

    def _settle(self, old: Sequence[str]) -> None:
        """Deliver the news of calls that ended in every old shard's outbox (as
        ``recover`` would), so no outbox entry names a shard number of the old layout;
        nothing ends after this (no worker or caller runs, and what was held is handed
        back), so the outboxes stay empty while the calls move."""
        crossing = Coordination(self.shard(coordination_prefix(self.url.prefix)))
        shards = [self.shard(prefix) for prefix in old]
        moved = depending.deliver(shards, crossing, range(len(old)), time.time())
        if moved:
            self.say(f"told {moved} dependent(s) that their dependencies ended")

    # -- 6 ---------------------------------------------------------------------------------

    def _retire(self, src: str, new: Sequence[str], run: str) -> None:
        shard = self.shard(src)
        keys = shard._keys
        counts, policies, ticks = _pipelined(shard, [
            ("hgetall", keys.fixed("K_COUNTS")), ("hgetall", keys.fixed("K_POLICIES")),
            ("hgetall", keys.fixed("K_TICKS")),
        ])  # fmt: skip
        first = self.shard(new[0])
        pairs = [x for field, n in sorted(counts.items()) for x in (field, n)]
        first._caller.run("merge_counts", time.time(), f"{run}:{src}", *pairs)
        if policies:
            first._caller.retrying(
                "reshard", lambda: first._r.hset(first._keys.fixed("K_POLICIES"), mapping=policies)
            )
        for dest in new:
            target = self.shard(dest)
            key = target._keys.fixed("K_TICKS")
            have: dict[Any, Any] = _on(target, lambda r, k=key: r.hgetall(k))  # type: ignore[misc]
            later = {s: v for s, v in ticks.items() if int(v) > int(have.get(s) or -1)}
            if later:
                _on(target, lambda r, k=key, m=later: r.hset(k, mapping=m))  # type: ignore[misc]
        self._clear(src)
        self._tombstone(src, True)
        self.say(f"retired old shard {src!r}")

    def _drop_waits(self, old: Sequence[str]) -> None:
        """Forget the wait edges recorded in the coordination slot (no call waits once
        what stopped workers held was handed back), and count each waiter off its targets
        on other shards, as :meth:`ShardedBackend._unwait` does (dropped first: a crash in
        between leaves a target counted once too often, which only orders claims, never
        counted off twice). What else that slot records is left alone."""
        crossing = Coordination(self.shard(coordination_prefix(self.url.prefix)))
        shards = [self.shard(prefix) for prefix in old]
        while found := crossing.waiters():
            ids = [id for id, _, _ in found]
            waits = crossing.targets(ids)
            crossing.drop(ids)
            remote: dict[int, list[str]] = {}
            for (_, _, home), targets in zip(found, waits, strict=True):
                for t, at in zip(targets, self._where(shards, targets), strict=True):
                    if at is not None and at != home:
                        remote.setdefault(at, []).append(t)
            for at, targets in remote.items():
                shards[at]._caller.run("shard_boost", time.time(), -1, *targets)

    @staticmethod
    def _where(shards: Sequence[Shard], ids: Sequence[str]) -> list[int | None]:
        """The old shard holding each of ``ids`` (None: none does)."""
        out: list[int | None] = [None] * len(ids)
        for i, shard in enumerate(shards):
            found = _pipelined(shard, [("exists", shard._keys.per("k_inv", t)) for t in ids])
            for k, there in enumerate(found):
                if there and out[k] is None:
                    out[k] = i
        return out

    def _tombstone(self, prefix: str, on: bool) -> None:
        """Make registering on shard ``prefix`` fail (``on``), or undo that. The shard's
        sequence counter is set to text, so the register step's ``INCRBY`` fails: a caller
        still connected with the old N is refused (the sharded backend turns that error
        into the layout record's message) instead of writing calls where no one looks,
        and the hot path pays nothing for the check."""
        shard = self.shard(prefix)
        key = shard._keys.fixed("K_SEQ")
        if on:
            _on(shard, lambda r: r.set(key, TOMBSTONE))
        elif _on(shard, lambda r: r.get(key)) == TOMBSTONE:
            _on(shard, lambda r: r.delete(key))

    def _clear(self, prefix: str) -> None:
        """Delete every key of ``prefix`` (its hash tag: one slot, one master)."""
        braced = "{" + prefix + "}"
        node = self.slots.node_of(braced)
        batch: list[str] = []
        for key in node.scan_iter(match=_glob(braced) + ":*", count=SCAN):
            batch.append(key)
            if len(batch) >= SCAN:
                node.delete(*batch)
                batch = []
        if batch:
            node.delete(*batch)


def _resolve(routes: dict[str, _Route], n: int) -> dict[str, int]:
    """The home under ``n`` shards of every id in ``routes``, by the registration rule of
    :meth:`kubenenc_redis.shards.ShardedBackend._route`; chains of parents and dependencies
    are followed iteratively (they may be deep)."""
    homes: dict[str, int] = {}
    for start in routes:
        path: list[str] = []
        at: str | None = start
        home: int | None = None
        while at is not None and home is None:
            if at in homes:
                home = homes[at]
                break
            route = routes.get(at)
            if route is None:  # gone: the link does not bind any more
                home = _crc(at) % n
                break
            path.append(at)
            up = None
            if route.key is not None:  # the key first, then dependencies, then the parent
                home = _key_home(route.key, n)
            else:
                up = next((d for d in route.deps if d in routes or d in homes), None)
            if home is not None:
                pass
            elif (
                up is None
                and route.parent is not None
                and (route.parent in routes or route.parent in homes)
            ):
                up = route.parent
            elif up is None:
                home = _crc(at) % n
            if up in path:  # a malformed loop of links: stop at the id
                home = _crc(at) % n
            at = up if home is None else None
        for id in path:
            homes[id] = home if home is not None else _crc(id) % n
    return homes


def _pipelined(shard: Shard, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    def read() -> list[Any]:
        pipe = shard._r.pipeline(transaction=False)
        for name, *args in commands:
            getattr(pipe, name)(*args)
        return pipe.execute()

    return shard._caller.retrying("reshard", read)


def _on(shard: Shard, command: Callable[[redis.Redis], T]) -> T:
    """``command`` on ``shard``'s client, retried while the server is unreachable."""
    return shard._caller.retrying("reshard", lambda: command(shard._r))


def _server_time(shard: Shard) -> float:
    secs, micros = shard._caller.retrying("reshard", shard._r.time)
    return float(secs) + micros / 1e6


def _glob(text: str) -> str:
    """``text`` with the glob characters of ``SCAN MATCH`` escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


__all__ = ["BATCH", "QUIET", "TOMBSTONE", "Report", "reshard"]
