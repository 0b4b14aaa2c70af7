"""No-op tasks for the benchmarks; the backend comes from KUBENENC_BACKEND."""

from __future__ import annotations

from kubenenc import App, ConcurrencyPolicy, Status

app = App("bench")


@app.task
def noop(i: int) -> int:
    return i


@app.task
def stamped(i: int) -> float:
    """When it started (wall clock): ``bench/delayed_bench.py`` compares it with the due time."""
    import time

    return time.time()


@app.task(concurrency=ConcurrencyPolicy(rate="20/s", key=("key",)))
def rated(key: str, i: int) -> float:
    """At most 20 starts a second per key (``bench/rate_bench.py``)."""
    import time

    return time.time()


@app.task(pool="callbacks")
def noted(invocation_id: str, value: object) -> str:
    """The callback of ``finishing`` (``bench/callback_kill_bench.py``)."""
    return invocation_id


@app.task(on_success=noted)
def finishing(seconds: float) -> float:
    """Sleeps, then succeeds: a worker killed around its end tests the callback's step."""
    import time

    time.sleep(seconds)
    return seconds


@app.task(pool="callbacks", on_status=(finishing, Status.SUCCESS))
def watched(invocation_id: str, value: object) -> str:
    """The status trigger on ``finishing`` (``bench/callback_kill_bench.py``)."""
    return invocation_id
