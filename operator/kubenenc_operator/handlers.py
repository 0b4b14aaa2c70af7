"""The kopf registry: which resource events and timers call which reconciler.

Built by :func:`build_registry` on a fresh ``kopf.OperatorRegistry`` (no global registry to
reset). Every handler is a thin shell around :mod:`kubenenc_operator.logic`:

- WorkerPools and ConcurrencyPolicies (few): per-object timers are the reconcilers
  (level-triggered: each tick recomputes everything); create/update/resume handlers only make
  the first reconcile immediate;
- TaskDefinitions (many): watch events feed a :class:`~kubenenc_operator.store.Store`, and
  one sweep loop reconciles them (:mod:`kubenenc_operator.store`), not a timer per object;
- timers and sweeps act only on the replica holding the Lease (:class:`~kubenenc_operator.
  leader.Leadership`), so two replicas do not both scale or both post Events; deletions and
  the Deployment's shape are handled by every replica (idempotent);
- statuses are written as the fields that moved; kopf's own bookkeeping goes to annotations
  (see ``configure``), never into the user's status;
- the only finalizer is the ConcurrencyPolicy's: deleting one must remove it from the
  backends, which Kubernetes garbage collection cannot do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kubenenc_operator import logic
from kubenenc_operator.leader import Leadership
from kubenenc_operator.models import GROUP, VERSION
from kubenenc_operator.store import Store

log = logging.getLogger(__name__)

WP, TD, CP = "workerpools", "taskdefinitions", "concurrencypolicies"


def _plain(body: Any) -> dict[str, Any]:
    """A kopf Body as a plain dict (what the reconcilers take)."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body["metadata"]),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def _write(patch: Any, body: Any, status: Mapping[str, Any]) -> None:
    """Patch only the status fields that differ from what the body holds: an unchanged
    status costs no API call (kopf sends nothing for an empty patch)."""
    current = body.get("status") or {}
    for key, value in status.items():
        if current.get(key) != value:
            patch.status[key] = value


def build_registry(ctx: logic.Ctx, leader: Leadership, store: Store) -> kopf.OperatorRegistry:
    """A registry with every handler bound to ``ctx``, ``leader`` and ``store``."""
    registry = kopf.OperatorRegistry()
    _register_setup(registry)
    _register_pools(registry, ctx, leader)
    _register_policies(registry, ctx, leader)
    _register_taskdefs(registry, ctx, leader, store)
    return registry


def _register_setup(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> Any:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="kopf.kubenenc.io"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="kopf.kubenenc.io", key="last-handled-configuration"
        )
        settings.persistence.finalizer = "kubenenc.io/policy-cleanup"
        settings.posting.level = logging.WARNING  # our own Events say what happened
        settings.scanning.disabled = True  # no CRD/namespace watching: fewer RBAC rights
        settings.execution.max_workers = 16
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60


def _register_taskdefs(
    registry: kopf.OperatorRegistry, ctx: logic.Ctx, leader: Leadership, store: Store
) -> None:
    """Feed the store from watch events (every replica); the leader's sweep reconciles."""

    @kopf.on.event(GROUP, VERSION, TD, id="taskdef-events", registry=registry)
    async def taskdef_event(event: Any, body: Any, **_: Any) -> None:
        if store.taskdef_event(str(event.get("type") or "ADDED"), _plain(body)):
            store.wake()

    @kopf.on.event(GROUP, VERSION, WP, id="pool-events", registry=registry)
    async def pool_event(event: Any, namespace: str | None, name: str | None, **_: Any) -> None:
        store.name_event(WP, str(event.get("type") or "ADDED"), namespace or "", name or "")
        store.wake()

    @kopf.on.event(GROUP, VERSION, CP, id="policy-events", registry=registry)
    async def policy_event(event: Any, namespace: str | None, name: str | None, **_: Any) -> None:
        store.name_event(CP, str(event.get("type") or "ADDED"), namespace or "", name or "")
        store.wake()


def _register_pools(registry: kopf.OperatorRegistry, ctx: logic.Ctx, leader: Leadership) -> None:
    # -- WorkerPool ---------------------------------------------------------------------------

    @kopf.on.resume(GROUP, VERSION, WP, id="pool-resume", registry=registry)
    @kopf.on.create(GROUP, VERSION, WP, id="pool-create", registry=registry)
    @kopf.on.update(GROUP, VERSION, WP, field="spec", id="pool-update", registry=registry)
    def pool_changed(body: Any, patch: Any, **_: Any) -> None:
        _write(patch, body, logic.reconcile_pool(ctx, _plain(body), scale=leader.is_leader))

    @kopf.timer(
        GROUP, VERSION, WP, interval=ctx.settings.scale_interval, id="pool-scale", registry=registry
    )
    def pool_timer(body: Any, patch: Any, **_: Any) -> None:
        if leader.is_leader:
            _write(patch, body, logic.reconcile_pool(ctx, _plain(body)))


def _register_policies(registry: kopf.OperatorRegistry, ctx: logic.Ctx, leader: Leadership) -> None:
    # -- ConcurrencyPolicy --------------------------------------------------------------------

    @kopf.on.resume(GROUP, VERSION, CP, id="policy-resume", registry=registry)
    @kopf.on.create(GROUP, VERSION, CP, id="policy-create", registry=registry)
    @kopf.on.update(GROUP, VERSION, CP, field="spec", id="policy-update", registry=registry)
    def policy_changed(body: Any, patch: Any, **_: Any) -> None:
        _write(patch, body, logic.reconcile_policy(ctx, _plain(body)))

    @kopf.timer(
        GROUP,
        VERSION,
        CP,
        interval=ctx.settings.policy_resync,
        id="policy-resync",
        registry=registry,
    )
    def policy_timer(body: Any, patch: Any, **_: Any) -> None:
        if leader.is_leader:
            _write(patch, body, logic.reconcile_policy(ctx, _plain(body)))

    @kopf.on.delete(GROUP, VERSION, CP, id="policy-cleanup", registry=registry)
    def policy_deleted(body: Any, **_: Any) -> None:
        logic.delete_policy(ctx, _plain(body))
