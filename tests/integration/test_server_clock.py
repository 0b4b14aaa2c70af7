"""Redis and MongoDB judge heartbeats on the server's clock and forget outages (issue 13,
item 6).

Liveness must not depend on agreeing wall clocks: a worker whose clock is behind must not
look dead, and a recovering process whose clock is ahead must not find everyone silent. An
outage every worker saw (nothing reached the server for longer than the heartbeat timeout)
must not make the first recovery afterwards hand back the whole fleet's work; a worker that
stays silent for a heartbeat timeout after the server answers again is dead.

These run on real time (the server's clock cannot be made up), with short timeouts and a
live worker that keeps beating, as a fleet does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubenenc.backends.contract import Backend
from kubenenc.ids import WorkerId
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, add, beat, claim_ids, record

from tests.servers.mongodb import opened

TIMEOUT = 0.6
"""Heartbeat timeout of these tests (seconds of real time)."""


@pytest.fixture(params=["redis_url", "mongodb_url", "mongojava_url"])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A backend on its default, server clock."""
    url = request.getfixturevalue(request.param)
    if request.param == "redis_url":
        from kubenenc_redis import RedisBackend

        b = RedisBackend.from_url(url)
        yield b
        b.close()
    else:
        with opened(url) as b:
            yield b


def _live_for(backend: Backend, seconds: float, worker: WorkerId = W2) -> None:
    """``worker`` beats and recovers every 0.05 s for ``seconds``, as a live worker does."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        beat(backend, worker, time.time())
        backend.recover(time.time(), TIMEOUT, 3)
        time.sleep(0.05)


def test_a_worker_whose_clock_is_behind_is_not_taken_for_dead(backend: Backend) -> None:
    now = time.time()
    id = add(backend, now)
    assert claim_ids(backend, W1, 1, now) == [id]
    beat(backend, W1, now - 100.0)  # its clock is 100 s behind the others'
    beat(backend, W2, now)
    assert backend.recover(now, TIMEOUT, 3) == []
    assert record(backend, id).status is Status.RUNNING


def test_a_recoverer_whose_clock_is_ahead_hands_back_nothing_live(backend: Backend) -> None:
    now = time.time()
    id = add(backend, now)
    assert claim_ids(backend, W1, 1, now) == [id]
    beat(backend, W1, now)
    assert backend.recover(now + 100.0, TIMEOUT, 3) == []  # its clock is 100 s ahead
    rec = record(backend, id)
    assert (rec.status, rec.lost) == (Status.RUNNING, 0)


def test_a_silent_worker_is_recovered_on_the_servers_clock(backend: Backend) -> None:
    now = time.time()
    id = add(backend, now)
    assert claim_ids(backend, W1, 1, now) == [id]
    beat(backend, W1, now + 100.0)  # its clock is ahead: it still falls silent in time
    _live_for(backend, TIMEOUT + 0.3)
    rec = record(backend, id)
    assert (rec.status, rec.lost, rec.worker) == (Status.PENDING, 1, None)
    assert {w.id for w in backend.workers()} == {W2}


def test_an_outage_everyone_saw_hands_back_nothing_at_first(backend: Backend) -> None:
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
