"""Dashboard benchmark: server-side render time of every page with 1,000,000 calls in Redis.

    python bench/dashboard_bench.py [--calls 1000000] [--finish 200000] [--repeat 7]

Starts a private redis-server (no persistence) on a free loopback port and fills it through
the backend's own registration (``RedisBackend.register``, which pipelines its script calls):
``--calls`` invocations of eight tasks, registered over the last two hours; then claims and
finishes ``--finish`` of them over the last hour (one in 40 FAILED), pauses a parent on 50
children, stores a refused loop, runs 300 charges limited to one per sku (150 run, 150
wait: the Workers page's running limits) and four worker heartbeats. Then it renders each
page with the dashboard app in this process (Starlette's test client: routing, backend reads
and templates, no network) and prints the median and the slowest of ``--repeat`` renders
beside the target (200 ms). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubenenc.concurrency import ConcurrencyPolicy, running_key  # noqa: E402
from kubenenc.errors import CycleDetectedError  # noqa: E402
from kubenenc.ids import TaskId, WorkerId, new_invocation_ids  # noqa: E402
from kubenenc.records import ErrorInfo, NewInvocation, Outcome, OutcomeKind, WorkerInfo  # noqa: E402
from kubenenc.waitgraph import format_loop  # noqa: E402
from kubenenc_dashboard import DashboardSettings, create_app  # noqa: E402
from kubenenc_redis import RedisBackend  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from tests.servers.redis import RedisServer  # noqa: E402

TASKS = ["price", "charge", "ship", "notify", "invoice", "restock", "audit", "export"]
APP = "bench-shop"
TARGET_MS = 200.0
BATCH = 100_000
CYCLE = f"{CycleDetectedError.__module__}.{CycleDetectedError.__qualname__}"
W = WorkerId("bench:1:w")


def _calls(count: int, start: int) -> list[NewInvocation]:
    out = []
    for n, id in enumerate(new_invocation_ids(count), start):
        task = TASKS[n % len(TASKS)]
        args = f'{{"order":{n},"sku":"sku-{n % 977}"}}'
        out.append(
            NewInvocation(
                id=id, app=APP, task=TaskId(f"shop.{task}"), args=args,
                call_key=f"shop.{task}#{n}", display=f"{task}({n}, 'sku-{n % 977}')",
            )
        )  # fmt: skip
    return out


def fill(b: RedisBackend, calls: int, finish: int, console: Console) -> dict[str, str]:
    """Write the data set; the ids of the pages' subjects."""
    now = time.time()
    started = time.perf_counter()
    batches = max(1, -(-calls // BATCH))
    for i in range(batches):
        count = min(BATCH, calls - i * BATCH)
        b.register(_calls(count, i * BATCH), now - 7200 + 3600 * i / batches)
    took = time.perf_counter() - started
    console.print(f"registered {calls:,} calls in {took:.1f} s ({calls / took:,.0f}/s)")

    started = time.perf_counter()
    done, outcomes = 0, []
    while done < finish:
        at = now - 3600 + 3600 * done / max(finish, 1)
        _, claimed = b.finish_and_claim(outcomes, "default", W, min(1000, finish - done), at)
        if not claimed:
            break
        outcomes = [
            Outcome(r.id, OutcomeKind.FAILED, error=ErrorInfo("builtins.ValueError", "boom"))
            if (done + k) % 40 == 0
            else Outcome(r.id, OutcomeKind.SUCCESS, result="1")
            for k, r in enumerate(claimed)
        ]
        done += len(claimed)
    b.finish(outcomes, W, now - 1)
    took = time.perf_counter() - started
    console.print(f"claimed and finished {done:,} in {took:.1f} s")

    [parent] = _calls(1, calls + 1)
    parent = parent._replace(pool="parents", display="order(42, [50 lines])")
    b.register([parent], now - 60)
    b.claim("parents", W, 1, now - 59)
    children = [c._replace(parent=parent.id, pool="kids") for c in _calls(50, calls + 10)]
    b.register(children, now - 58)
    b.pause(parent.id, W, [c.id for c in children], now - 57)
    [looped] = _calls(1, calls + 100)
    b.register([looped], now - 30)
    lines = ["recommend('lamp')", "related('lamp')", "recommend('lamp')"]
    b.fail(looped.id, CYCLE, format_loop(lines), now - 29)
    # Running limits: 300 charges on 150 keys (one per sku, limit 1): 150 run, 150 wait.
    policy = ConcurrencyPolicy(running_limit=1, key=("sku",))
    charges = []
    for n, id in enumerate(new_invocation_ids(300)):
        tree = {"order": n, "sku": f"sku-{n % 150}"}
        key = running_key(policy, "shop.charge", tree, scope=APP)
        charges.append(NewInvocation(
            id=id, app=APP, task=TaskId("shop.charge"), args=json.dumps(tree),
            call_key=f"shop.charge#c{n}", display=f"charge({n}, 'sku-{n % 150}')",
            pool="charges", running_key=key, running_limit=1,
        ))  # fmt: skip
    b.register(charges, now - 20)
    running = len(b.claim("charges", W, 300, now - 19))
    console.print(f"charges running under a limit of one per sku: {running} of 300")
    for k in range(4):
        b.heartbeat(WorkerInfo(WorkerId(f"bench:{k}:w"), "default", 8, k, 1, time.time(), "h"))
    return {"parent": parent.id, "loop": looped.id, "child": children[0].id}


def pages(client: TestClient, ids: dict[str, str]) -> list[tuple[str, str]]:
    """The pages to time: (label, path); a deep cursor found by paging the list."""
    deep = client.get("/invocations", params={"status": "SUCCESS"}).text
    cursor = deep.split("cursor=", 1)[1].split('"', 1)[0] if "cursor=" in deep else ""
    return [
        ("overview", "/"),
        ("invocations, newest", "/invocations"),
        ("invocations, FAILED", "/invocations?status=FAILED"),
        ("invocations, FAILED of one task", "/invocations?status=FAILED&task=shop.price"),
        ("invocations, argument text", "/invocations?text=sku-42%27"),
        ("invocations, SUCCESS, page 2", f"/invocations?status=SUCCESS&cursor={cursor}"),
        ("invocation, parent of 50", f"/invocations/{ids['parent']}"),
        ("invocation, refused loop", f"/invocations/{ids['loop']}"),
        ("invocation, child", f"/invocations/{ids['child']}"),
        ("workers (and running limits: 150 keys held)", "/workers"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--finish", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            b = RedisBackend.from_url(server.url)
            ids = fill(b, args.calls, args.finish, console)
            memory = b._r.info("memory")["used_memory_human"]
            client = TestClient(create_app(b, DashboardSettings()))
            table = Table(title=f"dashboard pages, {args.calls:,} calls in Redis ({memory})")
            for column in ("page", "median ms", "slowest ms", "target ms", "bytes"):
                table.add_column(column, justify="left" if column == "page" else "right")
            for label, path in pages(client, ids):
                client.get(path)  # warm: templates compiled, scripts loaded
                times, size = [], 0
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - t0) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                    size = len(response.content)
                med = statistics.median(times)
                mark = "" if med < TARGET_MS else " (over)"
                table.add_row(label, f"{med:.1f}{mark}", f"{max(times):.1f}", f"{TARGET_MS:.0f}",
                              f"{size:,}")  # fmt: skip
            console.print(table)
            b.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
