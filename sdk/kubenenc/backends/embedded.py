"""Lifecycle operations for stores that run :class:`~kubenenc.backends.engine.Engine`.

A backend over a transactional store supplies one thing, :meth:`EngineBackend._engine` — an
Engine over a transaction of its store — and inherits every lifecycle operation from here,
each one transaction. That keeps the memory and SQLite backends (and a third party's, see
``docs/plugins.md``) from restating the same fourteen delegations. A store with optimistic
transactions (PostgreSQL's SERIALIZABLE) also says which errors mean "run it again"
(:meth:`EngineBackend._retry_transaction`); the transaction is then run again from the start.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

from kubenenc.backends.engine import Engine
from kubenenc.backends.urloptions import DEFAULT_RETENTION, RETENTION, seconds_option
from kubenenc.errors import ConfigurationError
from kubenenc.ids import InvocationId, WorkerId
from kubenenc.records import (
    InvocationRecord,
    NewInvocation,
    Outcome,
    PauseResult,
    RegisterResult,
    ResumeResult,
)
from kubenenc.status import Status

OVERDUE_LIMIT = 1000
"""Most invocations one :meth:`EngineBackend.overdue` call returns."""

T = TypeVar("T")

TRANSACTION_TRIES = 50
"""Runs of one operation at most when its store keeps asking to run it again."""


def retention_option(url: str, default: float = DEFAULT_RETENTION) -> float:
    """The ``retention`` query option of an embedded backend's URL (see
    :mod:`kubenenc.backends.urloptions`); any other option is refused, so a misspelled one
    is not silently ignored."""
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    unknown = sorted(set(query) - {RETENTION})
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(unknown)} in {url!r}; the only option is retention"
        )
    return seconds_option({k: v[-1] for k, v in query.items()}, RETENTION, default, url)


class EngineBackend:
    """Queue and coordination operations as single Engine transactions."""

    retention: float = DEFAULT_RETENTION
    """Seconds a final invocation is kept after it ended; :meth:`recover` sweeps older ones."""

    def _sweep(self, cutoff: float) -> int:
        """Delete final invocations that ended before ``cutoff`` (with what only they used);
        how many went. Called by :meth:`recover`, so it must be cheap when none are due."""
        raise NotImplementedError

    def _engine(self) -> AbstractContextManager[Engine]:
        """An Engine inside one open transaction, committed on exit."""
        raise NotImplementedError

    def _detach(self, rec: InvocationRecord) -> InvocationRecord:
        """A record safe to hand to the caller (a store of live objects copies it)."""
        return rec

    def _retry_transaction(self, exc: Exception) -> bool:
        """Whether a transaction that raised ``exc`` (and was rolled back by :meth:`_engine`)
        may simply be run again: True for a serialization failure or a deadlock of a store
        with optimistic transactions. The embedded stores lock, so never."""
        return False

    def _atomic(self, step: Callable[[Engine], T]) -> T:
        """``step`` inside one transaction, run again (after a short random pause) while the
        store says the transaction must be retried."""
        tries = 0
        while True:
            try:
                with self._engine() as e:
                    return step(e)
            except Exception as exc:
                tries += 1
                if tries >= TRANSACTION_TRIES or not self._retry_transaction(exc):
                    raise
            time.sleep(random.random() * min(0.05, 0.001 * 2**tries))

    def register(self, new: Sequence[NewInvocation], now: float) -> list[RegisterResult]:
        """See :meth:`kubenenc.backends.contract.Queue.register`."""
        return self._atomic(lambda e: e.register(new, now))

    def last_tick(self, schedule: str) -> int | None:
        """See :class:`kubenenc.backends.contract.TickClaims`."""
        with self._engine() as e:
            return e.last_tick(schedule)

    def claim_tick(
        self,
        schedule: str,
        previous: int | None,
        tick: int,
        new: Sequence[NewInvocation],
        now: float,
    ) -> list[RegisterResult] | None:
        """See :class:`kubenenc.backends.contract.TickClaims`."""
        with self._engine() as e:
            return e.claim_tick(schedule, previous, tick, new, now)

    def claim(self, pool: str, worker: WorkerId, limit: int, now: float) -> list[InvocationRecord]:
        """See :meth:`kubenenc.backends.contract.Queue.claim`."""
        # Detached inside the transaction: a store of live objects copies them under its lock.
        return self._atomic(lambda e: [self._detach(r) for r in e.claim(pool, worker, limit, now)])

    def finish(self, outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        """See :meth:`kubenenc.backends.contract.Queue.finish`."""
        return self._atomic(lambda e: e.finish(outcomes, worker, now))

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """See :class:`kubenenc.backends.contract.FinishAndClaim`."""

        def step(e: Engine) -> tuple[list[bool], list[InvocationRecord]]:
            done, claimed = e.finish_and_claim(outcomes, pool, worker, limit, now)
            return done, [self._detach(r) for r in claimed]

        return self._atomic(step)

    def cancel(self, id: InvocationId, now: float, reason: str = "cancelled") -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.cancel`."""
        return self._atomic(lambda e: e.cancel(id, now, reason))

    def fail(self, id: InvocationId, error: str, message: str, now: float) -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.fail`."""
        return self._atomic(lambda e: e.fail(id, error, message, now))

    def pause(
        self, id: InvocationId, worker: WorkerId, targets: Sequence[InvocationId], now: float
    ) -> PauseResult:
        """See :meth:`kubenenc.backends.contract.Coordination.pause`."""
        return self._atomic(lambda e: e.pause(id, worker, targets, now))

    def resume(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :meth:`kubenenc.backends.contract.Coordination.resume`."""
        return self._atomic(lambda e: e.resume(ids, worker, limit, now))

    def resume_early(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :class:`kubenenc.backends.contract.ResumeEarly`."""
        return self._atomic(lambda e: e.resume(ids, worker, limit, now, early=True))

    def recover(self, now: float, heartbeat_timeout: float, max_lost: int) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.recover`. Also sweeps final
        invocations past the retention (in transactions of their own)."""
        lost = self._atomic(lambda e: e.recover(now, heartbeat_timeout, max_lost))
        self._sweep(now - self.retention)
        return lost

    def overdue(self, now: float, grace: float) -> list[InvocationRecord]:
        """See :class:`kubenenc.backends.contract.Overdue`: reads only held invocations."""
        with self._engine() as e:
            out = []
            for inv_id, _ in e.txn.held():
                rec = e.txn.get(inv_id)
                if (
                    rec is not None and rec.status is Status.RUNNING and rec.timeout is not None
                    and now - rec.updated_at > rec.timeout + grace
                ):  # fmt: skip
                    out.append(self._detach(rec))
                    if len(out) >= OVERDUE_LIMIT:
                        break
            return out

    def release_unheld(
        self, worker: WorkerId, held: Collection[InvocationId], now: float, max_lost: int
    ) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.release_unheld`."""
        return self._atomic(lambda e: e.release_unheld(worker, held, now, max_lost))
