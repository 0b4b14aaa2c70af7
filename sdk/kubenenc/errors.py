"""Exceptions raised by kubenenc.

Errors that travel from a worker to a caller (:class:`CycleDetectedError`,
:class:`DependencyFailed`, :class:`TaskTimeout`, :class:`WorkerLost`) take one message
argument, so they are rebuilt with their type on the caller's side.
"""

from __future__ import annotations

from typing import Any


class KubenencError(Exception):
    """Base class of every kubenenc error."""


class ConfigurationError(KubenencError):
    """Bad settings, options or backend URL; the message says what to change."""


class BackendUnavailable(KubenencError):
    """The backend cannot be reached or opened."""


class InvalidTransition(KubenencError):
    """A status change that the lifecycle table forbids."""


class RegistrationRejected(KubenencError):
    """A call refused by a ``registration="reject"`` policy: an equal invocation is not final."""

    def __init__(self, message: str, existing_id: str | None = None) -> None:
        super().__init__(message)
        self.existing_id = existing_id
        self.accepted: list[Any] = []
        """From ``parallelize``: handles of the calls that were registered before the raise."""


class SerializationError(KubenencError, TypeError):
    """A value the serializer cannot encode or decode."""


class ValueTooLarge(SerializationError):
    """An encoded argument set or result over the size limit (``max_value_bytes``).

    Checked before anything reaches the backend: in the caller for arguments (nothing is
    registered), in the worker for a result (the call fails with this error, not retried).
    """


class CycleDetectedError(KubenencError):
    """A wait that would close a loop: the invocation waited on stands higher up the chain.

    The message lists the loop as ``task(args)`` lines, from the call that is waited on back
    to the waiter that closed the loop.
    """


class DependencyFailed(KubenencError):
    """A declared dependency (``depends_on``) failed or was cancelled; the message names it."""


class TaskTimeout(KubenencError):
    """The invocation ran longer than its ``timeout``."""


class WorkerLost(KubenencError):
    """The workers that ran the invocation stopped heartbeating more often than allowed."""


class InvocationCancelled(KubenencError):
    """Raised by ``result()`` for an invocation that was cancelled."""


class ResultTimeout(KubenencError, TimeoutError):
    """``result(timeout=...)`` ran out before the invocation reached a final status."""


class RemoteError(KubenencError):
    """A task's exception whose type cannot be rebuilt here; ``type_name`` names it."""

    def __init__(self, message: str, type_name: str = "", remote_traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.remote_traceback = remote_traceback
