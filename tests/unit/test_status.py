"""The lifecycle table and its single check."""

from __future__ import annotations

import itertools

import pytest
from kubenenc.errors import InvalidTransition
from kubenenc.status import FINAL, TRANSITIONS, Status, can_transition, check_transition

S = Status


def test_every_status_has_a_row_and_values_are_stable_names() -> None:
    assert set(TRANSITIONS) == set(Status)
    for s in Status:
        assert s.value == s.name
        assert Status(s.value) is s


def test_final_statuses_have_no_exits() -> None:
    assert {S.SUCCESS, S.FAILED, S.CANCELLED} == FINAL
    for s in Status:
        assert s.is_final is (s in FINAL)
        if s.is_final:
            assert TRANSITIONS[s] == frozenset()
        else:
            assert TRANSITIONS[s], f"{s} is not final but has no exit"


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.REGISTERED, S.PENDING),
        (S.REGISTERED, S.WAITING_DEPENDENCIES),
        (S.WAITING_DEPENDENCIES, S.PENDING),
        (S.PENDING, S.RUNNING),
        (S.RUNNING, S.SUCCESS),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.RETRY),
        (S.RETRY, S.PENDING),
        (S.RUNNING, S.PAUSED),
        (S.PAUSED, S.RUNNING),
        (S.RUNNING, S.PENDING),  # handed back / worker lost
        (S.PAUSED, S.PENDING),  # worker lost while paused
    ],
)
def test_documented_transitions_are_allowed(src: Status, dst: Status) -> None:
    assert can_transition(src, dst)
    check_transition(src, dst)


def test_any_non_final_can_be_cancelled_or_failed() -> None:
    for s in Status:
        if not s.is_final:
            check_transition(s, S.CANCELLED)
            check_transition(s, S.FAILED)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.PENDING, S.SUCCESS),  # must run first
        (S.PENDING, S.PAUSED),
        (S.REGISTERED, S.RUNNING),
        (S.WAITING_DEPENDENCIES, S.RUNNING),
        (S.PAUSED, S.SUCCESS),  # must resume first
        (S.RETRY, S.RUNNING),
        (S.RUNNING, S.REGISTERED),
        (S.RUNNING, S.RUNNING),
        (S.PENDING, S.PENDING),
    ],
)
def test_forbidden_transitions_raise_with_the_allowed_ones(src: Status, dst: Status) -> None:
    assert not can_transition(src, dst)
    with pytest.raises(InvalidTransition) as info:
        check_transition(src, dst)
    message = str(info.value)
    assert f"{src} -> {dst}" in message
    for allowed in TRANSITIONS[src]:
        assert allowed.value in message


def test_leaving_a_final_status_says_it_is_final() -> None:
    for src, dst in itertools.product(FINAL, Status):
        with pytest.raises(InvalidTransition, match=r"none \(final\)"):
            check_transition(src, dst)


def test_nothing_returns_to_registered_and_everything_is_reachable() -> None:
    assert all(S.REGISTERED not in exits for exits in TRANSITIONS.values())
    seen = {S.REGISTERED}
    frontier = [S.REGISTERED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(Status)


def test_can_and_check_agree_on_every_pair() -> None:
    for src, dst in itertools.product(Status, Status):
        if can_transition(src, dst):
            check_transition(src, dst)
        else:
            with pytest.raises(InvalidTransition):
                check_transition(src, dst)
