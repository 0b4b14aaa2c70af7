"""What only the Redis backend has: URLs and credentials, prefixes, retention, pushed results,
and calls that survive lost replies and server restarts. Against a real redis-server."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from kubenenc.backends import open_backend
from kubenenc.backends.contract import Backend, FinishAndClaim
from kubenenc.backends.memory import MemoryBackend
from kubenenc.errors import BackendUnavailable, ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import ErrorInfo, Outcome, OutcomeKind, PauseKind, RegisterKind
from kubenenc.status import TRANSITIONS, Status
from kubenenc.testing.helpers import W1, W2, add, claim_ids, new, pause, record, running, start
from kubenenc.waitgraph import format_loop
from kubenenc_redis import RedisBackend
from kubenenc_redis.options import parse_url
from kubenenc_redis.scripts import SCRIPTS

from tests.servers.redis import RedisServer, require_redis_server
from tests.support import free_port

pytestmark = pytest.mark.redis


def _prefixed(server: RedisServer, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"prefix": uuid.uuid4().hex[:10], **options}.items())
    return f"{server.url}?{query}"


# -- URLs, credentials, start-up errors ----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/0",
        "redis:///0",
        "redis://127.0.0.1:6379/0?retention=-5",
        "redis://127.0.0.1:6379/0?retention=soon",
        "redis://127.0.0.1:6379/0?prefix={x}",
        "redis://127.0.0.1:6379/0?retry_for=0",
    ],
)
def test_malformed_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend.from_url(url)


def test_own_options_are_split_from_redis_py_ones() -> None:
    base, ours = parse_url("rediss://u:p@h:1/2?prefix=shop&ssl_cert_reqs=none&retention=60")
    assert ours == {"prefix": "shop", "retention": "60"}
    assert base == "rediss://u:p@h:1/2?ssl_cert_reqs=none"


def test_nothing_listening_is_backend_unavailable() -> None:
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match="cannot reach Redis"):
        open_backend(f"redis://127.0.0.1:{free_port()}/0")
    assert time.monotonic() - began < 10


def test_credentials_and_database_are_checked_at_start(redis_server: RedisServer) -> None:
    user = f"kn{uuid.uuid4().hex[:8]}"
    admin = RedisBackend.from_url(redis_server.url)
    try:
        admin._r.acl_setuser(
            user, enabled=True, passwords=["+s3cret"], keys=["*"], channels=["*"],
            commands=["+@all"],
        )  # fmt: skip
        host = f"127.0.0.1:{redis_server.port}"
        with pytest.raises(ConfigurationError, match="credentials") as bad:
            RedisBackend.from_url(f"redis://{user}:wrong-pass@{host}/0")
        assert "wrong-pass" not in str(bad.value)  # the password is never shown
        with pytest.raises(ConfigurationError):
            RedisBackend.from_url(f"redis://nobody:s3cret@{host}/0")
        with pytest.raises(ConfigurationError):
            RedisBackend.from_url(f"redis://{user}:s3cret@{host}/99")  # no such database
        good = RedisBackend.from_url(f"redis://{user}:s3cret@{host}/3?prefix={user}")
        try:
            id = add(good, 1.0)
            assert record(good, id).status is Status.PENDING
            assert admin._r.execute_command("SELECT", 0) in (True, "OK")  # type: ignore[no-untyped-call]
        finally:
            good.close()
    finally:
        admin._r.acl_deluser(user)
        admin.close()


def test_open_backend_finds_redis_by_entry_point(redis_url: str) -> None:
    backend = open_backend(redis_url)
    try:
        assert isinstance(backend, RedisBackend)
        assert type(backend).shared_across_processes
    finally:
        backend.close()


def test_prefixes_are_isolated(redis_server: RedisServer) -> None:
    a = RedisBackend.from_url(_prefixed(redis_server))
    b = RedisBackend.from_url(_prefixed(redis_server))
    try:
        id = add(a, 1.0, registration_key="k", registration="reject")
        [res] = b.register([new(registration_key="k", registration="reject")], 2.0)
        assert res.kind is RegisterKind.CREATED
        assert b.get(id) is None
        assert claim_ids(b, W1) == [res.id]
        assert claim_ids(a, W1) == [id]
        assert {s: n for s, n in a.counts().items()} == {Status.RUNNING: 1}
    finally:
        a.close()
        b.close()


# -- retention -----------------------------------------------------------------------------


def test_final_invocations_expire_and_counts_stay_exact(redis_server: RedisServer) -> None:
    backend = RedisBackend.from_url(_prefixed(redis_server, retention="100"))
    try:
        done = add(backend, 1000.0, "done")
        kept = add(backend, 1000.0, "kept")
        assert claim_ids(backend, W1, 1, 1000.0) == [done]
        ok = backend.finish([Outcome(done, OutcomeKind.SUCCESS, "1")], W1, 1000.0)
        assert ok == [True]
        # The record carries a TTL as a backstop; the sweep in recover deletes it on time.
        ttl = backend._r.ttl(backend._keys.per("k_inv", done))
        assert 0 < int(ttl) <= 100  # type: ignore[arg-type]
        assert backend.recover(1099.0, 30.0, 3) == []
        assert record(backend, done).status is Status.SUCCESS
        backend.recover(1101.0, 30.0, 3)
        assert backend.get(done) is None
        assert [r.id for r in backend.query()] == [kept]
        assert dict(backend.counts()) == {Status.SUCCESS: 1, Status.PENDING: 1}
        assert record(backend, kept).status is Status.PENDING  # non-final ones never expire
        assert backend.wait_final([done], 0.1)  # gone counts as final
    finally:
        backend.close()


def test_retention_also_forgets_the_browse_indexes(redis_server: RedisServer) -> None:
    """The children of a parent and the FAILED index (kept for the dashboard) are swept
    with the records."""
    backend = RedisBackend.from_url(_prefixed(redis_server, retention="100"))
    try:
        parent = add(backend, 1000.0, "parent", pool="p")
        assert claim_ids(backend, W1, 1, 1000.0, pool="p") == [parent]
        kid = add(backend, 1000.0, "kid", parent=parent, pool="k")
        assert claim_ids(backend, W1, 1, 1000.0, pool="k") == [kid]
        error = ErrorInfo("builtins.ValueError", "boom")
        assert backend.finish([Outcome(kid, OutcomeKind.FAILED, error=error)], W1, 1000.0)
        assert backend.finish([Outcome(parent, OutcomeKind.SUCCESS, "1")], W1, 1000.0)
        assert backend._r.zrange(backend._keys.per("k_ch", parent), 0, -1) == [kid]
        assert backend._r.zrange(backend._keys.fixed("K_IXF"), 0, -1) == [kid]
        backend.recover(1101.0, 30.0, 3)
        assert backend.get(kid) is None
        assert not backend._r.exists(backend._keys.per("k_ch", parent))
        assert backend._r.zrange(backend._keys.fixed("K_IXF"), 0, -1) == []
    finally:
        backend.close()


# -- pushed results ------------------------------------------------------------------------


def test_wait_final_wakes_every_waiter_right_after_the_finish(redis_backend: RedisBackend) -> None:
    backend = redis_backend
    ids = [add(backend, 1.0, args=str(i)) for i in range(3)]
    assert claim_ids(backend, W1, 10, 2.0) == ids
    woke: list[float] = []
    lock = threading.Lock()

    def wait(which: list[str]) -> None:
        assert backend.wait_final(which, 20.0)  # type: ignore[arg-type]
        with lock:
            woke.append(time.monotonic())

    waiters = [threading.Thread(target=wait, args=(w,)) for w in ([ids[0]], ids, ids, ids[::-1])]
    for t in waiters:
        t.start()
    time.sleep(0.3)
    assert woke == []
    backend.finish([Outcome(ids[0], OutcomeKind.SUCCESS, "1")], W1, 3.0)
    time.sleep(0.2)
    assert len(woke) == 1
    outcomes = [Outcome(i, OutcomeKind.SUCCESS, "1") for i in ids[1:]]
    backend.finish(outcomes, W1, 4.0)
    finished = time.monotonic()
    for t in waiters:
        t.join(10)
    assert len(woke) == 4
    assert max(woke) - finished < 0.2  # pushed, not polled


def test_a_wait_on_an_id_before_it_exists_does_not_end_a_later_wait(
    redis_backend: RedisBackend,
) -> None:
    backend = redis_backend
    item = new("f", "early")
    assert backend.wait_final([item.id], 0.1)  # missing counts as final
    backend.register([item], 1.0)
    began = time.monotonic()
    assert not backend.wait_final([item.id], 0.3)  # open now: the earlier wake is gone
    assert time.monotonic() - began >= 0.25
    assert claim_ids(backend, W1, 1, 2.0) == [item.id]
    backend.finish([Outcome(item.id, OutcomeKind.SUCCESS, "7")], W1, 3.0)
    assert backend.wait_final([item.id], 5.0)


def script_calls(backend: RedisBackend) -> int:
    """How many script or function calls the server has run so far."""
    stats = backend._r.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "fcall"))


def test_steps_run_as_functions_and_as_scripts_where_functions_are_not_loaded(
    redis_backend: RedisBackend,
) -> None:
    backend = redis_backend

    def calls(command: str) -> int:
        return int(backend._r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))

    id = running(backend, 1.0, "fn")
    assert backend._caller.functions is True  # this server has Redis 7 functions
    fcalls = calls("fcall")
    backend._caller.functions = False  # as on Redis 6.2 (or a user not allowed to load)
    evalshas = calls("evalsha")
    assert backend.finish([Outcome(id, OutcomeKind.SUCCESS, "7")], W1, 2.0) == [True]
    assert backend.wait_final([id], 10.0)
    rec = backend.get(id)
    assert rec is not None and rec.status is Status.SUCCESS and rec.result == "7"
    assert calls("fcall") == fcalls
    assert calls("evalsha") >= evalshas + 3  # finish, open, read
    backend._r.execute_command("FUNCTION", "FLUSH")  # type: ignore[no-untyped-call]
    backend._caller.functions = True  # the library is gone: the next call loads it again
    assert running(backend, 3.0, "fn2")
    assert calls("fcall") > fcalls


def test_get_after_a_single_wait_is_the_final_record_read_in_the_same_trip(
    redis_backend: RedisBackend,
) -> None:
    backend = redis_backend
    id = running(backend, 1.0, "one")
    threading.Timer(
        0.2, lambda: backend.finish([Outcome(id, OutcomeKind.SUCCESS, "5")], W1, 3.0)
    ).start()
    assert backend.wait_final([id], 10.0)
    reads = script_calls(backend)
    rec = backend.get(id)
    assert rec is not None and rec.status is Status.SUCCESS and rec.result == "5"
    assert rec.history[-1].status is Status.SUCCESS
    assert script_calls(backend) == reads  # no read
    again = backend.get(id)  # kept for one get only: read again
    assert again == rec
    assert script_calls(backend) == reads + 1


def test_wait_final_on_many_ids_reads_in_windows(redis_backend: RedisBackend) -> None:
    backend = redis_backend
    items = [new("f", str(i)) for i in range(1000)]
    backend.register(items, 1.0)
    ids = [i.id for i in items]

    def run_all() -> None:
        while recs := backend.claim("default", W2, 64, 2.0):
            backend.finish([Outcome(r.id, OutcomeKind.SUCCESS, "1") for r in recs], W2, 3.0)

    thread = threading.Thread(target=run_all)
    thread.start()
    try:
        assert backend.wait_final(ids, 30.0)
    finally:
        thread.join(30)
    assert dict(backend.counts()) == {Status.SUCCESS: 1000}


def _run_all(backend: RedisBackend) -> None:
    while recs := backend.claim("default", W2, 64, 2.0):
        backend.finish([Outcome(r.id, OutcomeKind.SUCCESS, r.args) for r in recs], W2, 3.0)


def test_results_read_one_by_one_behind_the_workers_are_read_ahead(
    redis_backend: RedisBackend,
) -> None:
    backend = redis_backend
    items = [new("f", str(i)) for i in range(200)]
    for item in items:  # one by one, as lone calls register
        backend.register([item], 1.0)
    _run_all(backend)
    before = script_calls(backend)
    for item in items:
        assert backend.wait_final([item.id], 10.0)
        rec = backend.get(item.id)
        assert rec is not None and rec.status is Status.SUCCESS and rec.result == item.args
        assert rec.history[-1].status is Status.SUCCESS  # a full record, as get promises
    # The first wait blocks (open + read); from the second on, each read brings the next
    # window of this thread's calls: far fewer trips than one per result.
    assert script_calls(backend) - before <= 2 + len(items) // 16


def test_a_result_read_ahead_while_still_open_is_waited_for(
    redis_backend: RedisBackend,
) -> None:
    backend = redis_backend
    first, second = new("f", "1"), new("f", "2")
    backend.register([first], 1.0)
    backend.register([second], 1.0)
    done = backend.claim("default", W2, 1, 2.0)
    assert [r.id for r in done] == [first.id]
    backend.finish([Outcome(first.id, OutcomeKind.SUCCESS, "1")], W2, 3.0)
    assert backend.wait_final([first.id], 10.0)  # found final: this thread reads ahead next
    assert backend.wait_final([first.id], 10.0)
    assert not backend.wait_final([second.id], 0.3)  # read ahead while open: not kept
    finisher = threading.Timer(0.2, _run_all, (backend,))
    finisher.start()
    try:
        assert backend.wait_final([second.id], 10.0)
    finally:
        finisher.join(30)  # its last claim must not outlive the test's backend
    rec = backend.get(second.id)
    assert rec is not None and rec.status is Status.SUCCESS and rec.result == second.args


def _failed_and_read_ahead(backend: RedisBackend) -> InvocationId:
    """Two calls of this thread, both final (the second FAILED), and this thread's read of
    the first reading the second ahead: its FAILED record is kept. Returns the second."""
    first, second = new("f", "1"), new("f", "2")
    backend.register([first], 1.0)
    backend.register([second], 1.0)
    assert [r.id for r in backend.claim("default", W2, 2, 2.0)] == [first.id, second.id]
    backend.finish([Outcome(first.id, OutcomeKind.SUCCESS, "1")], W2, 3.0)
    assert backend.fail(second.id, "tests.Old", "the old run", 3.0)
    assert backend.wait_final([first.id], 10.0)  # found final: this thread reads ahead next
    assert backend.wait_final([first.id], 10.0)  # reads the second ahead, FAILED: kept
    return second.id


def _registered_again(backend: RedisBackend, id: InvocationId) -> None:
    item = new("f", "2")
    [res] = backend.register([item._replace(id=id)], 4.0)
    assert (res.kind, res.id) == (RegisterKind.CREATED, id)


@pytest.mark.parametrize("where", ["another process", "another thread"])
def test_a_result_read_ahead_does_not_answer_for_a_new_run_under_its_id(
    redis_server: RedisServer, where: str
) -> None:
    """A final call runs again under its id only after its record was deleted: a kept read
    of the old run must not answer the new run's wait, whether the deletion came from
    another process (and this thread registered the id again) or from this process."""
    url = _prefixed(redis_server, clock="caller")
    backend, other = RedisBackend.from_url(url), RedisBackend.from_url(url)
    try:
        id = _failed_and_read_ahead(backend)
        if where == "another process":  # a second client: this one sees only its own register
            assert other.purge([id]) == 1
            _registered_again(backend, id)
        else:
            thread = threading.Thread(
                target=lambda: (backend.purge([id]), _registered_again(backend, id))
            )
            thread.start()
            thread.join(30)
        assert not backend.wait_final([id], 0.3)  # the new run is PENDING, not the old FAILED
        rec = backend.get(id)
        assert rec is not None and rec.status is Status.PENDING and rec.error is None
    finally:
        other.close()
        backend.close()


def test_results_read_ahead_stay_with_the_thread_that_registered(
    redis_backend: RedisBackend,
) -> None:
    backend = redis_backend
    items = [new("f", str(i)) for i in range(40)]
    for item in items:
        backend.register([item], 1.0)
    _run_all(backend)
    found: list[str | None] = []

    def read() -> None:  # another thread: nothing of this one's order, one trip per result
        for item in items:
            backend.wait_final([item.id], 10.0)
            rec = backend.get(item.id)
            found.append(None if rec is None else rec.result)

    before = script_calls(backend)
    thread = threading.Thread(target=read)
    thread.start()
    thread.join(30)
    assert found == [item.args for item in items]
    assert script_calls(backend) - before >= len(items)


# -- faults --------------------------------------------------------------------------------


class ReplyDropper:
    """A TCP proxy in front of Redis that, when armed, forwards one request to the server and
    then cuts the client's connection instead of returning the reply: the command ran, the
    caller never hears of it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.dropped = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        mute = threading.Event()

        def back() -> None:
            try:
                while data := server.recv(65536):
                    if mute.is_set():
                        return
                    client.sendall(data)
            except OSError:
                pass

        threading.Thread(target=back, daemon=True).start()
        try:
            while data := client.recv(65536):
                if self.armed.is_set() and (b"EVALSHA" in data.upper() or b"FCALL" in data.upper()):
                    self.armed.clear()
                    mute.set()
                    server.sendall(data)
                    time.sleep(0.2)  # the server has run it by now
                    self.dropped += 1
                    break
                server.sendall(data)
        except OSError:
            pass
        for s in (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._stop = True
        self.listener.close()


@pytest.fixture
def dropper(redis_server: RedisServer) -> Iterator[ReplyDropper]:
    proxy = ReplyDropper(redis_server.port)
    yield proxy
    proxy.close()


def test_a_large_register_is_pipelined_in_order(redis_backend: RedisBackend) -> None:
    backend = redis_backend
    items = [new("f", str(i)) for i in range(1300)]  # three script calls
    results = backend.register(items, 1.0)
    assert [r.id for r in results] == [i.id for i in items]
    assert {r.kind for r in results} == {RegisterKind.CREATED}
    assert [r.id for r in backend.query(limit=2000)] == [i.id for i in reversed(items)]
    assert claim_ids(backend, W1, 3, 2.0) == [i.id for i in items[:3]]


def test_a_pipelined_register_cut_off_is_sent_again_and_applied_once(
    dropper: ReplyDropper,
) -> None:
    url = f"redis://127.0.0.1:{dropper.port}/0?prefix={uuid.uuid4().hex[:10]}"
    backend = RedisBackend.from_url(url)
    try:
        add(backend, 1.0)  # loads the scripts, so the next call is an FCALL (or EVALSHA)
        items = [new("f", str(i)) for i in range(1300)]
        dropper.armed.set()
        results = backend.register(items, 2.0)
        assert dropper.dropped == 1
        assert [r.id for r in results] == [i.id for i in items]
        assert {r.kind for r in results} == {RegisterKind.CREATED}
        assert dict(backend.counts()) == {Status.PENDING: 1301}
    finally:
        backend.close()


def test_closing_ends_a_blocked_call_and_leaves_no_connection_open(redis_url: str) -> None:
    backend = RedisBackend.from_url(redis_url)
    name = backend._keys.per("k_wake", "p")
    failed: list[BaseException] = []

    def block() -> None:
        try:
            backend.wait_for_work("p", 4.0)
        except BackendUnavailable as exc:
            failed.append(exc)

    thread = threading.Thread(target=block)
    thread.start()
    time.sleep(0.3)
    began = time.monotonic()
    backend.close()
    thread.join(10)
    assert time.monotonic() - began < 2.0  # not after the whole block, nor reconnected
    assert len(failed) == 1
    assert all(conn._sock is None for conn in backend._block_link._made)
    assert backend.wait_for_work("p", 0.01) is False  # a later call reconnects
    assert backend._r.llen(name) == 0
    backend.close()


def test_a_lost_reply_is_applied_once_and_answered_again(dropper: ReplyDropper) -> None:
    url = f"redis://127.0.0.1:{dropper.port}/0?prefix={uuid.uuid4().hex[:10]}"
    backend = RedisBackend.from_url(url)
    try:
        add(backend, 1.0)  # loads the scripts, so the next call is an FCALL (or EVALSHA)
        dropper.armed.set()
        [res] = backend.register([new("g")], 2.0)
        assert dropper.dropped == 1
        assert res.kind is RegisterKind.CREATED
        assert dict(backend.counts()) == {Status.PENDING: 2}  # not registered twice
        ids = [r.id for r in backend.query()]
        # A claim whose reply is lost: the retry returns the same invocations, so nothing is
        # left RUNNING on a worker that does not know it holds it.
        dropper.armed.set()
        got = claim_ids(backend, W1, 10, 3.0)
        assert dropper.dropped == 2
        assert sorted(got) == sorted(ids)
        assert claim_ids(backend, W2, 10, 3.0) == []
        outcomes = [Outcome(i, OutcomeKind.SUCCESS, "1") for i in got]
        dropper.armed.set()
        assert backend.finish(outcomes, W1, 4.0) == [True, True]  # the first answer, again
        assert dropper.dropped == 3
        assert dict(backend.counts()) == {Status.SUCCESS: 2}
    finally:
        backend.close()


def test_calls_carry_on_when_the_server_comes_back(tmp_path: Path) -> None:
    require_redis_server()
    server = RedisServer(tmp_path / "r").start()
    backend = RedisBackend.from_url(f"{server.url}?prefix=p&retry_for=30")
    try:
        id = add(backend, 1.0)
        server.kill()
        restarter = threading.Timer(1.0, server.start)
        restarter.start()
        began = time.monotonic()
        # No persistence here: the server comes back empty, but the call goes through.
        other = add(backend, 2.0, "after")
        assert time.monotonic() - began >= 0.9
        assert backend.get(id) is None
        assert record(backend, other).status is Status.PENDING
        restarter.join()
    finally:
        backend.close()
        server.stop()


def test_gives_up_with_backend_unavailable_after_retry_for(tmp_path: Path) -> None:
    require_redis_server()
    server = RedisServer(tmp_path / "r").start()
    backend = RedisBackend.from_url(f"{server.url}?prefix=p&retry_for=1")
    try:
        server.kill()
        began = time.monotonic()
        with pytest.raises(BackendUnavailable, match="unreachable"):
            backend.claim("default", WorkerId("w"), 1, 1.0)
        assert 0.5 < time.monotonic() - began < 10
    finally:
        backend.close()
        server.stop()


# -- the scripts re-express the SDK's rules ------------------------------------------------


def _refused_loop_message(backend: Backend, displays: Sequence[str]) -> str:
    """Build a chain of waits, each call paused on the next, then make the last one wait
    on a new call of the first (same call key): the error that new call fails with."""
    names = [f"n{i}" for i in range(len(displays))]
    ids = []
    for i, (name, display) in enumerate(zip(names, displays, strict=True)):
        item = new(name, "1", pool=f"p{i}")._replace(display=display)
        [res] = backend.register([item], float(i))
        assert res.kind is RegisterKind.CREATED
        ids.append(res.id)
    start(backend, ids[0], W1, 10.0)
    for i in range(1, len(ids)):
        pause(backend, ids[i - 1], [ids[i]], now=10.0 + i)
        start(backend, ids[i], W1, 10.5 + i)
    again = new(names[0], "1", pool="again")._replace(display="again " + displays[0])
    [res] = backend.register([again], 50.0)
    refused = backend.pause(ids[-1], W1, [res.id], 51.0)
    assert refused.kind is PauseKind.CYCLE
    assert refused.loop == (*displays, again.display)
    error = record(backend, res.id).error
    assert error is not None
    assert error.type == "kubenenc.errors.CycleDetectedError"
    return error.message


def test_the_luas_loop_message_is_format_loops_for_the_same_loop(
    redis_backend: RedisBackend, memory_backend: MemoryBackend
) -> None:
    # Displays with what a hand-built message could get wrong: Lua pattern and format
    # characters, quotes, separators, non-ASCII text, a line break.
    displays = ["a%d(1)", "b('x', \"y\")", "c(é → ☃)", "d(%s .. \\n)", "e(k=\n  1)", "f()"]
    message = _refused_loop_message(redis_backend, displays)
    assert message == format_loop([*displays, "again " + displays[0]])
    assert message == _refused_loop_message(memory_backend, displays)  # the engine's


def test_lua_transition_table_is_generated_from_the_sdks() -> None:
    for src, allowed in TRANSITIONS.items():
        for dst in Status:
            pair = f" {src.value}>{dst.value} "
            assert (pair in SCRIPTS["finish"]) is (dst in allowed), pair


def test_finish_and_claim_is_one_atomic_step(redis_backend: RedisBackend) -> None:
    backend = redis_backend
    assert isinstance(backend, FinishAndClaim)
    ids = [add(backend, float(i), args=str(i), running_key="k", running_limit=1) for i in range(3)]
    assert claim_ids(backend, W1, 10, 5.0) == ids[:1]
    done, claimed = backend.finish_and_claim(
        [Outcome(ids[0], OutcomeKind.SUCCESS, "1"), Outcome(ids[2], OutcomeKind.SUCCESS, "1")],
        "default", W1, 10, 6.0,
    )  # fmt: skip
    assert done == [True, False]
    # The slot freed by the finish is taken by the claim in the same step.
    assert [r.id for r in claimed] == [ids[1]]
    assert (claimed[0].status, claimed[0].worker) == (Status.RUNNING, W1)
    assert backend.finish_and_claim([], "default", W1, 10, 7.0) == ([], [])


def test_finish_and_claim_with_a_lost_reply(dropper: ReplyDropper) -> None:
    url = f"redis://127.0.0.1:{dropper.port}/0?prefix={uuid.uuid4().hex[:10]}"
    backend = RedisBackend.from_url(url)
    try:
        first, second = add(backend, 1.0, args="1"), add(backend, 2.0, args="2")
        assert claim_ids(backend, W1, 1, 3.0) == [first]
        backend.finish_and_claim([], "none", W1, 1, 3.0)  # loads the script
        dropper.armed.set()
        done, claimed = backend.finish_and_claim(
            [Outcome(first, OutcomeKind.SUCCESS, "1")], "default", W1, 5, 4.0
        )
        assert dropper.dropped == 1
        assert done == [True]
        assert [r.id for r in claimed] == [second]
        assert dict(backend.counts()) == {Status.SUCCESS: 1, Status.RUNNING: 1}
    finally:
        backend.close()


def test_wait_for_work_wakes_an_idle_worker(redis_backend: RedisBackend) -> None:
    backend = redis_backend
    began = time.monotonic()
    assert not backend.wait_for_work("default", 0.2)
    assert time.monotonic() - began >= 0.19
    woke: list[float] = []

    def idle() -> None:
        if backend.wait_for_work("default", 10.0):
            woke.append(time.monotonic())

    thread = threading.Thread(target=idle)
    thread.start()
    time.sleep(0.2)
    id = add(backend, 1.0)
    registered = time.monotonic()
    thread.join(10)
    assert woke
    assert woke[0] - registered < 0.2
    assert claim_ids(backend, W1) == [id]


def test_a_server_that_may_evict_keys_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require_redis_server()
    server = RedisServer(tmp_path / "r", "--maxmemory-policy", "allkeys-lru").start()
    try:
        with caplog.at_level("WARNING", logger="kubenenc_redis.options"):
            RedisBackend.from_url(server.url).close()
        assert "maxmemory-policy allkeys-lru" in caplog.text
        caplog.clear()
        with caplog.at_level("WARNING", logger="kubenenc_redis.options"):
            RedisBackend.from_url(f"{server.url}?prefix=p").close()
            server_ok = RedisServer(tmp_path / "ok").start()
            try:
                RedisBackend.from_url(server_ok.url).close()
            finally:
                server_ok.stop()
        assert caplog.text.count("may evict") == 1  # the second server does not warn
    finally:
        server.stop()


def test_a_long_queue_behind_a_busy_key_is_read_once(redis_backend: RedisBackend) -> None:
    backend = redis_backend
    items = [new("k", str(i), running_key="k", running_limit=1) for i in range(2000)]
    backend.register(items, 1.0)
    free = add(backend, 2.0, "free")
    assert claim_ids(backend, W1, 5, 3.0) == [items[0].id, free]
    # The claim parked the other 1,999 with their places in the order; the queue is empty.
    r = backend._r
    assert r.zcard(backend._keys.per("k_q", "default")) == 0
    assert r.zcard(backend._keys.park("default", "k")) == 1999
    began = time.monotonic()
    for _ in range(200):
        assert claim_ids(backend, W2, 5, 4.0) == []
    assert time.monotonic() - began < 5  # 200 claims that read nothing, not 2,000 each
    # Each freed slot lets exactly the next one in order through.
    for i in range(1, 4):
        assert backend.finish([Outcome(items[i - 1].id, OutcomeKind.SUCCESS, "1")], W1, 5.0)
        assert claim_ids(backend, W1, 5, 6.0) == [items[i].id]


def test_a_forked_child_does_not_reuse_its_parents_request_ids(redis_url: str) -> None:
    backend = RedisBackend.from_url(redis_url)
    try:
        add(backend, 1.0, "parent")  # the parent's call number 0, its reply kept
        # What a forked child inherits: the same object, counting from where the parent
        # was (here, from 0 again), in a process with another pid.
        backend._caller._calls = itertools.count()
        backend._caller._pid = -1
        [res] = backend.register([new("child")], 2.0)
        assert res.kind is RegisterKind.CREATED
        assert record(backend, res.id).display == "child()"
    finally:
        backend.close()


def double(x: int) -> int:
    return 2 * x


def test_a_large_parallelize_is_registered_in_call_order(redis_url: str) -> None:
    import kubenenc

    app = kubenenc.App("big", backend=redis_url)
    try:
        task = app.task(double)
        group = task.parallelize(range(1300))  # handed whole to the backend (register_batch)
        assert len(set(group.ids)) == 1300
        records = app.backend.get_many(group.ids)
        assert [json.loads(r.args)["x"] for r in records if r is not None] == list(range(1300))
        with pytest.raises(TypeError):
            task.parallelize([*range(1299), (1, 2)])  # a wrong call: nothing registered
        assert sum(app.backend.counts().values()) == 1300
    finally:
        app.close()
