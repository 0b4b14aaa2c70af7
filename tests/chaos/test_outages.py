"""Chaos: the backend stops answering, or the workers' clocks disagree (issue 13's chaos
suite: Redis CLIENT PAUSE for 10 s, DEBUG SLEEP past the heartbeat timeout, CLIENT KILL of
every connection, and two workers with their clocks 10 s ahead and behind). Small counts
here; ``bench/chaos.py --outages`` runs them larger and prints the table.

Every worker stays alive, so besides the kill -9 scenario's checks (nothing lost, stuck or
wrong, no overlapping bodies, no running limit exceeded) nothing may be handed back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.outages import run
from tests.servers.redis import RedisServer, require_redis_server

SCENARIOS = {
    "pause": {"seconds": 10.0},
    "sleep": {"seconds": 4.0},
    "kill": {"times": 4, "every": 1.5},
    "skew": {"skew": 10.0},
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


@pytest.mark.parametrize("fault", sorted(SCENARIOS))
@pytest.mark.timeout(240)
def test_an_outage_or_a_skewed_clock_loses_nothing_and_hands_back_nothing(
    fault: str, debug_redis: RedisServer, tmp_path: Path
) -> None:
    url = f"{debug_redis.url}?prefix={fault}{tmp_path.name[-6:]}"
    report = run(fault, url, tmp_path / "logs", calls=60, **SCENARIOS[fault])  # type: ignore[arg-type]
    assert report.faults >= 1, report
    assert report.stuck == 0, report
    assert report.lost == 0, report
    assert report.wrong == 0, report
    assert report.overlaps == [], report
    assert report.limit_violations == [], report
    assert report.hand_backs == 0, report
