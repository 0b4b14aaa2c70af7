"""The lease lock of the MongoDB backend: one step at a time across every process.

The lock is a document ``{_id: <random token>, name: "queue", expires, owner}`` in
``<p>_locks``, whose unique index on ``name`` lets one insert succeed at a time (the only
coordination primitive every MongoDB-protocol server keeps atomic; see
:mod:`kubenenc_mongodb.layout`). Release deletes it by its token, so a late release never
deletes a newer holder's lock; a lock whose ``expires`` has passed is deleted the same way
by whoever wants it, and that taker is told so (:attr:`Lease.stolen`): the last step may
then be half-written, and the step protocol (:mod:`kubenenc_mongodb.steps`) writes it again
before anything else.

A lease is a promise about time, not a fence: a holder re-checks it before it commits
(:meth:`LeaseLock.renew`), and the commit protocol makes a step whose lease ran out between
its log insert and its marker insert harmless (see ``Layout.commit``).

One :class:`LeaseLock` per process and backend. It also keeps the lock between two steps of
its process for a moment (:data:`LINGER`, after a claim: the finish follows) and lets it go
from a small thread, at close, or at exit, so others never wait out a lease for a process
that is merely idle or gone. Every method but :meth:`close` is called with the step mutex
held (the one given at construction).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import uuid
import weakref
from dataclasses import dataclass

from kubenenc.errors import BackendUnavailable
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from kubenenc_mongodb.layout import Doc

log = logging.getLogger("kubenenc.mongodb")

LOCK_NAME = "queue"
LINGER = 0.01
"""How long a process keeps the lock after a step that claimed work, for the step that will
finish it (no lock round trips, no catch-up: nobody else can have committed meanwhile)."""
HOLD_MAX = 0.05
"""A process that keeps the lock across steps lets it go at the end of the first step past
this long since it took it, so others get their turn."""


@dataclass(frozen=True, slots=True)
class Lease:
    """The lock as one step holds it."""

    token: str
    expires: float
    """Wall-clock end of the lease."""
    since: float
    """Monotonic time this process took the lock (it may have kept it across steps)."""
    stolen: bool = False
    """Taken over from a holder that left it (expired, or this process's own after a fault
    past a commit): the last committed step may be half-written."""
    kept: bool = False
    """Kept since this process's last step: nobody else can have committed meanwhile."""


class LeaseLock:
    """This process's side of the lock of one backend prefix."""

    def __init__(
        self, locks: Collection[Doc], lease: float, owner: str, mutex: threading.RLock
    ) -> None:
        self.locks = locks
        self.lease = lease
        self.owner = owner
        self.pid = os.getpid()
        self.dangling: str | None = None
        """Our own token left in place after a fault past a commit (see :meth:`leave`)."""
        self.kept: Lease | None = None
        """The lock kept between steps: the next step of this process uses it as it is; a
        thread lets it go at ``release_at``."""
        self.release_at = 0.0
        self.wake = threading.Condition(mutex)
        self.releaser: threading.Thread | None = None
        self.closed = False
        _LOCKS.add(self)

    # -- taking and renewing ----------------------------------------------------------------

    def take(self) -> Lease:
        """The lock for one step: the one kept since this process's last step while its
        lease has well over half to run (nobody can have taken it over), else a new one."""
        kept, self.kept = self.kept, None
        if kept is not None and time.time() < kept.expires - self.lease / 2:
            return kept
        if kept is not None:
            self.kept = kept
            self.let_go()
        return self._acquire()

    def _acquire(self) -> Lease:
        stolen = False
        if self.dangling is not None:
            self.locks.delete_one({"_id": self.dangling})
            self.dangling = None
            stolen = True
        token = uuid.uuid4().hex
        delay = 0.0005
        give_up = time.monotonic() + max(3 * self.lease, 30.0)
        while True:
            now = time.time()
            try:
                self.locks.insert_one(
                    {"_id": token, "name": LOCK_NAME, "expires": now + self.lease,
                     "owner": self.owner}
                )  # fmt: skip
                return Lease(token, now + self.lease, time.monotonic(), stolen=stolen)
            except DuplicateKeyError:
                pass
            holder = self.locks.find_one({"name": LOCK_NAME})
            if holder is not None and holder["expires"] < now:
                log.warning("the lock held by %s expired; taking it over", holder.get("owner"))
                self.locks.delete_one({"_id": holder["_id"]})
                stolen = True
                continue
            if time.monotonic() > give_up:
                who = holder.get("owner") if holder else "?"
                raise BackendUnavailable(f"the coordination lock stayed held by {who}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.005)

    def renew(self, lease: Lease) -> Lease | None:
        """The lease extended when half of it is gone (unchanged before); None if it was
        lost (another process took it over)."""
        if time.time() <= lease.expires - self.lease / 2:
            return lease
        renewed = time.time() + self.lease
        res = self.locks.update_one({"_id": lease.token}, {"$set": {"expires": renewed}})
        if res.matched_count != 1:
            return None
        return Lease(lease.token, renewed, lease.since, lease.stolen, lease.kept)

    def holds_kept(self) -> bool:
        """Whether this process keeps the lock between steps with well over half of its
        lease to run: nobody else can have committed since its last step."""
        kept = self.kept
        return kept is not None and time.time() < kept.expires - self.lease / 2

    # -- letting go -------------------------------------------------------------------------

    def leave(self, lease: Lease) -> None:
        """Leave the lock in place after a fault past a commit: the next taker (this process
        on its retry, or another after the lease) writes the step again first."""
        self.dangling = lease.token

    def end(self, lease: Lease, *, linger: bool) -> None:
        """The step is over: keep the lock :data:`LINGER` seconds for a next step of this
        process (``linger``, unless it was held :data:`HOLD_MAX` already), else release it.
        A lock left in place by :meth:`leave` stays."""
        if self.dangling == lease.token:
            return
        if linger and time.monotonic() - lease.since < HOLD_MAX:
            self._keep(lease)
            return
        try:
            self.locks.delete_one({"_id": lease.token})
        except PyMongoError:
            self.dangling = lease.token

    def _keep(self, lease: Lease) -> None:
        self.kept = Lease(lease.token, lease.expires, lease.since, kept=True)
        self.release_at = time.monotonic() + LINGER
        if self.releaser is None:
            self.releaser = threading.Thread(
                target=self._release_loop, name="kubenenc-mongodb-lock", daemon=True
            )
            self.releaser.start()
        self.wake.notify()

    def let_go(self) -> None:
        """Release the kept lock now, if any."""
        if self.kept is None:
            return
        token, self.kept = self.kept.token, None
        try:
            self.locks.delete_one({"_id": token})
        except PyMongoError:
            self.dangling = token

    def _release_loop(self) -> None:
        with self.wake:
            while not self.closed:
                left = self.release_at - time.monotonic()
                if self.kept is None or left > 0:
                    self.wake.wait(left if self.kept is not None else None)
                    continue
                self.let_go()

    def close(self) -> None:
        """Let a kept lock go (in the process that took it) and stop the releasing thread."""
        with self.wake:
            if self.pid == os.getpid():
                self.let_go()
            self.closed = True
            self.wake.notify()


_LOCKS: weakref.WeakSet[LeaseLock] = weakref.WeakSet()


@atexit.register
def _let_go_at_exit() -> None:
    """Release locks kept between steps, so other processes need not wait out the lease."""
    for lock in list(_LOCKS):
        if lock.pid == os.getpid() and not lock.closed:
            with contextlib.suppress(Exception), lock.wake:
                lock.let_go()
