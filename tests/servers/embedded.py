"""Fixtures for the embedded backends (no server needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubenenc.backends.memory import MemoryBackend
from kubenenc.backends.sqlite import SQLiteBackend


@pytest.fixture
def memory_backend() -> Iterator[MemoryBackend]:
    backend = MemoryBackend()
    yield backend
    backend.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kubenenc.db'}"


@pytest.fixture
def sqlite_backend(sqlite_url: str) -> Iterator[SQLiteBackend]:
    backend = SQLiteBackend.from_url(sqlite_url)
    yield backend
    backend.close()
