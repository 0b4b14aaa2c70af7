"""Check the dashboard the chart runs on real pods against the cluster's own backend.

Used by tests/e2e/steps.sh after the orders: the dashboard pod (``dashboard.enabled``) is
reached through a ``kubectl port-forward`` to its Service, the backend through the one to the
bundled Redis. Every check compares a page with what the backend or the API server says::

    python tests/e2e/dashboard_check.py --backend redis://... --url http://127.0.0.1:PORT \
        --pods shop-workers-abc-x,shop-workers-abc-y --namespace shop

- ``/healthz`` answers ``ok``;
- the overview's counts by status equal the backend's (read before and after the page, so a
  change in between is retried, not miscounted);
- the list filtered to one order's ``checkout`` shows exactly the invocation the backend
  has for it, and its page shows SUCCESS, the order's arguments and the worker pod that ran
  it (a worker id starts with its pod's name);
- the Workers page lists every live worker of the backend, the running limits, and the
  cluster's WorkerPool (with the scaling decisions its status holds), TaskDefinitions and
  ConcurrencyPolicies (read by the dashboard's own service account), with no kind it could
  not list.

Prints ``DASHBOARD ok`` and exits 0, or prints what differed and exits 1. Output lines
starting with an upper-case word are the ones steps.sh greps.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import time
import urllib.request

from kubenenc.backends.browse import Browse, InvocationFilter
from kubenenc.backends.contract import Backend
from kubenenc.backends.registry import open_backend
from kubenenc.status import Status


def fetch(url: str, path: str) -> str:
    """The body of ``GET url+path`` (an HTTP error raises)."""
    with urllib.request.urlopen(url + path, timeout=30) as reply:
        return str(reply.read().decode("utf-8"))


def page_counts(html: str) -> dict[str, int]:
    """The overview's numbers by status (``TOTAL`` too), from their ``data-status`` spans."""
    found = re.findall(r'data-status="([A-Z_]+)">(\d+)<', html)
    return {status: int(n) for status, n in found}


def check_counts(backend: Backend, url: str) -> list[str]:
    """The overview's counts by status equal the backend's (unchanged around the read)."""
    for _ in range(10):
        before = {s.value: n for s, n in backend.counts().items() if n}
        shown = page_counts(fetch(url, "/"))
        after = {s.value: n for s, n in backend.counts().items() if n}
        if before == after:
            break
        time.sleep(1)
    want = {k: v for k, v in {**after, "TOTAL": sum(after.values())}.items() if v}
    got = {k: v for k, v in shown.items() if v}
    print(f"COUNTS page={got} backend={want}")
    problems = [] if got == want else [f"overview counts {got} != backend's {want}"]
    if want.get(Status.SUCCESS.value, 0) == 0:
        problems.append("the backend holds no successful calls: nothing real was shown")
    return problems


def check_order(backend: Backend, url: str, order: str) -> list[str]:
    """The list filtered to ``order``'s checkout shows the backend's one invocation, and its
    page shows SUCCESS, the order and the worker (pod) that ran it."""
    assert isinstance(backend, Browse)
    where = InvocationFilter(task="shop.tasks.checkout", text=order)
    expected = backend.browse(where, limit=5, budget=100_000).items
    path: str | None = f"/invocations?task=shop.tasks.checkout&text={order}"
    ids: list[str] = []
    for _ in range(20):  # a page looks at a bounded window: follow the "older" links
        if path is None:
            break
        listed = fetch(url, path)
        ids += re.findall(r'<tr data-id="([^"]+)">', listed)
        more = re.search(r'<a href="([^"]+)" id="next">', listed)
        path = html.unescape(more.group(1)) if more else None
    if len(expected) != 1 or ids != [expected[0].id]:
        return [f"list for {order}: page {ids}, backend {[r.id for r in expected]}"]
    rec = backend.get(expected[0].id) or expected[0]
    detail = fetch(url, f"/invocations/{rec.id}")
    ran_on = [h.worker for h in rec.history if h.worker]
    checks = {
        "status SUCCESS": "SUCCESS" in detail,
        f"the order {order}": order in detail,
        f"its worker {ran_on[:1]}": bool(ran_on) and ran_on[0] in detail,
    }
    print(f"INVOCATION {rec.id} {rec.display[:60]} ran on {ran_on[:1]}")
    missing = [what for what, ok in checks.items() if not ok]
    return [f"/invocations/{rec.id} lacks {missing}"] if missing else []


def check_workers(backend: Backend, url: str, pods: list[str], ns: str, scalings: int) -> list[str]:
    """The Workers page lists every live worker (some in the pool's pods), the custom
    resources of the shop, the running limits, and the pool's ``scalings`` scaling
    decisions that its status holds."""
    page = fetch(url, "/workers")
    live = [w.id for w in backend.workers()]
    problems = []
    absent = [w for w in live if w not in page]
    if absent or not live:
        problems.append(f"/workers lacks live workers {absent} (backend has {live})")
    on_pods = [w for w in live if any(w.startswith(p + ":") for p in pods)]
    if not on_pods:
        problems.append(f"no live worker runs in a pool pod ({live} vs {pods})")
    for plural, name in (
        ("workerpools", "shop-workers"), ("taskdefinitions", "charge"),
        ("concurrencypolicies", "one-charge-per-customer"),
    ):  # fmt: skip
        if f'id="k8s-error-{plural}"' in page:
            problems.append(f"the dashboard could not list {plural}")
        elif f'data-name="{ns}/{name}"' not in page:
            problems.append(f"/workers does not show {plural} {ns}/{name}")
    if 'id="running-keys"' not in page or "running now" not in page:
        problems.append("/workers shows no running limits (table or policies' running now)")
    if scalings and f"scaling history ({scalings})" not in page:
        problems.append(f"/workers does not show the pool's {scalings} scaling decisions")
    print(f"WORKERS live={len(live)} in pool pods={len(on_pods)} scalings={scalings}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pods", required=True, help="the pool's pod names, comma separated")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--order", default="outside-0007")
    parser.add_argument("--scalings", type=int, default=0,
                        help="scaling decisions the WorkerPool's status holds")  # fmt: skip
    a = parser.parse_args()
    backend = open_backend(a.backend)
    try:
        problems = [] if fetch(a.url, "/healthz").strip() == "ok" else ["/healthz is not ok"]
        problems += check_counts(backend, a.url)
        problems += check_order(backend, a.url, a.order)
        pods = [p for p in a.pods.split(",") if p]
        problems += check_workers(backend, a.url, pods, a.namespace, a.scalings)
    finally:
        backend.close()
    for p in problems:
        print(f"PROBLEM {p}")
    print("DASHBOARD ok" if not problems else f"DASHBOARD failed ({len(problems)} problems)")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
