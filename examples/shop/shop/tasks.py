"""The shop's tasks: what the worker pods of WorkerPool ``shop-workers`` run.

The same module runs on one machine (embedded SQLite, ``kubenenc worker --app shop.tasks:app
--pool shop-workers``) and on Kubernetes (the WorkerPool in ``k8s/`` runs that command in the
image built from ``Dockerfile``). The backend comes from ``KUBENENC_BACKEND``.

- ``checkout`` prices a cart's lines in parallel (it pauses and gives its slot to the
  children), then charges the customer and waits for the receipt;
- ``charge`` follows the ConcurrencyPolicy ``one-charge-per-customer`` (applied as a
  resource, written into the backend by the operator): never two charges of one customer at
  once; the payment gateway sometimes fails and is retried;
- ``ship`` is submitted with ``depends_on=[checkout]``: it stays WAITING_DEPENDENCIES until
  the checkout succeeded (the TaskDefinition ``ship`` declares the same ``dependsOn``).
"""

from __future__ import annotations

import logging
import os
import random
import time

from kubenenc import App

app = App("shop")
log = logging.getLogger("shop")

POOL = "shop-workers"
"""The WorkerPool whose pods claim these tasks (k8s/workerpool.yaml)."""

PRICES = {"book": 12, "pen": 2, "lamp": 30, "mug": 8}


class GatewayError(ConnectionError):
    """The payment gateway did not answer (retried)."""


@app.task(pool=POOL)
def price(item: str, quantity: int) -> int:
    """The price of one cart line."""
    return PRICES[item] * quantity


@app.task(
    pool=POOL,
    retries=3,
    retry_on=(GatewayError,),
    backoff=0.1,
    max_backoff=2.0,
    concurrency="one-charge-per-customer",
)
def charge(customer_id: int, amount: int, flaky: float = 0.0) -> str:
    """Charge a customer; ``flaky`` is the chance that the gateway fails this try.

    The gateway's key comes from the environment: on Kubernetes the WorkerPool sets
    ``SHOP_GATEWAY_KEY`` from the Secret ``shop-gateway``."""
    key = os.environ.get("SHOP_GATEWAY_KEY", "no-key")
    log.info("charging customer %s: %s (gateway key ...%s)", customer_id, amount, key[-4:])
    time.sleep(0.05)  # the gateway's round trip
    if random.random() < flaky:  # a simulated outage, not cryptography
        raise GatewayError("payment gateway timed out")
    return f"customer {customer_id} charged {amount}"


@app.task(pool=POOL, concurrency="one-checkout-per-order")
def checkout(order_id: str, customer_id: int, cart: list[tuple[str, int]]) -> dict[str, object]:
    """Price the cart's lines in parallel, then charge the total."""
    total = sum(price.parallelize(cart).results())
    log.info("order %s: %d lines, total %d", order_id, len(cart), total)
    receipt = charge(customer_id, total, flaky=0.2).result()
    return {"order": order_id, "total": total, "receipt": receipt}


@app.task(pool=POOL)
def ship(order_id: str, customer_id: int) -> str:
    """Ship an order (submitted to run after its checkout succeeded)."""
    return f"order {order_id} shipped to customer {customer_id}"
