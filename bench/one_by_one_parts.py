"""Where one lone call's time goes: ``noop(i)`` submitted one by one on a private
redis-server, split into parts read from CPU counters, beside the floors of this machine.
Each part is timed alone, in its own loop of --calls (so parts do not add up exactly).

    python bench/one_by_one_parts.py [--calls 3000] [--repeat 3]

Caller CPU per call (``time.process_time``): the SDK's part (options, encoding, the new
invocation: what ``Task._submit`` does before the backend), the Redis plugin's part (the
register arguments and the packed command), one round trip's own cost (a ``PING`` sent and
read on the same kind of connection: two system calls and a reply parse, the floor of any
call that waits for its answer), and the rest (the reply, the handle). Server per call: the
redis-server process's CPU (``/proc``: the command, the event loop, the socket), the
register function's own time (``INFO commandstats`` ``usec_per_call``), the commands inside
it, and the floors: an empty function (``FCALL`` of a one-line library loaded here) and a
``PING``. The issue's targets beside: caller <= 60 µs, server <= 30 µs per call. Medians of
--repeat rounds. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubenenc.task import CallOptions  # noqa: E402
from kubenenc_redis import RedisBackend  # noqa: E402
from kubenenc_redis.link import pack  # noqa: E402

from bench.common import cpu_seconds, redis_rounds  # noqa: E402

EMPTY = "#!lua name=benchfloor\nredis.register_function('bench_empty', function() return 1 end)"


def stats(backend: RedisBackend) -> dict[str, tuple[int, float]]:
    """Per command: (calls, total µs) on the server so far."""
    info = backend._r.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"]))
        for name, v in info.items()
    }


def one_round(url: str, server_pid: int, calls: int) -> dict[str, float]:
    from bench import benchtasks

    benchtasks.app.configure(url)
    task = benchtasks.noop
    backend = benchtasks.app.backend
    assert isinstance(backend, RedisBackend)
    caller, link = backend._caller, backend._caller.link
    for i in range(200):  # warm: the library loaded, options cached, connections made
        task(i)
    link.call("FUNCTION", "LOAD", "REPLACE", EMPTY)
    out: dict[str, float] = {}

    def cpu(name: str, run: Callable[[int], Any]) -> None:
        s0, c0 = cpu_seconds(server_pid), time.process_time()
        for i in range(calls):
            run(i)
        out[name] = (time.process_time() - c0) * 1e6 / calls
        out[f"server_{name}"] = (cpu_seconds(server_pid) - s0) * 1e6 / calls

    fixed = task._fixed(CallOptions())

    def sdk(i: int) -> None:
        fixed = task._fixed(CallOptions())
        task._build_all([task._encode((i,), {}, fixed)], CallOptions(), fixed)

    new = task._build_all([task._encode((1,), {}, fixed)], CallOptions(), fixed)
    head = caller.head("register")

    def plugin(i: int) -> None:
        pack((*head, 1, backend._p, *backend._register_argv(new, time.time())))

    items = [task._build_all([task._encode((i,), {}, fixed)], CallOptions(), fixed)
             for i in range(calls)]  # fmt: skip

    before = stats(backend)
    cpu("total", task)
    after = stats(backend)
    cpu("register", lambda i: backend.register(items[i], time.time()))
    cpu("sdk", sdk)
    cpu("plugin", plugin)
    cpu("ping", lambda i: link.call("PING"))
    cpu("empty", lambda i: link.call("FCALL", "bench_empty", 0))
    final = stats(backend)
    fcall = after["fcall"][1] - before["fcall"][1]
    inner = sum(
        after[k][1] - before.get(k, (0, 0.0))[1] for k in after if k not in ("fcall", "info")
    )
    out["fcall_us"] = fcall / calls
    out["inner_us"] = inner / calls
    out["inner_n"] = (
        sum(after[k][0] - before.get(k, (0, 0.0))[0] for k in after if k not in ("fcall", "info"))
        / calls
    )
    empty = final["fcall"]
    out["empty_us"] = (empty[1] - after["fcall"][1]) / max(1, empty[0] - after["fcall"][0])
    benchtasks.app.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rounds = redis_rounds(
        args.repeat,
        lambda server: one_round(server.url, server.proc.pid, args.calls),
        lambda one: ", ".join(f"{k}={v:.1f}" for k, v in one.items()),
    )
    m = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    rest = m["register"] - m["plugin"] - m["ping"]
    lua = m["fcall_us"] - m["inner_us"]
    print(f"\n{args.calls} lone calls per round, medians of {args.repeat} rounds\n")
    print("| part | µs per call | note |")
    print("|---|---:|---|")
    rows = [
        ("**caller CPU, a lone `noop(i)`**", m["total"], "target <= 60"),
        ("  SDK: options, encoding, the new invocation", m["sdk"], ""),
        ("  `backend.register` of one built call", m["register"], ""),
        ("    plugin: register arguments, packed command", m["plugin"], ""),
        ("    one round trip (a PING: send, receive, parse)", m["ping"], "floor of any call"),
        ("    the rest (the larger write, the reply, waiting)", rest, ""),
        ("  the rest of a call", m["total"] - m["sdk"] - m["register"], ""),
        ("**redis-server CPU per call (/proc)**", m["server_total"], "target <= 30"),
        ("  register function (commandstats)", m["fcall_us"], ""),
        (f"  commands inside it ({m['inner_n']:.1f})", m["inner_us"], ""),
        ("  Lua around them", lua, ""),
        ("  outside the command (event loop, socket)", m["server_total"] - m["fcall_us"], ""),
        ("floor: an empty FCALL, server CPU per call", m["server_empty"], ""),
        ("floor: an empty FCALL, commandstats", m["empty_us"], ""),
        ("floor: a PING, server CPU per call", m["server_ping"], ""),
    ]
    for name, value, note in rows:
        print(f"| {name} | {value:.1f} | {note} |")


if __name__ == "__main__":
    main()
