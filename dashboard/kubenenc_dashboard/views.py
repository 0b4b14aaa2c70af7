"""What each page shows, read from the backend (plain data for the templates).

Every read is bounded: counts come from the backend's counters, lists from one page of
:meth:`~kubenenc.backends.browse.Browse.browse`, the graph from one invocation's relations
and one ``get_many`` of its neighbours (at most ``graph.MAX_ROW`` per row).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kubenenc.backends.browse import Browse, InvocationFilter, InvocationPage, Relations
from kubenenc.backends.contract import Backend
from kubenenc.errors import CycleDetectedError
from kubenenc.ids import InvocationId
from kubenenc.records import InvocationRecord, WorkerInfo
from kubenenc.scope import pool_of, scope_of
from kubenenc.status import Status

from kubenenc_dashboard import graph

STATUSES = list(Status)
CYCLE_ERROR = f"{CycleDetectedError.__module__}.{CycleDetectedError.__qualname__}"
ACTIVITY_BUCKETS, ACTIVITY_WIDTH = 60, 60.0
"""The overview's chart: the last hour, a bar per minute."""
PAGE_READS = 8
"""Browse calls one page of the list makes at most (see :func:`invocations`)."""
PAGE_TIME = 0.08
"""Seconds after which a page makes no further browse call (it shows what it found)."""


@dataclass(slots=True)
class Overview:
    """The overview page."""

    counts: dict[Status, int]
    total: int
    by_task: list[tuple[str, dict[Status, int], int]]
    chart: str
    finished_hour: int
    failed_hour: int
    estimated: bool
    workers: list[WorkerInfo]
    pools: list[dict[str, Any]]


def overview(backend: Backend, app: str | None, now: float, activity: bool = True) -> Overview:
    """Counts by status and task, the last hour's activity (unless ``activity`` is False:
    the workers page), workers and pools."""
    by_task_raw = backend.counts_by_task(app=app)
    counts: dict[Status, int] = {}
    by_task = []
    for task, by_status in sorted(by_task_raw.items()):
        row = {s: int(n) for s, n in by_status.items() if n}
        for s, n in row.items():
            counts[s] = counts.get(s, 0) + n
        by_task.append((task, row, sum(row.values())))
    buckets = (
        _browse(backend).activity(
            since=now - ACTIVITY_BUCKETS * ACTIVITY_WIDTH, width=ACTIVITY_WIDTH,
            buckets=ACTIVITY_BUCKETS, app=app,
        )
        if activity
        else []
    )  # fmt: skip
    bars = [(b.finished, b.failed) for b in buckets]
    estimated = any(b.estimated for b in buckets)
    live = sorted(backend.workers(), key=lambda w: (w.pool, w.id))
    pools: dict[str, dict[str, Any]] = {}
    for w in live:
        # "name" is the stored queue (``scope:pool``, what filters match); people are shown
        # the app (its scope) and the pool name they gave.
        p = pools.setdefault(w.pool, {"name": w.pool, "app": scope_of(w.pool),
                                      "pool": pool_of(w.pool), "workers": 0, "slots": 0,
                                      "running": 0, "paused": 0})  # fmt: skip
        p["workers"] += 1
        p["slots"] += w.slots
        p["running"] += w.running
        p["paused"] += w.paused
    for name, p in pools.items():
        p["pending"] = int(backend.counts(app=app, pool=name).get(Status.PENDING, 0))
    return Overview(
        counts=counts, total=sum(counts.values()), by_task=by_task,
        chart=graph.bars_svg(bars, estimated), finished_hour=sum(b[0] for b in bars),
        failed_hour=sum(b[1] for b in bars), estimated=estimated, workers=live,
        pools=sorted(pools.values(), key=lambda p: str(p["name"])),
    )  # fmt: skip


def _browse(backend: Backend) -> Browse:
    if not isinstance(backend, Browse):
        raise TypeError(
            f"the {type(backend).__name__} backend offers no browse queries "
            "(kubenenc.backends.browse.Browse), which the dashboard needs"
        )
    return backend


def invocations(
    backend: Backend, where: InvocationFilter, cursor: str | None, limit: int, budget: int
) -> InvocationPage:
    """One page of the filtered list: up to :data:`PAGE_READS` browse calls (none after
    :data:`PAGE_TIME`), so that a filter matching little still fills a page when the
    matches are near, and the page stays bounded when they are not."""
    browse = _browse(backend)
    items: list[InvocationRecord] = []
    scanned = 0
    deadline = time.monotonic() + PAGE_TIME
    for _ in range(PAGE_READS):
        page = browse.browse(where, cursor=cursor, limit=limit - len(items), budget=budget)
        items.extend(page.items)
        scanned += page.scanned
        cursor = page.next
        if len(items) >= limit or cursor is None or time.monotonic() > deadline:
            break
    return InvocationPage(items, cursor, scanned)


@dataclass(slots=True)
class Detail:
    """One invocation's page."""

    rec: InvocationRecord
    relations: Relations
    graph: str
    loop: list[str] = field(default_factory=list)
    loop_svg: str = ""
    neighbours: dict[InvocationId, InvocationRecord | None] = field(default_factory=dict)


def detail(backend: Backend, id: InvocationId) -> Detail | None:
    """Everything about one invocation, with its neighbourhood drawn."""
    rec = backend.get(id)
    rel = _browse(backend).relations(id, limit=graph.MAX_ROW)
    if rec is None or rel is None:
        return None
    above_ids = list(dict.fromkeys([*([rel.parent] if rel.parent else []), *rel.waited_by]))
    below_ids = list(dict.fromkeys([*rel.waits_on, *rel.children, *rel.depends_on]))
    above_ids, below_ids = above_ids[: graph.MAX_ROW], below_ids[: graph.MAX_ROW]
    ids = [*above_ids, *below_ids]
    found = dict(zip(ids, backend.get_many(ids), strict=True))
    edges = [graph.Edge(rel.parent, id, "call")] if rel.parent else []
    edges += [graph.Edge(w, id, "wait") for w in rel.waited_by]
    edges += [graph.Edge(id, c, "call") for c in rel.children if c not in rel.waits_on]
    edges += [graph.Edge(id, t, "wait") for t in rel.waits_on]
    edges += [graph.Edge(id, d, "wait") for d in rel.depends_on]
    svg = graph.neighbourhood_svg(
        graph.node_of(rec, id),
        [graph.node_of(found[i], i) for i in above_ids],
        [graph.node_of(found[i], i) for i in below_ids],
        edges,
        more_below=len(rel.children) - len(below_ids) if rel.more_children else 0,
    )
    out = Detail(rec, rel, svg, neighbours=found)
    if rec.error is not None and rec.error.type == CYCLE_ERROR:
        out.loop = graph.loop_lines(rec.error.message)
        out.loop_svg = graph.loop_svg(out.loop)
    return out


def fingerprint(backend: Backend, app: str | None) -> str:
    """A short text that changes whenever counts or workers change (what live pages poll)."""
    counts = backend.counts_by_task(app=app)
    parts = sorted(f"{t}:{s}:{n}" for t, by in counts.items() for s, n in by.items())
    workers = sorted(f"{w.id}:{w.running}:{w.paused}" for w in backend.workers())
    return str(hash((tuple(parts), tuple(workers))))


def ago(at: float, now: float | None = None) -> str:
    """``3.2 s ago`` style text."""
    delta = (time.time() if now is None else now) - at
    if delta < 60:
        return f"{delta:.1f} s ago"
    if delta < 3600:
        return f"{delta / 60:.0f} min ago"
    return f"{delta / 3600:.1f} h ago"


def stamp(at: float) -> str:
    """UTC time of day with milliseconds."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}"
