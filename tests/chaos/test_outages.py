"""Chaos: the backend stops answering, or the workers' clocks disagree (issue 13's chaos
suite). Redis: CLIENT PAUSE for 10 s, DEBUG SLEEP and SIGSTOP of the server past the
heartbeat timeout, CLIENT KILL of every connection, two workers with their clocks 10 s
ahead and behind. MongoDB (FerretDB): SIGSTOP of the server past the heartbeat timeout, and
the same clock skew. (SQLite has none of these: its workers share one host and its clock,
and an outage there is this host's.) Small counts here; ``bench/chaos.py --outages`` runs
them larger and prints the table.

Every worker stays alive, so besides the kill -9 scenario's checks (nothing lost, stuck or
wrong, no overlapping bodies, no running limit exceeded) nothing may be handed back on
Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.outages import REDIS_SIZES, assert_outage_clean, run
from tests.servers.mongodb import FerretServer, ferretdb_binary, start_ferretdb
from tests.servers.redis import RedisServer, require_redis_server
from tests.support import require

REDIS = REDIS_SIZES
MONGODB: dict[str, dict[str, Any]] = {
    # The same heartbeat timeout as Redis (2 s). The skew is past the 5 s lease of the
    # backend's lock, which judges no process's clock (kubenenc_mongodb.lock).
    "freeze": {"seconds": 4.0},
    "skew": {"skew": 20.0},
}


@pytest.fixture(scope="module")
def debug_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server that takes DEBUG from loopback (off by default in Redis 7)."""
    require_redis_server()
    server = RedisServer(
        tmp_path_factory.mktemp("redis-outages"), "--enable-debug-command", "local"
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_ferretdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretServer]:
    """A private FerretDB (the scenarios stop its process)."""
    binary = ferretdb_binary()
    require(binary is not None, "no FerretDB binary: run plugins/mongodb/ferretdb/build.sh")
    assert binary is not None
    root = tmp_path_factory.mktemp("ferretdb-outages")
    server = start_ferretdb(binary, root / "data", root / "ferretdb.log")
    yield server
    server.stop()


@pytest.mark.parametrize("fault", sorted(REDIS))
@pytest.mark.timeout(240)
def test_redis_outage_or_skewed_clock_loses_nothing_and_hands_back_nothing(
    fault: str, debug_redis: RedisServer, tmp_path: Path
) -> None:
    url = f"{debug_redis.url}?prefix={fault}{tmp_path.name[-6:]}"
    assert debug_redis.proc is not None
    options = REDIS[fault]
    report = run(fault, url, tmp_path / "logs", calls=60, server_pids=[debug_redis.proc.pid],
                 **options)  # fmt: skip
    assert_outage_clean(report)


@pytest.mark.parametrize("fault", sorted(MONGODB))
@pytest.mark.timeout(300)
def test_mongodb_outage_or_skewed_clock_loses_nothing_and_hands_back_nothing(
    fault: str, own_ferretdb: FerretServer, tmp_path: Path
) -> None:
    url = own_ferretdb.url(f"chaos_{fault}_{tmp_path.name[-6:]}")
    options = MONGODB[fault]
    # Hand-backs are not asserted for a frozen server: it lets the backend's lock lease
    # lapse, and a step re-applied by the process that takes the lock over may leave a claim
    # whose reply was lost, which release_unheld then hands back (counting a loss; nothing
    # runs twice). The invariants above still hold. Skewed clocks hand back nothing.
    report = run(fault, url, tmp_path / "logs", calls=30, server_pids=[own_ferretdb.proc.pid],
                 **options)  # fmt: skip
    assert_outage_clean(report, hand_backs=fault != "freeze")
