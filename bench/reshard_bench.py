"""``kubenenc reshard``: how fast a sharded app's data moves from N shards to M.

    python bench/reshard_bench.py [--calls 20000] [--batch 500] [--repeat 3]

Starts its own loopback Redis Cluster (3 masters, no replicas), stores ``--calls`` keyless
root calls on 3 shards (half PENDING, half SUCCESS), then moves them 3 -> 2 -> 1 -> 3
shards with ``--batch`` invocations per step, and prints, per move, the medians of
``--repeat`` runs: seconds, invocations moved, those that stayed (their shard is a shard of
both layouts), and invocations moved per second. The reshard
runs in this one process (as the command does), so the figure is what one ``kubenenc
reshard`` achieves, client CPU included. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubenenc.ids import WorkerId  # noqa: E402
from kubenenc.records import Outcome, OutcomeKind  # noqa: E402
from kubenenc.testing.helpers import new  # noqa: E402
from kubenenc_redis.reshard import reshard  # noqa: E402
from kubenenc_redis.shards import ShardedBackend  # noqa: E402

from tests.servers.rediscluster import RedisCluster  # noqa: E402

WORKER = WorkerId("bench:1:w")
MOVES = [(3, 2), (2, 1), (1, 3)]


def fill(url: str, calls: int) -> None:
    """``calls`` root calls on 3 shards: the first half finished, the rest PENDING."""
    b = ShardedBackend.from_url(f"{url}&shards=3")
    try:
        for start in range(0, calls, 1000):
            n = min(1000, calls - start)
            b.register([new("f", str(start + k)) for k in range(n)], 1.0)
        done = 0
        while done < calls // 2:
            got = b.claim("default", WORKER, min(500, calls // 2 - done), 2.0)
            b.finish([Outcome(r.id, OutcomeKind.SUCCESS, result="1") for r in got], WORKER, 2.0)
            done += len(got)
    finally:
        b.close()


def one_run(cluster: RedisCluster, calls: int, batch: int) -> list[tuple[float, int, int]]:
    url = f"{cluster.url}?prefix=r{uuid.uuid4().hex[:8]}"
    fill(url, calls)
    out = []
    for before, after in MOVES:
        started = time.perf_counter()
        report = reshard(f"{url}&shards={before}", after, batch=batch)
        out.append((time.perf_counter() - started, report.moved, report.kept))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RedisCluster(Path(tmp), masters=3, replicas=0).start()
        try:
            runs = [one_run(cluster, args.calls, args.batch) for _ in range(args.repeat)]
        finally:
            cluster.stop()
    print(f"{args.calls} invocations, batch {args.batch}, medians of {args.repeat} runs\n")
    print("| move | seconds | moved | stayed (shard in both layouts) | moved per second |")
    print("|---|---:|---:|---:|---:|")
    for k, (before, after) in enumerate(MOVES):
        secs = statistics.median(r[k][0] for r in runs)
        moved = int(statistics.median(r[k][1] for r in runs))
        kept = int(statistics.median(r[k][2] for r in runs))
        print(f"| {before} -> {after} shards | {secs:.2f} | {moved} | {kept} | "
              f"{moved / secs:,.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
