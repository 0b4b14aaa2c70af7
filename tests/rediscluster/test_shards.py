"""The sharded backend's own rules: the URL, where calls land, claims that serve every
shard, and an idle worker woken by work on any shard."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.records import Outcome, OutcomeKind, RegisterKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, new
from kubenenc_redis import hints
from kubenenc_redis.cluster import parse_cluster_url
from kubenenc_redis.keys import SLOTS, shard_prefix
from redis.crc import key_slot

from tests.chaos.proxy import Proxy, via_cluster
from tests.servers.rediscluster import RedisCluster


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:1/?shards=2",
        "redis+cluster://h/",
        "redis+cluster://h:1/3",
        "redis+cluster://h:1/?shards=0",
        "redis+cluster://h:1/?shards=x",
        "redis+cluster://h:1/?prefix={a}",
        "redis+cluster://h:1/?shard=2",
        "redis+cluster://h:1/?retention=-1",
        "redis+cluster://h:1/?clock=moon",
        "redis+cluster://h:1/?address_map=a:1",
        "redis+cluster://h:1/?address_map=a:1=b",
    ],
)
def test_bad_urls_say_what_to_change(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"bad (Redis Cluster|backend) URL"):
        parse_cluster_url(url)


def test_url_with_credentials_and_hosts() -> None:
    got = parse_cluster_url("rediss+cluster://u:p%40ss@a:1,b:2/?shards=4&prefix=app")
    assert (got.hosts, got.username, got.password, got.tls) == (
        (("a", 1), ("b", 2)),
        "u",
        "p@ss",
        True,
    )
    assert (got.shards, got.prefix) == (4, "app")
    assert "p@ss" not in got.shown
    assert got.address_map == ()


def test_an_address_map_maps_the_nodes_it_names_and_leaves_the_others() -> None:
    got = parse_cluster_url(
        "redis+cluster://p:7/?address_map=10.0.0.5:6379=p:7,[::1]:6380=127.0.0.1:8"
    )
    assert got.address_map == ((("10.0.0.5", 6379), ("p", 7)), (("::1", 6380), ("127.0.0.1", 8)))
    assert got.remap(("10.0.0.5", 6379)) == ("p", 7)
    assert got.remap(("::1", 6380)) == ("127.0.0.1", 8)
    assert got.remap(("10.0.0.5", 6380)) == ("10.0.0.5", 6380)


def test_an_address_map_routes_every_shard_through_the_mapped_addresses(
    redis_cluster: RedisCluster, rediscluster_url: str
) -> None:
    from kubenenc_redis.shards import ShardedBackend

    proxies = [Proxy(node.port).start() for node in redis_cluster.nodes]
    try:
        url = via_cluster(
            f"{rediscluster_url}&retry_for=1", {p.target_port: p.port for p in proxies}
        )
        backend = ShardedBackend.from_url(url)
        try:
            assert {s.node for s in backend.shards} <= {("127.0.0.1", p.port) for p in proxies}
            backend.register([new("a"), new("b"), new("c")], 1.0)
            for proxy in proxies:  # and nothing else: cut off, it reaches nothing
                proxy.cut(reset=True)
            with pytest.raises(BackendUnavailable):
                backend.workers()
        finally:
            for proxy in proxies:
                proxy.restore()
            backend.close()
    finally:
        for proxy in proxies:
            proxy.stop()


def test_shard_i_of_n_hashes_near_the_middle_of_the_ith_share_of_the_slots() -> None:
    for n in (1, 2, 3, 5):
        for i in range(n):
            slot = key_slot(shard_prefix("app", i, n).encode())
            assert abs(slot - (i + 0.5) * SLOTS / n) <= SLOTS / n / 8
    # So on three masters that split the slots evenly, 2 shards use two of them.
    masters = [key_slot(shard_prefix("x", i, 2).encode()) * 3 // SLOTS for i in range(2)]
    assert masters == [0, 2]


def test_calls_of_one_key_share_a_shard_and_roots_spread(rediscluster_backend: object) -> None:
    b = rediscluster_backend
    keyed = [new("k", str(i), running_key="s:task#abc", running_limit=1) for i in range(12)]
    batches = [[new("r", f"{j}.{i}") for i in range(20)] for j in range(3)]
    b.register(keyed + batches[0], 1.0)  # type: ignore[attr-defined]
    for batch in batches[1:]:
        b.register(batch, 1.0)  # type: ignore[attr-defined]
    ids = [i.id for i in keyed] + [i.id for batch in batches for i in batch]
    where = b.locate(ids)  # type: ignore[attr-defined]
    assert len({where[i.id] for i in keyed}) == 1
    homes = [{where[i.id] for i in batch} for batch in batches]
    assert all(len(h) == 1 for h in homes)  # a batch's free calls share one shard
    assert set.union(*homes) == {0, 1, 2}  # and batches take the shards in turn


def count_calls(b: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record every server call of ``b`` (each goes through a caller's ``retrying``) as
    (what, shard), the coordination slot as shard -1."""
    calls: list[tuple[str, int]] = []
    callers = [(i, s._caller) for i, s in enumerate(b.shards)]
    if b.crossing is not None:
        callers.append((-1, b.crossing.slot._caller))
    for i, caller in callers:
        real = caller.retrying

        def counted(what: str, call: Any, _real: Any = real, _i: int = i) -> Any:
            calls.append((what, _i))
            return _real(what, call)

        monkeypatch.setattr(caller, "retrying", counted)
    return calls


def one_batch(b: Any, size: int, tag: str, now: float) -> None:
    items = [new("r", f"{tag}.{i}") for i in range(size)]
    b.register(items, now)
    got = b.claim("default", W1, size, now + 0.1)
    assert [r.id for r in got] == [i.id for i in items]
    flags = b.finish([Outcome(r.id, OutcomeKind.SUCCESS, result="1") for r in got], W1, now + 0.2)
    assert flags == [True] * size


@pytest.mark.parametrize("size", [1, 20])
def test_a_batch_of_free_calls_costs_one_script_per_step(
    rediscluster_backend: Any, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """As on one server: register, claim, finish, one call each on one shard, once the
    claim's head hints are known (the first claim reads every shard's head); no head read
    before a claim, no outbox read after a finish that told no dependent."""
    b = rediscluster_backend
    monkeypatch.setattr(hints, "HINT_AGE", 3600.0)  # a loaded machine: no reading by age
    one_batch(b, size, "warm", 1.0)
    calls = count_calls(b, monkeypatch)
    for k in range(6):  # batches take the shards in turn (a lone call: its id's shard)
        calls.clear()
        one_batch(b, size, str(k), 2.0 + k)
        assert [what for what, _ in calls] == ["register", "claim", "finish"]
        assert len({i for _, i in calls}) == 1
    assert b.counts()[Status.SUCCESS] == 7 * size


def test_a_workers_finish_and_claim_is_one_script_on_one_shard(
    rediscluster_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's steady state, as on one server: what it finishes came from the shard its
    next claim goes to, so finishing and claiming is one script there."""
    b = rediscluster_backend
    monkeypatch.setattr(hints, "HINT_AGE", 3600.0)
    items = [new("r", str(i)) for i in range(30)]
    b.register(items, 1.0)
    got = b.claim("default", W1, 10, 2.0)  # the first claim reads every head
    assert [r.id for r in got] == [i.id for i in items[:10]]
    calls = count_calls(b, monkeypatch)
    for k in (1, 2):
        calls.clear()
        done = [Outcome(r.id, OutcomeKind.SUCCESS, result="1") for r in got]
        flags, got = b.finish_and_claim(done, "default", W1, 10, 2.0 + k)
        assert flags == [True] * 10
        assert [r.id for r in got] == [i.id for i in items[10 * k : 10 * k + 10]]
        assert [what for what, _ in calls] == ["finish_and_claim"]
    done = [Outcome(r.id, OutcomeKind.SUCCESS, result="1") for r in got]
    flags, got = b.finish_and_claim(done, "default", W1, 10, 5.0)
    assert (flags, got) == ([True] * 10, [])
    assert b.counts()[Status.SUCCESS] == 30


def test_a_free_batch_registered_again_is_answered_where_it_went(
    rediscluster_backend: object,
) -> None:
    b = rediscluster_backend
    items = [new("r", str(i)) for i in range(10)]
    first = b.register(items, 1.0)  # type: ignore[attr-defined]
    again = b.register(list(reversed(items)), 1.5)  # type: ignore[attr-defined]
    again += b.register(items[3:4], 1.7)  # type: ignore[attr-defined]
    assert [r.kind for r in first + again] == [RegisterKind.CREATED] * 21
    assert b.counts()[Status.PENDING] == 10  # type: ignore[attr-defined]
    assert len(b.query(limit=100)) == 10  # type: ignore[attr-defined]


def test_claims_serve_every_shard(rediscluster_backend: object) -> None:
    b = rediscluster_backend
    items = [new("r", str(i)) for i in range(30)]
    for k, item in enumerate(items):  # registered one after the other
        b.register([item], 1.0 + k / 1000)  # type: ignore[attr-defined]
    got = [r.id for _ in range(30) for r in b.claim("default", W1, 1, 2.0)]  # type: ignore[attr-defined]
    assert got == [i.id for i in items]  # oldest first, whichever shard holds it
    assert b.counts()[Status.RUNNING] == 30  # type: ignore[attr-defined]


def test_an_idle_worker_wakes_for_work_on_any_shard(rediscluster_backend: object) -> None:
    b = rediscluster_backend
    assert b.wait_for_work("default", 0.2) is False  # type: ignore[attr-defined]
    for shard in range(3):
        item = next(i for i in (new("r", str(k)) for k in range(1000))
                    if b._route(i) == shard)  # type: ignore[attr-defined]  # fmt: skip
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(b.wait_for_work("default", 20.0)))  # type: ignore[attr-defined]
        waiter.start()
        time.sleep(0.2)
        b.register([item], 1.0)  # type: ignore[attr-defined]
        waiter.join(25)
        assert woke == [True], shard
        assert [r.id for r in b.claim("default", W1, 5, 2.0)] == [item.id]  # type: ignore[attr-defined]


def test_a_shard_whose_beat_hangs_holds_back_no_other_shards_beat(
    rediscluster_backend: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A master that is down makes its shard's beat retry for ``retry_for``; the beats of
    the other shards must land meanwhile, and beat after beat, or their ``recover`` takes
    the worker for dead. The caller hears that a shard was not reached (it then recovers
    nobody), and the shard gets no second beat while its first is under way."""
    from kubenenc.records import WorkerInfo

    b: Any = rediscluster_backend
    release = threading.Event()
    hanging = b.shards[1]
    real = hanging.heartbeat
    calls: list[float] = []

    def hang(info: WorkerInfo) -> None:
        calls.append(info.at)
        if len(calls) == 1:
            assert release.wait(60)
            raise BackendUnavailable("shard 1 is down (simulated)")
        real(info)

    def beats_on(i: int) -> float:
        shard = b.shards[i]
        return float(shard._r.zscore(shard._keys.fixed("K_BEATS"), W1))

    # A first beat reaches every shard (until one did, a beat waits for all of them).
    b.heartbeat(WorkerInfo(W1, "default", slots=4, running=1, paused=0, at=0.5, host="h"))
    monkeypatch.setattr(hanging, "heartbeat", hang)
    try:
        for at in (1.0, 2.0):
            before = [beats_on(i) for i in range(3)]
            info = WorkerInfo(W1, "default", slots=4, running=1, paused=0, at=at, host="h")
            with pytest.raises(BackendUnavailable, match=r"shard\(s\) \[1\]"):
                b.heartbeat(info)
            after = [beats_on(i) for i in range(3)]
            assert after[0] > before[0] and after[2] > before[2]
            assert after[1] == before[1]
        assert calls == [1.0]  # the hung beat was not sent again beside itself
    finally:
        release.set()
    deadline = time.monotonic() + 30
    while b._beats[1].is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    b.heartbeat(WorkerInfo(W1, "default", slots=4, running=1, paused=0, at=3.0, host="h"))
    assert calls == [1.0, 3.0]
