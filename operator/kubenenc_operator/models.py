"""The custom resources' specs and statuses, as pydantic models.

These models are the single source of the CRDs: :mod:`kubenenc_operator.crdgen` turns them into
the OpenAPI schemas in ``crds/`` (with the CEL rules attached here through ``cel(...)``), and
the handlers parse what the API server hands them with the same models. The
``ConcurrencyPolicy`` spec *is* :class:`kubenenc.ConcurrencyPolicy` (camelCase aliases), so
what a user applies is exactly what the SDK reads back from the backend.

Field names are camelCase on the wire (Kubernetes convention) and snake_case in Python.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from kubenenc import ConcurrencyPolicy
from kubenenc.settings import HEARTBEAT_TIMEOUT, MAX_LOST, HeartbeatTimeout, Liveness, MaxLost
from pydantic import ConfigDict, Field

from kubenenc_operator.podtemplate import EnvVar, PodTemplate, Resources
from kubenenc_operator.schema import (
    APP_NAME,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    IMPORT_PATH,
    SpecModel,
    cel,
)

GROUP = "kubenenc.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

_Model = SpecModel


def _import_path_rule(what: str, form: str, example: str) -> dict[str, Any]:
    return cel(
        (
            f"self.matches('{IMPORT_PATH}')",
            f'\'{what} must be an import path "{form}" such as "{example}", got "\' + self + \'"\'',
        )
    )


# -- conditions ---------------------------------------------------------------------------------


class Condition(_Model):
    """A standard condition (``metav1.Condition``)."""

    type: str = Field(max_length=64, description="Ready, Scaling, Degraded, ...")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(max_length=128, description="CamelCase reason of the last transition.")
    message: str = Field(default="", max_length=4096, description="Human-readable detail.")
    last_transition_time: str = Field(description="RFC 3339 time the status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation the condition was set for."
    )


CONDITIONS_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


# -- WorkerPool ---------------------------------------------------------------------------------


class BackendRef(_Model):
    """Where the workers (and the operator) find the backend URL."""

    secret_name: str = Field(
        min_length=1,
        max_length=253,
        description="A Secret in the pool's namespace holding the backend URL.",
        json_schema_extra=cel(
            (
                f"self.matches('{DNS_SUBDOMAIN}')",
                "'backend.secretName must be a Secret name (lower case, digits, - and .), "
                "got \"' + self + '\"'",
            )
        ),
    )
    key: str = Field(default="url", min_length=1, max_length=253, description="Key in the Secret.")


class Autoscaling(_Model):
    """How the operator sizes the pool from the backend's pending + running + paused work."""

    enabled: bool = Field(default=True, description="False: run spec.replicas pods.")
    min_replicas: int = Field(
        default=1, ge=0, le=1000, description="Fewest pods; 0 allows scale to zero."
    )
    max_replicas: int = Field(default=10, ge=1, le=1000, description="Most pods.")
    target_per_replica: int | None = Field(
        default=None,
        ge=1,
        le=100000,
        description="Pending + running invocations one pod should hold; default: its slots.",
    )
    activation_threshold: int = Field(
        default=1, ge=1, le=1000000, description="Pending invocations that wake a pool at zero."
    )
    scale_in_cooldown_seconds: int = Field(
        default=60,
        ge=0,
        le=86400,
        description="Wait this long with less work before removing pods.",
    )
    max_step: int = Field(
        default=4, ge=1, le=1000, description="At most this many pods added or removed at once."
    )


_AUTOSCALING_RULES = cel(
    (
        "self.minReplicas <= self.maxReplicas",
        "autoscaling.minReplicas must not exceed autoscaling.maxReplicas: lower minReplicas "
        "or raise maxReplicas",
    )
)


class WorkerPoolSpec(_Model):
    """A pool of worker pods claiming from the backend queue named after this resource,
    inside the scope of its namespace and ``appName`` (see :mod:`kubenenc.scope`)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "!has(self.resources) || !has(self.template) || !has(self.template.resources)",
                "resources is set twice: keep spec.template.resources and remove spec.resources",
            ),
            (
                "!has(self.serviceAccountName) || !has(self.template) "
                "|| !has(self.template.serviceAccountName)",
                "serviceAccountName is set twice: keep spec.template.serviceAccountName and "
                "remove spec.serviceAccountName",
            ),
        )
    )

    image: str = Field(min_length=1, max_length=1024, description="Worker image (has kubenenc).")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    app: str = Field(
        max_length=512,
        description="The App to serve, as module:attr.",
        json_schema_extra=_import_path_rule("app", "module:attr", "shop.tasks:app"),
    )
    app_name: str = Field(
        min_length=1,
        max_length=253,
        description='The name of that App (App("shop") -> shop): its queue and backlog '
        "are this pool's inside the App's name and this namespace; a worker whose App is "
        "named otherwise refuses to start.",
        json_schema_extra=cel(
            (
                f"self.matches('{APP_NAME}')",
                "'appName must be the App\\'s name: letters, digits, -, _ or ., got \"' "
                "+ self + '\"'",
            )
        ),
    )
    mode: Literal["process", "thread", "async"] = Field(
        default="process", description="Execution pool of each worker."
    )
    slots: int = Field(default=4, ge=1, le=1024, description="Running slots per pod.")
    backend: BackendRef
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Pods to run when autoscaling.enabled is false (what `kubectl scale` sets); "
        "ignored while the operator autoscales.",
    )
    autoscaling: Autoscaling = Field(
        default_factory=Autoscaling, json_schema_extra=_AUTOSCALING_RULES
    )
    drain_grace_seconds: int = Field(
        default=25, ge=0, le=3600, description="On SIGTERM, seconds a worker finishes work."
    )
    heartbeat_timeout_seconds: HeartbeatTimeout = HEARTBEAT_TIMEOUT
    max_lost: MaxLost = MAX_LOST

    @property
    def liveness(self) -> Liveness:
        """The pool's :class:`~kubenenc.settings.Liveness`: its pods get it, and the
        operator's scaler and enforcer use it for them."""
        return Liveness(heartbeat_timeout=self.heartbeat_timeout_seconds, max_lost=self.max_lost)

    http_port: int = Field(default=8080, ge=1, le=65535, description="Health and metrics port.")
    resources: Resources | None = Field(
        default=None, description="Worker container resources (or template.resources)."
    )
    env: list[EnvVar] | None = Field(
        default=None, max_length=64, description="Extra variables (template.env adds more)."
    )
    service_account_name: str | None = Field(
        default=None, max_length=253, description="Or template.serviceAccountName."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line (worker --log-format)."
    )
    template: PodTemplate | None = Field(
        default=None,
        description="What the pods add to the operator's worker pod: resources, env, volumes, "
        "placement, security context (the operator's hardening wins; see the README).",
    )


SCALING_HISTORY = 10
"""Scaling decisions a WorkerPool's status keeps (the newest; Events expire after an hour)."""


class ScalingEvent(_Model):
    """One scaling decision the operator carried out on a pool's Deployment."""

    time: str = Field(description="When the operator decided it (RFC 3339).")
    from_replicas: int = Field(ge=0, description="Replicas before.")
    to_replicas: int = Field(ge=0, description="Replicas after.")
    reason: str = Field(max_length=64, description="ScaledOut or ScaledIn.")
    message: str = Field(default="", max_length=1024, description="Why, as the Event says.")


class WorkerPoolStatus(_Model):
    """What the operator last saw and decided for a pool."""

    observed_generation: int | None = None
    replicas: int = Field(default=0, description="Pods the Deployment is asked to run.")
    desired_replicas: int = Field(default=0, description="Pods the load asks for.")
    ready_replicas: int = 0
    backlog: int = Field(default=0, description="Pending invocations of the pool.")
    running: int = 0
    paused: int = 0
    selector: str = Field(default="", description="Label selector of the pods (scale).")
    low_since: str | None = Field(
        default=None, description="Since when fewer pods are wanted (scale-in cooldown)."
    )
    last_scale_time: str | None = None
    scaling_events: list[ScalingEvent] = Field(
        default_factory=list,
        max_length=SCALING_HISTORY,
        description="The last scaling decisions carried out, oldest first (at most 10): "
        "the history the dashboard shows, kept after the Events expire.",
    )
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, json_schema_extra=CONDITIONS_EXTRA
    )


# -- TaskDefinition -----------------------------------------------------------------------------


class TaskDefinitionSpec(_Model):
    """A task the cluster knows: where it runs, how it retries, what it depends on.

    Its pool, policy and every option it sets apply to every call of the task (the operator
    stores them in the backend; see :mod:`kubenenc.task_defaults`); an option left unset keeps
    the value of the task's decorator."""

    task: str = Field(
        max_length=512,
        description="The task function, as module:function.",
        json_schema_extra=_import_path_rule("task", "module:function", "shop.tasks:charge"),
    )
    pool: str = Field(
        min_length=1,
        max_length=63,
        description="The WorkerPool (in this namespace) whose workers run it.",
        json_schema_extra=cel(
            (
                f"self.matches('{DNS_LABEL}')",
                "'pool must name a WorkerPool (lower case letters, digits and -), got \"' "
                "+ self + '\"'",
            )
        ),
    )
    retries: int | None = Field(
        default=None, ge=0, le=100, description="Tries after the first (unset: the task's own)."
    )
    backoff_seconds: float | None = Field(
        default=None, gt=0, le=86400, description="First retry delay (unset: the task's own)."
    )
    max_backoff_seconds: float | None = Field(
        default=None, gt=0, le=86400, description="Longest retry delay (unset: the task's own)."
    )
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=604800,
        description="Seconds one try may run (unset: the task's own).",
    )
    priority: int | None = Field(
        default=None, ge=-1000, le=1000, description="Higher runs first (unset: the task's own)."
    )
    concurrency_policy_ref: str | None = Field(
        default=None, max_length=253, description="A ConcurrencyPolicy in this namespace."
    )
    depends_on: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list,
        max_length=64,
        description="TaskDefinitions (in this namespace) that must succeed first.",
    )
    schedule: str | None = Field(
        default=None,
        max_length=128,
        description="Cron schedule (5 fields, or @hourly/@daily/...) read in `timezone`: "
        "submit a call with `arguments` at each tick (once per tick, claimed in the backend "
        "like the schedules of apps: see kubenenc.schedules).",
        json_schema_extra=cel(
            (
                r"self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || "
                r"self.matches('^\\S+(\\s+\\S+){4}$')",
                "'schedule must have 5 fields (minute hour day-of-month month day-of-week) or be "
                "@hourly, @daily, @weekly, @monthly or @yearly, got \"' + self + '\"'",
            )
        ),
    )
    arguments: dict[str, Any] | None = Field(
        default=None, description="Keyword arguments of scheduled calls (JSON values)."
    )
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description="IANA time zone the schedule is read in (unset: UTC), e.g. Europe/Madrid.",
        json_schema_extra=cel(
            (
                r"self == 'UTC' || self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)+$')",
                "'timezone must be an IANA time zone name such as Europe/Madrid, or UTC, got \"' "
                "+ self + '\"'",
            )
        ),
    )
    catch_up: Literal["none", "last", "all"] | None = Field(
        default=None,
        description="Ticks missed while nothing ran: none, last (unset: one call for the "
        "latest), or all (one call each, at most 100).",
    )
    overlap: Literal["skip", "allow"] | None = Field(
        default=None,
        description="skip (unset) a tick while the previous scheduled call is not final, or "
        "allow it.",
    )


_TASKDEF_RULES = cel(
    (
        "!has(self.maxBackoffSeconds) || !has(self.backoffSeconds) || "
        "self.maxBackoffSeconds >= self.backoffSeconds",
        "maxBackoffSeconds must be at least backoffSeconds: raise maxBackoffSeconds or "
        "lower backoffSeconds",
    ),
    (
        "has(self.schedule) || !has(self.arguments)",
        "arguments are only used by a schedule: set spec.schedule or remove spec.arguments",
    ),
    (
        "has(self.schedule) || (!has(self.timezone) && !has(self.catchUp) && !has(self.overlap))",
        "timezone, catchUp and overlap only apply to a schedule: set spec.schedule or remove them",
    ),
)


class TaskDefinitionStatus(_Model):
    """What the backend holds for the task, and whether its references resolve."""

    observed_generation: int | None = None
    invocations: dict[str, int] = Field(
        default_factory=dict, description="Invocations of the task by status (exact)."
    )
    oldest_pending_time: str | None = Field(
        default=None,
        description="When the oldest pending invocation was submitted (kubectl shows its age).",
    )
    last_success_time: str | None = None
    last_failure_time: str | None = None
    last_schedule_time: str | None = Field(
        default=None, description="The last cron tick submitted (one submission per tick)."
    )
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, json_schema_extra=CONDITIONS_EXTRA
    )


# -- ConcurrencyPolicy --------------------------------------------------------------------------

ConcurrencyPolicySpec = ConcurrencyPolicy
"""The spec is the SDK's model; :mod:`kubenenc_operator.crdgen` adds the CEL rules."""


class ConcurrencyPolicyStatus(_Model):
    """Where the policy was written."""

    observed_generation: int | None = None
    backends: int = Field(default=0, description="Backends holding the current spec.")
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, json_schema_extra=CONDITIONS_EXTRA
    )
