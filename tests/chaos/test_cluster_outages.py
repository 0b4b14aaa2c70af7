"""Chaos: the outages of test_outages.py on a Redis Cluster (3 masters, ``shards=3``), each
on every master at once: ``CLIENT PAUSE`` for 10 s, ``DEBUG SLEEP`` and SIGSTOP of the
masters past the heartbeat timeout, ``CLIENT KILL`` of every connection again and again,
and two workers with their clocks 10 s ahead and behind. Every worker stays alive, so
besides the invariants of every scenario nothing may be handed back.

The cluster is this module's own: ``DEBUG`` is enabled on it (off by default), it has no
replicas (a master asleep or stopped past the node timeout would otherwise be failed over:
tests/rediscluster/test_failover.py tests failovers) and its node timeout is Redis's default
15 s, longer than the outages, so the masters do not mark each other failed while the
outage lasts: the cluster is unresponsive, as one server is in test_outages.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.outages import REDIS_SIZES, assert_outage_clean, run
from tests.servers.rediscluster import RedisCluster, require_cluster_tools
from tests.support import fresh_name

FAULTS = REDIS_SIZES


@pytest.fixture(scope="module")
def debug_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A private 3-master cluster, no replicas, that takes DEBUG from loopback."""
    require_cluster_tools()
    cluster = RedisCluster(
        tmp_path_factory.mktemp("cluster-outages"), replicas=0,
        extra=("--enable-debug-command", "local", "--cluster-node-timeout", "15000"),
    )  # fmt: skip
    with cluster.running():
        yield cluster


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.timeout(240)
def test_cluster_outage_or_skewed_clock_loses_nothing_and_hands_back_nothing(
    fault: str, debug_cluster: RedisCluster, tmp_path: Path
) -> None:
    url = f"{debug_cluster.url}?prefix={fresh_name()}&shards=3"
    pids = [node.proc.pid for node in debug_cluster.nodes if node.proc is not None]
    admins = [node.url for node in debug_cluster.nodes]
    report = run(fault, url, tmp_path / "logs", calls=60, server_pids=pids, admin_urls=admins,
                 **FAULTS[fault])  # fmt: skip
    assert_outage_clean(report)
