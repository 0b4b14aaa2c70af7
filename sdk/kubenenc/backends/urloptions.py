"""The query options of a backend URL that kubenenc reads: one set of names for every
backend, so a URL moves from one backend to another without renaming them.

==============  ========  ====================================================================
option          default   meaning
==============  ========  ====================================================================
``prefix``      kubenenc  what every key or collection name starts with, so several apps or
                          environments can share one server (Redis, MongoDB)
``retention``   604800    seconds a final invocation is kept before the sweep deletes it
                          (every backend)
``retry_for``   backend   seconds a call keeps retrying, with back-off, while the server is
                          unreachable, before it raises BackendUnavailable (Redis 60,
                          MongoDB 30; embedded backends have no server)
``lease``       5         seconds of the MongoDB coordination lock's lease (MongoDB only)
``clock``       server    whose clock heartbeats are judged on (Redis, MongoDB): ``server``
                          (the server's, so workers whose clocks disagree judge each other
                          right, and an outage everyone saw is not taken for everyone's
                          death) or ``caller`` (the times the callers pass, for tests that
                          make time up)
==============  ========  ====================================================================

Every other query option goes to the driver (redis-py, pymongo) unchanged; an embedded
backend refuses any other. A backend reads these with :func:`split_options`,
:func:`seconds_option` and :func:`clock_option`, so a bad value says the same thing
everywhere; what a prefix may hold depends on the store (key or collection names), so each
backend checks its own.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from kubenenc.errors import ConfigurationError

PREFIX = "prefix"
RETENTION = "retention"
RETRY_FOR = "retry_for"
LEASE = "lease"
CLOCK = "clock"
CLOCKS = ("server", "caller")
"""The values of the ``clock`` option; the first is the default."""

DEFAULT_PREFIX = "kubenenc"
DEFAULT_RETENTION = 7 * 24 * 3600.0


def split_options(
    query: Iterable[tuple[str, str]], ours: Collection[str]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``(kubenenc's options, the driver's)`` of a parsed query (the last value of a
    repeated option wins)."""
    own: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in query:
        if key in ours:
            own[key] = value
        else:
            rest.append((key, value))
    return own, rest


def seconds_option(options: Mapping[str, str], name: str, default: float, where: str) -> float:
    """The option ``name`` as a positive number of seconds (``default`` when absent);
    ConfigurationError naming ``where`` (a redacted URL) otherwise."""
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigurationError(
            f"bad backend URL {where!r}: {name}={raw!r} must be a positive number of seconds"
        )
    return value


def clock_option(options: Mapping[str, str], where: str) -> str:
    """The ``clock`` option (``server`` when absent); ConfigurationError naming ``where`` (a
    redacted URL) when it is not one of :data:`CLOCKS`."""
    clock = options.get(CLOCK, CLOCKS[0])
    if clock not in CLOCKS:
        raise ConfigurationError(
            f"bad backend URL {where!r}: {CLOCK}={clock!r} must be one of {', '.join(CLOCKS)}"
        )
    return clock
