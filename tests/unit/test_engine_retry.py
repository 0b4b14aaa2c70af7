"""EngineBackend runs a transaction again when its store says so (optimistic stores such as
PostgreSQL's SERIALIZABLE fail one of two conflicting transactions), and only then."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kubenenc.backends import Engine
from kubenenc.backends.embedded import TRANSACTION_TRIES
from kubenenc.backends.memory import MemoryBackend
from kubenenc.records import RegisterKind
from kubenenc.testing.helpers import new


class Conflict(Exception):
    """What an optimistic store raises when a transaction lost a race."""


class Flaky(MemoryBackend):
    """A memory backend whose first ``failures`` transactions fail before the Engine runs
    (as a store's first statement fails when the transaction lost a race; rolling back
    what a transaction wrote is the store's own job)."""

    def __init__(self, failures: int, error: type[Exception] = Conflict) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.runs = 0

    @contextmanager
    def _engine(self) -> Iterator[Engine]:
        self.runs += 1
        if self.runs <= self.failures:
            raise self.error("conflict")
        with super()._engine() as e:
            yield e

    def _retry_transaction(self, exc: Exception) -> bool:
        return isinstance(exc, Conflict)


def test_a_conflicting_transaction_is_run_again_from_the_start() -> None:
    backend = Flaky(failures=2)
    item = new("f", "1")
    [res] = backend.register([item], 1.0)
    assert res.kind is RegisterKind.CREATED
    assert backend.runs == 3
    assert [r.id for r in backend.query()] == [item.id]


def test_other_errors_are_not_retried() -> None:
    backend = Flaky(failures=1, error=RuntimeError)
    with pytest.raises(RuntimeError):
        backend.register([new("f", "1")], 1.0)
    assert backend.runs == 1


def test_a_store_that_always_conflicts_gives_up() -> None:
    backend = Flaky(failures=10**6)
    with pytest.raises(Conflict):
        backend.register([new("f", "1")], 1.0)
    assert backend.runs == TRANSACTION_TRIES
