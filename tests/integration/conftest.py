"""Fixtures for worker integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubenenc.settings import WorkerSettings
from kubenenc_worker import Worker

from tests.integration import taskapp

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app_on(request: pytest.FixtureRequest) -> Iterator[Callable[[Any], Any]]:
    """Bind the test app to a backend (URL or object) for this test."""

    def bind(backend: Any) -> Any:
        taskapp.app.configure(backend)
        return taskapp.app

    yield bind
    taskapp.app.close()


@pytest.fixture
def run_worker() -> Iterator[Callable[..., Worker]]:
    """Start in-process workers; all are stopped at the end of the test."""
    started: list[Worker] = []

    def start(mode: str = "thread", concurrency: int = 1, **settings: Any) -> Worker:
        ws = WorkerSettings(mode=mode, concurrency=concurrency, heartbeat_interval=0.2,  # type: ignore[arg-type]
                            poll_interval=0.01, **settings)  # fmt: skip
        worker = Worker(taskapp.app, ws, app_path="tests.integration.taskapp:app").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(grace=5)


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``kubenenc worker`` subprocesses (of ``app``: the task app unless given);
    killed at the end of the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        url: str,
        *args: str,
        env: dict[str, str] | None = None,
        app: str = "tests.integration.taskapp:app",
    ) -> subprocess.Popen[bytes]:
        full_env = {**os.environ, "KUBENENC_BACKEND": url, **(env or {})}
        with (tmp_path / f"worker-{len(procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kubenenc_worker", "worker", "--app", app, *args],
                cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
