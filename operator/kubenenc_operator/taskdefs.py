"""TaskDefinitions: references checked, options stored, numbers read, schedules run.

:func:`reconcile_taskdef` checks a definition against its namespace (:class:`Siblings`:
``dependsOn`` loops, a second definition of the same task, missing pools, policies and
dependencies, a bad schedule), stores its options in its pool's backend while it is Ready
(:func:`task_defaults`; :func:`collect_task_defaults` removes those no Ready definition
wrote), copies its task's numbers into the status from one shared sweep of the backend
(:func:`gather_task_stats`), and submits the call of a due cron tick (:func:`run_schedule`,
exactly once across operator replicas).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubenenc import cron, schedules
from kubenenc.backends import Backend
from kubenenc.concurrency import (
    ConcurrencyPolicy,
    call_key,
    rate_key,
    registration_key,
    running_key,
)
from kubenenc.ids import TaskId, new_invocation_id
from kubenenc.records import NewInvocation
from kubenenc.scope import queue_name, scope
from kubenenc.signatures import Signature, argument_problems, signature_name
from kubenenc.status import Status
from kubenenc.task_defaults import TASK_PREFIX, TaskDefaults, scoped_name, task_defaults_name
from pydantic import ValidationError

from kubenenc_operator.context import Ctx, begin, invalid_spec, object_meta
from kubenenc_operator.graph import describe_cycle, find_cycles
from kubenenc_operator.kube import KubeError, custom_path
from kubenenc_operator.models import TaskDefinitionSpec
from kubenenc_operator.resources import Truth, now_rfc3339, parse_rfc3339, set_condition

log = logging.getLogger(__name__)

RECENT = 10_000
"""Newest PENDING / SUCCESS / FAILED invocations read per sweep of a backend, shared by all
its TaskDefinitions, for the oldest pending and last success/failure times (the counts are
exact, from :meth:`~kubenenc.backends.contract.Records.counts_by_task`)."""
OLDEST_CAP = 100_000
"""A task with more pending invocations than the shared read saw is read alone, up to this
many: beyond it, its oldest pending time is that of the newest ``OLDEST_CAP``."""


def task_id(spec: TaskDefinitionSpec) -> TaskId:
    """``module:function`` -> the SDK's task id ``module.function``."""
    module, _, attr = spec.task.partition(":")
    return TaskId(f"{module}.{attr}")


@dataclass
class TaskStats:
    """One task's numbers in one backend, gathered from a single sweep of the backend."""

    counts: dict[str, int] = field(default_factory=dict)
    oldest_pending: float | None = None
    last: dict[Status, float] = field(default_factory=dict)

    def status_fields(self, now: float) -> dict[str, Any]:
        """The TaskDefinition status fields."""
        out: dict[str, Any] = {
            "invocations": dict(self.counts),
            "oldestPendingTime": None
            if self.oldest_pending is None
            else now_rfc3339(dt.datetime.fromtimestamp(self.oldest_pending, dt.UTC)),
        }
        for status, key in (
            (Status.SUCCESS, "lastSuccessTime"),
            (Status.FAILED, "lastFailureTime"),
        ):
            if status in self.last:
                out[key] = now_rfc3339(dt.datetime.fromtimestamp(self.last[status], dt.UTC))
        return out


def gather_task_stats(
    backend: Backend, queue: str | None = None, app: str | None = None
) -> dict[str, TaskStats]:
    """Numbers of every task in ``backend`` (of App ``app`` on stored queue ``queue`` when
    given: another app's or namespace's calls of the same task are not counted): exact counts
    in one read, plus the newest ``RECENT`` pending, succeeded and failed invocations for the
    times (a task with more pending ones than that read saw is read alone), however many
    TaskDefinitions use them."""
    stats: dict[str, TaskStats] = {}
    for task, by_status in backend.counts_by_task(pool=queue).items():
        counts = {s.value: n for s, n in by_status.items() if n}
        if counts:
            stats[task] = TaskStats(counts=counts)
    seen: dict[str, int] = {}
    for status in (Status.PENDING, Status.SUCCESS, Status.FAILED):
        for r in backend.query(app=app, status=status, limit=RECENT):
            if queue is not None and r.pool != queue:
                continue
            t = stats.setdefault(r.task, TaskStats())
            if status is Status.PENDING:
                seen[r.task] = seen.get(r.task, 0) + 1
                if t.oldest_pending is None or r.created_at < t.oldest_pending:
                    t.oldest_pending = r.created_at
            else:
                t.last[status] = max(t.last.get(status, 0.0), r.updated_at)
    for task, t in stats.items():
        pending = t.counts.get(Status.PENDING.value, 0)
        if pending > seen.get(task, 0):
            found = backend.query(
                app=app, task=task, status=Status.PENDING, limit=min(pending, OLDEST_CAP)
            )
            t.oldest_pending = min(
                (r.created_at for r in found if queue is None or r.pool == queue),
                default=t.oldest_pending,
            )
    return stats


@functools.cache
def stats_of_queue(queue: str, app: str) -> Callable[[Backend], dict[str, TaskStats]]:
    """The reader of :func:`gather_task_stats` for one queue: the same object for every
    TaskDefinition of the queue, so :meth:`Ctx.shared_read` runs it once for all of them."""
    return lambda backend: gather_task_stats(backend, queue, app)


def task_defaults(spec: TaskDefinitionSpec, namespace: str) -> TaskDefaults:
    """What a TaskDefinition sets for every call of its task (see :mod:`kubenenc.task_defaults`):
    its pool and policy, and each option it sets (an unset one keeps the decorator's value)."""
    return TaskDefaults(
        retries=spec.retries,
        backoff=spec.backoff_seconds,
        max_backoff=spec.max_backoff_seconds,
        timeout=spec.timeout_seconds,
        priority=spec.priority,
        pool=spec.pool,
        concurrency=scoped_name(spec.concurrency_policy_ref, namespace)
        if spec.concurrency_policy_ref
        else None,
    )


def collect_task_defaults(
    ctx: Ctx, keep: Mapping[str, set[str]], namespaces: set[str] | None
) -> int:
    """Remove the stored TaskDefinition options that no Ready TaskDefinition wrote in a full
    sweep (``keep``: url -> names written): those of deleted definitions (there is no
    finalizer on TaskDefinitions) or of definitions no longer Ready. Only names of
    ``namespaces`` (None: every namespace) are touched. Returns how many were removed."""
    removed = 0
    for url in ctx.backends.urls():
        try:
            names = ctx.backends.use(url, lambda b: list(b.policies()))
        except Exception:
            log.exception("cannot list the stored options")
            continue
        for name in names:
            namespace, sep, rest = name.partition("/")
            if not sep or not rest.startswith(TASK_PREFIX) or name in keep.get(url, ()):
                continue
            if namespaces is not None and namespace not in namespaces:
                continue
            try:
                ctx.forget_stored(url, name)
                removed += 1
            except Exception:
                log.exception("cannot remove %s", name)
    return removed


def scheduled_call(
    spec: TaskDefinitionSpec, policy: ConcurrencyPolicy | None, app: str, namespace: str
) -> NewInvocation:
    """The invocation a cron tick submits (arguments from the spec, JSON-encoded) for App
    ``app`` (its WorkerPool's ``appName``) in ``namespace``: on that app's queue, with keys in
    its scope, as if the app itself had called (see :mod:`kubenenc.scope`)."""
    task = task_id(spec)
    scope_ = scope(app, namespace)
    args = dict(spec.arguments or {})
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
    return NewInvocation(
        id=new_invocation_id(),
        app=app,
        task=task,
        args=json.dumps(args, separators=(",", ":")),
        call_key=call_key(task, args, scope=scope_),
        display=f"{spec.task.partition(':')[2]}({shown})"[:200],
        pool=queue_name(scope_, spec.pool),
        priority=spec.priority or 0,
        max_retries=spec.retries or 0,
        timeout=spec.timeout_seconds,
        running_key=running_key(policy, task, args, scope=scope_),
        running_limit=policy.running_limit if policy else None,
        registration_key=registration_key(policy, task, args, scope=scope_),
        registration=policy.registration if policy else "allow",
        rate_key=rate_key(policy, task, args, scope=scope_),
        rate=policy.rate_spec if policy else None,
    )


@dataclass(frozen=True, slots=True)
class Siblings:
    """What a TaskDefinition is checked against: its namespace's other resources."""

    depends_on: Mapping[str, Sequence[str]]
    """Every TaskDefinition of the namespace -> its dependsOn."""
    pools: frozenset[str]
    policies: frozenset[str]
    cycles: Mapping[str, tuple[str, ...]] | None = None
    """:func:`find_cycles` of ``depends_on``, when the caller computed it once for many."""
    owners: Mapping[str, str] | None = None
    """``spec.task`` -> the (alphabetically first) TaskDefinition naming it: only that one
    stores the task's options, the others are refused."""


def _namespace_problem(
    name: str, spec: TaskDefinitionSpec, siblings: Siblings
) -> tuple[str, str] | None:
    """A ``dependsOn`` loop through ``name``, or another definition of the same task."""
    known = siblings.depends_on.get(name)
    if siblings.cycles is not None and known is not None and list(known) == spec.depends_on:
        cycles = siblings.cycles
    else:
        cycles = find_cycles({**siblings.depends_on, name: spec.depends_on})
    if name in cycles:
        return "CycleDetected", describe_cycle(cycles[name])
    owner = (siblings.owners or {}).get(spec.task, name)
    if owner != name:
        return "DuplicateTask", (
            f"TaskDefinition {owner!r} already defines task {spec.task} in this namespace: "
            "delete one of them"
        )
    return None


def check_references(
    name: str, spec: TaskDefinitionSpec, siblings: Siblings
) -> tuple[str, str] | None:
    """``(reason, message)`` of the first thing wrong with the references, or None."""
    problem = _namespace_problem(name, spec, siblings)
    if problem is not None:
        return problem
    if spec.pool not in siblings.pools:
        return "PoolNotFound", (
            f"WorkerPool {spec.pool!r} does not exist in this namespace: create it or fix spec.pool"
        )
    if spec.concurrency_policy_ref and spec.concurrency_policy_ref not in siblings.policies:
        return "PolicyNotFound", (
            f"ConcurrencyPolicy {spec.concurrency_policy_ref!r} does not exist in this "
            "namespace: create it or fix spec.concurrencyPolicyRef"
        )
    missing = [d for d in spec.depends_on if d not in siblings.depends_on]
    if missing:
        return "DependencyNotFound", (
            f"dependsOn names TaskDefinitions that do not exist: {', '.join(missing)}"
        )
    if spec.schedule:
        try:
            cron.parse(spec.schedule, spec.timezone or "UTC")
        except cron.CronError as exc:
            return "InvalidSchedule", f"spec.schedule: {exc}"
    return None


def reconcile_taskdef(
    ctx: Ctx,
    body: Mapping[str, Any],
    siblings: Siblings,
    *,
    backend_status: bool = True,
    stored: dict[str, set[str]] | None = None,
) -> dict[str, Any]:
    """Check references and loops, store the options in the backend (while Ready; the name
    is added to ``stored[url]``), read counts from the backend, run the schedule."""
    name, namespace, generation, _, stamp, conditions = begin(ctx, body, "TaskDefinition")
    try:
        spec = TaskDefinitionSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return invalid_spec(exc, conditions, generation, stamp)
    status: dict[str, Any] = {"observedGeneration": generation}
    problem = check_references(name, spec, siblings)
    if problem is None or problem[0] != "CycleDetected":
        ctx.forget_event(body, "CycleDetected")
    if problem is not None:
        reason, message = problem
        if reason == "CycleDetected" and ctx.event_once(body, "Warning", reason, message):
            ctx.metrics.inc("kubenenc_operator_cycles_found_total")
            log.warning("TaskDefinition %s/%s: %s", namespace, name, message)
        conditions = set_condition(conditions, "Ready", "False", reason, message, generation, stamp)
        status["conditions"] = conditions
        return status
    reason, message = "Reconciled", f"runs on WorkerPool {spec.pool}"
    if backend_status:
        try:
            url = ctx.pool_url(namespace, spec.pool)
            stored_as = task_defaults_name(task_id(spec), namespace)
            ctx.store_once(url, stored_as, task_defaults(spec, namespace).model_dump_json())
            if stored is not None:
                stored.setdefault(url, set()).add(stored_as)
            app = ctx.pool_app(namespace, spec.pool)
            reader = stats_of_queue(queue_name(scope(app, namespace), spec.pool), app)
            sweep = ctx.shared_read(url, reader, ctx.settings.status_interval / 2)
            stats = sweep.get(task_id(spec), TaskStats())
            status.update(stats.status_fields(ctx.clock()))
            refused = check_arguments(ctx, spec, namespace, url)
            if refused is not None:
                reason, message = "InvalidArguments", refused
                if ctx.event_once(body, "Warning", reason, message):
                    log.warning("TaskDefinition %s/%s: %s", namespace, name, message)
            else:
                ctx.forget_event(body, "InvalidArguments")
                if spec.schedule:
                    run_schedule(ctx, body, spec, url)
        except Exception as exc:
            ctx.metrics.inc("kubenenc_operator_reconcile_errors_total", kind="TaskDefinition")
            reason, message = "BackendUnavailable", f"cannot read the backend: {exc}"
    ok: Truth = "False" if reason in ("BackendUnavailable", "InvalidArguments") else "True"
    status["conditions"] = set_condition(
        conditions, "Ready", ok, reason, message, generation, stamp
    )
    return status


def check_arguments(ctx: Ctx, spec: TaskDefinitionSpec, namespace: str, url: str) -> str | None:
    """Why ``spec.arguments`` would not bind to the task, from the signature a worker of the
    app published (see :mod:`kubenenc.signatures`); None when they bind, or when no worker
    has published one yet (then a call that does not bind fails in the worker, with the
    same message, and the next reconcile after a worker starts refuses the definition)."""
    if spec.arguments is None:
        return None
    stored_as = signature_name(task_id(spec), namespace)
    text = ctx.backends.use(url, lambda b: b.get_policy(stored_as))
    if text is None:
        return None
    problems = argument_problems(Signature.model_validate_json(text), spec.arguments)
    if not problems:
        return None
    return f"spec.arguments do not fit task {spec.task}: {'; '.join(problems)}"


def run_schedule(ctx: Ctx, body: Mapping[str, Any], spec: TaskDefinitionSpec, url: str) -> bool:
    """Submit the calls of the due cron tick if nobody has yet; True when this run claimed
    one.

    The same machinery as the schedules of apps (:func:`kubenenc.schedules.fire`): the
    tick is claimed in the backend with a compare-and-set that registers its calls in the
    same step, so two operator replicas (or an operator and a retried run) submit it once,
    and ``catchUp`` and ``overlap`` mean what they mean there. Ticks before the resource
    existed are not submitted. ``status.lastScheduleTime`` then records the tick (for
    people; the backend's record is the one that counts).
    """
    assert spec.schedule is not None
    name, namespace, _ = object_meta(body)
    catch_up, overlap = spec.catch_up or "last", spec.overlap or "skip"
    parsed = schedules.check(spec.schedule, spec.timezone or "UTC", catch_up, overlap)
    app = ctx.pool_app(namespace, spec.pool)
    scope_ = scope(app, namespace)
    created = body["metadata"].get("creationTimestamp")
    born = parse_rfc3339(created).timestamp() if created else 0.0

    def build(ticks: Sequence[int]) -> list[NewInvocation]:
        policy = None
        if spec.concurrency_policy_ref:
            ref = scoped_name(spec.concurrency_policy_ref, namespace)
            text = ctx.backends.use(url, lambda b: b.get_policy(ref))
            policy = ConcurrencyPolicy.model_validate_json(text) if text else None
        new = [scheduled_call(spec, policy, app, namespace) for t in ticks if t >= born]
        if overlap == "skip":
            new = schedules.skip_overlap(new, f"{scope_}#schedule:taskdefinition/{name}")
        return new

    key = f"{scope_}:taskdefinition/{name}"
    fired = ctx.backends.use_roles(
        url,
        lambda r: schedules.fire(
            schedules.tick_claims(r), key, parsed, catch_up, build, ctx.clock()
        ),
    )
    if fired is None:
        return False
    tick = dt.datetime.fromtimestamp(fired.tick, dt.UTC)
    try:
        ctx.kube.patch(
            custom_path(namespace, "taskdefinitions", name, "status"),
            {"status": {"lastScheduleTime": now_rfc3339(tick)}},
        )
    except KubeError:
        log.warning("could not record lastScheduleTime of %s/%s", namespace, name, exc_info=True)
    ctx.metrics.inc("kubenenc_operator_scheduled_total")
    shown = ", ".join(f"{r.kind.value} {r.id}" for r in fired.results) or "no call"
    ctx.event(body, "Normal", "Scheduled", f"tick {now_rfc3339(tick)}: {shown}")
    return True
