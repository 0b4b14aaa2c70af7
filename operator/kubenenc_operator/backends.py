"""Open backends by URL, shared by every handler, each behind its own lock.

The operator never imports a backend plugin: a URL (from a WorkerPool's Secret, or the
operator's default) is opened with :func:`kubenenc.backends.open_backend`, which finds the
class through the ``kubenenc.backends`` entry points. A backend that fails is closed and
dropped, so the next call reconnects.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from kubenenc.backends import Backend, open_backend
from kubenenc.backends.roles import Roles, roles_of

T = TypeVar("T")


class BackendCache:
    """``url -> Backend``, opened lazily; :meth:`use` runs a call under the backend's lock.
    The backend's optional roles are found once, when it is opened (:meth:`use_roles`)."""

    def __init__(self, opener: Callable[[str], Backend] = open_backend) -> None:
        self._opener = opener
        self._lock = threading.Lock()
        self._open: dict[str, tuple[Roles, threading.Lock]] = {}

    def urls(self) -> list[str]:
        """URLs opened so far (the enforcer sweeps these)."""
        with self._lock:
            return list(self._open)

    def _get(self, url: str) -> tuple[Roles, threading.Lock]:
        with self._lock:
            found = self._open.get(url)
            if found is None:
                found = (roles_of(self._opener(url)), threading.Lock())
                self._open[url] = found
            return found

    def use(self, url: str, call: Callable[[Backend], T]) -> T:
        """``call(backend)`` for ``url``; on an error the backend is closed and reopened
        next time, and the error propagates."""
        return self.use_roles(url, lambda roles: call(roles.backend))

    def use_roles(self, url: str, call: Callable[[Roles], T]) -> T:
        """As :meth:`use`, with the backend's optional roles (:mod:`kubenenc.backends.roles`)."""
        roles, lock = self._get(url)
        try:
            with lock:
                return call(roles)
        except Exception:
            self._drop(url, roles.backend)
            raise

    def _drop(self, url: str, backend: Backend) -> None:
        with self._lock:
            found = self._open.get(url)
            if found is not None and found[0].backend is backend:
                del self._open[url]
        with contextlib.suppress(Exception):
            backend.close()

    def close(self) -> None:
        """Close every backend."""
        with self._lock:
            items = list(self._open.values())
            self._open.clear()
        for roles, _ in items:
            with contextlib.suppress(Exception):
                roles.backend.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.urls())
