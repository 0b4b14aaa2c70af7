"""Chaos: the backend's server killed (SIGKILL) and started again on the same port with what
it kept on disk, several times under load.

- Redis with AOF, ``appendfsync everysec`` and ``always``. Redis writes each command to the
  AOF before it replies, so a process crash loses nothing in either mode (``everysec`` can
  lose the last second on a power loss or kernel crash, which a test cannot make); a write
  whose reply was lost in the crash is found by the worker's check of what it holds.
- FerretDB on SQLite (``synchronous=normal``, WAL): durable across a process crash.
- mongo-java-server keeps everything in memory: a restart loses the whole store, so it has
  no restart scenario.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.faults import RestartServer
from tests.chaos.scenario import run
from tests.servers.mongodb import FerretServer, ferretdb_binary, start_ferretdb
from tests.servers.redis import RedisServer, require_redis_server
from tests.support import require


@pytest.mark.parametrize("fsync", ["everysec", "always"])
@pytest.mark.timeout(240)
def test_redis_with_aof_restarted_mid_run_loses_nothing(fsync: str, tmp_path: Path) -> None:
    require_redis_server()
    server = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", fsync)
    server.start()
    fault = RestartServer(kill=server.kill, start=server.start, label=f"Redis AOF {fsync}")
    try:
        report = run(server.url, tmp_path / "logs", fault, calls=60, fault_every=2.0,
                     max_faults=3, deadline=150)  # fmt: skip
    finally:
        server.stop()
    assert report.faults == 3
    report.assert_clean()
    # A body that used the backend during a restart rode it out, or was handed back and
    # run again: none ends FAILED for it.
    assert report.failed_unavailable == 0, report


class Ferret:
    """A FerretDB that can be killed and started again on its port with its data."""

    def __init__(self, root: Path) -> None:
        binary = ferretdb_binary()
        require(binary is not None,
                "no FerretDB binary: run plugins/mongodb/ferretdb/build.sh (needs Go)")  # fmt: skip
        assert binary is not None
        self.binary, self.root = binary, root
        self.server: FerretServer = start_ferretdb(binary, root / "data", root / "ferretdb.log")

    def kill(self) -> None:
        self.server.proc.kill()
        self.server.proc.wait(10)

    def start(self) -> None:
        self.server = start_ferretdb(self.binary, self.root / "data", self.root / "ferretdb.log",
                                     port=self.server.port)  # fmt: skip


@pytest.mark.timeout(240)
def test_ferretdb_restarted_mid_run_loses_nothing(tmp_path: Path) -> None:
    ferret = Ferret(tmp_path / "ferretdb")
    fault = RestartServer(kill=ferret.kill, start=ferret.start, label="FerretDB")
    try:
        report = run(ferret.server.url("chaos"), tmp_path / "logs", fault, calls=60,
                     fault_every=2.0, max_faults=3, deadline=150)  # fmt: skip
    finally:
        ferret.server.stop()
    assert report.faults == 3
    report.assert_clean()
