"""Tasks of the chaos scenarios. Every body writes a start line, a tick line every
``TICK`` seconds while it works, and an end line (with its invocation id, pid, parent pid,
running key and time) to ``$CHAOS_LOG/<pid>.log``, so the runner can check afterwards that
no two bodies of one call, and no two bodies of one running-limit-1 key, overlapped. A body
killed before its end line (its worker killed, or the worker stopping a call handed back
elsewhere) was last seen alive at its last tick.

The work is counted in ticks, not in wall time: a body frozen with its worker (SIGSTOP)
resumes where it was, like real computation, instead of ending at once on waking."""

from __future__ import annotations

import os
import time

from kubenenc import App, ConcurrencyPolicy, context

app = App("chaos")


def _worker_pid() -> int:
    """The worker process: a body runs in a child that the worker's forkserver forked."""
    with open(f"/proc/{os.getppid()}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def _log(kind: str, key: str) -> None:
    ctx = context.current.get()
    where = os.environ.get("CHAOS_LOG")
    if ctx is None or not where:
        return
    # A worker run with its clock offset (the clock-skew scenario) says by how much, so that
    # every body's times are on one clock for the overlap checks.
    at = time.time() - float(os.environ.get("CHAOS_CLOCK_OFFSET", "0"))
    line = f"{kind} {ctx.invocation_id} {os.getpid()} {_worker_pid()} {key} {at:.6f}\n"
    fd = os.open(os.path.join(where, f"{os.getpid()}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())  # one write per line with O_APPEND: lines never interleave
    finally:
        os.close(fd)


TICK = 0.05
"""Seconds of work between two tick lines."""


@app.task(concurrency=ConcurrencyPolicy(running_limit=1, key=("key",)))
def body(i: int, key: str, seconds: float) -> int:
    _log("S", key)
    try:
        for _ in range(int(seconds / TICK)):
            time.sleep(TICK)
            _log("T", key)
        time.sleep(seconds % TICK)
    finally:
        _log("E", key)
    return i * 2


@app.task
def fan(i: int) -> int:
    """Waits (pauses) on three limited bodies."""
    _log("S", "-")
    try:
        calls = [{"i": i * 10 + k, "key": f"k{(i + k) % 4}", "seconds": 0.03} for k in range(3)]
        return sum(body.parallelize(calls).results())
    finally:
        _log("E", "-")


def expected(task: str, i: int) -> int:
    """What ``task(i, ...)`` returns."""
    return i * 2 if task == "body" else sum((i * 10 + k) * 2 for k in range(3))


@app.task
def produce(kind: str) -> object:
    """Returns a result the worker cannot store (the bad-input scenario)."""
    if kind == "object":
        return object()
    if kind == "huge":
        return "x" * (app.value_limit() + 1)
    if kind == "bigint":
        return 10**5000
    if kind == "deep":
        deep: list[object] = []
        for _ in range(100_000):
            deep = [deep]
        return deep
    return kind


@app.task
def mark(path: str) -> int:
    """Appends this body's pid to ``path`` (tests that a body did or did not start)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return os.getpid()
