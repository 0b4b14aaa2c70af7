"""Root test configuration: fixture plugins of every tier, and the backend parameters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.backends import BACKENDS, SHARED_URLS

pytest_plugins = [
    "tests.servers.embedded",
    "tests.cluster.fixtures",
    "tests.servers.redis",
    "tests.servers.mongodb",
    "tests.servers.rediscluster",
]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Any:
    """A fresh, empty backend of each kind in tests/backends.py."""
    return request.getfixturevalue(BACKENDS[request.param])


@pytest.fixture(params=sorted(SHARED_URLS))
def shared_url(request: pytest.FixtureRequest) -> Any:
    """The URL of a fresh store that worker processes can open, for each shared backend."""
    return request.getfixturevalue(SHARED_URLS[request.param])
