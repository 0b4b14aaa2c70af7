"""No-op tasks for the benchmarks; the backend comes from KUBENENC_BACKEND."""

from __future__ import annotations

from kubenenc import App

app = App("bench")


@app.task
def noop(i: int) -> int:
    return i
