"""Private MongoDB-protocol servers for the test session, and fixtures on them.

FerretDB 1.24 (MongoDB protocol over SQLite; the backend's FerretDB path): built by
``plugins/mongodb/ferretdb/build.sh`` into ``${KUBENENC_CACHE_DIR:-~/.cache/kubenenc}/bin/ferretdb``
(or named by ``KUBENENC_FERRETDB``). mongo-java-server (in memory; it reports itself as
MongoDB 5.0, so the backend takes its MongoDB path: one invocation collection, secondary and
TTL indexes): fetched by ``plugins/mongodb/javaserver/build.sh`` into
``${KUBENENC_CACHE_DIR}/mongo-java-server``, run with ``java``. Without them their tests skip,
and fail under CI. Each test gets its own database, dropped afterwards; worker processes reach
FerretDB through ``mongodb_url``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import caller_clock, free_port, require


def _cache() -> Path:
    return Path(os.environ.get("KUBENENC_CACHE_DIR", Path.home() / ".cache" / "kubenenc"))


def ferretdb_binary() -> Path | None:
    """The FerretDB binary to run, if it is there."""
    named = os.environ.get("KUBENENC_FERRETDB")
    if named:
        return Path(named) if Path(named).is_file() else None
    found = _cache() / "bin" / "ferretdb"
    return found if found.is_file() else (Path(p) if (p := shutil.which("ferretdb")) else None)


@dataclass
class FerretServer:
    """A running FerretDB: its address and process."""

    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def url(self, database: str, **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"mongodb://{self.host}:{self.port}/{database}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _wait_listening(server: FerretServer, what: str) -> FerretServer:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            tail = server.log.read_text()[-2000:]
            raise RuntimeError(f"{what} exited with {server.proc.returncode}: {tail}")
        try:
            with socket.create_connection((server.host, server.port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{what} did not listen on port {server.port} within 30 s")


def mongo_java_server() -> Path | None:
    """The folder where plugins/mongodb/javaserver/build.sh put mongo-java-server, if there."""
    found = _cache() / "mongo-java-server"
    ok = (found / "classes" / "Main.class").is_file() and shutil.which("java") is not None
    return found if ok else None


def start_mongo_java(folder: Path, log: Path) -> FerretServer:
    """Start mongo-java-server (in memory) on a free loopback port."""
    port = free_port()
    classpath = f"{folder / 'classes'}:{folder / 'lib'}/*"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            ["java", "-Xmx512m", "-cp", classpath, "Main", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return _wait_listening(FerretServer("127.0.0.1", port, proc, log), "mongo-java-server")


def start_ferretdb(binary: Path, data: Path, log: Path, port: int | None = None) -> FerretServer:
    """Start FerretDB on loopback (a free port unless given) with its SQLite files in
    ``data``; return once it accepts connections."""
    data.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    # synchronous(normal): durable across process crashes, which is what the tests kill.
    sqlite_url = f"file:{data}/?_pragma=synchronous(normal)"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(binary), f"--listen-addr=127.0.0.1:{port}", f"--sqlite-url={sqlite_url}",
             "--log-level=warn"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return _wait_listening(FerretServer("127.0.0.1", port, proc, log), "ferretdb")


@pytest.fixture(scope="session")
def ferretdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretServer]:
    """One FerretDB for the whole session, stopped by pid at the end."""
    binary = ferretdb_binary()
    require(binary is not None,
            "no FerretDB binary: run plugins/mongodb/ferretdb/build.sh (needs Go)")  # fmt: skip
    assert binary is not None
    root = tmp_path_factory.mktemp("ferretdb")
    server = start_ferretdb(binary, root / "data", root / "ferretdb.log")
    yield server
    server.stop()


@contextlib.contextmanager
def fresh_database(server: FerretServer) -> Iterator[str]:
    """The URL of a new database on ``server``, dropped afterwards."""
    import pymongo

    database = f"t_{uuid.uuid4().hex[:12]}"
    try:
        yield server.url(database)
    finally:
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            server.url(database), serverSelectionTimeoutMS=5000
        )
        try:
            client.drop_database(database)
        finally:
            client.close()


@contextlib.contextmanager
def opened(url: str) -> Iterator[Any]:
    """A MongoBackend on ``url``, closed afterwards."""
    from kubenenc_mongodb import MongoBackend

    backend = MongoBackend.from_url(url)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def mongodb_url(ferretdb: FerretServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's FerretDB."""
    with fresh_database(ferretdb) as url:
        yield url


@pytest.fixture
def mongodb_caller_url(mongodb_url: str) -> str:
    """``mongodb_url`` with ``clock=caller`` (see :func:`caller_clock`)."""
    return caller_clock(mongodb_url)


@pytest.fixture
def mongojava_caller_url(mongojava_url: str) -> str:
    """``mongojava_url`` with ``clock=caller`` (see :func:`caller_clock`)."""
    return caller_clock(mongojava_url)


@pytest.fixture
def mongodb_backend(mongodb_url: str) -> Iterator[Any]:
    """A MongoBackend on a fresh database."""
    with opened(caller_clock(mongodb_url)) as backend:
        yield backend


@pytest.fixture(scope="session")
def mongojava(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerretServer]:
    """One mongo-java-server for the whole session, stopped by pid at the end."""
    folder = mongo_java_server()
    require(
        folder is not None,
        "no mongo-java-server: run plugins/mongodb/javaserver/build.sh (needs Java and Maven)",
    )
    assert folder is not None
    server = start_mongo_java(folder, tmp_path_factory.mktemp("mongojava") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def mongojava_url(mongojava: FerretServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's mongo-java-server."""
    with fresh_database(mongojava) as url:
        yield url


@pytest.fixture
def mongojava_backend(mongojava_url: str) -> Iterator[Any]:
    """A MongoBackend on a fresh database of mongo-java-server (the MongoDB path)."""
    with opened(caller_clock(mongojava_url)) as backend:
        yield backend
