"""The demo's tasks: a small shop that prices, charges and ships orders.

It shows, in one run: fan-out/fan-in with a paused parent (``process_order`` waits on its
``price_item`` children without holding a slot), a concurrency policy (one ``charge`` at a time
per customer, across every worker), a retried failure (the payment gateway times out once per
order), and a refused cycle (``recommend`` -> ``related`` -> ``recommend`` of the same product).
"""

from __future__ import annotations

import os
import time

from kubenenc import App, ConcurrencyPolicy

app = App("kubenenc-demo", backend=os.environ.get("KUBENENC_DEMO_BACKEND"))

PRICES = {"book": 12, "lamp": 30, "mug": 8, "chair": 95, "pen": 2}


@app.task
def price_item(item: str, quantity: int) -> int:
    """Price one line of an order (a little work, like a catalogue lookup)."""
    time.sleep(0.02)
    return PRICES[item] * quantity


@app.task(
    retries=2,
    retry_on=(TimeoutError,),
    backoff=0.05,
    concurrency=ConcurrencyPolicy(running_limit=1, key=("customer",)),
)
def charge(customer: str, order_id: int, amount: int, attempt_marker: str) -> dict[str, float]:
    """Charge a customer; the gateway times out on the first try of every third order.

    Returns when the charge started and ended, so the demo can show that no two charges of
    one customer overlapped.
    """
    started = time.time()
    marker = f"{attempt_marker}.{order_id}"
    if order_id % 3 == 0 and not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write("tried once\n")
        raise TimeoutError(f"payment gateway timed out for order {order_id}")
    time.sleep(0.05)
    return {"started": started, "ended": time.time(), "amount": amount}


@app.task
def ship(order_id: int) -> str:
    """Book a parcel."""
    time.sleep(0.01)
    return f"parcel-{order_id:04d}"


@app.task
def process_order(
    order_id: int, customer: str, lines: list[tuple[str, int]], marker: str
) -> dict[str, object]:
    """Price every line in parallel, charge the total, ship: the parent pauses twice."""
    total = sum(price_item.parallelize(lines).results())
    receipt = charge(customer, order_id, total, marker).result()
    parcel = ship(order_id).result()
    return {"order": order_id, "customer": customer, "total": total, "parcel": parcel,
            "charged": receipt}  # fmt: skip


@app.task
def recommend(product: str) -> list[str]:
    """Recommend products related to ``product``... by asking ``related``, which asks us."""
    return related(product).result()


@app.task
def related(product: str) -> list[str]:
    """A buggy helper that calls ``recommend`` of the same product: a loop."""
    return recommend(product).result()
