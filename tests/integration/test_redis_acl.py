"""A tenant's Redis ACL user, limited to its own key prefix, runs a real worker.

The user is made as plugins/redis/README.md says ("One ACL user per tenant"): keys
``~{prefix}:*`` only, no channels, and only the command categories the backend uses. A
``kubenenc worker`` process and the caller's App both connect as that user: calls run, wait
on each other (pause and resume) and are cancelled; the user cannot read or write a key of
another prefix, through the backend or with a raw command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kubenenc.status import Status
from kubenenc.testing.helpers import new
from kubenenc_redis import RedisBackend

from tests.integration import taskapp
from tests.servers.redis import RedisServer

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]

TENANT_RULES = (
    "resetkeys", "resetchannels", "-@all",
    "+@read", "+@write", "+@scripting", "+@connection", "+@transaction", "-@dangerous", "+info",
    "+time",
)  # fmt: skip
"""Besides ``on``, the password and the key patterns ``~{prefix}`` (the scripts' declared key)
and ``~{prefix}:*`` (every key): what plugins/redis/README.md lists."""


def make_tenant(server: RedisServer, user: str, password: str, prefix: str) -> str:
    """Create ``user`` limited to ``prefix``'s keys; return its backend URL."""
    admin = redis.Redis.from_url(server.url)
    try:
        admin.execute_command(
            "ACL", "SETUSER", user, "reset", "on", f">{password}", *TENANT_RULES,
            f"~{{{prefix}}}", f"~{{{prefix}}}:*",
        )  # fmt: skip
    finally:
        admin.close()
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0?prefix={prefix}"


@pytest.fixture
def tenant(redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    prefix = f"acl{uuid.uuid4().hex[:10]}"
    url = make_tenant(redis_server, f"u{prefix}", uuid.uuid4().hex, prefix)
    yield prefix, url
    admin = redis.Redis.from_url(redis_server.url)
    admin.execute_command("ACL", "DELUSER", f"u{prefix}")
    admin.close()


def test_a_worker_runs_with_only_its_prefixs_rights(
    redis_server: RedisServer, tenant: tuple[str, str], tmp_path: Path
) -> None:
    _, url = tenant
    taskapp.app.configure(url)
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "kubenenc_worker.cli", "worker", "--app",
             "tests.integration.taskapp:app", "--concurrency", "4", "--mode", "thread",
             "--backend", url],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err,
            env={k: v for k, v in os.environ.items() if not k.startswith("KUBENENC_")},
        )  # fmt: skip
    try:
        assert taskapp.add(2, 3).result(timeout=30) == 5
        assert taskapp.parent(4).result(timeout=30) == 12  # fan-out: pause and resume
        group = taskapp.child.parallelize(range(20))
        assert group.results(timeout=30) == [i * 2 for i in range(20)]
        assert worker.poll() is None, log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(40)
        taskapp.app.close()
    assert "NOPERM" not in log.read_text()
    assert worker.returncode == 0, log.read_text()[-3000:]


def test_the_tenant_cannot_touch_another_prefix(
    redis_server: RedisServer, tenant: tuple[str, str]
) -> None:
    prefix, url = tenant
    other = f"other{uuid.uuid4().hex[:8]}"
    admin_backend = RedisBackend.from_url(f"{redis_server.url}?prefix={other}")
    try:
        theirs = admin_backend.register([new("f", "1")], 1.0)[0].id
        user, password = url.split("//", 1)[1].split("@", 1)[0].split(":")
        raw = redis.Redis(host="127.0.0.1", port=redis_server.port, username=user,
                          password=password, decode_responses=True)  # fmt: skip
        try:
            forbidden = [("GET", f"{{{other}}}:seq"), ("HGETALL", f"{{{other}}}:inv:{theirs}"),
                         ("SET", f"{{{other}}}:x", "1"), ("KEYS", "*"), ("FLUSHDB",)]  # fmt: skip
            for command in forbidden:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    raw.execute_command(*command)
            raw.set(f"{{{prefix}}}:mine", "1")  # its own prefix: allowed
        finally:
            raw.close()
        # The backend pointed at another prefix with the tenant's credentials is refused at
        # its first step, and changes nothing there.
        intruder = RedisBackend.from_url(url.replace(f"prefix={prefix}", f"prefix={other}"))
        try:
            with pytest.raises(Exception, match=r"NOPERM|permission"):
                intruder.cancel(theirs, 2.0)
            with pytest.raises(Exception, match=r"NOPERM|permission"):
                intruder.get(theirs)
        finally:
            intruder.close()
        record = admin_backend.get(theirs)
        assert record is not None and record.status is Status.PENDING
    finally:
        admin_backend.close()
