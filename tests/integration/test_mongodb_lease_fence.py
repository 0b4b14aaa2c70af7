"""The lease fence of the MongoDB backend's commit, driven step by step on a real server.

A step commits with two inserts: its redo into the log, then its marker (the commit point).
A holder whose lease runs out between the two may still insert its marker afterwards. These
tests hold one process (``a``, on a thread) between its two inserts, expire its lease, run a
second process (``b``) through its own step, and let ``a`` go at a chosen point of ``b``'s
commit. Both objects live in this process but are two processes to the protocol: each has
its own connection, lock token and replica. The clock is not faked: the lease is 30 s and is
expired by hand, so nothing depends on timing.

Whatever the order, every committed version must hold one redo (its marker and its log entry
carry the same step id), each call's invocation must be registered exactly once, and both a
process that follows the log and one that loads from the collections must see both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubenenc.records import NewInvocation, RegisterKind, RegisterResult
from kubenenc.status import Status
from kubenenc.testing.helpers import W3, claim_ids, new, record
from kubenenc_mongodb import MongoBackend
from pymongo.errors import AutoReconnect

pytestmark = pytest.mark.mongodb

WAIT = 30.0
"""Seconds a side waits for the other before the test fails (never reached when it works)."""


@pytest.fixture(params=["ferretdb", "mongojava"])
def fence_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each kind of server (FerretDB layout, MongoDB layout), with a
    lease long enough that only the test expires it."""
    base = request.getfixturevalue(
        {"ferretdb": "mongodb_url", "mongojava": "mongojava_url"}[request.param]
    )
    return f"{base}?lease=30"


@pytest.fixture
def backends(fence_url: str) -> Iterator[Callable[[], MongoBackend]]:
    """Open MongoBackends on the test's database (each one a process to the protocol)."""
    opened: list[MongoBackend] = []

    def open_one() -> MongoBackend:
        backend = MongoBackend.from_url(fence_url)
        opened.append(backend)
        return backend

    yield open_one
    for backend in opened:
        backend.close()


class _Markers:
    """Stands in for one backend's marker collection (``<p>_steps``): its next insert runs
    ``before`` first and ``after`` once it is done (whether it succeeded or not)."""

    def __init__(
        self,
        real: Any,
        before: Callable[[], None] | None = None,
        after: Callable[[], None] | None = None,
    ) -> None:
        self.real = real
        self.before = before
        self.after = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def insert_one(self, doc: Any, *args: Any, **kwargs: Any) -> Any:
        before, after, self.before, self.after = self.before, self.after, None, None
        if before is not None:
            before()
        try:
            return self.real.insert_one(doc, *args, **kwargs)
        finally:
            if after is not None:
                after()


def _intercept(backend: MongoBackend, **hooks: Callable[[], None]) -> None:
    layout = backend._conn().layout
    layout.steps = _Markers(layout.steps, **hooks)  # type: ignore[assignment]


def _loaded(backend: MongoBackend) -> MongoBackend:
    """Make ``backend`` load its replica now (a claim on an empty pool is a step)."""
    assert claim_ids(backend, W3, 1, 1.0, "nothing-here") == []
    return backend


class _Held:
    """``a.register([item])`` on a thread, held between its log insert and its marker
    insert until :meth:`release`; its lease is expired while it is held."""

    def __init__(self, a: MongoBackend, item: NewInvocation) -> None:
        self.logged = threading.Event()
        self.go = threading.Event()
        self.marked = threading.Event()
        self.result: list[RegisterResult] = []
        self.error: list[BaseException] = []
        _intercept(a, before=self._hold, after=self.marked.set)
        self.thread = threading.Thread(target=self._run, args=(a, item), daemon=True)
        self.thread.start()
        assert self.logged.wait(WAIT), "a never reached its marker insert"
        locks = a._conn().layout.locks
        assert locks.update_many({}, {"$set": {"expires": 0.0}}).matched_count == 1

    def _hold(self) -> None:
        self.logged.set()
        assert self.go.wait(WAIT), "a was never let go"

    def _run(self, a: MongoBackend, item: NewInvocation) -> None:
        try:
            self.result = a.register([item], 2.0)
        except BaseException as exc:
            self.error.append(exc)

    def release(self) -> None:
        """Let ``a`` insert its marker and wait until it tried."""
        self.go.set()
        assert self.marked.wait(WAIT), "a never inserted its marker"

    def join(self) -> list[RegisterResult]:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        assert not self.error, self.error
        return self.result


def _disagreeing_versions(backend: MongoBackend) -> list[int]:
    """Committed versions whose marker names another step than their log entry holds."""
    layout = backend._conn().layout
    bad = []
    for marker in layout.steps.find():
        entry = layout.log(int(marker["_id"])).find_one({"_id": marker["_id"]})
        if entry is None or entry["step"] != marker["step"]:
            bad.append(int(marker["_id"]))
    return bad


def _both_registered_once(
    open_backend: Callable[[], MongoBackend],
    follower: MongoBackend,
    x: NewInvocation,
    y: NewInvocation,
) -> None:
    assert _disagreeing_versions(follower) == []
    # A process that follows the log from before the race, and one that loads afresh.
    assert sorted(claim_ids(follower, W3, 10, 5.0, "race")) == sorted([x.id, y.id])
    fresh = open_backend()
    assert fresh.counts() == {Status.RUNNING: 2}
    for item in (x, y):
        assert (record(fresh, item.id).status, record(fresh, item.id).worker) == (
            Status.RUNNING, W3,
        )  # fmt: skip


@pytest.mark.parametrize("first", ["late-marker-first", "successor-marker-first"])
def test_a_lease_lost_between_log_and_marker_cannot_lose_or_repeat_the_step(
    backends: Callable[[], MongoBackend], first: str
) -> None:
    """``a`` logs its redo, loses its lease, and inserts its marker while ``b`` (which took
    the lock over) commits the same version.

    ``late-marker-first``: ``a``'s marker lands just before ``b``'s. Without the fence ``b``
    had replaced ``a``'s redo by its own meanwhile, so the marker committed a redo that was no
    longer in the log: every process following the log lost ``a``'s invocation, and a
    FerretDB reload refused the log. ``successor-marker-first``: ``b`` commits the redo it
    found logged without a marker (``a``'s), then its own step after it; ``a``'s late marker
    insert fails, finds its own step committed, and returns its result without running the
    call again."""
    a, b, c = backends(), backends(), _loaded(backends())
    x, y = new("f", "x", pool="race"), new("f", "y", pool="race")
    held = _Held(a, x)
    if first == "late-marker-first":
        _intercept(b, before=held.release)
    else:
        _intercept(b, after=held.release)
    [got_y] = b.register([y], 3.0)
    [got_x] = held.join()
    assert (got_x.kind, got_x.id) == (RegisterKind.CREATED, x.id)
    assert (got_y.kind, got_y.id) == (RegisterKind.CREATED, y.id)
    _both_registered_once(backends, c, x, y)


def test_a_redo_logged_by_a_holder_that_died_before_its_marker_is_committed_by_the_next(
    backends: Callable[[], MongoBackend],
) -> None:
    """A holder dies between its two inserts: the next holder commits the logged step as it
    is and writes its documents (nobody else will), then runs its own."""
    a, b, c = backends(), backends(), _loaded(backends())
    x, y = new("f", "x", pool="race"), new("f", "y", pool="race")

    class Died(BaseException):
        pass

    def die() -> None:
        raise Died

    _intercept(a, before=die)
    with pytest.raises(Died):
        a.register([x], 2.0)
    [got_y] = b.register([y], 3.0)
    assert (got_y.kind, got_y.id) == (RegisterKind.CREATED, y.id)
    _both_registered_once(backends, c, x, y)


def test_a_commit_cut_off_before_its_marker_is_settled_by_its_own_retry(
    backends: Callable[[], MongoBackend],
) -> None:
    """The connection drops as the marker is sent (never written): the retry finds its own
    redo logged without a marker, commits it, and returns its result; the call runs once."""
    a, c = backends(), _loaded(backends())
    x = new("f", "x", pool="race")

    def cut() -> None:
        raise AutoReconnect("connection lost while committing")

    _intercept(a, before=cut)
    [got] = a.register([x], 2.0)
    assert (got.kind, got.id) == (RegisterKind.CREATED, x.id)
    assert _disagreeing_versions(c) == []
    assert claim_ids(c, W3, 10, 5.0, "race") == [x.id]
    assert backends().counts() == {Status.RUNNING: 1}
