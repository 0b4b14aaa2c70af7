"""ConcurrencyPolicies: each one written into every backend of its namespace.

A policy is stored as ``<namespace>/<name>`` (see :mod:`kubenenc.task_defaults`) in the
backend of every WorkerPool of its namespace and in the operator's default backend, where
the SDK and the workers read it when they register and claim. Writing is idempotent and
repeated every ``policy_resync`` seconds (a backend that lost it gets it back); deleting the
resource removes it from the same backends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubenenc.concurrency import ConcurrencyPolicy
from kubenenc.task_defaults import scoped_name
from pydantic import ValidationError

from kubenenc_operator.context import Ctx, ReconcileError, begin, invalid_spec, object_meta
from kubenenc_operator.kube import custom_path
from kubenenc_operator.resources import set_condition


def namespace_backend_urls(ctx: Ctx, namespace: str) -> tuple[list[str], list[str]]:
    """Backend URLs of every WorkerPool in ``namespace`` plus the operator default, and the
    problems met resolving them."""
    urls: list[str] = [ctx.settings.backend] if ctx.settings.backend else []
    problems: list[str] = []
    for pool in ctx.kube.list(custom_path(namespace, "workerpools")):
        ref = (pool.get("spec") or {}).get("backend") or {}
        try:
            url = ctx.secret_url(namespace, ref.get("secretName", ""), ref.get("key", "url"))
        except ReconcileError as exc:
            problems.append(f"WorkerPool {pool['metadata']['name']}: {exc}")
            continue
        if url not in urls:
            urls.append(url)
    return urls, problems


def reconcile_policy(ctx: Ctx, body: Mapping[str, Any]) -> dict[str, Any]:
    """Write the policy into every backend of its namespace, as ``<namespace>/<name>`` (see
    :mod:`kubenenc.task_defaults`); return the status."""
    name, namespace, generation, _, stamp, conditions = begin(ctx, body, "ConcurrencyPolicy")
    try:
        policy = ConcurrencyPolicy.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return {**invalid_spec(exc, conditions, generation, stamp), "backends": 0}
    text = policy.model_dump_json()
    urls, problems = namespace_backend_urls(ctx, namespace)
    written = 0
    for url in urls:
        try:
            ctx.store_once(url, scoped_name(name, namespace), text)
            written += 1
        except Exception as exc:
            problems.append(f"backend unavailable: {exc}")
    if not urls:
        conditions = set_condition(
            conditions, "Ready", "False", "NoBackend",
            "no WorkerPool in this namespace has a backend yet and the operator has no "
            "default backend (KUBENENC_OPERATOR_BACKEND): create a WorkerPool",
            generation, stamp,
        )  # fmt: skip
    elif problems:
        ctx.metrics.inc("kubenenc_operator_reconcile_errors_total", kind="ConcurrencyPolicy")
        conditions = set_condition(
            conditions, "Ready", "False", "BackendUnavailable", "; ".join(problems),
            generation, stamp,
        )  # fmt: skip
    else:
        conditions = set_condition(
            conditions, "Ready", "True", "Stored", f"stored in {written} backend(s)",
            generation, stamp,
        )  # fmt: skip
    return {"observedGeneration": generation, "backends": written, "conditions": conditions}


def delete_policy(ctx: Ctx, body: Mapping[str, Any]) -> list[str]:
    """Remove the policy from every backend of its namespace; returns the problems."""
    name, namespace, _ = object_meta(body)
    urls, problems = namespace_backend_urls(ctx, namespace)
    for url in urls:
        try:
            ctx.forget_stored(url, scoped_name(name, namespace))
        except Exception as exc:
            problems.append(f"backend unavailable: {exc}")
    if problems:
        ctx.event(body, "Warning", "CleanupIncomplete", "; ".join(problems))
    return problems
