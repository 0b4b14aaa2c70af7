"""Queue depth and oldest pending age per pool, as the operator's gauges (fake API server,
memory backend; tests/operator/test_logic.py's World)."""

from __future__ import annotations

from kubenenc.ids import WorkerId
from kubenenc.records import WorkerInfo
from kubenenc.scope import queue_name, scope
from kubenenc_operator.metrics import Metrics
from kubenenc_operator.queuemetrics import DEPTH, OLDEST, observe_pool

from tests.operator.test_logic import NS, Q, World


def test_depth_and_age_follow_the_pool_queue() -> None:
    world = World()
    world.ctx.metrics = Metrics()
    body = world.pool(enabled=False)
    label = {"pool": f"{NS}/shop"}
    observe_pool(world.ctx, body)
    assert world.ctx.metrics.value(DEPTH, **label) == 0
    assert world.ctx.metrics.value(OLDEST, **label) == 0
    world.submit(3)
    world.now += 40
    world.submit(2)
    world.submit(4, pool="other")
    # The same pool name of another app, or of the same app in another namespace, is
    # another queue: not counted.
    world.submit(4, pool=queue_name(scope("other-app", NS), "shop"))
    world.submit(4, pool=queue_name(scope("shop", "other-ns"), "shop"))
    world.now += 5
    observe_pool(world.ctx, body)
    assert world.ctx.metrics.value(DEPTH, **label) == 5
    assert world.ctx.metrics.value(OLDEST, **label) == 45
    # Claiming the three oldest leaves the two submitted 5 s ago.
    claimed = world.backend.claim(Q, WorkerId("w"), 3, world.now)
    assert len(claimed) == 3
    world.backend.heartbeat(WorkerInfo(WorkerId("w"), Q, 3, 3, 0, world.now, "pod-1"))
    observe_pool(world.ctx, body)
    assert world.ctx.metrics.value(DEPTH, **label) == 2
    assert world.ctx.metrics.value(OLDEST, **label) == 5
    assert "kubenenc_operator_pool_oldest_pending_seconds{pool=" in world.ctx.metrics.render()
