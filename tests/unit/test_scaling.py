"""The scaling decision and pod-deletion costs, as plain functions (sdk/kubenenc/scaling.py)."""

from __future__ import annotations

import pytest
from kubenenc.scaling import (
    Direction,
    Load,
    ScalingOptions,
    WorkerLoad,
    decide,
    deletion_costs,
    wanted_replicas,
)

OPTS = ScalingOptions(
    min_replicas=1, max_replicas=5, target_per_replica=4, scale_in_cooldown=30, max_step=2
)


def test_demand_is_pending_plus_running_over_target() -> None:
    assert wanted_replicas(OPTS, Load(pending=5, running=4), current=1) == 3
    assert wanted_replicas(OPTS, Load(pending=1000), current=1) == 5  # capped at max
    assert wanted_replicas(OPTS, Load(), current=3) == 1  # floor at min


def test_paused_work_is_not_demand_but_its_pods_stay() -> None:
    assert wanted_replicas(OPTS, Load(paused=40), current=3) == 1
    assert wanted_replicas(OPTS, Load(paused=40, holders=3), current=3) == 3
    assert wanted_replicas(OPTS, Load(paused=40, holders=9), current=3) == 5  # still <= max


def test_scale_out_is_immediate_but_bounded_by_step() -> None:
    d = decide(OPTS, Load(pending=100), current=1, now=0, low_since=None)
    assert (d.replicas, d.wanted, d.direction) == (3, 5, Direction.UP)
    d = decide(OPTS, Load(pending=100), current=3, now=1, low_since=None)
    assert (d.replicas, d.direction) == (5, Direction.UP)
    d = decide(OPTS, Load(pending=100), current=5, now=2, low_since=None)
    assert (d.replicas, d.direction, d.changed) == (5, Direction.HOLD, False)


def test_scale_in_waits_for_the_cooldown_then_steps_down() -> None:
    d = decide(OPTS, Load(), current=5, now=100, low_since=None)
    assert (d.replicas, d.direction, d.low_since) == (5, Direction.COOLING, 100)
    assert "cooldown" in d.message
    d = decide(OPTS, Load(), current=5, now=129, low_since=d.low_since)
    assert (d.replicas, d.direction) == (5, Direction.COOLING)
    d = decide(OPTS, Load(), current=5, now=130, low_since=d.low_since)
    assert (d.replicas, d.direction) == (3, Direction.DOWN)
    assert d.low_since == 100  # more steps to go: no second cooldown
    d = decide(OPTS, Load(), current=3, now=131, low_since=d.low_since)
    assert (d.replicas, d.direction, d.low_since) == (1, Direction.DOWN, None)


def test_a_burst_during_the_cooldown_resets_it() -> None:
    d = decide(OPTS, Load(), current=5, now=0, low_since=None)
    d = decide(OPTS, Load(pending=20), current=5, now=20, low_since=d.low_since)
    assert (d.direction, d.low_since) == (Direction.HOLD, None)
    d = decide(OPTS, Load(), current=5, now=40, low_since=d.low_since)
    assert (d.direction, d.low_since) == (Direction.COOLING, 40)


def test_scale_to_zero_and_activation_threshold() -> None:
    opts = ScalingOptions(
        min_replicas=0,
        max_replicas=4,
        target_per_replica=2,
        activation_threshold=3,
        scale_in_cooldown=0,
    )
    assert decide(opts, Load(), current=1, now=0, low_since=None).replicas == 0
    asleep = decide(opts, Load(pending=2), current=0, now=0, low_since=None)
    assert (asleep.replicas, asleep.direction) == (0, Direction.HOLD)
    woken = decide(opts, Load(pending=3), current=0, now=0, low_since=None)
    assert (woken.replicas, woken.direction) == (2, Direction.UP)
    # Once awake, a little work keeps one replica (the threshold only gates waking up).
    assert decide(opts, Load(pending=1), current=2, now=0, low_since=None).replicas == 1


def test_out_of_bounds_counts_are_corrected_at_once() -> None:
    d = decide(OPTS, Load(pending=100), current=9, now=0, low_since=None)
    assert (d.replicas, d.direction) == (7, Direction.DOWN)  # max lowered: bounded step
    d = decide(
        ScalingOptions(min_replicas=3, max_replicas=5), Load(), current=0, now=0, low_since=None
    )
    assert (d.replicas, d.direction) == (3, Direction.UP)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas <= max_replicas"),
        ({"min_replicas": -1}, "min_replicas"),
        ({"max_step": 0}, ">= 1"),
        ({"scale_in_cooldown": -1}, "cooldown"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, int], text: str) -> None:
    with pytest.raises(ValueError, match=text):
        ScalingOptions(**kwargs)


def test_deletion_costs_put_idle_and_unknown_pods_first() -> None:
    costs = deletion_costs(
        ["a", "b", "c", "d"],
        [
            WorkerLoad("a", running=2, paused=0),
            WorkerLoad("b", running=0, paused=0),
            WorkerLoad("c", running=1, paused=3),
            WorkerLoad("elsewhere", running=5, paused=5),
        ],
    )
    assert costs == {"a": 2, "b": 0, "c": 7, "d": -1}
    assert sorted(costs, key=costs.__getitem__)[:2] == ["d", "b"]
