"""Submit orders to the shop and wait for them: ``python submit.py [--orders N]``.

Run it from this folder with ``KUBENENC_BACKEND`` set to the backend the WorkerPool uses (on
Kubernetes: the URL in the pool's Secret, reached e.g. through ``kubectl port-forward``).
Without Kubernetes, ``--store-policies`` writes the ConcurrencyPolicies of
``k8s/policies.yaml`` into the backend first, as the operator does on a cluster (needs
``pip install pyyaml``).

Each order is a ``checkout`` (which fans out ``price`` calls and then a ``charge``) and a
``ship`` submitted with ``depends_on=[checkout]``. The script prints one line per order and
exits 0 when every order was shipped.
"""

# ruff: noqa: T201 - a command-line script: printing is its output

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from kubenenc import ConcurrencyPolicy, Status
from shop.tasks import PRICES, app, checkout, ship

HERE = Path(__file__).resolve().parent


def store_policies(path: Path = HERE / "k8s" / "policies.yaml") -> list[str]:
    """Write the ConcurrencyPolicy resources of ``path`` into the app's backend.

    This is what the operator does for each ConcurrencyPolicy it reconciles: the spec is the
    SDK's ``ConcurrencyPolicy`` model, stored under the resource's name.
    """
    try:
        import yaml
    except ImportError:
        sys.exit("--store-policies reads YAML: pip install pyyaml")
    names = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "ConcurrencyPolicy":
            policy = ConcurrencyPolicy.model_validate(doc.get("spec") or {})
            app.backend.set_policy(doc["metadata"]["name"], policy.model_dump_json())
            names.append(doc["metadata"]["name"])
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10, help="orders to submit (10)")
    parser.add_argument("--customers", type=int, default=3, help="distinct customers (3)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait (120)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the carts")
    parser.add_argument(
        "--store-policies", action="store_true", help="write k8s/policies.yaml to the backend"
    )
    args = parser.parse_args(argv)
    if args.store_policies:
        print("stored policies:", ", ".join(store_policies()))

    rng = random.Random(args.seed)
    started = time.monotonic()
    orders = []
    for n in range(args.orders):
        order_id = f"order-{n:04d}"
        customer = n % args.customers
        cart = [(item, rng.randint(1, 3)) for item in rng.sample(sorted(PRICES), 2)]
        paid = checkout(order_id, customer, cart)
        shipped = ship.with_options(depends_on=[paid])(order_id, customer)
        orders.append((order_id, paid, shipped))
    print(f"submitted {len(orders)} orders in {time.monotonic() - started:.2f} s")

    deadline = started + args.timeout
    failed = 0
    for order_id, paid, shipped in orders:
        remaining = max(deadline - time.monotonic(), 0.1)
        try:
            summary = paid.result(timeout=remaining)
            note = shipped.result(timeout=max(deadline - time.monotonic(), 0.1))
        except Exception as exc:  # print every order's fate, then fail at the end
            failed += 1
            print(f"{order_id}: {type(exc).__name__}: {exc}")
            continue
        print(f"{order_id}: total {summary['total']:>3}, {summary['receipt']}; {note}")
    shipped_ok = sum(1 for _, _, s in orders if s.status is Status.SUCCESS)
    print(f"{shipped_ok}/{len(orders)} orders shipped in {time.monotonic() - started:.2f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
