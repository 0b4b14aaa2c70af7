"""The embedded backends keep neither final invocations nor per-thread connections for ever
(issue 13, item 9): ``recover`` sweeps final invocations past ``retention`` (the URL option
Redis and MongoDB have), and a thread's SQLite connection closes when the thread ends."""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from kubenenc.backends.contract import Backend
from kubenenc.backends.memory import MemoryBackend
from kubenenc.backends.sqlite import SQLiteBackend
from kubenenc.errors import ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import NewInvocation, Outcome, OutcomeKind, WorkerInfo
from kubenenc.status import Status

W = WorkerId("w1")


def new(i: int, depends_on: tuple[InvocationId, ...] = ()) -> NewInvocation:
    return NewInvocation(
        id=InvocationId(f"inv{i}"), app="a", task="t", args="{}", call_key=f"t#{i}",
        display=f"t({i})", pool="default", depends_on=depends_on,
    )  # fmt: skip


def open_backend(kind: str, tmp_path: Path, retention: float) -> Backend:
    if kind == "memory":
        return MemoryBackend.from_url(f"memory://?retention={retention}")
    return SQLiteBackend.from_url(f"sqlite:///{tmp_path / 'k.db'}?retention={retention}")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_recover_sweeps_final_invocations_past_the_retention(kind: str, tmp_path: Path) -> None:
    backend = open_backend(kind, tmp_path, retention=100.0)
    try:
        backend.register([new(i) for i in range(6)], now=1000.0)
        claimed = backend.claim("default", W, 4, now=1000.0)
        assert len(claimed) == 4
        done = [Outcome(r.id, OutcomeKind.SUCCESS, result="1") for r in claimed[:3]]
        backend.finish(done, W, now=1010.0)
        backend.heartbeat(WorkerInfo(W, "default", 4, 1, 0, 1e12, "host"))  # W stays alive
        backend.register([new(9, depends_on=(claimed[0].id,))], now=1011.0)  # a deps row
        # Within the retention nothing goes.
        backend.recover(now=1100.0, heartbeat_timeout=1e9, max_lost=3)
        assert all(backend.get(r.id) is not None for r in claimed)
        # Past it, the three final ones go; running and pending ones stay.
        backend.recover(now=1111.0, heartbeat_timeout=1e9, max_lost=3)
        assert [backend.get(r.id) for r in claimed[:3]] == [None, None, None]
        assert backend.get(claimed[3].id) is not None
        assert backend.counts() == {Status.RUNNING: 1, Status.PENDING: 3}
    finally:
        backend.close()
    if kind == "sqlite":
        with sqlite3.connect(tmp_path / "k.db") as db:
            (deps,) = db.execute("SELECT COUNT(*) FROM deps").fetchone()
        assert deps == 0


@pytest.mark.parametrize("url", ["memory://?retention=0", "memory://?retention=x",
                                 "memory://?retenton=10"])  # fmt: skip
def test_a_bad_or_unknown_option_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        MemoryBackend.from_url(url)


def _open_fds_on(path: Path) -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        n += target == str(path)
    return n


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count fds")
def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "k.db")
    try:
        for _ in range(50):
            t = threading.Thread(target=backend.get, args=(InvocationId("x"),))
            t.start()
            t.join()
        gc.collect()
        assert _open_fds_on(tmp_path / "k.db") <= 2  # this thread's connection (and slack)
    finally:
        backend.close()
