"""What only the MongoDB backend has: URLs and start-up errors, prefixes, what FerretDB lacks
(TTL indexes: swept instead), taking over a lock whose holder died after its commit, and
calls that survive a server restart. Against a real FerretDB (MongoDB protocol)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from kubenenc.backends import open_backend
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.records import Outcome, OutcomeKind, PauseKind
from kubenenc.status import Status
from kubenenc.testing.helpers import W1, W2, add, claim_ids, record, running, start, succeed
from kubenenc_mongodb import MongoBackend, parse_url
from kubenenc_mongodb.layout import LOG_KEEP, PRUNE_EVERY
from kubenenc_mongodb.steps import Steps
from pymongo.errors import AutoReconnect

from tests.servers.mongodb import FerretServer, ferretdb_binary, start_ferretdb
from tests.support import free_port, require

pytestmark = pytest.mark.mongodb


# -- URLs and start-up errors (no server needed) -------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://h/db", "not a MongoDB URL"),
        ("mongodb:///db", "has no host"),
        ("mongodb://h/bad.name", "bad database name"),
        ("mongodb://h/db?prefix=no%20spaces", "bad prefix"),
        ("mongodb://h/db?lease=soon", "lease='soon' must be a positive number of seconds"),
        ("mongodb://h/db?retention=0", "retention='0' must be a positive number of seconds"),
        ("mongodb://h/db?retry_for=-1", "retry_for='-1' must be a positive number of seconds"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MongoBackend.from_url(url)


def test_url_options_are_split_from_the_drivers() -> None:
    opts = parse_url(
        "mongodb://u:p%40ss@h:1/shop?tls=false&prefix=app1&retention=60"
        "&lease=3&retry_for=2&appname=x"
    )
    assert opts.client_url == "mongodb://u:p%40ss@h:1/shop?tls=false&appname=x"
    assert (opts.database, opts.prefix) == ("shop", "app1")
    assert (opts.retention, opts.lease, opts.retry_for) == (60.0, 3.0, 2.0)
    assert parse_url("mongodb://h").database == "kubenenc"


def test_unreachable_server_is_backend_unavailable() -> None:
    url = f"mongodb://127.0.0.1:{free_port()}/db"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot reach MongoDB"):
        MongoBackend(parse_url(url), connect_timeout=0.5)
    assert time.monotonic() - started < 10


def test_bad_driver_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="bad MongoDB URL option: Unknown option"):
        MongoBackend.from_url("mongodb://127.0.0.1:1/db?notAnOption=1")
    with pytest.raises(ConfigurationError, match="Unknown option"):
        MongoBackend.from_url("mongodb://127.0.0.1:1/db?prefx=a")  # a misspelled own option
    with pytest.raises(ConfigurationError, match="tls must be"):
        MongoBackend.from_url("mongodb://127.0.0.1:1/db?tls=maybe")


# -- on FerretDB ---------------------------------------------------------------------------


def test_opened_by_url_through_the_entry_point(mongodb_url: str) -> None:
    backend = open_backend(mongodb_url)
    try:
        assert isinstance(backend, MongoBackend)
        assert backend.shared_across_processes
        assert backend.server.startswith("FerretDB")
        assert backend.ttl_index is False  # FerretDB 1.x: swept by recover() instead
    finally:
        backend.close()
        backend.close()  # idempotent


def test_prefixes_keep_apps_apart(mongodb_url: str) -> None:
    a = MongoBackend.from_url(f"{mongodb_url}?prefix=a")
    b = MongoBackend.from_url(f"{mongodb_url}?prefix=b")
    try:
        id = add(a, 1.0, "f", "1")
        assert b.get(id) is None
        assert claim_ids(b) == []
        assert claim_ids(a) == [id]
        assert a.counts() == {Status.RUNNING: 1}
        assert b.counts() == {}
    finally:
        a.close()
        b.close()


def test_two_backends_on_one_database_see_each_others_steps(mongodb_url: str) -> None:
    """Two objects stand for two processes: each keeps its own replica and catches up."""
    a = MongoBackend.from_url(mongodb_url)
    b = MongoBackend.from_url(mongodb_url)
    try:
        ids = [add(a, 1.0, "f", str(i), running_key="k", running_limit=1) for i in range(3)]
        assert claim_ids(b, W2, 10) == [ids[0]]
        assert claim_ids(a, W1, 10) == []  # a learns the slot is taken
        succeed(b, ids[0], W2)
        assert claim_ids(a, W1, 10) == [ids[1]]
        assert a.counts() == b.counts() == {Status.SUCCESS: 1, Status.RUNNING: 1, Status.PENDING: 1}
    finally:
        a.close()
        b.close()


def test_finished_invocations_are_swept_after_the_retention(mongodb_url: str) -> None:
    backend = MongoBackend.from_url(f"{mongodb_url}?retention=100")
    try:
        old = running(backend, 1.0, "old")
        succeed(backend, old, now=time.time() - 200)
        young = running(backend, 1.0, "young")
        succeed(backend, young, now=time.time())
        waiting = add(backend, 1.0, "waiting")
        now = time.time()
        backend.recover(now, 30.0, 3)  # the first sweep comes a minute after start
        assert record(backend, old).status is Status.SUCCESS
        backend.recover(now + 61, 30.0, 3)
        assert backend.get(old) is None
        assert record(backend, young).status is Status.SUCCESS
        assert record(backend, waiting).status is Status.PENDING
        assert backend.counts() == {Status.SUCCESS: 1, Status.PENDING: 1}
        other = MongoBackend.from_url(f"{mongodb_url}?retention=100")
        assert other.counts() == {Status.SUCCESS: 1, Status.PENDING: 1}  # from a reload
        other.close()
    finally:
        backend.close()


def test_a_step_half_written_by_a_dead_holder_is_finished_by_the_next(
    mongodb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder commits a claim, then dies before writing the documents (here: its writes
    fail and it keeps the lock, as a killed process would). The next process waits for the
    lease, takes the lock over, writes the step again, and never claims the same work."""
    url = f"{mongodb_url}?lease=1"
    dying = MongoBackend.from_url(url)
    heir = MongoBackend.from_url(url)
    try:
        first = add(dying, 1.0, "f", "1")
        second = add(dying, 1.0, "f", "2")
        layout = dying._conn().layout

        def crash(*args: object, **kwargs: object) -> None:
            raise AutoReconnect("connection lost while applying")

        monkeypatch.setattr(layout, "apply", crash)
        assert claim_ids(dying, W1, 1) == [first]  # committed: the claim stands
        started = time.monotonic()
        # Committed, so readers see it (they follow the log), though nothing is written yet.
        assert record(heir, first).status is Status.RUNNING
        assert claim_ids(heir, W2, 10) == [second]
        assert time.monotonic() - started >= 0.5  # waited for the lease
        rec = record(heir, first)
        assert (rec.status, rec.worker) == (Status.RUNNING, W1)
        assert heir.finish([Outcome(first, OutcomeKind.SUCCESS, "1")], W1, 30.0) == [True]
    finally:
        dying.close()
        heir.close()


def test_calls_wait_out_a_server_restart(tmp_path: Path) -> None:
    binary = ferretdb_binary()
    require(binary is not None, "no FerretDB binary: run plugins/mongodb/ferretdb/build.sh")
    assert binary is not None
    server = start_ferretdb(binary, tmp_path / "data", tmp_path / "ferretdb.log")
    backend = MongoBackend.from_url(server.url("restart", retry_for="30"))
    try:
        before = add(backend, 1.0, "f", "before")
        server.stop()
        restarted: list[FerretServer] = []

        def restart() -> None:
            time.sleep(1.0)
            restarted.append(
                start_ferretdb(binary, tmp_path / "data", tmp_path / "ferretdb.log", server.port)
            )

        thread = threading.Thread(target=restart)
        thread.start()
        during = add(backend, 1.0, "f", "during")  # retried until the server is back
        thread.join()
        assert sorted(claim_ids(backend, W1, 10)) == sorted([before, during])
        assert record(backend, during).status is Status.RUNNING
    finally:
        backend.close()
        server.stop()
        for s in restarted:
            s.stop()


def test_a_server_gone_for_longer_than_the_retry_budget_is_unavailable(tmp_path: Path) -> None:
    binary = ferretdb_binary()
    require(binary is not None, "no FerretDB binary: run plugins/mongodb/ferretdb/build.sh")
    assert binary is not None
    server = start_ferretdb(binary, tmp_path / "data", tmp_path / "ferretdb.log")
    name = f"gone{uuid.uuid4().hex[:6]}"
    backend = MongoBackend.from_url(server.url(name, retry_for="1"))
    try:
        id = add(backend, 1.0, "f")
        server.stop()
        with pytest.raises(BackendUnavailable, match="unreachable for 1 s during get"):
            backend.get(id)
    finally:
        backend.close()
        server.stop()


def test_changes_older_than_the_log_are_spilled_and_reloaded(mongodb_url: str) -> None:
    """On FerretDB a claim or pause writes no document: it lives in the log until the log is
    about to forget it, then it is spilled into ``<p>_held``. A process that loads from the
    collections later (here: a fresh backend) must see the same state, and finishing a
    spilled invocation removes its held document."""
    a = MongoBackend.from_url(mongodb_url)
    b = c = None
    try:
        long = add(a, 1.0, "long", running_key="k", running_limit=1)
        parent = add(a, 1.0, "parent")
        child = add(a, 1.0, "child")
        start(a, long, W1)
        start(a, parent, W1)
        assert a.pause(parent, W1, [child], 11.0).kind is PauseKind.PAUSED
        held = a._conn().layout.held
        assert held is not None
        assert held.count_documents({}) == 0  # in the log only
        for i in range(LOG_KEEP + 2 * PRUNE_EVERY):  # one step each
            add(a, 2.0, "filler", str(i), pool="other")
        assert {d["_id"] for d in held.find()} == {long, parent, child}
        b = MongoBackend.from_url(mongodb_url)  # loads from the collections
        assert (record(b, long).status, record(b, long).worker) == (Status.RUNNING, W1)
        assert record(b, parent).status is Status.PAUSED
        assert record(b, child).waiters == 1
        assert claim_ids(b, W2, 10) == [child]  # "long" holds the only slot of "k"
        assert b.counts() == a.counts()
        assert b.finish([Outcome(long, OutcomeKind.SUCCESS, "1")], W1, 20.0) == [True]
        assert {d["_id"] for d in held.find()} == {parent, child}
        assert record(a, long).status is Status.SUCCESS
        c = MongoBackend.from_url(mongodb_url)
        assert c.counts() == a.counts() == b.counts()
        assert c.counts()[Status.SUCCESS] == 1
    finally:
        for backend in (a, b, c):
            if backend is not None:
                backend.close()


def test_a_mongodb_server_gets_the_mongodb_path(mongojava_backend: MongoBackend) -> None:
    """mongo-java-server reports itself as MongoDB: one invocation collection with the
    secondary indexes of the hot paths and a TTL index for retention, documents written in
    place (no held or final collections), read directly."""
    backend = mongojava_backend
    assert backend.server.startswith("MongoDB")
    assert backend.ttl_index is True
    layout = backend._conn().layout
    assert (len(layout.shards), layout.held, layout.final) == (1, None, None)
    id = add(backend, 1.0, "f")
    assert claim_ids(backend, W1) == [id]
    succeed(backend, id, W1)
    [doc] = layout.shards[0].find({"_id": id})
    assert doc["status"] == "SUCCESS" and "final_at" in doc
    indexes = {ix["name"]: ix for ix in layout.shards[0].list_indexes()}
    assert {"claim_order", "app_status", "task_status", "held_by", "retention"} <= set(indexes)
    assert indexes["retention"]["expireAfterSeconds"] == 7 * 24 * 3600


def test_a_process_rebuilds_from_the_log_while_it_holds_every_step(
    mongodb_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the log still holds every step since the first, a process that loads its
    replica replays the log (no read of every invocation's own document) and sees exactly
    what the collections say: slots, waiters, pauses, final results."""
    a = MongoBackend.from_url(mongodb_url)
    b = None
    try:
        long = add(a, 1.0, "long", running_key="k", running_limit=1)
        queued = add(a, 1.0, "queued", running_key="k", running_limit=1)
        parent = add(a, 1.0, "parent", pool="p2")
        child = add(a, 1.0, "child", pool="p3")
        done = add(a, 1.0, "done", pool="p4")
        start(a, long, W1)
        start(a, parent, W1)
        assert a.pause(parent, W1, [child], 11.0).kind is PauseKind.PAUSED
        start(a, done, W1)
        succeed(a, done, W1)

        def no_documents(*args: object) -> None:
            raise AssertionError("read own documents though the log holds every step")

        monkeypatch.setattr(Steps, "_load_own", no_documents)
        b = MongoBackend.from_url(mongodb_url)
        for id in (long, queued, parent, child, done):
            assert record(b, id) == record(a, id)
        assert b.counts() == a.counts()
        assert claim_ids(b, W2, 10) == []  # "long" holds the only slot of "k"
        assert claim_ids(b, W2, 10, 20.0, "p3") == [child]
    finally:
        a.close()
        if b is not None:
            b.close()


def test_a_lock_kept_after_a_claim_is_let_go_soon(mongodb_url: str) -> None:
    """A claim keeps the lock a moment for the finish that follows; another process gets it
    then, not after the lease (30 s here)."""
    url = f"{mongodb_url}?lease=30"
    a = MongoBackend.from_url(url)
    b = MongoBackend.from_url(url)
    try:
        first = add(a, 1.0, "f", "1")
        assert claim_ids(a, W1, 1) == [first]
        locks = a._conn().layout.locks
        assert locks.count_documents({}) == 1  # kept
        started = time.monotonic()
        second = add(b, 1.0, "f", "2")
        assert time.monotonic() - started < 5
        assert locks.count_documents({}) == 0  # b released its own at once
        succeed(a, first, W1)
        assert record(b, first).status is Status.SUCCESS
        assert claim_ids(a, W1, 1) == [second]
    finally:
        a.close()
        b.close()


def test_close_and_exit_let_a_kept_lock_go(mongodb_url: str, tmp_path: Path) -> None:
    """A lock kept after a claim goes with close(), and with the process when it exits
    without closing, so the next process does not wait out the lease."""
    url = f"{mongodb_url}?lease=30"
    a = MongoBackend.from_url(url)
    try:
        first = add(a, 1.0, "f", "1")
        second = add(a, 1.0, "f", "2")
        locks = a._conn().layout.locks
        assert claim_ids(a, W1, 1) == [first]
        assert locks.count_documents({}) == 1
    finally:
        a.close()
    probe = MongoBackend.from_url(url)
    try:
        assert probe._conn().layout.locks.count_documents({}) == 0
    finally:
        probe.close()
    script = tmp_path / "claim_and_exit.py"
    script.write_text(
        "import sys\n"
        "from kubenenc_mongodb import MongoBackend\n"
        "b = MongoBackend.from_url(sys.argv[1])\n"
        "got = b.claim('default', 'w-exit', 1, 20.0)\n"
        "assert [r.id for r in got] == [sys.argv[2]], got\n"
        "assert b._conn().lock.kept is not None\n"
    )
    done = subprocess.run([sys.executable, str(script), url, second], check=False, timeout=60)
    assert done.returncode == 0
    c = MongoBackend.from_url(url)
    try:
        assert c._conn().layout.locks.count_documents({}) == 0
        started = time.monotonic()
        add(c, 1.0, "f", "3")
        assert time.monotonic() - started < 5
        assert record(c, second).status is Status.RUNNING
    finally:
        c.close()
