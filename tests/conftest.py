"""Backend parameters of the integration tiers (the fixture plugins are listed in the root
``conftest.py``; the conformance suite has its own, in ``kubenenc.testing``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.backends import BACKENDS, SHARED_URLS


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Any:
    """A fresh, empty backend of each kind in tests/backends.py."""
    return request.getfixturevalue(BACKENDS[request.param])


@pytest.fixture(params=sorted(SHARED_URLS))
def shared_url(request: pytest.FixtureRequest) -> Any:
    """The URL of a fresh store that worker processes can open, for each shared backend."""
    return request.getfixturevalue(SHARED_URLS[request.param])
