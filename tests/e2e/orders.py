"""Submit shop orders to a cluster's backend from outside it, and check what the workers did.

Used by tests/e2e/steps.sh (through a port-forward to the bundled Redis); needs kubenenc with
the Redis plugin and examples/shop on the import path (it adds it)::

    python tests/e2e/orders.py --backend redis://:PW@127.0.0.1:PORT/0 submit --orders 200 --prefix a
    python tests/e2e/orders.py --backend ... policy      # no two charges of a customer overlapped
    python tests/e2e/orders.py --backend ... lost        # how many invocations were handed back
    python tests/e2e/orders.py --backend ... retries shop.tasks.charge 10   # wait for a ktd change

``submit`` prints ``ORDERS ok=N of=N`` and exits 1 unless every order's checkout total, charge
receipt and shipping note are exactly what its cart makes. ``policy`` reads every ``charge``
invocation's recorded history (each RUNNING interval: from its RUNNING transition to the
next one) and exits 1 when two intervals of one customer overlap by more than ``SKEW``: the
policy ``one-charge-per-customer`` allows one running charge per customer. Output lines
starting with an upper-case word are the ones steps.sh greps.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"

SKEW = 0.025
"""Seconds of apparent overlap not counted. A transition's time is the one its worker read
just before sending the call, not the moment the backend ran it: a claim read at t and run
right after another worker's finish read at t + 2 ms looks like a 2 ms overlap (seen on the
e2e node: 1-2 ms). A real second charge of a customer would overlap by about the task's own
run (its 50 ms gateway sleep), far above this."""


def _app(backend: str):  # type: ignore[no-untyped-def]  # the shop module is not typed here
    os.environ["KUBENENC_BACKEND"] = backend
    sys.path.insert(0, str(SHOP))
    import shop.tasks

    return shop.tasks


def submit(backend: str, orders: int, prefix: str, customers: int, timeout: float) -> int:
    """Submit ``orders`` orders and check every result; 0 when all are right."""
    tasks = _app(backend)
    rng = random.Random(prefix)
    started = time.monotonic()
    placed = []
    for n in range(orders):
        order_id = f"{prefix}-{n:04d}"
        customer = n % customers
        cart = [(item, rng.randint(1, 3)) for item in rng.sample(sorted(tasks.PRICES), 2)]
        total = sum(tasks.PRICES[item] * qty for item, qty in cart)
        paid = tasks.checkout(order_id, customer, cart)
        shipped = tasks.ship.with_options(depends_on=[paid])(order_id, customer)
        placed.append((order_id, customer, total, paid, shipped))
    print(f"SUBMITTED {orders} orders in {time.monotonic() - started:.2f} s")
    deadline = started + timeout
    ok = 0
    for order_id, customer, total, paid, shipped in placed:
        try:
            summary = paid.result(timeout=max(deadline - time.monotonic(), 0.1))
            note = shipped.result(timeout=max(deadline - time.monotonic(), 0.1))
        except Exception as exc:  # report every order's fate, fail at the end
            print(f"{order_id}: {type(exc).__name__}: {exc}")
            continue
        want = {
            "order": order_id,
            "total": total,
            "receipt": f"customer {customer} charged {total}",
        }
        want_note = f"order {order_id} shipped to customer {customer}"
        if summary != want or note != want_note:
            print(f"{order_id}: WRONG {summary!r} {note!r}, want {want!r} {want_note!r}")
            continue
        ok += 1
    print(f"ORDERS ok={ok} of={orders} in {time.monotonic() - started:.2f} s")
    return 0 if ok == orders else 1


def policy(backend: str) -> int:
    """Check that no two charges of one customer ever ran at the same time."""
    tasks = _app(backend)
    be = tasks.app.backend
    records = be.query(app="shop", task="shop.tasks.charge", limit=1_000_000)
    by_customer: dict[int, list[tuple[float, float, str]]] = defaultdict(list)
    runs = 0
    for light in records:
        rec = be.get(light.id)
        if rec is None:
            continue
        customer = json.loads(rec.args)["customer_id"]
        history = sorted(rec.history, key=lambda t: t.at)
        for i, step in enumerate(history):
            if step.status.value != "RUNNING":
                continue
            after = history[i + 1] if i + 1 < len(history) else None
            end = after.at if after is not None else float("inf")
            then = after.status.value if after else "-"
            how = f"{step.worker} {step.at:.3f}-{end:.3f} then {then}"
            by_customer[customer].append((step.at, end, f"{rec.id} [{how}]"))
            runs += 1
    overlaps = skewed = 0
    for customer, spans in by_customer.items():
        spans.sort()
        for (_, end, a), (start, _, b) in itertools.pairwise(spans):
            if start >= end:
                continue
            if end - start <= SKEW:
                skewed += 1
                continue
            overlaps += 1
            print(f"customer {customer}: charge {b} started before charge {a} ended")
    print(f"POLICY charges={len(records)} runs={runs} overlaps={overlaps} within_skew={skewed}")
    return 0 if overlaps == 0 and runs > 0 else 1


def retries(backend: str, task: str, want: int, timeout: float = 60) -> int:
    """Wait until the operator has stored ``retries: want`` for ``task`` (from its
    TaskDefinition) in the backend's policy store, where workers read it."""
    from kubenenc.task_defaults import TASK_PREFIX

    tasks = _app(backend)
    deadline = time.monotonic() + timeout
    stored: dict[str, object] = {}
    while time.monotonic() < deadline:
        for name, spec in tasks.app.backend.policies().items():
            if name.endswith(f"{TASK_PREFIX}{task}"):
                stored = json.loads(spec)
                if stored.get("retries") == want:
                    print(f"RETRIES {name} {want}")
                    return 0
        time.sleep(0.5)
    print(f"RETRIES for {task} never became {want} (last stored: {stored})")
    return 1


def lost(backend: str) -> int:
    """Print how many shop invocations a dead worker's hold was handed back from."""
    tasks = _app(backend)
    be = tasks.app.backend
    handed_back = 0
    for task in ("checkout", "price", "charge", "ship"):
        for rec in be.query(app="shop", task=f"shop.tasks.{task}", limit=1_000_000):
            handed_back += rec.lost > 0
    print(f"LOST handed_back={handed_back}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", required=True, help="backend URL (redis://...)")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit")
    s.add_argument("--orders", type=int, default=200)
    s.add_argument("--prefix", default="order")
    s.add_argument("--customers", type=int, default=5)
    s.add_argument("--timeout", type=float, default=600)
    sub.add_parser("policy")
    sub.add_parser("lost")
    r = sub.add_parser("retries")
    r.add_argument("task", help="the task id (module.function)")
    r.add_argument("want", type=int)
    args = parser.parse_args()
    if args.command == "submit":
        return submit(args.backend, args.orders, args.prefix, args.customers, args.timeout)
    if args.command == "policy":
        return policy(args.backend)
    if args.command == "retries":
        return retries(args.backend, args.task, args.want)
    return lost(args.backend)


if __name__ == "__main__":
    sys.exit(main())
