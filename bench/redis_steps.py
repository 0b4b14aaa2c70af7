"""The server's time per step of the Redis backend: each step called one by one, as a lone
call makes it, run as a Redis function (``FCALL``, Redis >= 7) and as a script
(``EVALSHA``, what Redis 6.2 runs), alternating rounds on one private server in one run.

    python bench/redis_steps.py [--calls 2000] [--repeat 3]

Prints, per step, the server's own ``usec_per_call`` (``INFO commandstats``: the time inside
the command, which a loaded machine stretches least) and the client's CPU per call, the
median of --repeat rounds of each way. Steps: ``register`` (one call), ``claim`` (limit 1,
one pending), ``finish`` (one outcome), ``open`` + ``read`` (what ``result()`` sends).
Not a test: nothing is asserted.
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

from kubenenc.records import Outcome, OutcomeKind  # noqa: E402
from kubenenc.testing.helpers import new  # noqa: E402
from kubenenc_redis import RedisBackend  # noqa: E402

from tests.servers.redis import RedisServer  # noqa: E402

STEPS = ("register", "claim", "finish", "open", "read")


def server_us(backend: RedisBackend, command: str) -> tuple[int, float]:
    """Calls and total µs of ``command`` on the server so far."""
    stats = backend._r.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)), float(stats.get("usec", 0))


def one_round(url: str, functions: bool, calls: int) -> dict[str, tuple[float, float]]:
    """Per step: (server µs per call, client CPU µs per call), ``calls`` of each one by
    one on a fresh prefix."""
    backend = RedisBackend.from_url(f"{url}?prefix=b{uuid.uuid4().hex[:8]}")
    command = "fcall" if functions else "evalsha"
    try:
        backend.register([new("warm")], 1.0)  # loads the library or the scripts
        backend._caller.functions = functions
        out: dict[str, tuple[float, float]] = {}
        items = [new("f", str(i)) for i in range(calls)]
        worker = "bench:1:w"
        ids: list[str] = []

        def timed(step: str, run: object) -> None:
            n0, u0 = server_us(backend, command)
            c0 = time.process_time()
            run()  # type: ignore[operator]
            cpu = (time.process_time() - c0) * 1e6
            n1, u1 = server_us(backend, command)
            out[step] = ((u1 - u0) / max(n1 - n0, 1), cpu / calls)

        timed("register", lambda: ids.extend(backend.register([it], 2.0)[0].id for it in items))
        backend.claim("default", worker, 1, 2.5)  # the warm-up call
        timed("claim", lambda: [backend.claim("default", worker, 1, 3.0) for _ in range(calls)])
        timed("finish", lambda: [
            backend.finish([Outcome(id, OutcomeKind.SUCCESS, "0")], worker, 4.0)  # type: ignore[arg-type]
            for id in ids[1:]
        ])  # fmt: skip
        timed("open", lambda: [backend._open([id]) for id in ids])  # type: ignore[list-item]
        timed("read", lambda: [backend._read([id], history=True) for id in ids])
        return out
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            rounds: dict[bool, list[dict[str, tuple[float, float]]]] = {True: [], False: []}
            for _ in range(args.repeat):
                for functions in (False, True):  # alternating, same window
                    rounds[functions].append(one_round(server.url, functions, args.calls))
        finally:
            server.stop()
    print(f"{args.calls} calls one by one per step, medians of {args.repeat} rounds each way")
    print("| step | EVALSHA server µs | FCALL server µs | script / function | "
          "EVALSHA client CPU µs | FCALL client CPU µs |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for step in STEPS:
        s = {f: statistics.median(r[step][0] for r in rounds[f]) for f in (False, True)}
        c = {f: statistics.median(r[step][1] for r in rounds[f]) for f in (False, True)}
        print(f"| {step} | {s[False]:.1f} | {s[True]:.1f} | {s[False] / s[True]:.1f}x | "
              f"{c[False]:.0f} | {c[True]:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
