"""Chaos on a Redis Cluster (3 masters, ``shards=3``): the worker scenarios of
test_kill_workers.py, test_signals.py and test_network.py, with the calls spread over the
shards and their waits crossing them. Small counts, as there (``bench/chaos.py`` runs them
larger). The master failovers under real workers are in tests/rediscluster/test_failover.py,
restarts of the masters in test_cluster_restarts.py.

The network cut: each worker reaches every node through proxies of its own (the proxies as
its URL's hosts, and ``address_map`` sending it to them wherever the cluster names a node),
so cutting one worker's proxies cuts that worker from every master while the others, and
the cluster bus, keep their paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.faults import CutNetwork, KillWorker, StopWorker
from tests.chaos.scenario import HEARTBEAT_TIMEOUT, run
from tests.servers.rediscluster import RedisCluster


@pytest.mark.timeout(240)
def test_kill_9_of_random_workers_on_the_cluster_loses_nothing_and_overlaps_nothing(
    rediscluster_url: str, tmp_path: Path
) -> None:
    report = run(rediscluster_url, tmp_path / "logs", KillWorker(), calls=90, fault_every=1.5,
                 deadline=150)  # fmt: skip
    assert report.faults >= 2
    report.assert_clean()
    assert report.zombie_overlaps == [], report


@pytest.mark.timeout(240)
def test_a_frozen_worker_on_the_cluster_changes_nothing_once_woken(
    rediscluster_url: str, tmp_path: Path
) -> None:
    fault = StopWorker(seconds=HEARTBEAT_TIMEOUT + 1.5, group=True)
    report = run(rediscluster_url, tmp_path / "logs", fault, calls=90, fault_every=1.0,
                 max_faults=3, deadline=150)  # fmt: skip
    assert report.faults >= 2
    report.assert_clean()
    assert report.reruns >= 1, report  # the frozen worker's calls really were run again


@pytest.mark.parametrize("reset", [False, True], ids=["held", "reset"])
@pytest.mark.timeout(240)
def test_a_worker_cut_off_from_every_master_loses_nothing_and_its_late_finishes_are_refused(
    reset: bool, redis_cluster: RedisCluster, rediscluster_url: str, tmp_path: Path
) -> None:
    ports = tuple(node.port for node in redis_cluster.nodes)
    fault = CutNetwork(seconds=HEARTBEAT_TIMEOUT + 1.5, reset=reset, cluster_ports=ports)
    report = run(rediscluster_url, tmp_path / "logs", fault, calls=60, fault_every=1.0,
                 max_faults=2, deadline=150)  # fmt: skip
    assert report.faults == 2
    report.assert_clean()
    assert report.reruns >= 1, report  # the cut worker's calls really were run again
