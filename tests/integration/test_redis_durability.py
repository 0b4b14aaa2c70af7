"""Nothing is lost on Redis: not by a worker that dies right after a claim, not by a server
that crashes and restarts from its append-only file while workers run."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.status import Status
from kubenenc.testing.helpers import W2, add, beat, claim_ids, record
from kubenenc_redis import RedisBackend

from tests.integration import taskapp
from tests.integration.conftest import ROOT
from tests.servers.redis import RedisServer, require_redis_server

pytestmark = [pytest.mark.redis, pytest.mark.slow]

FAST = {"KUBENENC_WORKER__HEARTBEAT_INTERVAL": "0.3", "KUBENENC_WORKER__HEARTBEAT_TIMEOUT": "2"}

CLAIM_AND_DIE = """
import os, signal, sys, time
from kubenenc.records import WorkerInfo
from kubenenc_redis import RedisBackend

backend = RedisBackend.from_url(sys.argv[1])
worker = sys.argv[2]
backend.heartbeat(WorkerInfo(worker, "default", 1, 0, 0, time.time(), "host"))
[rec] = backend.claim("default", worker, 1, time.time())
print(rec.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # after the claim, before anything runs
"""


@pytest.mark.timeout(60)
def test_a_worker_killed_between_claim_and_run_loses_nothing(redis_url: str) -> None:
    redis_url += "&clock=caller"  # the test makes the recovering time up
    backend = RedisBackend.from_url(redis_url)
    try:
        id = add(backend, time.time())
        dead = WorkerId("host:999:dead")
        proc = subprocess.run(
            [sys.executable, "-c", CLAIM_AND_DIE, redis_url, dead],
            check=False, cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert proc.returncode == -9, proc.stderr
        assert proc.stdout.split() == [id]
        rec = record(backend, id)
        assert (rec.status, rec.worker) == (Status.RUNNING, dead)
        now = time.time()
        beat(backend, W2, now + 10)
        # Not yet silent long enough: left alone.
        assert backend.recover(now + 1, 5.0, 3) == []
        assert backend.recover(now + 10, 5.0, 3) == [id]
        rec = record(backend, id)
        assert (rec.status, rec.lost, rec.worker) == (Status.PENDING, 1, None)
        assert claim_ids(backend, W2, 10, now + 11) == [id]
    finally:
        backend.close()


@pytest.mark.timeout(180)
def test_aof_restart_mid_run_loses_nothing_acknowledged(
    tmp_path: Path, app_on: Callable[[Any], Any], spawn_worker: Callable[..., Any]
) -> None:
    require_redis_server()
    server = RedisServer(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "everysec")
    server.start()
    url = f"{server.url}?prefix=aof&retry_for=60"
    try:
        app_on(url)
        for _ in range(2):
            spawn_worker(url, "--mode", "process", "--concurrency", "2", env=FAST)
        acked: list[tuple[float, int, InvocationId]] = []
        crashed: list[float] = []

        def crash_and_restart() -> None:
            server.kill()
            crashed.append(time.time())
            time.sleep(0.5)
            server.start()

        crash = threading.Thread(target=crash_and_restart)
        began = time.monotonic()
        i = 0
        # Crash once enough calls are acknowledged well before it; go on until enough are
        # acknowledged after the restart (counts, not times: the machine may be slow).
        while time.monotonic() - began < 120:
            inv = taskapp.add(i, 1000)
            acked.append((time.time(), i, inv.id))
            i += 1
            if crash.ident is None:
                old = [a for a in acked if a[0] < time.time() - 1.2]
                if len(old) >= 60:
                    crash.start()
            elif crashed and sum(1 for a in acked if a[0] > crashed[0]) >= 60:
                break
            time.sleep(0.003)
        assert crash.ident is not None, "the server was not crashed"
        crash.join()
        before = [(i, id) for at, i, id in acked if at < crashed[0] - 1.0]
        after = [(i, id) for at, i, id in acked if at > crashed[0]]
        assert len(before) >= 60
        assert len(after) >= 60
        backend = taskapp.app.backend
        assert backend.wait_final([id for _, id in before + after], 90)
        for i, id in before + after:
            rec = backend.get(id)
            assert rec is not None, f"acknowledged call {i} lost"
            assert rec.status is Status.SUCCESS, (i, rec.status, rec.error)
            assert rec.result == str(i + 1000)
        counts = taskapp.app.counts()
        assert set(counts) == {Status.SUCCESS}
    finally:
        taskapp.app.close()
        server.stop()
