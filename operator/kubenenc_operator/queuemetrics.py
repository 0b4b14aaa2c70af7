"""Queue depth and the age of the oldest pending call, per WorkerPool, as gauges.

``kubenenc_operator_pool_queue_depth`` counts the pool's calls waiting for a worker
(REGISTERED, PENDING, RETRY); ``kubenenc_operator_pool_oldest_pending_seconds`` is how long
the oldest PENDING one has waited since it was submitted (0 when none). Both are set for every
pool the operator watches, autoscaled or not, by the leader every
``queue_metrics_interval`` seconds, and stay available while a pool is scaled to zero: they
are what a KEDA ScaledObject scales on (``examples/keda/``). The age needs the backend's
optional Admin role (``oldest_pending``); without it only the depth is set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from kubenenc.backends.roles import Roles
from kubenenc.status import Status

from kubenenc_operator.context import Ctx
from kubenenc_operator.models import WorkerPoolSpec
from kubenenc_operator.pools import pool_queue

log = logging.getLogger("kubenenc_operator.queuemetrics")

DEPTH = "kubenenc_operator_pool_queue_depth"
OLDEST = "kubenenc_operator_pool_oldest_pending_seconds"
WAITING = (Status.REGISTERED, Status.PENDING, Status.RETRY)


def read_queue(roles: Roles, pool: str, now: float) -> tuple[int, float | None]:
    """``(depth, age of the oldest pending call or None)`` of stored queue ``pool`` (the
    age needs the backend's :class:`~kubenenc.backends.contract.Admin` role)."""
    counts = roles.backend.counts(pool=pool)
    depth = sum(counts.get(s, 0) for s in WAITING)
    oldest = roles.admin.oldest_pending(pool) if roles.admin is not None and depth else None
    return depth, None if oldest is None else max(0.0, now - oldest)


def observe_pool(ctx: Ctx, body: Mapping[str, Any]) -> None:
    """Set both gauges of one WorkerPool (errors are logged: the reconcile reports them)."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    try:
        spec = WorkerPoolSpec.model_validate(body.get("spec") or {})
        url = ctx.secret_url(namespace, spec.backend.secret_name, spec.backend.key)
        now = ctx.clock()
        queue = pool_queue(namespace, name, spec)
        depth, age = ctx.backends.use_roles(url, lambda r: read_queue(r, queue, now))
    except Exception as exc:
        log.debug("queue metrics of %s/%s: %s", namespace, name, exc)
        return
    labels = {"pool": f"{namespace}/{name}"}
    ctx.metrics.set(DEPTH, depth, **labels)
    ctx.metrics.set(OLDEST, age or 0.0, **labels)


async def run_queue_metrics(ctx: Ctx, pools: Any, leader: Any, interval: float) -> None:
    """While leading, refresh the gauges of every watched pool every ``interval`` s."""
    while True:
        await asyncio.sleep(interval)
        if not leader.is_leader:
            continue
        for _, body in pools.snapshot():
            await asyncio.to_thread(observe_pool, ctx, body)
