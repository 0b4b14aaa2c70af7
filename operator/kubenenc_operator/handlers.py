"""The kopf registry: which resource events and timers call which reconciler.

Built by :func:`build_registry` on a fresh ``kopf.OperatorRegistry`` (no global registry to
reset). Every handler is a thin shell around :mod:`kubenenc_operator.logic`:

- timers are the reconcilers (level-triggered: each tick recomputes everything); the
  create/update/resume handlers only make the first reconcile immediate;
- timers act only on the replica holding the Lease (:class:`~kubenenc_operator.leader.
  Leadership`), so two replicas do not both scale or both post Events; deletions and the
  Deployment's shape are handled by every replica (idempotent);
- statuses are written through kopf's ``patch.status`` as whole fields; kopf's own
  bookkeeping goes to annotations (see :func:`configure`), never into the user's status;
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


def _write(patch: Any, status: Mapping[str, Any]) -> None:
    for key, value in status.items():
        patch.status[key] = value


def build_registry(ctx: logic.Ctx, leader: Leadership) -> kopf.OperatorRegistry:
    """A registry with every handler bound to ``ctx`` and ``leader``."""
    registry = kopf.OperatorRegistry()
    _register_setup(registry)
    _register_pools(registry, ctx, leader)
    _register_policies(registry, ctx, leader)
    _register_taskdefs(registry, ctx, leader)
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


def _register_taskdefs(registry: kopf.OperatorRegistry, ctx: logic.Ctx, leader: Leadership) -> None:
    """Indexes of each namespace's TaskDefinitions, pools and policies; the reconcilers."""

    @kopf.index(GROUP, VERSION, TD, id="taskdefs", registry=registry)
    def td_index(namespace: str | None, name: str, spec: Any, **_: Any) -> Any:
        return {namespace: (name, tuple(spec.get("dependsOn") or ()))}

    @kopf.index(GROUP, VERSION, WP, id="pools", registry=registry)
    def pool_index(namespace: str | None, name: str, **_: Any) -> Any:
        return {namespace: name}

    @kopf.index(GROUP, VERSION, CP, id="policies", registry=registry)
    def policy_index(namespace: str | None, name: str, **_: Any) -> Any:
        return {namespace: name}

    def siblings(namespace: str | None, kw: Mapping[str, Any]) -> logic.Siblings:
        return logic.Siblings(
            depends_on=dict(kw["taskdefs"].get(namespace, ())),
            pools=frozenset(kw["pools"].get(namespace, ())),
            policies=frozenset(kw["policies"].get(namespace, ())),
        )

    # -- TaskDefinition -----------------------------------------------------------------------

    @kopf.on.resume(GROUP, VERSION, TD, id="taskdef-resume", registry=registry)
    @kopf.on.create(GROUP, VERSION, TD, id="taskdef-create", registry=registry)
    @kopf.on.update(GROUP, VERSION, TD, field="spec", id="taskdef-update", registry=registry)
    def taskdef_changed(body: Any, patch: Any, namespace: str | None, **kw: Any) -> None:
        if leader.is_leader:
            status = logic.reconcile_taskdef(
                ctx, _plain(body), siblings(namespace, kw), backend_status=False
            )
            _write(patch, status)

    @kopf.timer(
        GROUP,
        VERSION,
        TD,
        interval=ctx.settings.status_interval,
        id="taskdef-status",
        registry=registry,
    )
    def taskdef_timer(body: Any, patch: Any, namespace: str | None, **kw: Any) -> None:
        if leader.is_leader:
            _write(patch, logic.reconcile_taskdef(ctx, _plain(body), siblings(namespace, kw)))


def _register_pools(registry: kopf.OperatorRegistry, ctx: logic.Ctx, leader: Leadership) -> None:
    # -- WorkerPool ---------------------------------------------------------------------------

    @kopf.on.resume(GROUP, VERSION, WP, id="pool-resume", registry=registry)
    @kopf.on.create(GROUP, VERSION, WP, id="pool-create", registry=registry)
    @kopf.on.update(GROUP, VERSION, WP, field="spec", id="pool-update", registry=registry)
    def pool_changed(body: Any, patch: Any, **_: Any) -> None:
        _write(patch, logic.reconcile_pool(ctx, _plain(body), scale=leader.is_leader))

    @kopf.timer(
        GROUP, VERSION, WP, interval=ctx.settings.scale_interval, id="pool-scale", registry=registry
    )
    def pool_timer(body: Any, patch: Any, **_: Any) -> None:
        if leader.is_leader:
            _write(patch, logic.reconcile_pool(ctx, _plain(body)))


def _register_policies(registry: kopf.OperatorRegistry, ctx: logic.Ctx, leader: Leadership) -> None:
    # -- ConcurrencyPolicy --------------------------------------------------------------------

    @kopf.on.resume(GROUP, VERSION, CP, id="policy-resume", registry=registry)
    @kopf.on.create(GROUP, VERSION, CP, id="policy-create", registry=registry)
    @kopf.on.update(GROUP, VERSION, CP, field="spec", id="policy-update", registry=registry)
    def policy_changed(body: Any, patch: Any, **_: Any) -> None:
        _write(patch, logic.reconcile_policy(ctx, _plain(body)))

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
            _write(patch, logic.reconcile_policy(ctx, _plain(body)))

    @kopf.on.delete(GROUP, VERSION, CP, id="policy-cleanup", registry=registry)
    def policy_deleted(body: Any, **_: Any) -> None:
        logic.delete_policy(ctx, _plain(body))
