"""Chaos: a flood of bad input through the public API while a real worker process serves the
app: wrong arguments, unencodable and oversized values (as arguments, and as results the
worker cannot store), unknown and malformed ids, cancelling twice, the results of calls
whose records expired. Each one must be a clear error of a documented type, raised where
the bad input was given; the worker and the backend must keep serving good calls."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubenenc import (
    ConfigurationError,
    InvocationCancelled,
    SerializationError,
    Status,
    ValueTooLarge,
)

from tests.backends import SHARED_URLS
from tests.chaos import chaosapp
from tests.chaos.faults import Fault
from tests.chaos.scenario import Chaos

ROUNDS = 15


def _deep() -> list[Any]:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    return deep


def bad_calls() -> list[tuple[str, type[BaseException], Callable[[], object]]]:
    """(what, the error it must raise, the call)."""
    body, app = chaosapp.body, chaosapp.app
    huge = "x" * (app.value_limit() + 1)
    return [
        ("missing argument", TypeError, lambda: body(1)),
        ("unknown argument", TypeError, lambda: body(1, "k", 0.0, nope=2)),
        ("too many arguments", TypeError, lambda: body(1, "k", 0.0, 4, 5)),
        ("unknown option", TypeError, lambda: body.with_options(nope=1)),  # type: ignore[call-arg]
        ("negative timeout", ConfigurationError,
         lambda: body.with_options(timeout=-1)(1, "k", 0.0)),
        ("unencodable argument", SerializationError, lambda: body(object(), "k", 0.0)),  # type: ignore[arg-type]
        ("oversized argument", ValueTooLarge, lambda: body(huge, "k", 0.0)),  # type: ignore[arg-type]
        ("int past 4,300 digits", SerializationError, lambda: body(10**5000, "k", 0.0)),
        ("nesting past the recursion limit", SerializationError,
         lambda: body(_deep(), "k", 0.0)),  # type: ignore[arg-type]
        ("unknown id", LookupError, lambda: app.invocation("0" * 32).status),
        ("malformed id", LookupError, lambda: app.invocation("../../etc/passwd\x00").status),
        ("empty id", LookupError, lambda: app.invocation("").result(timeout=0.1)),
        ("huge id", LookupError, lambda: app.invocation("z" * 100_000).status),
        ("unknown task", LookupError, lambda: app.get_task("no.such.task")),
    ]  # fmt: skip


@pytest.mark.parametrize("kind", sorted(SHARED_URLS))
@pytest.mark.timeout(240)
def test_a_flood_of_bad_input_gets_clear_errors_and_good_calls_still_run(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = request.getfixturevalue(SHARED_URLS[kind])
    chaos = Chaos(url, tmp_path / "logs", Fault(), random.Random(0))
    chaos.log_dir.mkdir()
    app = chaosapp.app
    app.configure(url)
    try:
        worker = chaos.spawn()
        good = []
        cases = bad_calls()
        for round in range(ROUNDS):
            for what, error, call in chaos.rng.sample(cases, len(cases)):
                with pytest.raises(error):
                    call()
                    pytest.fail(f"{what}: no error")
            good.append((round, chaosapp.body(round, f"k{round % 3}", 0.0)))
        # Cancel twice: True, then False; the call ends CANCELLED and says so.
        slow = chaosapp.body(-1, "k0", 5.0)
        assert slow.cancel() is True
        assert slow.cancel() is False
        with pytest.raises(InvocationCancelled):
            slow.result(timeout=30)
        # Results the worker cannot store: each call FAILED with the reason (ValueTooLarge is
        # a SerializationError); the worker goes on.
        stored = {k: chaosapp.produce(k) for k in ("object", "huge", "bigint", "deep")}
        for kind_, inv in stored.items():
            with pytest.raises(SerializationError, match=r"produce\(\) re"):
                inv.result(timeout=60)  # raised in the worker, re-raised here as its type
            assert inv.record().status is Status.FAILED, kind_
        # The results of expired calls: their records are gone; asking is a LookupError.
        done = chaosapp.produce("fine")
        assert done.result(timeout=60) == "fine"
        assert app.backend.purge([done.id]) == 1
        with pytest.raises(LookupError):
            done.result(timeout=1)
        with pytest.raises(LookupError):
            app.invocation(done.id).status
        assert done.cancel() is False
        # Good calls all ran, and still do.
        for round, inv in good:
            assert inv.result(timeout=60) == round * 2
        assert chaosapp.body(7, "k1", 0.0).result(timeout=60) == 14
        assert worker.poll() is None, "the worker died"
    finally:
        chaos.teardown()
        app.close()
