"""The backend URL: a MongoDB connection string plus a few ``kubenenc_*`` options.

``mongodb://user:pass@host:port/dbname?tls=true&kubenenc_prefix=shop`` — everything but the
``kubenenc_*`` query options goes to pymongo unchanged (auth, TLS, replica set, timeouts).
The database defaults to ``kubenenc``. Options:

- ``kubenenc_prefix`` (default ``kubenenc``): prefix of every collection name, so several
  apps or environments can share one database.
- ``kubenenc_retention`` (seconds, default 604800 = 7 days): how long finished invocations
  are kept.
- ``kubenenc_lease`` (seconds, default 5): lease of the coordination lock (see
  :mod:`kubenenc_mongodb.layout`).
- ``kubenenc_clock`` (``server`` or ``caller``, default ``server``): whose clock heartbeats
  are judged on (see :mod:`kubenenc_mongodb.liveness`); ``caller``: the times the callers
  pass, for tests that make time up.
- ``kubenenc_retry`` (seconds, default 30): how long a connection fault is retried, with
  back-off, before an operation raises :class:`kubenenc.errors.BackendUnavailable`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from kubenenc.errors import ConfigurationError

_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_FLOAT_OPTIONS = {
    "kubenenc_retention": "retention",
    "kubenenc_lease": "lease",
    "kubenenc_retry": "retry_for",
}


@dataclass(frozen=True, slots=True)
class MongoOptions:
    """A parsed backend URL."""

    client_url: str
    """The URL handed to pymongo (``kubenenc_*`` options removed)."""
    database: str = "kubenenc"
    prefix: str = "kubenenc"
    retention: float = 7 * 24 * 3600.0
    lease: float = 5.0
    retry_for: float = 30.0
    clock: str = "server"


def _clock(ours: dict[str, str]) -> str:
    """The ``kubenenc_clock`` option, taken out of ``ours``."""
    clock = ours.pop("kubenenc_clock", "server")
    if clock not in ("server", "caller"):
        raise ConfigurationError(f"kubenenc_clock={clock!r} must be server or caller")
    return clock


def parse_url(url: str) -> MongoOptions:
    """Split ``url`` into pymongo's part and ours; ConfigurationError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("mongodb", "mongodb+srv"):
        raise ConfigurationError(
            f"not a MongoDB URL: {url.rsplit('@', 1)[-1]!r}; use mongodb://[user:pass@]host[:port]/db"
        )
    if not parts.netloc or not parts.netloc.rsplit("@", 1)[-1]:
        raise ConfigurationError("MongoDB URL has no host: use mongodb://host[:port]/db")
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.startswith("kubenenc_"):
            ours[key] = value
        else:
            theirs.append((key, value))
    database = unquote(parts.path.lstrip("/")) or "kubenenc"
    if any(c in database for c in '/\\. "$') or len(database) > 63:
        raise ConfigurationError(f"bad database name {database!r} in the MongoDB URL")
    fields: dict[str, float | str] = {}
    prefix = ours.pop("kubenenc_prefix", "kubenenc")
    if not _PREFIX.match(prefix):
        raise ConfigurationError(
            f"bad kubenenc_prefix {prefix!r}: use 1-40 letters, digits, '_' or '-'"
        )
    fields["clock"] = _clock(ours)
    for key, field in _FLOAT_OPTIONS.items():
        if key in ours:
            raw = ours.pop(key)
            try:
                seconds = float(raw)
            except ValueError:
                raise ConfigurationError(f"{key}={raw!r} is not a number of seconds") from None
            if not seconds > 0:
                raise ConfigurationError(f"{key} must be more than 0 seconds, not {raw}")
            fields[field] = seconds
    if ours:
        known = ", ".join(["kubenenc_prefix", "kubenenc_clock", *_FLOAT_OPTIONS])
        raise ConfigurationError(f"unknown option(s) {', '.join(sorted(ours))}; known: {known}")
    client_url = parts._replace(query=urlencode(theirs)).geturl()
    return MongoOptions(client_url, database, prefix, **fields)  # type: ignore[arg-type]
