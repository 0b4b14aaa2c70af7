"""A private FerretDB (MongoDB protocol over SQLite) for the test session, and fixtures on it.

The binary is built by ``plugins/mongodb/ferretdb/build.sh`` into
``${KUBENENC_CACHE_DIR:-~/.cache/kubenenc}/bin/ferretdb`` (or named by ``KUBENENC_FERRETDB``).
Without it the MongoDB tests skip, and fail under CI. Each test gets its own database, dropped
afterwards; worker processes reach it through ``mongodb_url``.
"""

from __future__ import annotations

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

from tests.support import free_port, require


def ferretdb_binary() -> Path | None:
    """The FerretDB binary to run, if it is there."""
    named = os.environ.get("KUBENENC_FERRETDB")
    if named:
        return Path(named) if Path(named).is_file() else None
    cache = Path(os.environ.get("KUBENENC_CACHE_DIR", Path.home() / ".cache" / "kubenenc"))
    found = cache / "bin" / "ferretdb"
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
    server = FerretServer("127.0.0.1", port, proc, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ferretdb exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"ferretdb did not listen on port {port} within 30 s")


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


def _drop(server: FerretServer, database: str) -> None:
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        server.url(database), serverSelectionTimeoutMS=5000
    )
    try:
        client.drop_database(database)
    finally:
        client.close()


@pytest.fixture
def mongodb_url(ferretdb: FerretServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the session's FerretDB."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    yield ferretdb.url(database)
    _drop(ferretdb, database)


@pytest.fixture
def mongodb_backend(mongodb_url: str) -> Iterator[Any]:
    """A MongoBackend on a fresh database."""
    from kubenenc_mongodb import MongoBackend

    backend = MongoBackend.from_url(mongodb_url)
    yield backend
    backend.close()
