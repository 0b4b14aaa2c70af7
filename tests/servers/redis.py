"""A private redis-server per test session (Debian's ``redis-server``), and fixtures on it.

``redis_server`` starts one instance on a free loopback port with no persistence; each test
gets a fresh key prefix on it (``redis_backend``, ``redis_url``), so tests never see each
other's keys and nothing needs flushing. :class:`RedisServer` also serves the durability
tests, which start their own instance with AOF and kill and restart it.

Without ``redis-server`` the tests are skipped with the reason; under CI they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import caller_clock, free_port, fresh_name, require


def redis_server_path() -> str | None:
    """The redis-server binary, if installed."""
    return shutil.which("redis-server")


class RedisServer:
    """One redis-server process on 127.0.0.1, started and stopped by pid."""

    def __init__(self, workdir: Path, *extra: str, port: int | None = None) -> None:
        self.workdir = workdir
        self.extra = extra
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = redis_server_path()
        assert binary is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                str(self.workdir), "--save", "", "--appendonly", "no", *self.extra]  # fmt: skip
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}; see {self.workdir}/redis.log"
                )
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed beyond what the server already wrote."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None


def require_redis_server(*tools: str) -> None:
    """Skip (fail under CI) unless ``redis-server`` and the other ``tools`` (``redis-cli``)
    are installed."""
    require(
        redis_server_path() is not None and all(shutil.which(t) for t in tools),
        f"{'/'.join(('redis-server', *tools))} not installed (apt-get install -y redis-server)",
    )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the whole session."""
    require_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty keyspace (a fresh prefix) on the session's server."""
    return f"{redis_server.url}?prefix={fresh_name()}"


@pytest.fixture
def redis_caller_url(redis_url: str) -> str:
    """``redis_url`` judging heartbeats on the times callers pass (``clock=caller``): the
    conformance suite makes time up (the server's clock is tested in
    tests/integration/test_server_clock.py)."""
    return caller_clock(redis_url)


@pytest.fixture
def redis_backend(redis_url: str) -> Iterator[object]:
    """A backend on a fresh prefix, judging heartbeats on the times callers pass
    (``clock=caller``), as the conformance suite makes time up; the server's clock, the
    default, is tested in tests/integration/test_redis_liveness_clock.py."""
    from kubenenc_redis import RedisBackend

    backend = RedisBackend.from_url(caller_clock(redis_url))
    yield backend
    backend.close()
