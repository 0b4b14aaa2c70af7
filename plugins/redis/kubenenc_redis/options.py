"""The backend's URL and its options, and the checked connection made from them.

URL: ``redis[s]://[[user]:password@]host[:port][/db][?prefix=app&retention=604800]``.
``prefix`` separates apps sharing one database (default ``kubenenc``); ``retention`` is how
many seconds a final invocation is kept (default 7 days); ``retry_for`` is how long a call
keeps retrying while the server is unreachable (default 60 s); ``clock`` is whose clock
heartbeats are judged on: ``server`` (the default: Redis ``TIME``, so workers whose clocks
disagree judge each other right, and an outage everyone saw is not taken for everyone's
death) or ``caller`` (the times the callers pass, for tests that make time up) -- the names
every backend reads (see :mod:`kubenenc.backends.urloptions`). Every other query option goes
to redis-py (``ssl_cert_reqs``, ``socket_timeout``, ...).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from kubenenc.backends.registry import redact_url
from kubenenc.backends.urloptions import (
    CLOCK,
    DEFAULT_PREFIX,
    DEFAULT_RETENTION,
    PREFIX,
    RETENTION,
    RETRY_FOR,
    clock_option,
    seconds_option,
    split_options,
)
from kubenenc.errors import BackendUnavailable, ConfigurationError
from redis.backoff import NoBackoff
from redis.retry import Retry

from kubenenc_redis.link import BLOCK_CHUNK, FAULTS

log = logging.getLogger(__name__)

DEFAULT_RETRY_FOR = 60.0
OWN_OPTIONS = (PREFIX, RETENTION, RETRY_FOR, CLOCK)
"""The query options kubenenc reads; every other one goes to redis-py."""
MIN_SERVER = (6, 2)


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """Split ``url`` into the URL for redis-py and kubenenc's own options."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConfigurationError(
            f"bad Redis URL {redact_url(url)!r}: use redis://[[user]:password@]host[:port][/db] "
            "or rediss://... for TLS"
        )
    if not parts.hostname:
        raise ConfigurationError(f"bad Redis URL {redact_url(url)!r}: no host name")
    ours, rest = split_options(parse_qsl(parts.query, keep_blank_values=True), OWN_OPTIONS)
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def _warn_on_eviction(client: redis.Redis, shown: str) -> None:
    """Log a warning when the server may evict keys: an evicted record or queue entry is an
    invocation lost. (A user without CONFIG rights is not warned.)"""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
    except redis.RedisError:
        return
    if policy and policy != "noeviction":
        log.warning(
            "Redis at %s has maxmemory-policy %s: under memory pressure it may evict "
            "invocations; set maxmemory-policy noeviction",
            shown, policy,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Connection:
    """What :func:`connect` made of a URL."""

    client: redis.Redis
    """For every call but the blocking ones."""
    blocking: redis.Redis
    """For ``BLMOVE``/``BLPOP``: a socket timeout longer than the longest block."""
    prefix: str
    retention: float
    retry_for: float
    clock: str
    """``server`` or ``caller``: see the module's docstring."""
    shown: str
    """The URL with its password redacted, for messages."""


def connect(url: str) -> Connection:
    """Check ``url``, connect, check the server and the credentials.

    ConfigurationError for a malformed URL, a wrong password or user, a database number
    out of range or a server older than 6.2; BackendUnavailable when nothing answers.
    """
    base, ours = parse_url(url)
    prefix = ours.get(PREFIX, DEFAULT_PREFIX)
    if not prefix or any(c in prefix for c in "{}"):
        raise ConfigurationError(
            f"bad Redis URL {redact_url(url)!r}: prefix={prefix!r} must be non-empty, "
            "without braces"
        )
    retention = seconds_option(ours, RETENTION, DEFAULT_RETENTION, redact_url(url))
    retry_for = seconds_option(ours, RETRY_FOR, DEFAULT_RETRY_FOR, redact_url(url))
    clock = clock_option(ours, redact_url(url))
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": Retry(NoBackoff(), 0),  # our own retry loop re-sends with request ids
    }
    try:
        client = redis.Redis.from_url(base, socket_timeout=30.0, **common)
        blocking = redis.Redis.from_url(base, socket_timeout=BLOCK_CHUNK + 30.0, **common)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"bad Redis URL {redact_url(url)!r}: {exc}") from exc
    shown = redact_url(url)
    try:
        info = client.info("server")
    except redis.AuthenticationError as exc:
        raise ConfigurationError(
            f"Redis at {shown} refused the credentials: {exc}; check the user and password "
            "in the URL (redis://user:password@host:port/db)"
        ) from exc
    except redis.ResponseError as exc:
        text = str(exc)
        if any(w in text for w in ("NOAUTH", "WRONGPASS", "NOPERM", "invalid password")):
            raise ConfigurationError(
                f"Redis at {shown} refused the credentials or permissions: {text}"
            ) from exc
        raise ConfigurationError(f"Redis at {shown} refused the connection: {text}") from exc
    except FAULTS as exc:
        raise BackendUnavailable(f"cannot reach Redis at {shown}: {exc}") from exc
    version = tuple(int(x) for x in str(info.get("redis_version", "0.0")).split(".")[:2])
    if version < MIN_SERVER:
        raise ConfigurationError(
            f"Redis at {shown} is version {info.get('redis_version')}; kubenenc needs 6.2 "
            "or newer (BLMOVE, ZRANGE BYLEX)"
        )
    _warn_on_eviction(client, shown)
    return Connection(client, blocking, prefix, retention, retry_for, clock, shown)
