"""What the cluster says about a task, and the names things are stored under in the backend.

On Kubernetes, a ``TaskDefinition`` resource sets a task's retries, back-off, timeout,
priority, pool and concurrency policy. The operator writes them into the backend's policy store
(:class:`~kubenenc.backends.contract.Policies`, a name -> JSON text store) as
:class:`TaskDefaults`, under a reserved name; the SDK reads them at each call (cached for a
couple of seconds, like named concurrency policies) and the worker reads the back-off when it
schedules a retry. So a changed TaskDefinition applies to the next calls without restarting
anything.

Precedence, per option: an explicit call option (``task.with_options(...)``) wins, then the
TaskDefinition, then the ``@app.task(...)`` decorator. The TaskDefinition comes before the
decorator because it is the deployment's word: whoever runs the cluster tunes retries and
timeouts there without a new image, while the decorator is the code's default.

Names are scoped by Kubernetes namespace, so namespaces sharing one backend do not collide:
the operator stores the ConcurrencyPolicy ``p`` of namespace ``ns`` as ``ns/p`` and the
TaskDefinition of task ``t`` as ``ns/task:t`` (whose ``concurrency`` is the bare name ``p``).
A process with ``KUBENENC_NAMESPACE=ns`` (worker pods get it from the downward API) resolves a
bare name ``p`` to ``ns/p``, and only there: there is no fallback to another namespace, so a
program outside the cluster that calls tasks of namespace ``ns`` must set
``KUBENENC_NAMESPACE=ns`` (its calls then also go to that namespace's queues, see
:mod:`kubenenc.scope`). Without a namespace (no Kubernetes at all) names are used as given.
A name ``ns/p`` is accepted only from namespace ``ns``. Kubernetes names hold neither ``/``
nor ``:``, so the reserved ``task:`` names never collide with a policy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from kubenenc.task import TaskOptions

TASK_PREFIX = "task:"
"""Reserved prefix of the stored name of a task's defaults (after the namespace)."""


class TaskDefaults(BaseModel):
    """A task's options as a TaskDefinition sets them; None leaves the decorator's value."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    retries: int | None = Field(default=None, ge=0)
    backoff: float | None = Field(default=None, ge=0)
    max_backoff: float | None = Field(default=None, ge=0)
    timeout: float | None = Field(default=None, gt=0)
    priority: int | None = None
    pool: str | None = Field(default=None, min_length=1)
    concurrency: str | None = Field(
        default=None, min_length=1, description="The name of a stored concurrency policy."
    )

    def over(self, options: TaskOptions) -> TaskOptions:
        """``options`` (the decorator's) with every value this sets replacing it."""
        changes = self.model_dump(exclude_none=True)
        return replace(options, **changes) if changes else options


def scoped_name(name: str, namespace: str | None) -> str:
    """The stored name of ``name`` seen from ``namespace`` (see the module docstring)."""
    if not namespace or "/" in name:
        return name
    return f"{namespace}/{name}"


def task_defaults_name(task: str, namespace: str | None) -> str:
    """The stored name of the defaults of task id ``task`` seen from ``namespace``."""
    return scoped_name(f"{TASK_PREFIX}{task}", namespace)
