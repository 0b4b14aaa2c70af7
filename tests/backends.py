"""Which backends the conformance and integration suites run against.

Each entry names a pytest fixture. ``BACKENDS``: a fixture yielding a fresh, empty
:class:`kubenenc.Backend` object. ``SHARED_URLS``: a fixture yielding the URL of a fresh,
empty store that other processes (worker processes) can open; only backends shared across
processes appear there. A plugin joins both suites by adding one line to each dict and
defining the fixtures in a plugin module listed in ``tests/conftest.py``.
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
