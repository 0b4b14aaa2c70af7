"""Chaos on a Redis Cluster: a master fails over to its replica mid-run, under real worker
processes (the scenario of tests/chaos, with the fault on the server instead of a worker).

``CLUSTER FAILOVER`` on the replica of the masters serving shards is the planned failover
(the replica catches up first, then takes the slots): nothing may be lost, no call may run
twice at once, no running limit may be broken; calls in flight may rerun (at-least-once).
Workers and the submitter follow the slots to the new masters (``MOVED``/``UNBLOCKED``
re-read the slot map). Its own cluster, so the session's cluster keeps its layout.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import chaosapp
from tests.chaos.faults import Fault
from tests.chaos.scenario import Chaos, check
from tests.servers.rediscluster import RedisCluster, require_cluster_tools


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    require_cluster_tools()
    cluster = RedisCluster(tmp_path / "cluster").start()
    yield cluster
    cluster.stop()


def fail_over(cluster: RedisCluster, master_port: int) -> int:
    """``CLUSTER FAILOVER`` on the replica of the master on ``master_port``; the port of
    the new master once the roles have switched."""
    master = cluster.node(master_port)
    my_id = cluster.cli(master, "CLUSTER", "MYID").strip()
    replicas = cluster.cli(master, "CLUSTER", "REPLICAS", my_id).split()
    port = int(next(w for w in replicas if "@" in w).split("@")[0].rsplit(":", 1)[1])
    assert cluster.cli(cluster.node(port), "CLUSTER", "FAILOVER").strip() == "OK"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        roles = cluster.roles()
        if roles.get(port) == "master" and roles.get(master_port) == "slave":
            cluster.wait_ok()
            return port
        time.sleep(0.1)
    raise AssertionError(f"failover of {master_port} to {port} did not happen in 30 s")


@pytest.mark.timeout(240)
def test_failover_of_masters_mid_run_loses_nothing(
    own_cluster: RedisCluster, tmp_path: Path
) -> None:
    url = f"{own_cluster.url}?prefix=f{uuid.uuid4().hex[:8]}&shards=3&retry_for=60"
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    app = chaosapp.app
    app.configure(url)
    backend = app.backend
    chaos = Chaos(url, log_dir, Fault(), random.Random(0))  # the faults are the failovers
    procs = [chaos.spawn() for _ in range(2)]
    invs: list[tuple[str, int, object]] = []
    moved: list[int] = []
    try:
        for i in range(60):
            if i % 3 == 2:
                invs.append(("fan", i, chaosapp.fan(i)))
            else:
                invs.append(("body", i, chaosapp.body(i, f"k{i % 4}", 0.1)))
            if i in (20, 40):  # a master of a shard with work on it, mid-run
                shard = backend.shards[0 if i == 20 else 1]  # type: ignore[attr-defined]
                moved.append(fail_over(own_cluster, shard.node[1]))
            time.sleep(0.05)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if all(inv.status.is_final for _, _, inv in invs):  # type: ignore[attr-defined]
                break
            time.sleep(0.25)
        report = check(invs, chaos)
        followed = [s.node[1] for s in backend.shards[:2]]  # type: ignore[attr-defined]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)
        app.close()
    assert followed == moved  # the submitter talks to the new masters
    assert report.stuck == 0, report
    assert report.lost == 0, report
    assert report.wrong == 0, report
    assert report.failed_worker_lost == 0, report
    assert report.overlaps == [], report
    assert report.limit_violations == [], report
