"""The names that keep apps and namespaces sharing one backend apart.

Every app has a *scope*: its name, prefixed by its Kubernetes namespace when one is set
(``Settings.namespace``, ``KUBENENC_NAMESPACE``): ``"shop"`` or ``"prod/shop"``. Everything an
app stores that another app could otherwise match is named inside its scope:

- the queue an invocation waits on is ``scope:pool`` (:func:`queue_name`): a worker claims,
  heartbeats and waits for work on its own app's queue only, so app ``alpha`` never claims
  app ``beta``'s call even when both have a pool named ``default``;
- the running-limit, registration (dedupe/reject) and call keys start with ``scope:``
  (:func:`scoped_key`), so limits, dedupes and cycle detection never match across apps.

Backends treat pools and keys as opaque strings, so none of them changes; only this module
formats scoped names. ``:`` separates the scope from the rest because it cannot occur in a
scope or a pool name: app names and pool names are letters, digits, ``-``, ``_`` and ``.``
(checked here), Kubernetes namespaces are DNS labels. A call key stays ``task#...`` (the
Redis counts read the task from it up to its ``#``); its scope is inside the digest part.

Named ConcurrencyPolicies and TaskDefinition options are scoped by namespace only (they are
namespace resources): see :mod:`kubenenc.task_defaults`.
"""

from __future__ import annotations

import re

from kubenenc.errors import ConfigurationError

SEPARATOR = ":"
"""Between a scope and what it scopes; never part of a scope or a pool name."""

_NAME = re.compile(r"[A-Za-z0-9._-]+")
_NAMESPACE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def check_name(what: str, name: str) -> str:
    """``name`` if it is a valid app or pool name (letters, digits, ``-``, ``_``, ``.``,
    at most 253 of them); else ConfigurationError saying so."""
    if not isinstance(name, str) or len(name) > 253 or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"{what} {name!r} must be 1 to 253 letters, digits, '-', '_' or '.'"
        )
    return name


def scope(app: str, namespace: str | None) -> str:
    """The scope of app ``app`` in ``namespace`` (None or empty: no namespace)."""
    check_name("app name", app)
    if not namespace:
        return app
    if not _NAMESPACE.fullmatch(namespace):
        raise ConfigurationError(
            f"namespace {namespace!r} is not a Kubernetes namespace name (lowercase letters, "
            "digits and '-', at most 63); fix KUBENENC_NAMESPACE"
        )
    return f"{namespace}/{app}"


def queue_name(scope_: str, pool: str) -> str:
    """The stored pool (queue) of the invocations of ``pool`` in ``scope_``."""
    return f"{scope_}{SEPARATOR}{check_name('pool', pool)}"


def pool_of(queue: str) -> str:
    """The human pool name of a stored queue name (a name without a scope is returned as
    is): for CLI output and metric labels."""
    return queue.rpartition(SEPARATOR)[2]


def scope_of(queue: str) -> str:
    """The scope (``app`` or ``namespace/app``) of a stored queue name; empty for a name
    without a scope. With :func:`pool_of`, how a queue is shown to people."""
    return queue.rpartition(SEPARATOR)[0]


def scoped_key(scope_: str, key: str) -> str:
    """A running-limit or registration key inside ``scope_``."""
    return f"{scope_}{SEPARATOR}{key}"
