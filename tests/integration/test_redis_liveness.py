"""Redis judges heartbeats on its own clock, and forgets outages (issue 13, items 6 and 10).

Liveness must not depend on agreeing wall clocks: a worker whose clock is behind must not
look dead, and a recovering process whose clock is ahead must not find everyone silent. An
outage every worker saw (nothing reached the server for longer than the heartbeat timeout)
must not make the first recovery afterwards hand back the whole fleet's work; a worker that
stays silent for a heartbeat timeout after the server answers again is dead. And the
retention sweep and the overdue check keep up with a fast fleet.

These run on real time (the server's clock cannot be made up), with short timeouts and a
live worker that keeps beating, as a fleet does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kubenenc.ids import WorkerId
from kubenenc.records import Outcome, OutcomeKind
from kubenenc.status import Status
from kubenenc_redis import RedisBackend

from tests.conformance._helpers import W1, W2, add, beat, claim_ids, record
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


def test_a_worker_whose_clock_is_behind_is_not_taken_for_dead(backend: RedisBackend) -> None:
    now = time.time()
    id = add(backend, now)
    assert claim_ids(backend, W1, 1, now) == [id]
    beat(backend, W1, now - 100.0)  # its clock is 100 s behind the others'
    beat(backend, W2, now)
    assert backend.recover(now, TIMEOUT, 3) == []
    assert record(backend, id).status is Status.RUNNING


def test_a_recoverer_whose_clock_is_ahead_hands_back_nothing_live(backend: RedisBackend) -> None:
    now = time.time()
    id = add(backend, now)
    assert claim_ids(backend, W1, 1, now) == [id]
    beat(backend, W1, now)
    assert backend.recover(now + 100.0, TIMEOUT, 3) == []  # its clock is 100 s ahead
    rec = record(backend, id)
    assert (rec.status, rec.lost) == (Status.RUNNING, 0)


def test_a_silent_worker_is_recovered_on_the_servers_clock(backend: RedisBackend) -> None:
    now = time.time()
    id = add(backend, now)
    assert claim_ids(backend, W1, 1, now) == [id]
    beat(backend, W1, now + 100.0)  # its clock is ahead: it still falls silent in time
    _live_for(backend, TIMEOUT + 0.3)
    rec = record(backend, id)
    assert (rec.status, rec.lost, rec.worker) == (Status.PENDING, 1, None)
    assert {w.id for w in backend.workers()} == {W2}


def test_an_outage_everyone_saw_hands_back_nothing_at_first(backend: RedisBackend) -> None:
    now = time.time()
    ids = [add(backend, now, args=str(n)) for n in range(2)]
    assert claim_ids(backend, W1, 1, now) == ids[:1]
    assert claim_ids(backend, W2, 1, now) == ids[1:]
    beat(backend, W1, now)
    beat(backend, W2, now)
    backend.recover(now, TIMEOUT, 3)
    time.sleep(3 * TIMEOUT)  # nothing reaches the server: an outage, as the server sees it
    # W2 is the first back: its recovery finds W1 silent only for the outage, not counted.
    beat(backend, W2, time.time())
    assert backend.recover(time.time(), TIMEOUT, 3) == []
    # W1 comes back within a heartbeat timeout of the end of the outage: alive.
    _live_for(backend, TIMEOUT / 2)
    beat(backend, W1, time.time())
    assert [record(backend, id).lost for id in ids] == [0, 0]
    # A worker that stays silent for a heartbeat timeout after the outage is dead.
    _live_for(backend, TIMEOUT + 0.3)
    rec = record(backend, ids[0])
    assert (rec.status, rec.lost) == (Status.PENDING, 1)
    assert record(backend, ids[1]).status is Status.RUNNING


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
    the test does not depend on the machine's speed; recover gives it 0.1 s)."""
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
