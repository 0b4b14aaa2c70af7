"""What an App's tasks and invocation handles use of it: the backend and the codec.

A :class:`~kubenenc.task.Task` and an :class:`~kubenenc.invocation.Invocation` hold a
:class:`Runtime`, not the App: the App owns the task table and builds tasks, so a task that
held the App back made a loop (App -> Task -> App) and let any part reach every other. A
Runtime knows its app's name and scope, opens the backend lazily (importing a module that
defines an App never connects, so a worker can import it before forking), and encodes and
decodes stored values. The options a task is called with are resolved by a separate
:class:`~kubenenc.resolver.OptionsResolver`.
"""

from __future__ import annotations

import functools
import threading
from urllib.parse import urlsplit

from kubenenc.backends.contract import Backend
from kubenenc.backends.registry import backend_class, open_backend, redact_url
from kubenenc.backends.roles import Roles, roles_of, value_limit_of
from kubenenc.decodable import DecodableTypes
from kubenenc.errors import ConfigurationError
from kubenenc.scope import queue_name
from kubenenc.serializers import JsonSerializer, PickleSerializer, get_serializer


class Runtime:
    """One app's backend (opened on first use, replaceable) and serializers.

    ``url`` names the backend to open, unless ``backend`` is an open one; ``serializer``
    names the one new values are written with (stored values name theirs, see
    :meth:`serializer_for`)."""

    def __init__(
        self,
        name: str,
        scope: str,
        url: str,
        backend: Backend | None = None,
        *,
        serializer: str,
        types: DecodableTypes,
        max_value_bytes: int,
    ) -> None:
        self.name = name
        self.scope = scope
        """What the app's queues and keys are named in (see :mod:`kubenenc.scope`)."""
        self._backend_obj = backend
        self._roles: Roles | None = None
        self._backend_limit: int | None = None
        self._limit_known = False
        self.backend_url = url
        self.types = types
        self.max_value_bytes = max_value_bytes
        self.serializer: JsonSerializer | PickleSerializer = get_serializer(serializer, types)
        self._json = (
            self.serializer
            if isinstance(self.serializer, JsonSerializer)
            else JsonSerializer(types)
        )
        self._lock = threading.Lock()

    def describe(self) -> str:
        """The backend as safe to print: its URL without secrets, or its class."""
        shown = self.backend_url if self._backend_obj is None else type(self._backend_obj).__name__
        return redact_url(shown)

    @property
    def backend(self) -> Backend:
        """The backend, opened on first use."""
        if self._backend_obj is None:
            with self._lock:
                if self._backend_obj is None:
                    self._backend_obj = open_backend(self.backend_url)
        return self._backend_obj

    @property
    def roles(self) -> Roles:
        """The optional roles the backend offers, checked once per backend object."""
        roles = self._roles
        backend = self.backend
        if roles is None or roles.backend is not backend:
            roles = self._roles = roles_of(backend)
        return roles

    def configure(self, backend: str | Backend) -> None:
        """Point at another backend (URL or object), closing the current one."""
        with self._lock:
            if self._backend_obj is not None:
                self._backend_obj.close()
            self._roles = None
            self._limit_known = False
            if isinstance(backend, str):
                self._backend_obj = None
                self.backend_url = backend
            else:
                self._backend_obj = backend

    def close(self) -> None:
        """Close the backend's connections (it reopens on next use)."""
        with self._lock:
            if self._backend_obj is not None:
                self._backend_obj.close()

    def queue(self, pool: str) -> str:
        """The stored queue name of the app's pool ``pool`` (see :mod:`kubenenc.scope`)."""
        return queue_name(self.scope, pool)

    def value_limit(self, task_limit: int | None = None) -> int:
        """The largest encoded arguments or result allowed: the task's limit (else the
        app's), lowered to what the backend can store (its optional ``max_value_bytes``)."""
        limit = task_limit or self.max_value_bytes
        backend_limit = self._backend_limit
        if not self._limit_known:
            # Found once (a protocol check is slow, and this runs for every call and every
            # result), from the class when the backend is not open: reading it must not
            # connect (a worker's child process checks results with it, and must not open
            # the backend, nor fail when it is unreachable).
            kind = self._backend_obj
            backend_limit = self._backend_limit = value_limit_of(
                kind if kind is not None else _backend_class_of(urlsplit(self.backend_url).scheme)
            )
            self._limit_known = True
        return limit if backend_limit is None else min(limit, backend_limit)

    def serializer_for(self, name: str) -> JsonSerializer | PickleSerializer:
        """The serializer that wrote a stored value; pickle only if the app opted in."""
        if name == self.serializer.name:
            return self.serializer
        if name == "json":
            return self._json
        if name == "pickle":
            raise ConfigurationError(
                "stored value is pickled but this app does not accept pickle; "
                'use App(..., serializer="pickle") only if you trust everyone who can write '
                "to the backend"
            )
        return get_serializer(name)


@functools.cache
def _backend_class_of(scheme: str) -> type[Backend] | None:
    """:func:`backend_class`, looked up once per scheme (the entry-point scan is slow, and
    :meth:`Runtime.value_limit` runs once per task result)."""
    return backend_class(scheme) if scheme else None
