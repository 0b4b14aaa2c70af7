"""Tasks for the browser tests: a demo-like shop whose parent waits on children that hold
until the test opens a gate, charges limited to one at a time per customer (they hold until
the gate too), a refused loop, and a pool no worker serves (calls stay pending).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from kubenenc import App, ConcurrencyPolicy

app = App("dash-shop", backend=os.environ.get("KUBENENC_BACKEND"))


def _wait_for_gate() -> None:
    gate = Path(os.environ["DASHBOARD_TEST_GATE"])
    deadline = time.time() + 60
    while not gate.exists() and time.time() < deadline:
        time.sleep(0.05)


@app.task
def price(item: str) -> int:
    """Hold until the gate file exists (the test creates it), then price the item."""
    _wait_for_gate()
    return len(item)


@app.task(concurrency=ConcurrencyPolicy(running_limit=1, key=("customer",)))
def charge(customer: str, amount: int) -> int:
    """One running charge per customer; holds until the gate like ``price``."""
    _wait_for_gate()
    return amount


@app.task
def order(order_id: int, items: list[str]) -> int:
    """Price every item in parallel: pauses while its children run."""
    return sum(price.parallelize([(i,) for i in items]).results())


@app.task
def quick(n: int) -> int:
    """Done at once."""
    return n * 2


@app.task
def broken(n: int) -> int:
    """Always fails."""
    raise ValueError(f"broken {n}")


@app.task
def recommend(product: str) -> str:
    """Waits on ``related``, which waits on ``recommend`` again: a refused loop."""
    return related(product).result()


@app.task
def related(product: str) -> str:
    return recommend(product).result()


@app.task(pool="nobody")
def parked(n: int) -> int:
    """In a pool no worker serves: stays PENDING (something to cancel)."""
    return n
