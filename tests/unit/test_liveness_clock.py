"""The pure parts of the MongoDB backend's server-clock liveness (see
kubenenc_mongodb.liveness): silence with outages not counted, and the clock option."""

from __future__ import annotations

import pytest
from kubenenc.errors import ConfigurationError
from kubenenc_mongodb.liveness import beat_time, silence
from kubenenc_mongodb.options import parse_url


def test_silence_leaves_outages_out() -> None:
    assert silence(100.0, 110.0, []) == 10.0
    assert silence(100.0, 110.0, [(102.0, 108.0)]) == 4.0
    assert silence(100.0, 110.0, [(90.0, 95.0)]) == 10.0  # before the beat: counts nothing
    assert silence(100.0, 110.0, [(95.0, 103.0), (109.0, 120.0)]) == 6.0  # clipped both ends


def test_overlapping_outages_recorded_twice_count_once() -> None:
    assert silence(100.0, 110.0, [(102.0, 106.0), (104.0, 108.0)]) == 4.0
    assert silence(100.0, 110.0, [(102.0, 108.0), (103.0, 104.0)]) == 4.0


def test_a_heartbeat_without_a_server_stamp_falls_back_to_the_workers_time() -> None:
    assert beat_time({"_id": "w", "at": 5.0}) == 5.0
    assert beat_time({"_id": "w", "at": 5.0, "seen": 7.5}) == 7.5


def test_the_clock_option() -> None:
    assert parse_url("mongodb://h/db").clock == "server"
    assert parse_url("mongodb://h/db?clock=caller").clock == "caller"
    with pytest.raises(ConfigurationError, match=r"clock=.wall."):
        parse_url("mongodb://h/db?clock=wall")
