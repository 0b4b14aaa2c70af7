"""Changing N: the layout record refuses a URL with another N, and ``kubenenc reshard``
moves every stored invocation, queue place, index, counter, policy and tick to the new
layout, refuses while workers live, and resumes after a crash (a ``kill -9`` mid run too)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubenenc.backends.browse import InvocationFilter
from kubenenc.errors import ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import Outcome, OutcomeKind, PauseKind, RegisterKind
from kubenenc.status import Status
from kubenenc.testing.helpers import beat, claim_ids, new
from kubenenc_redis.cluster import ShardCaller, parse_cluster_url
from kubenenc_redis.keys import shard_prefix
from kubenenc_redis.reshard import reshard
from kubenenc_redis.shards import ShardedBackend

from tests.rediscluster.placing import key_on, on_shard

ROOT = Path(__file__).resolve().parents[2]
W1, W2, DEAD = WorkerId("w-1"), WorkerId("w-2"), WorkerId("w-dead")
NOW = 100.0


def with_shards(url: str, n: int) -> str:
    head, _, query = url.partition("?")
    parts = [p for p in query.split("&") if not p.startswith("shards=")]
    return f"{head}?{'&'.join([*parts, f'shards={n}'])}"


@pytest.fixture
def url(rediscluster_caller_url: str) -> str:
    """3 shards, the caller's clock (a test's made-up beat times say who is live)."""
    return rediscluster_caller_url


@pytest.fixture
def opened() -> Iterator[list[ShardedBackend]]:
    backends: list[ShardedBackend] = []
    yield backends
    for b in backends:
        b.close()


def open_at(url: str, n: int, opened: list[ShardedBackend]) -> ShardedBackend:
    backend = ShardedBackend.from_url(with_shards(url, n))
    opened.append(backend)
    return backend


def populate(b: ShardedBackend, roots: int = 30) -> dict[str, Any]:
    """A mix of every kind of stored state; returns the ids by role."""
    ids: dict[str, Any] = {}
    items = [new("r", str(i), pool="p") for i in range(roots)]
    keyed = [new("k", str(i), pool="p", running_key="t:tests.k#", running_limit=1)
             for i in range(5)]  # fmt: skip
    delayed = new("late", pool="p", not_before=NOW + 1e6)
    b.register([*items[:5], *keyed, delayed], NOW)
    for k in range(5, roots, 5):  # batches of free calls take the shards in turn
        b.register(items[k : k + 5], NOW)
    parent = new("parent", pool="q")
    b.register([parent], NOW)
    children = [new("child", str(i), pool="p", parent=parent.id) for i in range(5)]
    b.register(children, NOW)
    done = [new("d", str(i), pool="d") for i in range(10)]
    b.register(done, NOW)
    got = claim_ids(b, W2, 10, NOW, "d")
    outcomes = [Outcome(i, OutcomeKind.SUCCESS, result="1") for i in got[:6]] + [
        Outcome(i, OutcomeKind.FAILED, reason="Boom") for i in got[6:]
    ]
    assert b.finish(outcomes, W2, NOW) == [True] * 10
    dep = new("dep", pool="x")
    b.register([dep], NOW)
    dependent = new("dependent", pool="x", depends_on=(dep.id,))
    b.register([dependent], NOW)
    deduped = new("g", "1", pool="g", registration_key="t:tests.g#1", registration="dedupe")
    b.register([deduped], NOW)
    held = new("held", pool="h")
    b.register([held], NOW)
    assert claim_ids(b, DEAD, 1, NOW, "h") == [held.id]
    waiter = new("waiter", pool="w")
    b.register([waiter], NOW)
    assert claim_ids(b, DEAD, 1, NOW, "w") == [waiter.id]
    home = b.locate([waiter.id])[waiter.id]
    target = next(i.id for i in items if b.locate([i.id])[i.id] != home)
    assert b.pause(waiter.id, DEAD, [target], NOW).kind is PauseKind.PAUSED  # across shards
    assert b.get(target).waiters == 1  # type: ignore[union-attr]
    beat(b, DEAD, 1.0, pool="h")  # long silent
    b.set_policy("pol", '{"limit": 1}')
    ids.update(
        roots=[i.id for i in items], keyed=[i.id for i in keyed], delayed=delayed.id,
        parent=parent.id, children=[c.id for c in children], done=got, dep=dep.id,
        dependent=dependent.id, deduped=deduped.id, held=held.id, waiter=waiter.id,
        target=target,
    )  # fmt: skip
    ids["all"] = [
        *ids["roots"], *ids["keyed"], delayed.id, parent.id, *ids["children"], *got, dep.id,
        dependent.id, deduped.id, held.id, waiter.id,
    ]  # fmt: skip
    return ids


def snapshot(b: ShardedBackend, ids: list[InvocationId]) -> dict[str, tuple[Any, ...]]:
    out = {}
    for rec in b.get_many(ids):
        assert rec is not None
        out[rec.id] = (rec.status, rec.pool, rec.display, rec.parent, rec.depends_on,
                       rec.result, rec.running_key, rec.lost, len(rec.history))  # fmt: skip
    return out


def check_moved(b: ShardedBackend, ids: dict[str, Any], before: dict[str, Any],
                counts: Any, others: int = 0) -> None:  # fmt: skip
    """Everything as before the move (the calls the dead worker held, running and paused,
    handed back once, by the reshard; the paused one's wait dropped)."""
    after = snapshot(b, ids["all"])
    moved_counts = dict(counts)
    for role, status in (("held", Status.RUNNING), ("waiter", Status.PAUSED)):
        now, was = after.pop(ids[role]), before.pop(ids[role])
        assert now[0] is Status.PENDING and now[7] == 1 and was[0] is status
        moved_counts[status] -= 1
        moved_counts[Status.PENDING] += 1
    assert after == before
    assert b.get(ids["target"]).waiters == 0  # type: ignore[union-attr]
    assert b.crossing is None or b.crossing.waiters() == []
    assert {s: n for s, n in b.counts().items() if n} == {
        s: n for s, n in moved_counts.items() if n
    }
    assert b.get_policy("pol") == '{"limit": 1}'
    assert len(b.query(limit=1000)) == len(ids["all"]) + others


def check_rules(b: ShardedBackend, ids: dict[str, Any]) -> None:
    """Queues, running limit, dependencies and dedupe work on the new layout."""
    got = set(claim_ids(b, W1, 1000, NOW + 1, "p"))
    assert set(ids["roots"]) | set(ids["children"]) <= got
    assert len(got & set(ids["keyed"])) == 1  # the running limit holds across the move
    assert len(got) == len(ids["roots"]) + len(ids["children"]) + 1
    assert claim_ids(b, W1, 10, NOW + 1, "h") == [ids["held"]]
    assert claim_ids(b, W1, 10, NOW + 1, "w") == [ids["waiter"]]
    assert claim_ids(b, W1, 10, NOW + 1, "x") == [ids["dep"]]
    assert b.finish([Outcome(ids["dep"], OutcomeKind.SUCCESS, result="1")], W1, NOW + 2)
    assert claim_ids(b, W1, 10, NOW + 3, "x") == [ids["dependent"]]
    [res] = b.register(
        [new("g", "1", pool="g", registration_key="t:tests.g#1", registration="dedupe")], NOW
    )
    assert (res.kind, res.id) == (RegisterKind.DEDUPLICATED, ids["deduped"])
    fresh = new("fresh", pool="p")
    b.register([fresh], NOW + 4)
    assert claim_ids(b, W1, 10, NOW + 5, "p") == [fresh.id]


def test_a_url_with_another_n_is_refused(url: str, opened: list[ShardedBackend]) -> None:
    b = open_at(url, 3, opened)
    b.register([new("r", pool="p")], NOW)
    with pytest.raises(ConfigurationError, match=r"spread over 3 shards.*use shards=3"):
        open_at(url, 2, opened)
    open_at(url, 3, opened)  # the right N still opens


@pytest.mark.timeout(180)
def test_reshard_moves_everything_to_fewer_and_more_shards(
    url: str, opened: list[ShardedBackend]
) -> None:
    b = open_at(url, 3, opened)
    ids = populate(b)
    before, counts = snapshot(b, ids["all"]), dict(b.counts())
    lines: list[str] = []
    report = reshard(url, 2, progress=lines.append)
    assert report.moved > 0 and report.handed_back == 2 and report.before == 3
    assert any("moved" in line for line in lines) and "shards=2" in lines[-1]
    with pytest.raises(ConfigurationError, match="spread over 2 shards"):
        open_at(url, 3, opened)
    check_moved(open_at(url, 2, opened), ids, dict(before), counts)
    reshard(with_shards(url, 2), 1)
    check_moved(open_at(url, 1, opened), ids, dict(before), counts)
    reshard(url, 4)  # the URL's N is not the data's: the data's layout record wins
    b4 = open_at(url, 4, opened)
    check_moved(b4, ids, dict(before), counts)
    check_rules(b4, ids)


def on_retired_shard(url: str, before: int = 3, after: int = 2) -> Any:
    """A keyless root call whose shard under ``before`` is not a shard under ``after``."""
    prefix = parse_cluster_url(url).prefix
    kept = {shard_prefix(prefix, j, after) for j in range(after)}
    retired = [i for i in range(before) if shard_prefix(prefix, i, before) not in kept]
    while True:
        item = new("stale", pool="p")
        if zlib.crc32(item.id.encode()) % before in retired:
            return item


def test_a_caller_still_on_the_old_n_is_refused(url: str, opened: list[ShardedBackend]) -> None:
    stale = open_at(url, 3, opened)
    stale.register([new("r", pool="p")], NOW)
    reshard(url, 2)
    with pytest.raises(ConfigurationError, match=r"spread over 2 shards.*use shards=2"):
        stale.register([on_retired_shard(url)], NOW)
    reshard(with_shards(url, 2), 3)  # back to shards that were retired: open again
    b3 = open_at(url, 3, opened)
    item = on_retired_shard(url)
    assert b3.register([item], NOW)[0].kind is RegisterKind.CREATED
    assert len(b3.query(limit=10)) == 2


def test_reshard_refuses_while_a_worker_is_live(url: str, opened: list[ShardedBackend]) -> None:
    b = open_at(url, 3, opened)
    b.register([new("r", pool="p")], NOW)
    beat(b, W1, time.time())
    with pytest.raises(ConfigurationError, match="stop every worker first"):
        reshard(url, 2)
    open_at(url, 3, opened)  # nothing changed


def test_a_reshard_that_failed_midway_is_refused_to_all_then_resumed(
    url: str, opened: list[ShardedBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash that matters: a batch written on its new shard, not yet deleted from its
    old one (the same invocations on both)."""
    b = open_at(url, 3, opened)
    ids = populate(b)
    before, counts = snapshot(b, ids["all"]), dict(b.counts())
    real = ShardCaller.run
    calls = {"move_out": 0}

    def crash_on_second_delete(self: ShardCaller, op: str, now: float, *args: Any) -> Any:
        if op == "move_out":
            calls[op] += 1
            if calls[op] == 2:
                raise RuntimeError("crash between move_in and move_out")
        return real(self, op, now, *args)

    monkeypatch.setattr(ShardCaller, "run", crash_on_second_delete)
    with pytest.raises(RuntimeError, match="crash"):
        reshard(url, 2, batch=7)
    monkeypatch.undo()
    with pytest.raises(ConfigurationError, match=r"from 3 to 2 shards is under way"):
        b.register([on_retired_shard(url)], NOW)  # a caller still on the old N
    for n in (3, 2):
        with pytest.raises(ConfigurationError, match=r"from 3 to 2 shards is under way"):
            open_at(url, n, opened)
    with pytest.raises(ConfigurationError, match=r"finish it first \(--to 2\)"):
        reshard(url, 4)
    reshard(url, 2, batch=7)
    b2 = open_at(url, 2, opened)
    check_moved(b2, ids, before, counts)
    check_rules(b2, ids)


@pytest.mark.timeout(240)
def test_kill_9_mid_reshard_loses_nothing(url: str, opened: list[ShardedBackend]) -> None:
    """The reshard runs as the command; its output goes into a pipe of one page that this
    test reads only up to the fourth progress line, so the command blocks on its output
    within a page of it (about a hundred lines, of some 350 batches): the kill lands mid
    run however fast or slow the machine is."""
    b = open_at(url, 3, opened)
    ids = populate(b, roots=600)
    before, counts = snapshot(b, ids["all"]), dict(b.counts())
    deps = crossdeps(b)  # news in outboxes: delivered before the first move
    for status, n in ENDED.items():
        counts[status] = counts.get(status, 0) + n
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubenenc_cli", "reshard", "--backend", url, "--to", "2",
         "--batch", "2"],
        cwd=ROOT, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        bufsize=0,
    )  # fmt: skip
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)
    seen = b""
    try:
        while seen.count(b"moved so far") < 4:
            got = os.read(fd, 1)
            assert got, seen  # the command ended early
            seen += got
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    with pytest.raises(ConfigurationError, match="under way or was interrupted"):
        open_at(url, 3, opened)
    done = subprocess.run(
        [sys.executable, "-m", "kubenenc_cli", "reshard", "--backend", url, "--to", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming" in done.stdout
    b2 = open_at(url, 2, opened)
    check_moved(b2, ids, before, counts, others=sum(ENDED.values()))
    check_crossdeps(b2, deps)
    check_rules(b2, ids)
    finish_one(b2, deps["x1"], deps["d1"], NOW + 6)


def test_the_command_refuses_other_backends() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kubenenc_cli", "reshard", "--backend", "redis://127.0.0.1:1/0",
         "--to", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "redis+cluster" in done.stderr


def test_calls_sharing_a_sequence_after_a_merge_all_move_again(
    url: str, opened: list[ShardedBackend]
) -> None:
    """Sequences are unique per shard only: batches registered at one time on 3 shards
    share numbers, and merged onto one shard they share its index's scores. A reshard
    from there (paged in small batches) still moves every call."""
    b = open_at(url, 3, opened)
    items = [new("r", f"{k}-{i}", pool="p") for k in range(4) for i in range(60)]
    for k in range(4):
        b.register(items[k * 60 : (k + 1) * 60], NOW)
    reshard(url, 1, batch=7)
    reshard(with_shards(url, 1), 2, batch=7)
    b2 = open_at(url, 2, opened)
    assert all(r is not None for r in b2.get_many([i.id for i in items]))
    assert {s: n for s, n in b2.counts().items() if n} == {Status.PENDING: len(items)}
    assert len(set(claim_ids(b2, W1, 1000, NOW + 1, "p"))) == len(items)


def _root(b: ShardedBackend, shard: int, name: str) -> InvocationId:
    """A keyless root call on ``shard`` (of 3), alone in its pool ``name``."""
    item = new(name, pool=name)._replace(id=on_shard(shard))
    assert b.register([item], NOW)[0].id == item.id
    return item.id


def _dependent(b: ShardedBackend, shard: int, name: str, *deps: InvocationId) -> InvocationId:
    """A call on ``shard`` (of 3, by its running key), alone in its pool, on ``deps``."""
    item = new(name, pool=name, running_key=key_on(shard), running_limit=5, depends_on=deps)
    assert b.register([item], NOW)[0].kind is RegisterKind.CREATED
    return item.id


def crossdeps(b: ShardedBackend) -> dict[str, InvocationId]:
    """Cross-shard dependency state of every kind a reshard finds (3 shards): ``d1`` waits
    on ``x1`` (shard 0) and knows ``x1b`` (shard 1) succeeded; ``x2`` succeeded and ``x3``
    failed, their news still in their shards' outboxes (the finishing process died before
    settling), so ``d2`` is to become PENDING and ``d3``, then ``d4`` (a cascade), FAILED;
    ``d5`` waits on ``x5``."""
    x1, x1b, x2, x3, x5 = (_root(b, s, n) for s, n in
                           ((0, "x1"), (1, "x1b"), (1, "x2"), (2, "x3"), (2, "x5")))  # fmt: skip
    d1 = _dependent(b, 2, "d1", x1, x1b)
    d2 = _dependent(b, 0, "d2", x2)
    d3 = _dependent(b, 0, "d3", x3)
    d4 = _dependent(b, 1, "d4", d3)
    d5 = _dependent(b, 0, "d5", x5)
    for x in (x1b, x2, x3):
        assert claim_ids(b, DEAD, 1, NOW, b.get(x).pool) == [x]  # type: ignore[union-attr]
    assert b.finish([Outcome(x1b, OutcomeKind.SUCCESS, result="1")], DEAD, NOW)
    for x, kind in ((x2, OutcomeKind.SUCCESS), (x3, OutcomeKind.FAILED)):
        at = b.locate([x])[x]
        assert b.shards[at].finish([Outcome(x, kind, reason="Boom")], DEAD, NOW) == [True]
    beat(b, DEAD, 1.0, pool="x1")  # long silent
    waiting = Status.WAITING_DEPENDENCIES
    assert {b.get(d).status for d in (d1, d2, d3, d4, d5)} == {waiting}  # type: ignore[union-attr]
    return dict(x1=x1, x2=x2, x3=x3, x5=x5, d1=d1, d2=d2, d3=d3, d4=d4, d5=d5)


ENDED = {Status.PENDING: 3, Status.SUCCESS: 2, Status.FAILED: 3, Status.WAITING_DEPENDENCIES: 2}
"""The calls of :func:`crossdeps` by status once its news is delivered."""


def outboxes(b: ShardedBackend) -> list[str]:
    return [m for s in b.shards for m in s._r.smembers(s._keys.fixed("K_XOUT"))]


def check_crossdeps(b: ShardedBackend, ids: dict[str, InvocationId]) -> None:
    """The news delivered by the reshard, the waits kept, on ``b``'s layout."""
    status = {k: b.get(v).status for k, v in ids.items()}  # type: ignore[union-attr]
    assert status == dict(
        x1=Status.PENDING, x2=Status.SUCCESS, x3=Status.FAILED, x5=Status.PENDING,
        d1=Status.WAITING_DEPENDENCIES, d2=Status.PENDING, d3=Status.FAILED,
        d4=Status.FAILED, d5=Status.WAITING_DEPENDENCIES,
    )  # fmt: skip
    assert b.get(ids["d4"]).error.type == "kubenenc.errors.DependencyFailed"  # type: ignore[union-attr]
    assert outboxes(b) == []
    if b.crossing is not None:
        mine = {ids[d] for d in ("d1", "d2", "d3", "d4", "d5")}
        recorded = {i for i, _ in b.crossing.dependents()}
        assert recorded & mine == {ids["d1"], ids["d5"]}


def finish_one(b: ShardedBackend, x: InvocationId, d: InvocationId, at: float) -> None:
    """Run ``x`` to success: its dependent ``d`` becomes claimable (its only open one)."""
    pool = b.get(x).pool  # type: ignore[union-attr]
    assert claim_ids(b, W1, 10, at, pool) == [x]
    assert b.finish([Outcome(x, OutcomeKind.SUCCESS, result="1")], W1, at)
    assert claim_ids(b, W1, 10, at, b.get(d).pool) == [d]  # type: ignore[union-attr]


@pytest.mark.timeout(180)
def test_reshard_carries_cross_shard_dependencies(url: str, opened: list[ShardedBackend]) -> None:
    """Waits across shards survive 3 -> 2 -> 1 -> 4 shards, news left in outboxes is
    delivered first (a cascade too), and a dependency finishing on one shard or on four
    makes its dependent claimable."""
    ids = crossdeps(open_at(url, 3, opened))
    reshard(url, 2)
    check_crossdeps(open_at(url, 2, opened), ids)
    reshard(with_shards(url, 2), 1)
    b1 = open_at(url, 1, opened)
    check_crossdeps(b1, ids)
    finish_one(b1, ids["x5"], ids["d5"], NOW + 1)  # on one shard: the single-server path
    assert b1.get(ids["d1"]).status is Status.WAITING_DEPENDENCIES  # type: ignore[union-attr]
    reshard(with_shards(url, 1), 4)
    b4 = open_at(url, 4, opened)
    assert b4.crossing is not None
    assert [i for i, _ in b4.crossing.dependents()] == [ids["d1"]]
    finish_one(b4, ids["x1"], ids["d1"], NOW + 2)
    assert outboxes(b4) == [] and b4.crossing.dependents() == []


@pytest.mark.timeout(180)
@pytest.mark.parametrize("op", ["shard_settle", "move_out", "move_edges"])
def test_a_reshard_crashing_amid_cross_shard_dependencies_resumes(
    url: str, opened: list[ShardedBackend], monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    """A crash right after the first step of delivering the outboxes (news told, not yet
    taken out of its outbox), of moving, or of writing the edges: the resumed reshard ends
    as an uninterrupted one."""
    b = open_at(url, 3, opened)
    populate(b, roots=10)  # first: its finishes would settle the outboxes
    ids = crossdeps(b)
    real = ShardCaller.run
    calls = {op: 0}

    def crash(self: ShardCaller, name: str, now: float, *args: Any) -> Any:
        got = real(self, name, now, *args)
        if name == op:
            calls[op] += 1
            raise RuntimeError("crash right after the first")
        return got

    monkeypatch.setattr(ShardCaller, "run", crash)
    with pytest.raises(RuntimeError, match="crash"):
        reshard(url, 2, batch=3)
    monkeypatch.undo()
    assert calls[op] == 1
    reshard(url, 2, batch=3)
    b2 = open_at(url, 2, opened)
    check_crossdeps(b2, ids)
    finish_one(b2, ids["x5"], ids["d5"], NOW + 1)
    finish_one(b2, ids["x1"], ids["d1"], NOW + 2)


@pytest.mark.timeout(180)
def test_browsing_pages_after_a_merge_skips_no_call(url: str, opened: list[ShardedBackend]) -> None:
    """Calls registered at one time by 4 processes on 3 shards share sequence numbers
    (each process keeps its own order only); merged onto fewer shards, each moved call
    gets a sequence of its own there (the next free one, in the order they had), so
    paging by sequence meets every call once, whatever the page size."""
    items = [new("r", f"{k}-{i}", pool="p") for k in range(4) for i in range(30)]
    for k in range(4):
        caller = open_at(url, 3, opened)
        for j in range(0, 30, 10):  # batches of free calls take the shards in turn
            caller.register(items[k * 30 + j : k * 30 + j + 10], NOW)
    for n in (1, 2):
        reshard(url if n == 1 else with_shards(url, 1), n, batch=7)
        bn = open_at(url, n, opened)
        for s in bn.shards:
            scores = [sc for _, sc in s._r.zrange(s._keys.fixed("K_IX"), 0, -1, withscores=True)]
            assert len(scores) == len(set(scores))  # one sequence, one call
        for limit in (1, 2, 7):
            seen: list[str] = []
            cursor = None
            while True:
                page = bn.browse(InvocationFilter(), cursor=cursor, limit=limit)
                seen += [r.id for r in page.items]
                if page.next is None:
                    break
                cursor = page.next
            assert sorted(seen) == sorted(i.id for i in items)
    got = claim_ids(bn, W1, 1000, NOW + 1, "p")
    assert sorted(got) == sorted(i.id for i in items)


@pytest.mark.timeout(120)
def test_browsing_calls_sharing_a_sequence_across_shards(
    url: str, opened: list[ShardedBackend]
) -> None:
    """4 processes registering at one time on 3 shards: calls on different shards share
    sequences; the merged pages of every size meet each call once."""
    items = [new("r", f"{k}-{i}", pool="p") for k in range(4) for i in range(30)]
    for k in range(4):
        caller = open_at(url, 3, opened)
        for j in range(0, 30, 10):  # batches of free calls take the shards in turn
            caller.register(items[k * 30 + j : k * 30 + j + 10], NOW)
    b = open_at(url, 3, opened)
    for limit in (1, 2, 3, 7, 50):
        seen: list[str] = []
        cursor = None
        while True:
            page = b.browse(InvocationFilter(), cursor=cursor, limit=limit)
            assert len(page.items) <= limit
            seen += [r.id for r in page.items]
            if page.next is None:
                break
            cursor = page.next
        assert sorted(seen) == sorted(i.id for i in items)
