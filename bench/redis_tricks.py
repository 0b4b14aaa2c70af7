"""What each speed trick of the Redis backend's client side buys: the trick beside the plain
way that gives the same result, in the same process, same run.

    python bench/redis_tricks.py [--repeat 7]

Prints one table of client CPU per operation (µs, the best of --repeat rounds, so a busy
machine stretches it least) and the ratio plain / trick. Each plain way is checked to give
the same text or the same records as the trick before it is timed. The rows from the raw
connection on need ``redis-server`` (a private one on a free loopback port; without it they
are left out); the last ones are the server's time in a script, keys written out as
shipped against key builders defined as Lua functions.
Not a test: nothing is asserted about the times.

A trick that bought too little was dropped, and its row with it: the finish outcomes were
once written by a format string per outcome, 1.2x faster than the encoder call on about
1 µs per outcome, a fraction of a percent of a worker's CPU per task.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from kubenenc.ids import TaskId, new_invocation_ids  # noqa: E402
from kubenenc.records import NewInvocation  # noqa: E402
from kubenenc_redis import keys  # noqa: E402
from kubenenc_redis.link import Link, bulk, command  # noqa: E402
from kubenenc_redis.rows import (  # noqa: E402
    claimed,
    full_record,
    read_rows,
    register_texts,
)
from kubenenc_redis.scripts import SCRIPTS, STEPS, header, lua_file  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def best_us(fn: Callable[[], Any], per: int, repeat: int) -> float:
    """The best of ``repeat`` rounds of CPU time per operation, in µs (``per`` operations
    per call of ``fn``; a round is as many calls as fit in about 0.2 s)."""
    start = time.process_time()
    fn()
    one = max(time.process_time() - start, 1e-6)
    loops = max(1, int(0.2 / one))
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(loops):
            fn()
        best = min(best, (time.process_time() - start) / loops)
    return best / per * 1e6


def _new(n: int) -> list[NewInvocation]:
    return [
        NewInvocation(
            id=id, app="shop", task=TaskId("shop.tasks.noop"), args=f'{{"x":{i}}}',
            call_key=f"shop.tasks.noop#{i}", display=f"noop(x={i})", priority=i % 3,
            running_key="k" if i % 2 else None, running_limit=4 if i % 2 else None,
        )
        for i, id in enumerate(new_invocation_ids(n))
    ]  # fmt: skip


def plain_register(new: list[NewInvocation], now: float) -> tuple[str, list[str]]:
    """:func:`register_texts` as an encoder call per item (lists and dicts)."""
    items = [
        [n.id, n.registration_key or "", n.registration, n.pool, str(n.priority), n.app,
         n.running_key or "", "" if n.running_limit is None else str(n.running_limit),
         n.call_key, n.display, n.parent or "", list(n.depends_on)]
        for n in new
    ]  # fmt: skip
    static = [
        _dumps({
            "id": n.id, "app": n.app, "task": n.task, "args": n.args, "call_key": n.call_key,
            "display": n.display, "pool": n.pool, "priority": n.priority,
            "max_retries": n.max_retries, "timeout": n.timeout, "running_key": n.running_key,
            "running_limit": n.running_limit, "registration_key": n.registration_key,
            "depends_on": list(n.depends_on), "parent": n.parent, "serializer": n.serializer,
            "created_at": float(now),
        })
        for n in new
    ]  # fmt: skip
    return _dumps(items), static


def _rows(n: int) -> tuple[list[str], list[list[Any]]]:
    texts = register_texts(_new(n), 100.25)[1]
    rest = [[0, "SUCCESS", "101.5", "0", "0", "", "0", "0", "1", False] for _ in texts]
    return texts, rest


def claim_texts(n: int) -> tuple[str, str]:
    ds, rest = _rows(n)
    return "[" + ",".join(ds) + "]", _dumps(rest)


def run_claimed(texts: tuple[str, str]) -> list[Any]:
    """What a worker reads of claimed records, through the lazy records."""
    return [(r.task, r.args, r.timeout, r.serializer) for r in claimed(texts)]


def plain_claimed(texts: tuple[str, str]) -> list[Any]:
    """The same, every record built whole."""
    out = []
    for d, row in zip(json.loads(texts[0]), json.loads(texts[1]), strict=True):
        row[0] = d
        r = full_record(row)
        out.append((r.task, r.args, r.timeout, r.serializer))
    return out


def read_texts(n: int) -> tuple[tuple[str, str], list[str]]:
    ds, rest = _rows(n)
    ids = [json.loads(d)["id"] for d in ds]
    return ("\x1e".join(ds), _dumps(rest)), ids


def run_read(texts: tuple[str, str], ids: list[str]) -> list[Any]:
    """What collecting results reads, through ``serializer_of`` and the lazy records."""
    return [(r.status, r.result, r.serializer) for r in read_rows(texts, ids) if r]


def plain_read(texts: tuple[str, str], ids: list[str]) -> list[Any]:
    """The same, each ``d`` parsed and the record built whole."""
    out = []
    for d, row in zip(texts[0].split("\x1e"), json.loads(texts[1]), strict=True):
        row[0] = json.loads(d)
        r = full_record(row)
        out.append((r.status, r.result, r.serializer))
    return out


def local_rows(repeat: int) -> list[tuple[str, float, float]]:
    """The tricks that need no server: (what, trick µs, plain µs)."""
    out = []
    new = _new(500)
    assert register_texts(new, 1.5) == plain_register(new, 1.5)
    out.append(("register texts, per call (500 per script call)",
                 best_us(lambda: register_texts(new, 1.5), 500, repeat),
                 best_us(lambda: plain_register(new, 1.5), 500, repeat)))  # fmt: skip
    ctexts = claim_texts(16)
    assert run_claimed(ctexts) == plain_claimed(ctexts)
    out.append(("claimed record, what a run reads, per record (16 per claim)",
                best_us(lambda: run_claimed(ctexts), 16, repeat),
                best_us(lambda: plain_claimed(ctexts), 16, repeat)))  # fmt: skip
    rtexts, ids = read_texts(100)
    assert run_read(rtexts, ids) == plain_read(rtexts, ids)
    out.append(("read record, status and result, per record (100 per read)",
                best_us(lambda: run_read(rtexts, ids), 100, repeat),
                best_us(lambda: plain_read(rtexts, ids), 100, repeat)))  # fmt: skip
    conn = redis.Connection()
    wids = new_invocation_ids(1000)
    encoded = [bulk(i) for i in wids]
    head = b"".join(bulk(x) for x in ("EVALSHA", "f" * 40, "1", "{p}", "0", "0", ""))
    argv = ("EVALSHA", "f" * 40, 1, "{p}", "0", "0", "", *wids)
    assert command(head, 7, encoded) == b"".join(conn.pack_command(*argv))
    out.append(("wait_final's open call, ids encoded once, per id (1000 per call)",
                best_us(lambda: command(head, 7, encoded), 1000, repeat),
                best_us(lambda: conn.pack_command(*argv), 1000, repeat)))  # fmt: skip
    return out


def server_rows(repeat: int) -> list[tuple[str, float, float]]:
    """The tricks that need a server: :class:`Link` against redis-py's own client."""
    from tests.servers.redis import RedisServer

    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            client = redis.Redis(port=server.port, decode_responses=True)
            link = Link(client)
            sha = client.script_load("return ARGV[1]")
            assert link.call("EVALSHA", sha, 1, "{p}", "x") == client.evalsha(sha, 1, "{p}", "x")
            evalsha = ("raw connection, one EVALSHA, client CPU per call",
                       best_us(lambda: link.call("EVALSHA", sha, 1, "{p}", "x"), 1, repeat),
                       best_us(lambda: client.evalsha(sha, 1, "{p}", "x"), 1, repeat))  # fmt: skip
            cmds = [("EVALSHA", sha, 1, "{p}", str(i)) for i in range(16)]

            def plain_pipe() -> list[Any]:
                pipe = client.pipeline(transaction=False)
                for c in cmds:
                    pipe.execute_command(*c)
                return pipe.execute()  # type: ignore[no-any-return]

            assert link.calls(cmds) == plain_pipe()
            pipelined = ("raw connection, 16 pipelined EVALSHA, client CPU per command",
                         best_us(lambda: link.calls(cmds), 16, repeat),
                         best_us(plain_pipe, 16, repeat))  # fmt: skip
            scripts = script_rows(client, repeat)
            client.close()
            link.close()
        finally:
            server.stop()
    return [evalsha, pipelined, *scripts]


def with_key_functions(*names: str) -> str:
    """A script as :func:`kubenenc_redis.scripts.build` assembles it, but with the key
    builders defined as Lua functions instead of written out."""
    body = lua_file("lib") + "".join(lua_file(n) for n in names)
    defs = [f"local {k} = P .. ':{v}'\n" for k, v in keys.FIXED.items() if k in body]
    defs += [f"local function {k}(x) return P .. ':{v}:' .. x end\n"
             for k, v in keys.PER.items() if k in body]  # fmt: skip
    defs.append(f"local function k_park(p, k) return P .. ':{keys.PARK}:' .. p .. US .. k end\n")
    return header() + "".join(defs) + body


def script_rows(client: redis.Redis, repeat: int) -> list[tuple[str, float, float]]:
    """Server time per call (in the script, best of ``repeat`` rounds) of short scripts,
    keys written out (as shipped) and as Lua functions."""
    cases = {
        "open": ["0", "0", "", "x"],
        "read": ["0", "0", "", "0", "x"],
        "claim": ["1.0", "60.0", "", "nopool", "w", "16"],
    }
    out = []
    for op, argv in cases.items():
        shas = (client.script_load(SCRIPTS[op]), client.script_load(with_key_functions(*STEPS[op])))
        best = [float("inf"), float("inf")]
        for _ in range(repeat):
            for j, sha in enumerate(shas):
                client.config_resetstat()
                pipe = client.pipeline(transaction=False)
                for _ in range(2000):
                    pipe.evalsha(sha, 1, "{p}", *argv)
                pipe.execute()
                stats = client.info("commandstats")["cmdstat_evalsha"]
                best[j] = min(best[j], float(stats["usec_per_call"]))
        out.append((f"{op} script, keys written out, server µs per call (empty store)", *best))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = local_rows(args.repeat)
    if shutil.which("redis-server"):
        rows += server_rows(args.repeat)
    table = Table(title="Redis backend: each speed trick beside the plain way "
                  f"(client CPU µs, or server µs where said; best of {args.repeat})")  # fmt: skip
    table.add_column("trick")
    table.add_column("trick µs", justify="right")
    table.add_column("plain µs", justify="right")
    table.add_column("plain / trick", justify="right")
    for what, trick, plain in rows:
        table.add_row(what, f"{trick:.2f}", f"{plain:.2f}", f"{plain / trick:.1f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
