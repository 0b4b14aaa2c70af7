"""The Lua scripts that move invocations, assembled from the ``lua/`` package data.

Every multi-key step of the contract is one script, so it is atomic: Redis runs a script to
the end before serving any other command. The scripts re-express the rules of
:class:`kubenenc.backends.engine.Engine` (the embedded backends' policy) step by step; the
allowed transitions and the error types are generated here from :mod:`kubenenc.status` and
:mod:`kubenenc.errors`, not retyped, and the conformance suite holds both to the same
behaviour. The keys they touch are listed in :mod:`kubenenc_redis.keys`.

A script's source is, in this order: the header built by :func:`header` (the call's
arguments and the constants taken from the SDK), the fixed keys it uses, ``lua/lib.lua``
(the functions every step shares: checked moves, counters, queue entries, finalization),
the step's own library files (``lua/lib_*.lua``, shared by two steps each), and the step's
file ``lua/<step>.lua``; the key builder calls in them (``k_inv(id)``) are written out as
the concatenations they stand for (see :func:`kubenenc_redis.keys.lua`). Each
script defines only what it uses: Redis compiles and runs the whole source on every call,
so a function defined for nothing costs every call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib.resources import files

from kubenenc.backends.engine import error_path
from kubenenc.errors import CycleDetectedError, DependencyFailed, WorkerLost
from kubenenc.status import FINAL, TRANSITIONS, Status

from kubenenc_redis import keys

DONE_TTL = 300
"""Seconds a ``P:done:<id>`` list outlives the moment ``id`` became final. A waiter that
comes later finds the final status in the record and does not block."""

REPLY_TTL = 120
"""Seconds the reply of a script call is kept for a retry of the same request."""

STEPS: dict[str, tuple[str, ...]] = {
    "register": ("lib_register", "register"),
    "claim_tick": ("lib_register", "claim_tick"),
    "claim": ("lib_claim", "claim"),
    "finish": ("lib_finish", "finish"),
    "finish_and_claim": ("lib_finish", "lib_claim", "finish_and_claim"),
    "cancel": ("cancel",),
    "pause": ("lib_walk", "pause"),
    "resume": ("lib_resume", "resume"),
    "resume_early": ("lib_resume", "resume_early"),
    "heartbeat": ("lib_live", "heartbeat"),
    "recover": ("lib_hand_back", "lib_live", "recover"),
    "sweep": ("sweep",),
    "overdue": ("overdue",),
    "release_unheld": ("lib_hand_back", "release_unheld"),
    "read": ("read",),
    "open": ("open",),
    "purge": ("purge",),
    "oldest_pending": ("oldest_pending",),
    "browse": ("browse",),
    "activity": ("activity",),
    "shard_pause": ("shard_pause",),  # the shards' halves of a pause across shards
    "shard_cycle": ("shard_cycle",),  # (kubenenc_redis.crossing)
    "shard_seq": ("shard_seq",),  # sequences comparable across shards
    "shard_boost": ("shard_boost",),
    "shard_depend": ("shard_depend",),  # declared dependencies across shards
    "shard_settle": ("shard_settle",),  # (kubenenc_redis.depending)
    "running_keys": ("running_keys",),
    "move_read": ("move_read",),  # a reshard (kubenenc_redis.reshard)
    "move_in": ("move_in",),
    "move_out": ("move_out",),
    "move_edges": ("move_edges",),
    "merge_counts": ("merge_counts",),
}
"""Each contract operation's script: the ``lua/`` files after ``lib.lua``, in order."""


def _lua_set(names: Iterable[Status]) -> str:
    return "{" + ", ".join(f"{n.value}=true" for n in sorted(names)) + "}"


def _allowed() -> str:
    """Every allowed move as `` SRC>DST `` in one string: looked up with string.find, it
    costs nothing to build on each call (a table of tables would, on every script run)."""
    pairs = (f"{src.value}>{dst.value}" for src, dsts in TRANSITIONS.items() for dst in dsts)
    return " " + " ".join(sorted(pairs)) + " "


def constants() -> str:
    """The constants every script and the library start with, generated from the SDK."""
    return f"""
local US = '\\31'
local RS = '\\30'
local FINAL = {_lua_set(FINAL)}
local ALLOWED = '{_allowed()}'
local E_DEP = '{error_path(DependencyFailed)}'
local E_CYCLE = '{error_path(CycleDetectedError)}'
local E_LOST = '{error_path(WorkerLost)}'
local DONE_TTL = {DONE_TTL}
local REPLY_TTL = {REPLY_TTL}
"""


STATE = "CD, HOLD, WAKE, HW, FIN, TASK, RATES, NEWS, QUEUED"
"""The per-call state of ``lib.lua``, declared by the header and made new by ``call.lua``."""

ARGS = """P = KEYS[1]
NOW = ARGV[1]
NOWN = tonumber(NOW)
RET = tonumber(ARGV[2])
REQ = ARGV[3]
"""


def header() -> str:
    """The start of every script: the call's arguments (``KEYS[1]`` the braced prefix,
    ``ARGV[1..3]`` the time, the retention and the request id; a step's own arguments
    follow from ``ARGV[4]``), the constants generated from the SDK, and the per-call
    state."""
    return f"{constants()}local P, NOW, NOWN, RET, REQ\n{ARGS}local {STATE}\n"


def lua_file(name: str) -> str:
    """The text of ``lua/<name>.lua``, read from the installed package."""
    return files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


def build(*names: str) -> str:
    """The full source of one script: the header, ``call.lua``, ``lib.lua`` and then
    ``lua/<name>.lua`` for each of ``names``, with their keys written out by
    :func:`kubenenc_redis.keys.lua`."""
    body = lua_file("call") + lua_file("lib") + "".join(lua_file(n) for n in names)
    return header() + keys.lua(body)


def library() -> tuple[str, dict[str, str]]:
    """Every step as one Redis function library (Redis >= 7, ``FUNCTION LOAD``): its
    source, and the function name of each step.

    ``lib.lua`` and the step libraries are defined once, when the library is loaded, so a
    call no longer makes their dozens of closures (what most of a short script's server
    time went to); they keep the call's arguments, its fixed keys and its per-call state as
    upvalues, which ``begin`` sets at the start of every call (Redis runs one function at a
    time, so no two calls share them). Each step's file is the body of its function. The
    library and function names carry a hash of the source, so servers shared by several
    versions hold one library per version and none replaces another's.
    """
    shared = sorted({n for names in STEPS.values() for n in names[:-1]})
    fixed = sorted(keys.FIXED)
    body = lua_file("lib") + "".join(lua_file(n) for n in shared)
    steps = {op: keys.expand(lua_file(names[-1])) for op, names in STEPS.items()}
    set_keys = "".join(f"{k} = P .. ':{keys.FIXED[k]}'\n" for k in fixed)
    begin = (
        "local function begin(KEYS, ARGV)\n" + ARGS + set_keys
        + keys.expand(lua_file("call")) + "end\n"
    )  # fmt: skip
    head = (
        constants() + "local P, NOW, NOWN, RET, REQ\n" + f"local {STATE}\n"
        + f"local {', '.join(fixed)}\n"
    )  # fmt: skip
    source = head + keys.expand(body) + begin
    digest = hashlib.sha256((source + repr(steps)).encode()).hexdigest()[:12]
    names = {op: f"kubenenc_{digest}_{op}" for op in STEPS}
    for op, text in steps.items():
        source += (
            f"redis.register_function('{names[op]}', function(KEYS, ARGV)\n"
            "local replay = begin(KEYS, ARGV)\nif replay then return replay end\n"
            f"{text}\nend)\n"
        )
    return f"#!lua name=kubenenc_{digest}\n{source}", names


SCRIPTS: dict[str, str] = {op: build(*names) for op, names in STEPS.items()}
"""Every script, by the contract operation it implements (Redis < 7 runs these)."""

LIBRARY, FUNCTIONS = library()
"""The function library (Redis >= 7) and the function name of each operation."""

__all__ = [
    "DONE_TTL", "FUNCTIONS", "LIBRARY", "REPLY_TTL", "SCRIPTS", "STEPS", "build", "constants",
    "header", "library", "lua_file",
]  # fmt: skip
