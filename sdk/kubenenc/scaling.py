"""The worker-pool scaling decision, as pure functions over backend state.

The operator reads a pool's counts and worker heartbeats from the backend, calls
:func:`decide` with the pool's scaling options and what it remembered from the last decision,
writes the result to the Deployment, and remembers :attr:`Decision.low_since` for next time.
Nothing here talks to Kubernetes or to a backend, so every rule is unit-tested directly.

The rules, in order:

- **Demand** is ``pending + running``: work that needs a slot. Paused invocations hold no slot
  (they wait on others), so they do not count as demand, but a pod holding paused work cannot
  be removed without handing that work back, so each such pod stays (``holders``).
- **Wanted** replicas are ``ceil(demand / target_per_replica)``, at least ``holders``, within
  ``[min_replicas, max_replicas]``.
- **Scale to zero**: with ``min_replicas == 0``, an idle pool goes to zero, and a pool at zero
  wakes only when ``pending >= activation_threshold`` (a single stray call need not start a
  pod when the threshold is higher).
- **Scale out** at once, by at most ``max_step`` replicas per decision.
- **Scale in** only after the pool has wanted fewer replicas continuously for
  ``scale_in_cooldown`` seconds (so a short dip between bursts does not kill warm pods), and
  by at most ``max_step``. Pods chosen by :func:`deletion_costs` go first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ScalingOptions:
    """A pool's scaling options (the WorkerPool spec's ``autoscaling`` part)."""

    min_replicas: int = 0
    max_replicas: int = 1
    target_per_replica: int = 1
    """Work items (pending + running) one replica is meant to hold; usually its slots."""
    activation_threshold: int = 1
    """Pending invocations needed to wake a pool that is at zero replicas."""
    scale_in_cooldown: float = 60.0
    """Seconds the pool must want fewer replicas before it scales in."""
    max_step: int = 10
    """At most this many replicas added or removed per decision."""

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise ValueError(
                f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got "
                f"min_replicas={self.min_replicas}, max_replicas={self.max_replicas}"
            )
        if self.target_per_replica < 1 or self.activation_threshold < 1 or self.max_step < 1:
            raise ValueError("target_per_replica, activation_threshold and max_step must be >= 1")
        if self.scale_in_cooldown < 0:
            raise ValueError("scale_in_cooldown must be >= 0")


@dataclass(frozen=True, slots=True)
class Load:
    """What the backend reports for one pool."""

    pending: int = 0
    running: int = 0
    paused: int = 0
    holders: int = 0
    """Live workers of the pool holding paused work (each must keep its pod)."""


class Direction(StrEnum):
    """Which way a decision moves the replica count."""

    UP = "ScaledOut"
    DOWN = "ScaledIn"
    HOLD = "Steady"
    COOLING = "CoolingDown"
    """Fewer replicas are wanted, but the cooldown has not passed yet."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`."""

    replicas: int
    """Replicas to run now."""
    wanted: int
    """Replicas the load asks for (before cooldown and step bounds)."""
    direction: Direction
    low_since: float | None
    """Since when the pool has wanted fewer replicas than it runs (None: it does not);
    pass it back to the next :func:`decide`."""
    message: str

    @property
    def changed(self) -> bool:
        """Whether the replica count moves."""
        return self.direction in (Direction.UP, Direction.DOWN)


def wanted_replicas(options: ScalingOptions, load: Load, current: int) -> int:
    """Replicas the load asks for, within the bounds, ignoring cooldown and step."""
    demand = load.pending + load.running
    asleep = current == 0 and load.running == 0 and load.holders == 0
    if asleep and load.pending < options.activation_threshold:
        return options.min_replicas  # only enough pending work wakes a pool at zero
    wanted = max(math.ceil(demand / options.target_per_replica), load.holders)
    return min(max(wanted, options.min_replicas), options.max_replicas)


def decide(
    options: ScalingOptions, load: Load, current: int, now: float, low_since: float | None
) -> Decision:
    """The replica count for a pool running ``current`` replicas, and why.

    ``low_since`` is what the previous decision returned (None the first time).
    """
    wanted = wanted_replicas(options, load, current)
    work = f"{load.pending} pending, {load.running} running, {load.paused} paused"
    # A pool running more than max (max lowered) or less than min is corrected at once.
    if current > options.max_replicas or current < options.min_replicas or wanted > current:
        step = options.max_step if wanted > current else current - wanted
        target = max(min(wanted, current + step), current - options.max_step)
        direction = Direction.UP if target > current else Direction.DOWN
        if target == current:
            direction = Direction.HOLD
        return Decision(target, wanted, direction, None, f"{current} -> {target} replicas ({work})")
    if wanted == current:
        return Decision(current, wanted, Direction.HOLD, None, f"{current} replicas ({work})")
    since = now if low_since is None else low_since
    waited = now - since
    if waited < options.scale_in_cooldown:
        return Decision(
            current,
            wanted,
            Direction.COOLING,
            since,
            f"{wanted} replicas would do ({work}); scaling in after "
            f"{options.scale_in_cooldown - waited:.0f} s more of cooldown",
        )
    target = max(wanted, current - options.max_step)
    still_low = since if target > wanted else None
    return Decision(
        target,
        wanted,
        Direction.DOWN,
        still_low,
        f"{current} -> {target} replicas ({work}; low for {waited:.0f} s)",
    )


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """One worker's last heartbeat, as far as scaling in cares."""

    host: str
    """The pod name (a worker's host name in a pod)."""
    running: int
    paused: int


def deletion_costs(pods: Iterable[str], workers: Iterable[WorkerLoad]) -> Mapping[str, int]:
    """The ``controller.kubernetes.io/pod-deletion-cost`` for each pod: lower goes first.

    A pod with no live worker (still starting, or stuck) costs -1 and goes first; an idle
    worker's pod costs 0; a busy pod costs its running work plus, weighted double, its paused
    work (removing it would hand back invocations that had already made progress). When a
    pod has several workers their work adds up.
    """
    busy: dict[str, int] = {}
    for w in workers:
        busy[w.host] = busy.get(w.host, 0) + w.running + 2 * w.paused
    return {pod: busy.get(pod, -1) for pod in pods}
