"""All settings, as one typed model read from the environment at the edge.

The CLI and ``App`` read :class:`Settings` once (environment prefix ``KUBENENC_``, nested
groups with ``__``: ``KUBENENC_WORKER__CONCURRENCY=4``) and pass the parts down; nothing
below reads the environment.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Mode = Literal["process", "thread", "async"]

HEARTBEAT_TIMEOUT = 5.0
MAX_LOST = 3
HeartbeatTimeout = Annotated[
    float,
    Field(
        gt=0,
        le=86400,
        description="Seconds a worker may be silent before it is thought dead and its work "
        "handed back.",
    ),
]
"""When a worker is dead: the one definition the workers, the operator's enforcer and the
WorkerPool resource all use (a pool's value reaches its pods, see :class:`Liveness`)."""
MaxLost = Annotated[
    int,
    Field(
        ge=0,
        le=1000,
        description="Times an invocation may be handed back (its worker lost) before it is "
        "FAILED with WorkerLost.",
    ),
]


class Liveness(BaseModel):
    """When a worker counts as dead, and how often an invocation may lose its worker.

    Every party that decides it must agree: a worker sweeping for silent peers, the
    operator's enforcer and its scaler (which counts live workers). On Kubernetes the
    WorkerPool sets both (``heartbeatTimeoutSeconds``, ``maxLost``): the operator passes them
    to the pool's pods as ``KUBENENC_WORKER__HEARTBEAT_TIMEOUT``/``__MAX_LOST`` and reads the
    same fields itself."""

    model_config = ConfigDict(frozen=True)

    heartbeat_timeout: HeartbeatTimeout = HEARTBEAT_TIMEOUT
    max_lost: MaxLost = MAX_LOST


class WorkerSettings(BaseModel):
    """How a worker runs."""

    concurrency: int = Field(default=0, ge=0, description="Running slots; 0: one per CPU core.")
    mode: Mode = Field(default="process", description="Execution pool: process, thread, async.")
    pool: str = Field(default="default", description="The worker pool whose queue it claims.")
    heartbeat_interval: float = Field(default=1.0, gt=0, description="Seconds between beats.")
    heartbeat_timeout: HeartbeatTimeout = HEARTBEAT_TIMEOUT
    max_lost: MaxLost = MAX_LOST
    drain_grace: float = Field(
        default=25.0, ge=0, description="On SIGTERM, seconds to finish running work."
    )
    poll_interval: float = Field(
        default=0.005, gt=0, description="Longest idle sleep between claims, in seconds."
    )
    http_port: int | None = Field(
        default=None, ge=0, le=65535, description="Serve /healthz, /readyz, /metrics here."
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="Address of the HTTP endpoint; worker pods get their pod IP (probes and "
        "scrapes reach it there), elsewhere only this machine can reach it unless set.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line (see kubenenc.logs)."
    )


class Settings(BaseSettings):
    """Every setting of kubenenc. ``Settings()`` reads ``KUBENENC_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="KUBENENC_", env_nested_delimiter="__", extra="forbid"
    )

    backend: str = Field(
        default="sqlite:///kubenenc.db",
        description="Backend URL: sqlite:///path.db, memory://, redis://..., mongodb://...",
    )
    serializer: Literal["json", "pickle"] = Field(
        default="json",
        description="pickle lets anyone who can write to the backend run code in workers.",
    )
    namespace: str | None = Field(
        default=None,
        description="Kubernetes namespace whose ConcurrencyPolicies and TaskDefinitions apply "
        "(worker pods get it from the downward API); unset: stored names are used as given.",
    )
    app_name: str | None = Field(
        default=None,
        description="The name the worker's App must have (worker pods get their WorkerPool's "
        "spec.appName): a worker whose App is named otherwise refuses to start, since it would "
        "claim from another queue than the one the operator scales on.",
    )
    max_value_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="Largest encoded arguments of one call, or result, in bytes (a backend with "
        "a smaller limit lowers it); set per task with @app.task(max_value_bytes=...).",
    )
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
