"""The head hints of a sharded claim (kubenenc_redis.hints): which shard a claim goes to
first, with which bound, and when the hints do not tell (every head is read)."""

from __future__ import annotations

import pytest
from kubenenc_redis import hints
from kubenenc_redis.hints import Hints, queue_member


@pytest.fixture(autouse=True)
def no_age(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readings do not age during a test (a loaded machine may stall it for a second)."""
    monkeypatch.setattr(hints, "HINT_AGE", 3600.0)


def m(seq: int, priority: int = 0, waiters: int = 0) -> str:
    return queue_member(priority, seq, f"id{seq}", waiters)


def test_members_sort_as_the_claim_order_and_match_the_lua_format() -> None:
    assert m(5, waiters=1) < m(1, priority=9) < m(1) < m(2) < m(1, priority=-3)
    assert m(7) == "99999999" + "500000000000" + "000000000000007" + "id7"
    assert len(m(7)) - len("id7") == 35  # shards.MEMBER_HEAD


def test_no_reading_no_pick() -> None:
    h = Hints(3)
    assert h.pick("p", 1.0) is None
    h.seen("p", 0, (m(1), None))  # one claim's report: the other two still unknown
    assert h.pick("p", 1.0) is None


def test_the_best_hint_is_picked_and_bounded_by_the_next() -> None:
    h = Hints(3)
    h.read("p", {0: (m(5), None), 1: (m(3), None), 2: (None, None)})
    assert h.pick("p", 1.0) == (1, m(5))
    h.seen("p", 1, (None, None))
    assert h.pick("p", 1.0) == (0, None)
    h.seen("p", 0, (None, None))
    assert h.pick("p", 1.0) is None  # every queue believed empty: read them


def test_own_registrations_are_known_only_where_the_shard_is_known() -> None:
    h = Hints(2)
    h.registered("p", 0, m(1))  # no reading of pool p yet: nothing to add to
    assert h.pick("p", 1.0) is None
    h.read("p", {0: (None, None), 1: (m(9), None)})
    h.registered("p", 0, m(4))
    h.registered("p", 0, m(6))
    assert h.pick("p", 1.0) == (0, m(9))


def test_one_unknown_shard_is_claimed_first_bounded_by_the_rest() -> None:
    h = Hints(3)
    h.read("p", {0: (m(5), None), 1: (m(3), None), 2: (None, None)})
    h.forget(2, "p")
    assert h.pick("p", 1.0) == (2, m(3))
    h.forget(0)
    assert h.pick("p", 1.0) is None  # two unknown: no bound is safe


def test_a_delayed_call_falling_due_makes_its_shard_unknown() -> None:
    h = Hints(2)
    h.read("p", {0: (m(5), None), 1: (None, 7.0)})
    assert h.pick("p", 6.0) == (0, None)
    assert h.pick("p", 7.0) == (1, m(5))
    h.delayed("p", 0, 6.5)
    assert h.pick("p", 7.0) is None


def test_hints_are_read_again_after_so_many_claims_or_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Hints(2)
    h.read("p", {0: (m(1), None), 1: (None, None)})
    for _ in range(hints.REFRESH_CLAIMS):
        assert h.pick("p", 1.0) == (0, None)
    assert h.pick("p", 1.0) is None
    h.read("p", {0: (m(1), None), 1: (None, None)})
    assert h.pick("p", 1.0) == (0, None)
    monkeypatch.setattr(hints, "HINT_AGE", -1.0)  # as if the reading were old
    assert h.pick("p", 1.0) is None


def test_pools_are_apart() -> None:
    h = Hints(2)
    h.read("a", {0: (m(1), None), 1: (None, None)})
    h.read("b", {0: (None, None), 1: (m(2), None)})
    h.forget(0, "a")
    assert h.pick("b", 1.0) == (1, None)
    assert h.pick("a", 1.0) == (0, None)  # one unknown shard: claimed first


def test_a_pick_for_one_shard_only_counts_when_it_is_that_shard() -> None:
    h = Hints(2)
    h.read("p", {0: (m(1), None), 1: (m(2), None)})
    assert h.pick("p", 1.0, only=1) is None
    assert h.pick("p", 1.0, only=0) == (0, m(2))
    for _ in range(hints.REFRESH_CLAIMS - 1):
        assert h.pick("p", 1.0, only=1) is None  # not counted: no reading forced
    assert h.pick("p", 1.0) == (0, m(2))
