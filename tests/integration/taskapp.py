"""Tasks used by the worker integration tests. Worker subprocesses import this module as
``tests.integration.taskapp:app``; its backend comes from KUBENENC_BACKEND (or
``app.configure`` in-process)."""

from __future__ import annotations

import os
import time

from kubenenc import App, ConcurrencyPolicy, Status

app = App("itest")


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def chain(n: int) -> int:
    """Each level waits on the next: depth n needs n paused waiters."""
    return 0 if n == 0 else chain(n - 1).result() + 1


@app.task
def child(i: int) -> int:
    return i * 2


@app.task
def parent(n: int) -> int:
    """Fan-out to n children, one pause for all of them."""
    return sum(child.parallelize(range(n)).results())


@app.task
def sequential_parent(n: int) -> int:
    """Waits on n children one after the other: n pauses and resumes."""
    return sum(child(i).result() for i in range(n))


@app.task
def ping(n: int) -> int:
    return pong(n).result()


@app.task
def pong(n: int) -> int:
    return ping(n).result()


@app.task(concurrency=ConcurrencyPolicy(registration="dedupe"))
def dd_ping(n: int) -> int:
    return dd_pong(n).result()


@app.task(concurrency=ConcurrencyPolicy(registration="dedupe"))
def dd_pong(n: int) -> int:
    return dd_ping(n).result()


@app.task
def selfwait(n: int) -> int:
    return selfwait(n).result()


@app.task
def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1).result() + fib(n - 2).result()


@app.task
def fire_and_forget(n: int) -> str:
    """Calls itself without waiting: no cycle (the call is not waited on)."""
    if n > 0:
        fire_and_forget(n - 1)
    return "sent"


@app.task(concurrency=ConcurrencyPolicy(running_limit=1, key=("key",)))
def limited(key: str, i: int, pause: float) -> tuple[float, float, int]:
    """Returns (start, end, pid) so a test can check that no two runs overlapped."""
    start = time.time()
    time.sleep(pause)
    return (start, time.time(), os.getpid())


@app.task(concurrency=ConcurrencyPolicy(running_limit=3))
def limited3(i: int, pause: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(pause)
    return (start, time.time())


@app.task
def sleepy(seconds: float, marker: str = "") -> str:
    if marker:
        with open(marker, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return "slept"


@app.task
def waits_on_sleepy(seconds: float) -> str:
    return sleepy(seconds).result()


@app.task(timeout=0.5)
def too_slow() -> str:
    for _ in range(200):
        time.sleep(0.05)
    return "finished"


@app.task(retries=2, retry_on=(IOError,), backoff=0.01)
def flaky(marker: str, fail_times: int) -> int:
    """Fails ``fail_times`` times (counted in a file), then returns the try number."""
    tries = 1
    if os.path.exists(marker):
        with open(marker) as fh:
            tries = int(fh.read()) + 1
    with open(marker, "w") as fh:
        fh.write(str(tries))
    if tries <= fail_times:
        raise OSError(f"try {tries} failed")
    return tries


@app.task(retries=3, retry_on=(IOError,))
def wrong_error() -> None:
    raise ValueError("not retried: not an IOError")


@app.task
async def async_parent(n: int) -> int:
    group = child.parallelize(range(n))
    values = await group.async_results()
    return sum(values) + await async_leaf(1).async_result()


@app.task
async def async_leaf(x: int) -> int:
    return x + 1


@app.task
def own_result() -> int:
    """Waits on its own invocation: refused at once, never a hang."""
    from kubenenc import context

    ctx = context.current.get()
    assert ctx is not None
    value: int = app.invocation(ctx.invocation_id).result()
    return value


@app.task(concurrency=ConcurrencyPolicy(key=("k",), registration="reject"))
def rejecting(k: str) -> str:
    return k


@app.task
def stamped(i: int) -> float:
    """Returns when it started (wall clock), so a test can compare it with a due time."""
    return time.time()


@app.task(concurrency=ConcurrencyPolicy(rate="20/s", key=("key",)))
def rated(key: str, i: int) -> float:
    """At most 20 starts a second per ``key``; returns when it started."""
    return time.time()


@app.task(pool="callbacks")
def third_step(invocation_id: str, value: int) -> int:
    return value + 1


@app.task(pool="callbacks", on_success=third_step)
def second_step(invocation_id: str, value: int) -> int:
    return value + 1


@app.task(on_success=second_step)
def first_step(value: int) -> int:
    return value + 1


@app.task(pool="callbacks", on_status=(first_step, Status.SUCCESS))
def first_step_watched(invocation_id: str, value: int) -> int:
    """A status trigger: called whenever a first_step call succeeds."""
    return value * 100


@app.task(pool="callbacks")
def noted(invocation_id: str, value: object) -> str:
    return invocation_id


@app.task(retries=1, retry_on=(IOError,), backoff=0.01, on_retry=noted, on_failure=noted)
def always_fails() -> None:
    raise OSError("down")


@app.task(on_event="order.paid")
def ship_order(order: int) -> str:
    return f"shipped {order}"


@app.task(on_event="order.paid", event_filter={"currency": "EUR"})
def invoice_order(order: int, amount: float) -> str:
    return f"invoiced {order}: {amount}"


@app.task
async def gather_two(n: int) -> list[int]:
    """Two waits at once inside one call."""
    import asyncio

    return list(await asyncio.gather(child(n).async_result(), async_leaf(n).async_result()))


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@app.task
async def async_raises(kind: str) -> str:
    """Ends by a BaseException that is not an Exception, or one that cannot be printed."""
    import asyncio
    import sys

    if kind == "cancelled":
        raise asyncio.CancelledError()
    if kind == "exit":
        sys.exit(3)
    raise UnprintableError()


@app.task
def sync_raises(kind: str) -> str:
    import sys

    if kind == "exit":
        sys.exit(3)
    if kind == "interrupt":
        raise KeyboardInterrupt()
    raise UnprintableError()


@app.task
def gives_up_waiting(seconds: float, timeout: float) -> str:
    """Waits on a long sleep with a short timeout; reports what the wait raised."""
    from kubenenc.errors import ResultTimeout

    try:
        sleepy(seconds).result(timeout=timeout)
    except ResultTimeout as exc:
        return f"timed out: {exc}"
    return "waited"


@app.task
async def async_gives_up_waiting(seconds: float, timeout: float) -> str:
    from kubenenc.errors import ResultTimeout

    try:
        await sleepy(seconds).async_result(timeout=timeout)
    except ResultTimeout:
        return "timed out"
    return "waited"


@app.task
def note_pid_then_wait(marker: str, seconds: float) -> str:
    """Writes the pid of the process running it, then pauses on a sleep."""
    with open(marker, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return sleepy(seconds).result()


@app.task(timeout=0.3, concurrency=ConcurrencyPolicy(running_limit=1, key=("key",)))
def stubborn(key: str, marker: str, seconds: float) -> str:
    """Catches every Exception (the worker's abort too) and runs on for ``seconds``; writes
    its start and end (monotonic, this process) so a test can check no two overlapped."""
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        try:
            time.sleep(0.01)
        except Exception:  # the point: a body that swallows the abort
            pass
    with open(marker, "a") as fh:
        fh.write(f"{start} {time.monotonic()}\n")
    return "done"
