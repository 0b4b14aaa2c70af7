"""The operator's settings: one typed model read from ``KUBENENC_OPERATOR_*`` at the edge.

``kubenenc operator`` reads :class:`OperatorSettings` once and passes it down; nothing below
reads the environment. Intervals are short by default so that a backlog reaches the pool's
replica count within about two seconds.
"""

from __future__ import annotations

import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    """Every setting of the operator (env prefix ``KUBENENC_OPERATOR_``)."""

    model_config = SettingsConfigDict(env_prefix="KUBENENC_OPERATOR_", extra="forbid")

    namespaces: list[str] = Field(
        default_factory=list,
        description="Namespaces to watch (JSON list); empty: the whole cluster.",
    )
    backend: str | None = Field(
        default=None,
        description="A backend every ConcurrencyPolicy is also written to (besides the "
        "backends of the WorkerPools in its namespace).",
    )
    scale_interval: float = Field(default=1.0, gt=0, description="Seconds between scalings.")
    status_interval: float = Field(
        default=10.0, gt=0, description="Seconds between TaskDefinition status/cron checks."
    )
    status_writers: int = Field(
        default=8, ge=1, le=64, description="TaskDefinitions reconciled (statuses written) at once."
    )
    policy_resync: float = Field(
        default=30.0, gt=0, description="Seconds between rewrites of policies to backends."
    )
    enforce_interval: float = Field(
        default=2.0, gt=0, description="Seconds between enforcer sweeps of each backend."
    )
    timeout_grace: float = Field(
        default=30.0,
        ge=0,
        description="Seconds past an invocation's timeout before the enforcer fails it (its "
        "worker should have, at the timeout).",
    )
    overdue_interval: float = Field(
        default=10.0, gt=0, description="Seconds between the enforcer's checks for overdue runs."
    )
    queue_metrics_interval: float = Field(
        default=5.0, gt=0, description="Seconds between reads of queue depth and oldest age."
    )
    lease_name: str = Field(default="kubenenc-operator", description="Leader-election Lease.")
    lease_namespace: str = Field(default="default", description="Namespace of the Lease.")
    lease_duration: float = Field(default=15.0, gt=0, description="Seconds a lease holds.")
    identity: str = Field(
        default_factory=socket.gethostname, description="This replica's name in the Lease."
    )
    metrics_host: str = Field(default="0.0.0.0", description="Address of /metrics.")  # noqa: S104
    metrics_port: int | None = Field(default=8080, ge=0, le=65535, description="/metrics port.")
    health_port: int | None = Field(
        default=8081, ge=0, le=65535, description="kopf's liveness endpoint /healthz."
    )
