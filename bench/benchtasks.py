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


@app.task
def chain(n: int) -> int:
    """Each level waits on the next: depth ``n`` pauses ``n`` times (``bench/pausing_bench.py``)."""
    return 0 if n == 0 else chain(n - 1).result() + 1


@app.task
def fib(n: int) -> int:
    """Two waits per level, ~2 * fib(n + 1) calls in all (``bench/pausing_bench.py``)."""
    return n if n < 2 else fib(n - 1).result() + fib(n - 2).result()


@app.task(pool="callbacks", on_status=(finishing, Status.SUCCESS))
def watched(invocation_id: str, value: object) -> str:
    """The status trigger on ``finishing`` (``bench/callback_kill_bench.py``)."""
    return invocation_id
