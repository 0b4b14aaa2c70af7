"""The backend URL: a MongoDB connection string plus kubenenc's own options.

``mongodb://user:pass@host:port/dbname?tls=true&prefix=shop`` — every query option but
kubenenc's goes to pymongo unchanged (auth, TLS, replica set, timeouts), and pymongo's
unknown ones are refused (see :class:`~kubenenc_mongodb.link.Conn`). The database defaults
to ``kubenenc``. Kubenenc's options are the ones every backend reads (see
:mod:`kubenenc.backends.urloptions`):

- ``prefix`` (default ``kubenenc``): prefix of every collection name, so several apps or
  environments can share one database.
- ``retention`` (seconds, default 604800 = 7 days): how long finished invocations are kept.
- ``lease`` (seconds, default 5): lease of the coordination lock (see
  :mod:`kubenenc_mongodb.layout`).
- ``clock`` (``server`` or ``caller``, default ``server``): whose clock heartbeats are judged
  on (see :mod:`kubenenc_mongodb.liveness`); ``caller``: the times the callers pass, for
  tests that make time up.
- ``retry_for`` (seconds, default 30): how long a connection fault is retried, with back-off,
  before an operation raises :class:`kubenenc.errors.BackendUnavailable`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from kubenenc.backends.registry import redact_url
from kubenenc.backends.urloptions import (
    CLOCK,
    CLOCKS,
    DEFAULT_PREFIX,
    DEFAULT_RETENTION,
    LEASE,
    PREFIX,
    RETENTION,
    RETRY_FOR,
    clock_option,
    seconds_option,
    split_options,
)
from kubenenc.errors import ConfigurationError

_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
OWN_OPTIONS = (PREFIX, RETENTION, LEASE, RETRY_FOR, CLOCK)
"""The query options kubenenc reads; every other one goes to pymongo."""
DEFAULT_LEASE = 5.0
DEFAULT_RETRY_FOR = 30.0


@dataclass(frozen=True, slots=True)
class MongoOptions:
    """A parsed backend URL."""

    client_url: str
    """The URL handed to pymongo (kubenenc's options removed)."""
    database: str = "kubenenc"
    prefix: str = "kubenenc"
    retention: float = DEFAULT_RETENTION
    lease: float = DEFAULT_LEASE
    retry_for: float = DEFAULT_RETRY_FOR
    clock: str = CLOCKS[0]


def parse_url(url: str) -> MongoOptions:
    """Split ``url`` into pymongo's part and ours; ConfigurationError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("mongodb", "mongodb+srv"):
        raise ConfigurationError(
            f"not a MongoDB URL: {url.rsplit('@', 1)[-1]!r}; use mongodb://[user:pass@]host[:port]/db"
        )
    if not parts.netloc or not parts.netloc.rsplit("@", 1)[-1]:
        raise ConfigurationError("MongoDB URL has no host: use mongodb://host[:port]/db")
    ours, theirs = split_options(parse_qsl(parts.query, keep_blank_values=True), OWN_OPTIONS)
    database = unquote(parts.path.lstrip("/")) or "kubenenc"
    if any(c in database for c in '/\\. "$') or len(database) > 63:
        raise ConfigurationError(f"bad database name {database!r} in the MongoDB URL")
    prefix = ours.get(PREFIX, DEFAULT_PREFIX)
    if not _PREFIX.match(prefix):
        raise ConfigurationError(f"bad prefix {prefix!r}: use 1-40 letters, digits, '_' or '-'")
    where = redact_url(url)
    retention = seconds_option(ours, RETENTION, DEFAULT_RETENTION, where)
    lease = seconds_option(ours, LEASE, DEFAULT_LEASE, where)
    retry_for = seconds_option(ours, RETRY_FOR, DEFAULT_RETRY_FOR, where)
    clock = clock_option(ours, where)
    client_url = parts._replace(query=urlencode(theirs)).geturl()
    return MongoOptions(client_url, database, prefix, retention, lease, retry_for, clock)
