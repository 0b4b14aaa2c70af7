"""Tasks that local worker processes run in the operator's control-plane tests.

The tests submit invocations of ``tests.operator.optasks.work`` straight into the backend
the operator reads (no import of this module needed there); worker processes started with
``--app tests.operator.optasks:app --backend URL`` run them.
"""

from kubenenc import App

app = App("optest")


@app.task
def work(i: int) -> int:
    return i * 2


@app.task
def slow(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@app.task
def flaky(i: int) -> int:
    """Always fails: how many tries it gets is what its TaskDefinition says."""
    raise ValueError(f"flaky({i}) fails every time")
