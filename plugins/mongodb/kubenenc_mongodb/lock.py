"""The lease lock of the MongoDB backend: one step at a time across every process.

The lock is a document ``{_id: <random token>, name: "queue", expires, e, owner}`` in
``<p>_locks``, whose unique index on ``name`` lets one insert succeed at a time (the only
coordination primitive every MongoDB-protocol server keeps atomic; see
:mod:`kubenenc_mongodb.layout`). Release deletes it by its token, so a late release never
deletes a newer holder's lock; a lock whose lease has run out is deleted the same way
by whoever wants it, after leaving a tombstone in ``<p>_steps`` (:meth:`LeaseLock.bury_holder`;
also before a process deletes its own lock left in place after a fault): the last step may
then be half-written, or a late commit of the old holder still on its way, and whoever holds
the lock next deals with both before anything else ("Late commits" in
:mod:`kubenenc_mongodb.steps`).

Whose clock (issue 13)
----------------------
No process's wall clock is used: a host whose clock runs ahead would otherwise see every
other holder's lease as run out and take the lock over while that holder still writes its
step (two writers: lost steps, calls run twice). Each side judges on a clock it can trust:

- The *holder* judges its own lease on its monotonic clock alone: the lease starts when it
  *sent* the insert (or the renewal) that took it, and it stops using it :data:`MARGIN_SHARE`
  of the lease before that start plus the lease (no renewal, commit or write after that;
  see :meth:`LeaseLock.valid`).
- The lock document says when the lease ends on the *server's* clock: ``expires`` is this
  process's estimate of the server's time at that start, plus the lease, and ``e`` bounds
  the estimate's error. A *taker* deletes a lock only when its own estimate of the
  server's time, less its own error bound, is past ``expires + e``. An estimate
  (:class:`ServerClock`) is the server's time read with one round trip (``hello``'s
  ``localTime``, or a ``$currentDate`` write: :func:`kubenenc_mongodb.liveness.server_now`)
  placed at the midpoint of that round trip on the monotonic clock: its error is at most
  half the round trip plus the server clock's millisecond grain, plus the drift since.

So when a taker deletes the lock, the server's clock is past ``expires + e``, which is at
least the server's time at the holder's start plus the lease: the holder's monotonic clock
(running at the server clock's rate, to within the drift bound) has passed its start plus
the lease, and it stopped using the lease a margin before. What remains is the usual limit
of leases: a holder stalled *between* its check and its write (a frozen process, a write
delayed in the network for longer than the margin) may still write after a successor; the
commit protocol makes such a late log write harmless (see ``Layout.commit``), the take-over
tombstone makes sure a late commit's documents are written by a holder (see "Late commits"
in :mod:`kubenenc_mongodb.steps`), and a late *document* write cannot overwrite or delete
a later step's documents, as every such write matches only documents of its step's version
or older (see "Late writes" in :mod:`kubenenc_mongodb.layout`, with what that leaves).
The server's clock must not be stepped by more than the margin while the lock is held.

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
from collections.abc import Callable
from dataclasses import dataclass

from kubenenc.errors import BackendUnavailable
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from kubenenc_mongodb.layout import Doc, tombstone_id

log = logging.getLogger("kubenenc.mongodb")

LOCK_NAME = "queue"
LINGER = 0.01
"""How long a process keeps the lock after a step that claimed work, for the step that will
finish it (no lock round trips, no catch-up: nobody else can have committed meanwhile)."""
HOLD_MAX = 0.05
"""A process that keeps the lock across steps lets it go at the end of the first step past
this long since it took it, so others get their turn."""
MARGIN_SHARE = 0.2
"""A holder stops using its lease this share of the lease before it ends on its own clock
(room for a write in flight when it last checked)."""
REFRESH = 30.0
"""Seconds between two readings of the server's clock (:class:`ServerClock`)."""
DRIFT = 1e-3
"""Bound on how fast a monotonic clock and the server's clock may drift apart (seconds per
second; NTP slews at most 0.05 %): added to an estimate's error as it ages."""
GRAIN = 0.001
"""The server's clock is read to the millisecond."""
SLOW_READ = 0.2
"""A reading of the server's clock whose round trip took longer than this replaces an older
estimate only if that one's error has grown past this reading's."""


class Busy(Exception):
    """The lock (or this process's step mutex) was not had within the time a caller gave:
    only for callers that would rather skip a step than wait (recovery, on the heartbeat
    thread: see ``MongoBackend.recover``)."""


class ServerClock:
    """This process's estimate of the server's clock, on its monotonic clock: read with one
    round trip every :data:`REFRESH` seconds (under the step mutex, like every use)."""

    def __init__(self, read: Callable[[], float]) -> None:
        self.read = read
        self.offset = 0.0
        """Server time minus monotonic time at the last reading."""
        self.error = -1.0
        """Bound on the offset's error at the last reading (< 0: never read)."""
        self.at = 0.0
        """Monotonic time of the last reading."""

    def now(self) -> tuple[float, float]:
        """The server's time now (seconds since the epoch) and a bound on its error."""
        mono = time.monotonic()
        if self.error < 0 or mono - self.at > REFRESH:
            self._sample()
            mono = time.monotonic()
        return mono + self.offset, self.error + DRIFT * (mono - self.at)

    def _sample(self) -> None:
        sent = time.monotonic()
        server = self.read()
        back = time.monotonic()
        error = (back - sent) / 2 + GRAIN
        aged = self.error + DRIFT * (back - self.at)
        if self.error >= 0 and back - sent > SLOW_READ and aged < error:
            self.at, self.error = back, aged  # keep the better estimate; read it again later
            return
        self.offset = server - (sent + back) / 2
        self.error = error
        self.at = back


@dataclass(frozen=True, slots=True)
class Lease:
    """The lock as one step holds it."""

    token: str
    expires: float
    """Server-clock end of the lease, as written in the lock document."""
    since: float
    """Monotonic time this process took the lock (it may have kept it across steps)."""
    stolen: bool = False
    """Taken over from a holder that left it (expired, or this process's own after a fault
    past a commit): the last committed step may be half-written. The step protocol acts on
    the tombstone left in ``<p>_steps`` instead, which any next holder sees."""
    kept: bool = False
    """Kept since this process's last step: nobody else can have committed meanwhile."""
    start: float = 0.0
    """Monotonic time the insert or renewal that began the current lease was sent: the
    holder's own clock says the lease ends a lease after it."""


class LeaseLock:
    """This process's side of the lock of one backend prefix."""

    def __init__(
        self,
        locks: Collection[Doc],
        lease: float,
        owner: str,
        mutex: threading.RLock,
        server_time: Callable[[], float],
        tombstones: Collection[Doc],
    ) -> None:
        self.locks = locks
        self.tombstones = tombstones
        """``<p>_steps``, where a take-over leaves its tombstone (:meth:`bury_holder`)."""
        self.lease = lease
        self.owner = owner
        self.clock = ServerClock(server_time)
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

    # -- the holder's own clock -------------------------------------------------------------

    def valid(self, lease: Lease) -> bool:
        """Whether this process may still use ``lease`` (commit, write): judged on its own
        monotonic clock only, a margin before the lease ends (see the module docstring)."""
        return time.monotonic() < lease.start + self.lease * (1 - MARGIN_SHARE)

    def _fresh(self, lease: Lease) -> bool:
        """Whether well over half of ``lease`` is left: nobody can have taken it over, and
        it needs no renewal yet."""
        return time.monotonic() < lease.start + self.lease / 2

    # -- taking and renewing ----------------------------------------------------------------

    def take(self, until: float | None = None) -> Lease:
        """The lock for one step: the one kept since this process's last step while its
        lease has well over half to run (nobody can have taken it over), else a new one;
        :class:`Busy` if another process holds it at monotonic time ``until``."""
        kept, self.kept = self.kept, None
        if kept is not None and self._fresh(kept):
            return kept
        if kept is not None:
            self.kept = kept
            self.let_go()
        return self._acquire(until)

    def _acquire(self, until: float | None) -> Lease:
        stolen = False
        if self.dangling is not None:
            self.bury_holder(self.dangling)
            self.locks.delete_one({"_id": self.dangling})
            self.dangling = None
            stolen = True
        token = uuid.uuid4().hex
        delay = 0.0005
        give_up = time.monotonic() + max(3 * self.lease, 30.0)
        while True:
            server, error = self.clock.now()
            start = time.monotonic()
            try:
                self.locks.insert_one(
                    {"_id": token, "name": LOCK_NAME, "expires": server + self.lease,
                     "e": error, "owner": self.owner}
                )  # fmt: skip
                return Lease(token, server + self.lease, start, stolen=stolen, start=start)
            except DuplicateKeyError:
                pass
            holder = self.locks.find_one({"name": LOCK_NAME})
            if holder is not None and self._ran_out(holder):
                log.warning("the lock held by %s expired; taking it over", holder.get("owner"))
                self.bury_holder(str(holder["_id"]))
                self.locks.delete_one({"_id": holder["_id"], "expires": holder["expires"]})
                stolen = True
                continue
            if until is not None and time.monotonic() > until:
                raise Busy
            if time.monotonic() > give_up:
                who = holder.get("owner") if holder else "?"
                raise BackendUnavailable(f"the coordination lock stayed held by {who}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.005)

    def bury_holder(self, token: str) -> None:
        """Leave the tombstone of lock ``token`` in ``<p>_steps`` before deleting the lock
        other than by a clean release (its holder may have a step committed but not written,
        or a commit still in flight): whoever holds the lock next sees it when it catches
        up, and deals with that first (see "Late commits" in :mod:`kubenenc_mongodb.steps`).
        A tombstone left by another taker of the same lock is as good."""
        with contextlib.suppress(DuplicateKeyError):
            self.tombstones.insert_one({"_id": tombstone_id(token)})

    def _ran_out(self, holder: Doc) -> bool:
        """Whether the lease of lock document ``holder`` has surely ended: the server's
        time is past its end even if both estimates erred as far as they may."""
        server, error = self.clock.now()
        expires = holder.get("expires")
        if not isinstance(expires, int | float):
            return False
        return float(expires) + float(holder.get("e", 0.0)) < server - error

    def renew(self, lease: Lease) -> Lease | None:
        """The lease extended when half of it is gone (unchanged before); None if it was
        lost (another process took it over, or it ran out on this process's own clock)."""
        if self._fresh(lease):
            return lease
        if not self.valid(lease):
            return None
        server, error = self.clock.now()
        start = time.monotonic()
        res = self.locks.update_one(
            {"_id": lease.token}, {"$set": {"expires": server + self.lease, "e": error}}
        )
        if res.matched_count != 1:
            return None
        return Lease(lease.token, server + self.lease, lease.since, lease.stolen, lease.kept, start)

    def holds_kept(self) -> bool:
        """Whether this process keeps the lock between steps with well over half of its
        lease to run: nobody else can have committed since its last step."""
        kept = self.kept
        return kept is not None and self._fresh(kept)

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
        self.kept = Lease(lease.token, lease.expires, lease.since, kept=True, start=lease.start)
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
