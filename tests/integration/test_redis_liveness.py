"""Redis liveness options and the retention sweep (issue 13, items 6 and 10): the
``clock`` URL option, and a sweep that keeps up with a fast fleet. The server's clock itself
is tested with MongoDB's in test_server_clock.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kubenenc.ids import WorkerId
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, add, beat, claim_ids
from kubenenc_redis import RedisBackend

from tests.servers.redis import RedisServer

TIMEOUT = 0.6
"""Heartbeat timeout of these tests (seconds of real time)."""


@pytest.fixture
def backend(redis_server: RedisServer) -> Iterator[RedisBackend]:
    b = RedisBackend.from_url(f"{redis_server.url}?prefix=l{uuid.uuid4().hex[:10]}")
    yield b
    b.close()


def _live_for(backend: RedisBackend, seconds: float, worker: WorkerId = W2) -> None:
    """``worker`` beats and recovers every 0.05 s for ``seconds``, as a live worker does."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        beat(backend, worker, time.time())
        backend.recover(time.time(), TIMEOUT, 3)
        time.sleep(0.05)


def test_caller_clock_judges_on_the_times_passed(redis_server: RedisServer) -> None:
    backend = RedisBackend.from_url(f"{redis_server.url}?prefix=l{uuid.uuid4().hex[:10]}"
                                    "&clock=caller")  # fmt: skip
    try:
        id = add(backend, 1.0)
        assert claim_ids(backend, W1, 1, 1.0) == [id]
        beat(backend, W1, 1.0)
        assert backend.recover(100.0, 30.0, 3) == [id]
    finally:
        backend.close()


def test_a_bad_clock_option_is_refused(redis_server: RedisServer) -> None:
    from kubenenc.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="clock='wall'"):
        RedisBackend.from_url(f"{redis_server.url}?clock=wall")


def test_the_sweep_goes_on_while_batches_come_back_full(redis_server: RedisServer) -> None:
    """Item 10: one batch of 500 per recover fell behind above ~500 calls/s per worker; a
    sweep now goes batch after batch within its time budget (here a generous one, so that
    the test does not depend on the machine's speed; recover gives it SWEEP_BUDGET)."""
    backend = RedisBackend.from_url(
        f"{redis_server.url}?prefix=l{uuid.uuid4().hex[:10]}&retention=100"
    )
    try:
        n = 2_000
        ids = [add(backend, 1000.0, args=str(k)) for k in range(n)]
        claimed = backend.claim("default", W1, n, 1000.0)
        assert len(claimed) == n
        ok = backend.finish([Outcome(i, OutcomeKind.SUCCESS, "1") for i in ids], W1, 1000.0)
        assert all(ok)
        assert backend.sweep(1099.0, budget=60.0) == 0  # not past the retention yet
        assert backend.sweep(1101.0, budget=60.0) == n
        assert backend._r.zcard(backend._keys.fixed("K_FIN")) == 0
        assert backend._r.zcard(backend._keys.fixed("K_IX")) == 0
        assert backend.get_many(ids[:3]) == [None, None, None]
        assert backend.counts()[Status.SUCCESS] == n  # counters outlive the records
    finally:
        backend.close()
