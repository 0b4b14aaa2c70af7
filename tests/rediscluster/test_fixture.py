"""The loopback Redis Cluster fixture: three masters with a replica each, all slots served."""

from __future__ import annotations

from tests.servers.rediscluster import RedisCluster


def test_three_masters_three_replicas(redis_cluster: RedisCluster) -> None:
    roles = sorted(redis_cluster.roles().values())
    assert roles == ["master"] * 3 + ["slave"] * 3
    info = redis_cluster.cli(redis_cluster.nodes[0], "CLUSTER", "INFO")
    assert "cluster_slots_assigned:16384" in info
