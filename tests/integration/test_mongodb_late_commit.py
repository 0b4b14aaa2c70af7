"""A MongoDB-backend step committed after its holder's lease ran out is still written (issue 13).

A lock holder checks its lease, then commits (log entry, marker), then writes the step's
documents, checking its lease again first. A holder that stalls longer than its lease between
the first check and its commit (a frozen process, a write held in the network) commits late:
another process has taken the lock over meanwhile, so the late holder must not write the
step's documents (they could overwrite later steps'), and until session 7 nobody else did
either: the successor met the late step as a version already taken (and wrote only steps it
adopted), or the late step landed after the successor had let the lock go and the next
holder just followed the log past it. Its documents were then never written: on MongoDB
``get`` read the old state at once, and on FerretDB a reload did once the step left the log.

Here process ``a`` is held on a thread inside its commit, after its last lease check; its
lease is expired by hand (the lock document's ``expires`` on the server's clock, the lease's
length on ``a``'s own), so nothing depends on timing. ``b`` then takes the lock over, and
``a`` is let go at a chosen point: just before ``b`` commits (``b`` meets ``a``'s step as
taken), or after ``b``'s step is over and the lock free (``a``'s step lands while nobody
holds the lock; a third process ``c`` commits the next steps). Afterwards the step must
have left the log, and a process that loads from the collections must see ``a``'s call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubenenc.records import NewInvocation, Outcome, OutcomeKind, RegisterKind, RegisterResult
from kubenenc.status import Status
from kubenenc.testing.helpers import W3, claim_ids, new, record
from kubenenc_mongodb import MongoBackend
from kubenenc_mongodb.layout import LOG_KEEP, PRUNE_EVERY, Layout, redo_of

pytestmark = pytest.mark.mongodb

WAIT = 30.0
"""Seconds a side waits for the other before the test fails (never reached when it works)."""
LEASE = 30.0


@pytest.fixture(params=["ferretdb", "mongojava"])
def late_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on each kind of server (FerretDB layout, MongoDB layout), with a
    lease long enough that only the test expires it."""
    base = request.getfixturevalue(
        {"ferretdb": "mongodb_url", "mongojava": "mongojava_url"}[request.param]
    )
    return f"{base}?lease={LEASE:g}"


@pytest.fixture
def backends(late_url: str) -> Iterator[Callable[[], MongoBackend]]:
    """Open MongoBackends on the test's database (each one a process to the protocol)."""
    opened: list[MongoBackend] = []

    def open_one() -> MongoBackend:
        backend = MongoBackend.from_url(late_url)
        opened.append(backend)
        return backend

    yield open_one
    for backend in opened:
        backend.close()


def _loaded(backend: MongoBackend) -> MongoBackend:
    """Make ``backend`` load its replica now (a claim on an empty pool is a step)."""
    assert claim_ids(backend, W3, 1, 1.0, "nothing-here") == []
    return backend


def _before_first_commit(backend: MongoBackend, hook: Callable[[], None]) -> None:
    """Run ``hook`` when ``backend`` next begins to commit a step (once)."""
    layout = backend._conn().layout
    real = layout.commit

    def commit(*args: Any, **kwargs: Any) -> Any:
        layout.commit = real  # type: ignore[method-assign]
        hook()
        return real(*args, **kwargs)

    layout.commit = commit  # type: ignore[method-assign]


class _Stalled:
    """``op`` (an operation of ``a``) on a thread, held inside ``a``'s ``Layout.<held>``
    (``commit``: its step's log inserts; ``apply``: its step's document writes; both after
    its last lease check) until :meth:`release`; meanwhile its lease runs out: on the
    server's clock (the lock document's ``expires``) and on ``a``'s own (the lease's
    length), and ``a`` gets a full lease again when it next takes the lock."""

    def __init__(self, a: MongoBackend, held: str, op: Callable[[], Any]) -> None:
        self.held = threading.Event()
        self.go = threading.Event()
        self.done = threading.Event()
        self.result: Any = None
        self.error: list[BaseException] = []
        conn = a._conn()
        lock, layout = conn.lock, conn.layout
        real_held, real_take = getattr(layout, held), lock.take

        def hold(*args: Any, **kwargs: Any) -> Any:
            setattr(layout, held, real_held)
            self.held.set()
            assert self.go.wait(WAIT), "a was never let go"
            try:
                return real_held(*args, **kwargs)
            finally:
                self.done.set()

        def take(until: float | None = None) -> Any:
            lock.lease = LEASE  # the stall is over: a new lease is a full one
            return real_take(until)

        setattr(layout, held, hold)
        lock.take = take  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._run, args=(op,), daemon=True)
        self.thread.start()
        assert self.held.wait(WAIT), f"a never reached its {held}"
        assert layout.locks.update_many({}, {"$set": {"expires": 0.0}}).matched_count == 1
        lock.lease = 0.0  # on a's clock too, its lease is over

    def _run(self, op: Callable[[], Any]) -> None:
        try:
            self.result = op()
        except BaseException as exc:
            self.error.append(exc)

    def release(self) -> None:
        """Let ``a`` go on, and wait until the held method returned."""
        self.go.set()
        assert self.done.wait(WAIT), "a never went on"

    def join(self) -> Any:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        assert not self.error, self.error
        return self.result


def _push_out_of_the_log(c: MongoBackend, version: int) -> None:
    """Commit steps through ``c`` until step ``version`` has left the log."""
    layout: Layout = c._conn().layout
    n = 0
    while layout.marker(version) is not None or layout.log_entry(version) is not None:
        assert n < LOG_KEEP + 2 * PRUNE_EVERY, "the log kept the step"
        [got] = c.register([new("f", f"push-{n}", pool="push")], 4.0)
        assert got.kind is RegisterKind.CREATED
        n += 1
    assert layout.latest() > version


def _version_of(backend: MongoBackend, id: str) -> int:
    """The committed version whose redo registered ``id``."""
    layout: Layout = backend._conn().layout
    for v in range(1, layout.latest() + 1):
        entry = layout.log_entry(v)
        if entry is not None and any(
            op["c"] == "inv" and op["doc"]["_id"] == id for op in redo_of(entry)
        ):
            return v
    raise AssertionError(f"no logged step registered {id}")


def _seen_by_a_fresh_process(open_backend: Callable[[], MongoBackend], x: NewInvocation) -> None:
    fresh = open_backend()
    got = record(fresh, x.id)
    assert (got.status, got.pool) == (Status.PENDING, "late")
    assert claim_ids(fresh, W3, 10, 5.0, "late") == [x.id]


def _registered(result: list[RegisterResult], x: NewInvocation) -> None:
    [got] = result
    assert (got.kind, got.id) == (RegisterKind.CREATED, x.id)


def test_a_late_step_met_as_taken_by_the_next_holder_is_written(
    backends: Callable[[], MongoBackend],
) -> None:
    """``a`` commits while ``b``, which took the lock over, is about to commit the same
    version: ``b`` meets it as taken, and whoever holds the lock writes it."""
    a, b, c = backends(), _loaded(backends()), _loaded(backends())
    x, y = new("f", "x", pool="late"), new("f", "y", pool="other")
    stalled = _Stalled(a, "commit", lambda: a.register([x], 2.0))
    _before_first_commit(b, stalled.release)
    [got_y] = b.register([y], 3.0)
    assert (got_y.kind, got_y.id) == (RegisterKind.CREATED, y.id)
    _registered(stalled.join(), x)
    version = _version_of(c, x.id)
    _push_out_of_the_log(c, version)
    _seen_by_a_fresh_process(backends, x)


def test_a_late_step_landing_while_nobody_holds_the_lock_is_written(
    backends: Callable[[], MongoBackend],
) -> None:
    """``b`` takes the lock over, runs a step that changes nothing and lets the lock go;
    then ``a``'s commit lands, and ``c`` (which takes a free lock) commits the next steps."""
    a, b, c = backends(), _loaded(backends()), _loaded(backends())
    x = new("f", "x", pool="late")
    stalled = _Stalled(a, "commit", lambda: a.register([x], 2.0))
    # A finish of a call nobody holds is a step (it takes the lock) that changes nothing.
    ghost = new("f", "ghost", pool="late").id
    assert b.finish([Outcome(ghost, OutcomeKind.SUCCESS, result="1")], W3, 3.0) == [False]
    stalled.release()
    _registered(stalled.join(), x)
    [got] = c.register([new("f", "z", pool="other")], 4.0)
    assert got.kind is RegisterKind.CREATED
    version = _version_of(c, x.id)
    _push_out_of_the_log(c, version)
    _seen_by_a_fresh_process(backends, x)


class _Locks:
    """Stands in for one backend's lock collection: ``after`` runs once its next delete of an
    expired holder's lock (a take-over) is done, before the taker inserts its own."""

    def __init__(self, real: Any, after: Callable[[], None]) -> None:
        self.real = real
        self.after: Callable[[], None] | None = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def delete_one(self, where: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.real.delete_one(where, *args, **kwargs)
        finally:
            after, self.after = self.after, None
            if after is not None and "expires" in where:
                after()
            else:
                self.after = after


def test_a_late_step_landing_before_a_take_over_gets_the_lock_is_written(
    backends: Callable[[], MongoBackend],
) -> None:
    """``b`` deletes ``a``'s expired lock to take it over, but before its own insert ``a``'s
    commit lands and ``c`` takes the free lock and commits the next steps: ``c`` never saw
    ``a``'s lock, yet must know it was taken over."""
    a, b, c = backends(), _loaded(backends()), _loaded(backends())
    x, y = new("f", "x", pool="late"), new("f", "y", pool="other")
    stalled = _Stalled(a, "commit", lambda: a.register([x], 2.0))

    def meanwhile() -> None:
        stalled.release()
        [got] = c.register([new("f", "z", pool="other")], 4.0)
        assert got.kind is RegisterKind.CREATED

    lock = b._conn().lock
    lock.locks = _Locks(lock.locks, meanwhile)  # type: ignore[assignment]
    [got_y] = b.register([y], 3.0)
    assert (got_y.kind, got_y.id) == (RegisterKind.CREATED, y.id)
    _registered(stalled.join(), x)
    version = _version_of(c, x.id)
    _push_out_of_the_log(c, version)
    _seen_by_a_fresh_process(backends, x)


def test_a_late_document_write_never_takes_a_document_back_in_time(
    backends: Callable[[], MongoBackend],
) -> None:
    """``a`` claims ``x`` (RUNNING, one slot of its running key taken) and stalls before
    writing the claim's documents; ``b`` takes the lock over and finishes ``x`` (SUCCESS, the
    slot freed); then ``a`` writes its claim's documents. They must not win: ``get`` in a new
    process says SUCCESS, and once the steps left the log, a process that loads from the
    collections says SUCCESS too and sees the slot free (it claims ``y``, which shares it)."""
    a, b, c = backends(), _loaded(backends()), _loaded(backends())
    x = new("f", "x", pool="late", running_key="k", running_limit=1)
    y = new("f", "y", pool="late", running_key="k", running_limit=1)
    got = c.register([x, y], 4.0)
    assert [(r.kind, r.id) for r in got] == [(RegisterKind.CREATED, i) for i in (x.id, y.id)]
    _loaded(a)
    stalled = _Stalled(a, "apply", lambda: claim_ids(a, W3, 1, 2.0, "late"))
    assert b.finish([Outcome(x.id, OutcomeKind.SUCCESS, result="1")], W3, 3.0) == [True]
    stalled.release()
    assert stalled.join() == [x.id]
    assert record(backends(), x.id).status is Status.SUCCESS
    version = _version_of(c, x.id)
    _push_out_of_the_log(c, c._conn().layout.latest())
    assert version < c._conn().layout.latest()
    fresh = backends()
    assert record(fresh, x.id).status is Status.SUCCESS
    assert claim_ids(fresh, W3, 10, 5.0, "late") == [y.id]
