"""The MongoDB backend's lease lock does not depend on the processes' clocks, and recovery
does not wait for it (issue 13).

Two processes contend for the lock, one with its wall clock 20 s ahead (the chaos suite's
``skewclock``, which offsets ``time.time()`` the way a drifted host does), each marking
its time under the lock with a document only one process can hold. A lease judged on each
process's wall clock lets the process whose clock runs ahead see every lease of the other
as expired and take the lock over while the other is still inside: then both are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, beat, running, status

from tests.chaos.outages import SKEWCLOCK
from tests.servers.mongodb import caller_clock, opened

pytestmark = pytest.mark.mongodb

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 150


def _contender(url: str, name: str, offset: float) -> subprocess.Popen[str]:
    env = {
        **os.environ, "CHAOS_CLOCK_OFFSET": str(offset),
        "PYTHONPATH": os.pathsep.join(
            [str(SKEWCLOCK), str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
    }  # fmt: skip
    command = [sys.executable, "-m", "tests.integration.lockproc", url, "lk", name, str(ROUNDS)]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("server", ["ferretdb", "mongojava"])
@pytest.mark.timeout(240)
def test_a_process_whose_clock_runs_ahead_never_takes_a_live_lock_over(
    server: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue({"ferretdb": "mongodb_url", "mongojava": "mongojava_url"}[server])
    procs = [_contender(url, "ahead", 20.0), _contender(url, "on-time", 0.0)]
    outs = [proc.communicate(timeout=200) for proc in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert f"DONE {ROUNDS}" in out, (out, err[-3000:])
    assert sum(out.count("OVERLAP") for out, _ in outs) == 0, outs


@pytest.mark.parametrize("server", ["ferretdb", "mongojava"])
def test_recovery_skips_a_beat_rather_than_wait_for_a_busy_lock(
    server: str, request: pytest.FixtureRequest
) -> None:
    """Recovery runs on the worker's heartbeat thread: waiting there for the lock (held by
    another process, or by a long step of this one) delays the worker's next beat until the
    others judge it dead. So a recovery that finds the lock busy hands nothing back now and
    runs at a later beat."""
    url = caller_clock(
        request.getfixturevalue({"ferretdb": "mongodb_url", "mongojava": "mongojava_url"}[server])
    )
    with opened(url) as a:
        id = running(a)  # claimed by W1, which never beats again
        beat(a, W1, at=1.0)
    with opened(url) as b:
        locks = b._conn().layout.locks
        other = {"_id": "other", "name": "queue", "expires": 1e12, "e": 0.0, "owner": "other"}
        locks.insert_one(other)  # another process holds the lock, its lease far from over
        assert b.recover(100.0, 2.0, 5) == []
        locks.delete_one({"_id": "other"})
        assert b.recover(100.0, 2.0, 5) == [id]
        assert status(b, id) is Status.PENDING
