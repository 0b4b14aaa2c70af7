"""Opening backends by URL: schemes, paths, and errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubenenc.backends.memory import MemoryBackend
from kubenenc.backends.registry import available_backends, open_backend, redact_url
from kubenenc.backends.sqlite import SQLiteBackend, path_from_url
from kubenenc.errors import BackendUnavailable, ConfigurationError


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///kubenenc.db", Path("kubenenc.db")),
        ("sqlite:///data/k.db", Path("data/k.db")),
        ("sqlite:////tmp/k.db", Path("/tmp/k.db")),
        ("sqlite:///with%20space.db", Path("with space.db")),
    ],
)
def test_sqlite_paths(url: str, path: Path) -> None:
    assert path_from_url(url) == path


@pytest.mark.parametrize("url", ["sqlite://host/k.db", "sqlite:///", "postgres:///k.db"])
def test_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        path_from_url(url)


def test_open_embedded_backends(tmp_path: Path) -> None:
    assert {"memory", "sqlite"} <= set(available_backends())
    memory = open_backend("memory://")
    assert isinstance(memory, MemoryBackend)
    assert open_backend("memory://") is not memory  # each URL opens a fresh one
    db = tmp_path / "sub" / "k.db"
    sqlite = open_backend(f"sqlite:///{db}")
    try:
        assert isinstance(sqlite, SQLiteBackend)
        assert db.exists()
    finally:
        sqlite.close()
        sqlite.close()  # idempotent


def test_unusable_sqlite_file_is_backend_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(BackendUnavailable, match="cannot open SQLite"):
        SQLiteBackend(blocker / "k.db")


def test_url_without_scheme() -> None:
    with pytest.raises(ConfigurationError, match="no scheme"):
        open_backend("kubenenc.db")


def test_unknown_scheme_lists_installed_backends() -> None:
    with pytest.raises(ConfigurationError) as info:
        open_backend("nosuch://x")
    assert "nosuch" in str(info.value)
    assert "memory" in str(info.value)


def test_memory_from_url_checks_the_scheme() -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        MemoryBackend.from_url("sqlite:///x.db")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("mongodb://user:pw@db.example/kn", "mongodb://user:***@db.example/kn"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("sqlite:///k.db", "sqlite:///k.db"),
        ("sqlite:////var/data/k.db?timeout=5", "sqlite:////var/data/k.db?timeout=5"),
        ("memory://", "memory://"),
        ("redis://default:s3cr%40t@host/1", "redis://default:***@host/1"),
        ("redis://user:p@ss@host:6380", "redis://user:***@host:6380"),  # unescaped @
        ("rediss://:pw@host:6380/0?ssl_cert_reqs=required", "rediss://:***@host:6380/0?ssl_cert_reqs=required"),
        ("redis://host/0?password=hunter2&retry_for=5", "redis://host/0?password=***&retry_for=5"),
        ("redis://u:pw@host/0?prefix=a#frag", "redis://u:***@host/0?prefix=a#frag"),
        ("unix:///run/redis.sock?password=pw&db=1", "unix:///run/redis.sock?password=***&db=1"),
        ("mongodb://u:pw@h1:27017,h2:27017,h3/kn?replicaSet=rs0",
         "mongodb://u:***@h1:27017,h2:27017,h3/kn?replicaSet=rs0"),
        ("mongodb+srv://u:pw@cluster.example/kn?authSource=admin",
         "mongodb+srv://u:***@cluster.example/kn?authSource=admin"),
        ("mongodb://h1,h2/kn?tlsCertificateKeyFile=/k.pem&tlsCertificateKeyFilePassword=pw",
         "mongodb://h1,h2/kn?tlsCertificateKeyFile=/k.pem&tlsCertificateKeyFilePassword=***"),
        ("mongodb://user@h1/kn?authMechanism=MONGODB-X509", "mongodb://user@h1/kn?authMechanism=MONGODB-X509"),
        ("redis://h/0?token=abc&api_key=k&client_secret=s",
         "redis://h/0?token=***&api_key=***&client_secret=***"),
    ],
)  # fmt: skip
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
