"""The MongoDB backend's lease lock does not depend on the processes' clocks (issue 13).

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

from tests.chaos.outages import SKEWCLOCK

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
