"""A task that refers to its concurrency policy by name."""

from kubenenc import App

app = App("named", backend="memory://")


@app.task(concurrency="per-user")
def charge(user: int, amount: int) -> int:
    return amount
