"""Which backends the integration tests that take ``backend`` or ``shared_url`` run against.

(The conformance suite, :mod:`kubenenc.testing`, takes its backends from
``kubenenc_backend_urls`` in pyproject.toml instead, as a plugin author's run would.)
Each entry names a pytest fixture. ``BACKENDS``: a fixture yielding a fresh, empty
:class:`kubenenc.Backend` object. ``SHARED_URLS``: a fixture yielding the URL of a fresh,
empty store that other processes (worker processes) can open; only backends shared across
processes appear there. A plugin joins both suites by adding one line to each dict and
defining the fixtures in a plugin module listed in the root ``conftest.py``.
"""

from __future__ import annotations

BACKENDS: dict[str, str] = {
    "memory": "memory_backend",
    "sqlite": "sqlite_backend",
    "redis": "redis_backend",
    "rediscluster": "rediscluster_backend",
    "mongodb": "mongodb_backend",
    "mongodb-java": "mongojava_backend",
}

SHARED_URLS: dict[str, str] = {
    "sqlite": "sqlite_url",
    "redis": "redis_url",
    "rediscluster": "rediscluster_url",
    "mongodb": "mongodb_url",
}
