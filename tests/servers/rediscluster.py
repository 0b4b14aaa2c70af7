"""A private Redis Cluster per test session on loopback: 3 masters and 3 replicas.

Six ``redis-server --cluster-enabled yes`` processes (tests/servers/redis.py's
:class:`RedisServer`, each in its own folder so their ``nodes.conf`` stay apart) joined by
``redis-cli --cluster create ... --cluster-replicas 1``; the fixture waits until every node
reports ``cluster_state:ok``. Each test gets a fresh key prefix (``rediscluster_url``,
``rediscluster_backend``), so nothing needs flushing. The URL spreads the app over three
shards (``shards=3``), so with three masters the tests cross masters.

Without ``redis-server``/``redis-cli`` the tests are skipped with the reason; under CI they
fail (see :func:`tests.support.require`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.servers.redis import RedisServer, require_redis_server
from tests.support import caller_clock, free_port, fresh_name

SHARDS = 3
"""The shards of the URL the fixtures hand out."""


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(100):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, on 127.0.0.1; ``extra``
    arguments go to every node's ``redis-server`` (persistence, timeouts: a later one
    overrides an earlier one)."""

    def __init__(
        self, workdir: Path, masters: int = 3, replicas: int = 1, extra: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        self.masters = masters
        self.replicas = replicas
        self.extra = extra
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node (any one is enough to start)."""
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"redis+cluster://{hosts}/"

    def start(self, timeout: float = 60.0) -> RedisCluster:
        for i in range(self.masters * (1 + self.replicas)):
            node = RedisServer(
                self.workdir / f"node{i}", "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                *self.extra, port=_cluster_port(),
            )  # fmt: skip
            self.nodes.append(node.start())
        cli = shutil.which("redis-cli")
        assert cli is not None
        addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
        done = subprocess.run(
            [cli, "--cluster", "create", *addrs, "--cluster-replicas", str(self.replicas),
             "--cluster-yes"],
            check=False, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
        self.wait_ok(timeout)
        return self

    def cli(self, node: RedisServer, *args: str) -> str:
        """One ``redis-cli`` command on ``node``, its output."""
        cli = shutil.which("redis-cli")
        assert cli is not None
        done = subprocess.run(
            [cli, "-h", "127.0.0.1", "-p", str(node.port), *args],
            check=False, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return done.stdout

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every live node says ``cluster_state:ok`` and agrees on ``masters``
        masters holding slots."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.proc is not None]
            infos = [self.cli(n, "CLUSTER", "INFO") for n in live]
            if all("cluster_state:ok" in i for i in infos) and all(
                f"cluster_size:{self.masters}" in i for i in infos
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the cluster did not reach cluster_state:ok in {timeout} s")

    def roles(self) -> dict[int, str]:
        """port -> ``master``/``slave`` of every live node, as the node itself says."""
        out: dict[int, str] = {}
        for n in self.nodes:
            if n.proc is not None:
                first = self.cli(n, "ROLE").split("\n", 1)[0].strip()
                out[n.port] = first
        return out

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    @contextmanager
    def running(self) -> Iterator[RedisCluster]:
        """Started for the ``with`` block; every node stopped after it, also when the
        start failed half-way."""
        try:
            yield self.start()
        finally:
            self.stop()


def require_cluster_tools() -> None:
    """Skip (fail under CI) unless ``redis-server`` and ``redis-cli`` are installed."""
    require_redis_server("redis-cli")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One private 3-master, 3-replica Redis Cluster for the whole session."""
    require_cluster_tools()
    cluster = RedisCluster(tmp_path_factory.mktemp("rediscluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def rediscluster_url(redis_cluster: RedisCluster) -> str:
    """The URL of an empty keyspace (a fresh prefix) on the session's cluster, 3 shards."""
    return f"{redis_cluster.url}?prefix={fresh_name()}&shards={SHARDS}"


@pytest.fixture
def rediscluster_caller_url(rediscluster_url: str) -> str:
    """``rediscluster_url`` with ``clock=caller`` (see ``redis_caller_url``)."""
    return caller_clock(rediscluster_url)


@pytest.fixture
def rediscluster_backend(rediscluster_url: str) -> Iterator[object]:
    from kubenenc_redis.shards import ShardedBackend

    backend = ShardedBackend.from_url(rediscluster_url)
    yield backend
    backend.close()
