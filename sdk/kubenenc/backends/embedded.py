"""Lifecycle operations for stores that run :class:`~kubenenc.backends.engine.Engine`.

An embedded backend supplies one thing, :meth:`EngineBackend._engine` — an Engine over a
transaction of its store — and inherits every lifecycle operation from here, each one
transaction. That keeps the memory and SQLite backends from restating the same
delegations.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
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

    def register(self, new: Sequence[NewInvocation], now: float) -> list[RegisterResult]:
        """See :meth:`kubenenc.backends.contract.Queue.register`."""
        with self._engine() as e:
            return e.register(new, now)

    def claim(self, pool: str, worker: WorkerId, limit: int, now: float) -> list[InvocationRecord]:
        """See :meth:`kubenenc.backends.contract.Queue.claim`."""
        with self._engine() as e:
            return [self._detach(r) for r in e.claim(pool, worker, limit, now)]

    def finish(self, outcomes: Sequence[Outcome], worker: WorkerId, now: float) -> list[bool]:
        """See :meth:`kubenenc.backends.contract.Queue.finish`."""
        with self._engine() as e:
            return e.finish(outcomes, worker, now)

    def finish_and_claim(
        self, outcomes: Sequence[Outcome], pool: str, worker: WorkerId, limit: int, now: float
    ) -> tuple[list[bool], list[InvocationRecord]]:
        """See :class:`kubenenc.backends.contract.FinishAndClaim`."""
        with self._engine() as e:
            done, claimed = e.finish_and_claim(outcomes, pool, worker, limit, now)
            return done, [self._detach(r) for r in claimed]

    def cancel(self, id: InvocationId, now: float, reason: str = "cancelled") -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.cancel`."""
        with self._engine() as e:
            return e.cancel(id, now, reason)

    def fail(self, id: InvocationId, error: str, message: str, now: float) -> bool:
        """See :meth:`kubenenc.backends.contract.Queue.fail`."""
        with self._engine() as e:
            return e.fail(id, error, message, now)

    def pause(
        self, id: InvocationId, worker: WorkerId, targets: Sequence[InvocationId], now: float
    ) -> PauseResult:
        """See :meth:`kubenenc.backends.contract.Coordination.pause`."""
        with self._engine() as e:
            return e.pause(id, worker, targets, now)

    def resume(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :meth:`kubenenc.backends.contract.Coordination.resume`."""
        with self._engine() as e:
            return e.resume(ids, worker, limit, now)

    def resume_early(
        self, ids: Sequence[InvocationId], worker: WorkerId, limit: int, now: float
    ) -> ResumeResult:
        """See :class:`kubenenc.backends.contract.ResumeEarly`."""
        with self._engine() as e:
            return e.resume(ids, worker, limit, now, early=True)

    def recover(self, now: float, heartbeat_timeout: float, max_lost: int) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.recover`. Also sweeps final
        invocations past the retention (in transactions of their own)."""
        with self._engine() as e:
            lost = e.recover(now, heartbeat_timeout, max_lost)
        self._sweep(now - self.retention)
        return lost

    def release_unheld(
        self, worker: WorkerId, held: Collection[InvocationId], now: float, max_lost: int
    ) -> list[InvocationId]:
        """See :meth:`kubenenc.backends.contract.Coordination.release_unheld`."""
        with self._engine() as e:
            return e.release_unheld(worker, held, now, max_lost)
