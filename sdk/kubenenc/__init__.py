"""kubenenc: distributed Python tasks with pausing waits, cycle detection and atomic
concurrency policies, on one machine or on Kubernetes.

The public face is what ``__all__`` lists; everything else is internal and may change.
"""

from kubenenc.app import App, load_app
from kubenenc.backends.contract import Backend
from kubenenc.concurrency import ConcurrencyPolicy
from kubenenc.errors import (
    BackendUnavailable,
    ConfigurationError,
    CycleDetectedError,
    DependencyFailed,
    InvocationCancelled,
    KubenencError,
    RegistrationRejected,
    RemoteError,
    ResultTimeout,
    SerializationError,
    TaskTimeout,
    ValueTooLarge,
    WorkerLost,
)
from kubenenc.ids import InvocationId, TaskId, WorkerId
from kubenenc.invocation import Invocation, InvocationGroup
from kubenenc.settings import Settings, WorkerSettings
from kubenenc.status import Status
from kubenenc.task import Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "Backend",
    "BackendUnavailable",
    "ConcurrencyPolicy",
    "ConfigurationError",
    "CycleDetectedError",
    "DependencyFailed",
    "Invocation",
    "InvocationCancelled",
    "InvocationGroup",
    "InvocationId",
    "KubenencError",
    "RegistrationRejected",
    "RemoteError",
    "ResultTimeout",
    "SerializationError",
    "Settings",
    "Status",
    "Task",
    "TaskId",
    "TaskTimeout",
    "ValueTooLarge",
    "WorkerId",
    "WorkerLost",
    "WorkerSettings",
    "__version__",
    "load_app",
]
