"""``kubenenc operator``: run the kopf handlers, leader election, the enforcer and /metrics.

Settings come from ``KUBENENC_OPERATOR_*`` (see :class:`~kubenenc_operator.settings.
OperatorSettings`), read here once; the Kubernetes connection from the pod's service
account or ``$KUBECONFIG``. SIGTERM/SIGINT stop the operator cleanly (the Lease is released
so another replica takes over at once); the exit code is 0 then, 2 on bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence

import kopf
from kubenenc import logs
from pydantic import ValidationError

from kubenenc_operator.backends import BackendCache
from kubenenc_operator.context import Ctx
from kubenenc_operator.enforcer import sweep
from kubenenc_operator.handlers import Stores, build_registry
from kubenenc_operator.kube import Kube, load_api_client
from kubenenc_operator.leader import Leadership
from kubenenc_operator.metrics import Metrics, serve
from kubenenc_operator.policies import reconcile_policy
from kubenenc_operator.pools import reconcile_pool
from kubenenc_operator.queuemetrics import run_queue_metrics
from kubenenc_operator.settings import OperatorSettings
from kubenenc_operator.store import run_objects, run_sweeps

log = logging.getLogger("kubenenc_operator")


async def enforce(ctx: Ctx, leader: Leadership) -> None:
    """The enforcer loop: while leading, sweep every backend the pools use."""
    last_overdue = 0.0
    while True:
        await asyncio.sleep(ctx.settings.enforce_interval)
        if leader.is_leader:
            overdue = time.monotonic() - last_overdue >= ctx.settings.overdue_interval
            if overdue:
                last_overdue = time.monotonic()
            await asyncio.to_thread(sweep, ctx, ctx.backends.urls(), overdue=overdue)


async def run(settings: OperatorSettings, stop: threading.Event | None = None) -> None:
    """Run until ``stop`` is set or a signal arrives."""
    metrics = Metrics()
    kube = Kube(load_api_client())
    ctx = Ctx(kube=kube, backends=BackendCache(), settings=settings, metrics=metrics)
    leader = Leadership(
        kube, settings.lease_namespace, settings.lease_name, settings.identity,
        settings.lease_duration, metrics,
    )  # fmt: skip
    stores = Stores()
    registry = build_registry(ctx, stores)
    server = (
        serve(settings.metrics_host, settings.metrics_port, metrics.render)
        if settings.metrics_port is not None
        else None
    )
    stop_flag = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_flag.set)
    if stop is not None:
        loop.run_in_executor(None, lambda: (stop.wait(), loop.call_soon_threadsafe(stop_flag.set)))
    helpers = [
        asyncio.create_task(leader.run()),
        asyncio.create_task(enforce(ctx, leader)),
        asyncio.create_task(run_sweeps(ctx, stores.taskdefs, leader)),
        asyncio.create_task(
            run_queue_metrics(ctx, stores.pools, leader, settings.queue_metrics_interval)
        ),
        asyncio.create_task(
            run_objects(ctx, stores.pools, leader, settings.scale_interval, reconcile_pool)
        ),
        asyncio.create_task(
            run_objects(ctx, stores.policies, leader, settings.policy_resync, reconcile_policy)
        ),
    ]
    liveness = (
        f"http://{settings.metrics_host}:{settings.health_port}/healthz"
        if settings.health_port is not None
        else None
    )
    try:
        await kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
        )
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(leader.release)
        if server is not None:
            server.shutdown()
        ctx.backends.close()
        kube.api.close()  # type: ignore[no-untyped-call]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kubenenc operator`` (and ``python -m kubenenc_operator``).

    ``--log-format json``: one JSON object per line (see :mod:`kubenenc.logs`)."""
    parser = argparse.ArgumentParser(prog="kubenenc operator")
    parser.add_argument("--log-format", choices=["text", "json"])
    args = parser.parse_args(argv)
    if args.log_format is not None:
        logs.configure(args.log_format)
    elif not logging.getLogger().handlers:
        logs.configure("text")
    # kopf logs every timer run at INFO (one line per pool per second): keep its warnings.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        settings = OperatorSettings()
    except ValidationError as exc:
        sys.stderr.write(f"error: bad KUBENENC_OPERATOR_* environment: {exc}\n")
        return 2
    asyncio.run(run(settings))
    return 0
