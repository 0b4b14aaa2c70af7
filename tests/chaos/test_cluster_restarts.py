"""Chaos: the masters of a Redis Cluster killed (SIGKILL) and started again on their ports
with what they kept on disk, under load: one master, then all three at once, then another
one (``shards=3``, so every restart takes shards and the coordination slot away).

Each test starts its own cluster of 3 masters with AOF on (``appendfsync everysec`` or
``always``) and **no replicas**. A replica would make the test about replication instead of
the AOF: a master down past the node timeout (easily, on a loaded machine) is failed over,
comes back as a replica of its promoted replica and drops what it had acknowledged but not
yet sent (asynchronous replication: the documented loss of a ``kill -9`` of a master, not
what this tier tests). Without replicas nothing can take a master's slots: a restarted
master comes back as their master from its ``nodes.conf``, with its AOF; while it is down
(and for about 2 s after it starts, Redis's writable delay) its slots answer with a refused
connection or ``CLUSTERDOWN``, which the shards retry. Planned failovers under load are
tests/rediscluster/test_failover.py.

The invariants are those of every scenario (tests/chaos/scenario.py): nothing lost, stuck
or wrong, no unexplained overlap, no running limit exceeded; and, as on one server
(test_restarts.py), no call FAILED with BackendUnavailable.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.faults import RestartNodes
from tests.chaos.scenario import run
from tests.servers.rediscluster import RedisCluster, require_cluster_tools
from tests.support import fresh_name


@pytest.fixture(params=["everysec", "always"])
def aof_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisCluster]:
    """A private 3-master cluster, no replicas, AOF with ``appendfsync`` the param, its
    files in memory (``/dev/shm``) when the host has it: with ``everysec``, a master whose
    background fsync is still running (a slow, shared disk) writes the AOF up to 2 s after
    it replied, so a crash then loses acknowledged writes (Redis's own window, in the
    README; seen on this machine's disk: 15 registrations in a 500-call bench run). That
    would test the disk; on tmpfs an fsync is instant, and what is tested is the backend
    across crashes and restarts of its masters."""
    require_cluster_tools()
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="kubenenc-aof-", dir=shm)) if shm.is_dir() else tmp_path
    cluster = RedisCluster(
        root / "cluster", replicas=0,
        extra=("--appendonly", "yes", "--appendfsync", request.param),
    )  # fmt: skip
    try:
        with cluster.running():
            yield cluster
    finally:
        if root != tmp_path:
            shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(240)
def test_cluster_masters_with_aof_restarted_mid_run_lose_nothing(
    aof_cluster: RedisCluster, tmp_path: Path
) -> None:
    fsync = aof_cluster.extra[-1]
    fault = RestartNodes(
        nodes=aof_cluster.nodes, plan=[(0,), (0, 1, 2), (1,)], label=f"cluster AOF {fsync}"
    )
    url = f"{aof_cluster.url}?prefix={fresh_name()}&shards=3"
    report = run(url, tmp_path / "logs", fault, calls=60, fault_every=2.0, max_faults=3,
                 deadline=150)  # fmt: skip
    assert report.faults == 3
    report.assert_clean()
    assert report.failed_unavailable == 0, report
