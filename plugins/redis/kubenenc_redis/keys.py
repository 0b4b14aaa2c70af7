"""The Redis key schema, written once: every key the backend keeps, its type, what it holds.

``P`` is the braced prefix ``{prefix}``: the braces make every key of one app hash to the
same Redis Cluster slot, so one script may touch them all. The Lua scripts name these keys
as ``K_RUN``, ``k_inv(id)``, ... and :func:`lua` writes them out when a script is assembled;
the Python side names them through :class:`Keys`. Both are made from the tables below, and
nothing else spells a key.

==========================  ======  ==========================================================
key                         type    what it holds
==========================  ======  ==========================================================
``P:inv:<id>``              hash    one invocation (its fields are in the next table)
``P:q:<pool>``              zset    PENDING invocations that are due, all at score 0 so they
                                    sort by member: ``(99999999-waiters)%08d
                                    (5e11-priority)%012d seq%015d id``, so more waiters, then
                                    higher priority, then older first -- the claim order,
                                    exact at any size
``P:dl:<pool>``             zset    PENDING invocations not due yet (retry back-off), the same
                                    members scored by not_before; a claim moves the due ones
                                    to ``P:q:<pool>``
``P:running``               hash    running key -> slots held
``P:park:<pool> US <key>``  zset    PENDING invocations a claim found blocked by their full
                                    running key, with their queue members; each freed slot of
                                    the key moves the first back to ``P:q:<pool>``
``P:parked:<key>``          set     the pools with invocations parked on ``key``
``P:reg``                   hash    registration key -> id of the invocation holding it
``P:tg:<id>``               set     wait edges: what ``id`` waits on
``P:wt:<id>``               set     wait edges: who waits on ``id``
``P:dep:<id>``              set     invocations that declared ``depends_on`` ``id``
``P:xdep:<id>``             set     ``dependent US shard`` of each invocation of a sharded
                                    app that declared ``depends_on`` ``id`` (through the
                                    cross-shard path, :mod:`kubenenc_redis.depending`)
``P:xst:<id>``              hash    dependency id -> ``open``, ``missing`` or
                                    ``status US display`` once it ended: what dependent
                                    ``id`` knows of its dependencies (cross-shard path)
``P:xout``                  set     ``dependent US shard US id US status US display``: the
                                    dependents still to be told that ``id`` ended (the
                                    cross-shard path's outbox)
``P:hw:<worker>``           set     the RUNNING and PAUSED invocations ``worker`` holds
``P:holders``               set     the workers holding any; recovery looks only at silent
                                    holders' sets, so its cost grows with the number of
                                    workers, not of invocations in flight
``P:beats``                 zset    worker -> time of its last heartbeat: the server's own
                                    clock (``TIME``), or the worker's with ``clock=caller``
``P:live``                  hash    the liveness clock: ``t`` the server time of the last
                                    heartbeat or recovery, ``g`` the gap allowance, ``o`` the
                                    recent outages (gaps in both longer than ``g``) that
                                    recovery does not count as silence (see lua/lib_live.lua)
``P:workers``               hash    worker -> that heartbeat as JSON
``P:counts``                hash    ``app US pool US status US task`` -> exact number of
                                    invocations (``task`` is the call key up to its ``#``)
``P:seq``                   string  the FIFO sequence counter
``P:ix``                    zset    every id by sequence, for ``query`` (newest first)
``P:ix:a:<app>``            zset    the app's ids by sequence
``P:failed``                zset    the FAILED ids by sequence (browsing failures reads no
                                    other invocation)
``P:ch:<id>``               zset    invocations registered from inside ``id`` (its children),
                                    by sequence
``P:fin``                   zset    ``id US app`` of final invocations, by when they ended;
                                    the retention sweep (run by ``recover``) deletes those
                                    older than the retention
``P:done:<id>``             list    one element pushed when ``id`` becomes final; waiters
                                    block on it with ``BLMOVE`` from the list onto itself, so
                                    nobody consumes it
``P:wake:<pool>``           list    a few tokens pushed when invocations become claimable in
                                    ``pool``; an idle worker blocks on it (``wait_for_work``)
                                    instead of polling
``P:rate:<key>``            list    the last N start times of a rate-limited key, newest
                                    first (N of its rate); expires a window after the last
``P:policies``              hash    concurrency policy name -> spec (JSON)
``P:ticks``                 hash    schedule -> the last tick claimed for it (whole seconds;
                                    see ``claim_tick``)
``P:rq:<request>``          string  the reply of a script call, kept two minutes, so that a
                                    call retried after a lost connection is answered again
                                    but applied once
``P:merged``                set     (a sharded app) prefixes of shards removed by a reshard
                                    whose remaining counters were added to this shard's, so
                                    a resumed reshard adds them once
==========================  ======  ==========================================================

The fields of ``P:inv:<id>``. A new record leaves out the empty fields and ``wt``, ``at``,
``lo``, ``nb`` while they are 0: a missing field reads as ``''`` (those four as ``0``).

=====  ==================================================================================
field  what it holds
=====  ==================================================================================
``d``  the JSON of the fields fixed at registration (read by the client, not the scripts)
``s``  status
``u``  updated_at
``w``  worker (``''``: none)
``wt``  waiters (how many invocations wait on this one)
``at``  attempt
``lo``  lost (how many times a silent worker's hold was handed back)
``nb``  not_before
``r``  result
``e``  error, JSON ``[type, message, traceback]``
``sq``  sequence
``m``  its member in the queue sets
``h``  the history, one ``status US at US worker US reason RS`` entry per change (in the
       record, not a key of its own: one write less per transition, one key less per
       invocation)
``hd``  ``'1'`` once another invocation declared ``depends_on`` this one
``wn``  ``'1'`` once someone blocks on its ``P:done:<id>`` (see the open script)
=====  ==================================================================================

and copies of fields of ``d`` the scripts read: ``a`` app, ``p`` pool, ``pr`` priority,
``rk``/``rl`` running key and limit, ``tk``/``tr`` rate key and rate spec (``N/window/burst``),
``gk`` registration key, ``ck`` call key, ``dp`` display, ``pa`` parent, ``dn`` depends_on
(comma separated).

``US`` and ``RS`` are the unit and record separators ``\\x1f`` and ``\\x1e``. Times travel
as Python ``repr`` strings and are stored unchanged, so they read back exactly; Lua compares
them as numbers. Final invocations (and their history) expire ``retention`` seconds after
they end; the counters in ``P:counts`` are kept apart from the records, so counts by status
stay exact.
"""

from __future__ import annotations

import re

from redis.crc import key_slot

US = "\x1f"
"""Separates the parts of one entry (a counter's field, a history entry, a park key)."""
RS = "\x1e"
"""Separates entries (history entries; the ``d`` texts of a read's reply)."""

FIXED: dict[str, str] = {
    "K_RUN": "running",
    "K_REG": "reg",
    "K_HOLDERS": "holders",
    "K_BEATS": "beats",
    "K_LIVE": "live",
    "K_WORKERS": "workers",
    "K_COUNTS": "counts",
    "K_SEQ": "seq",
    "K_IX": "ix",
    "K_FIN": "fin",
    "K_IXF": "failed",
    "K_POLICIES": "policies",
    "K_TICKS": "ticks",
    "K_XOUT": "xout",
    "K_MERGED": "merged",
}
"""The keys without a variable part: the Lua name of each, and the key after ``P:``."""

PER: dict[str, str] = {
    "k_inv": "inv",
    "k_q": "q",
    "k_dl": "dl",
    "k_parked": "parked",
    "k_tg": "tg",
    "k_wt": "wt",
    "k_dep": "dep",
    "k_xdep": "xdep",
    "k_xst": "xst",
    "k_hw": "hw",
    "k_ixa": "ix:a",
    "k_ch": "ch",
    "k_done": "done",
    "k_wake": "wake",
    "k_rq": "rq",
    "k_rate": "rate",
}
"""The keys ``P:<kind>:<part>``: the Lua builder of each (``k_inv(id)``), and its
``<kind>``."""

PARK = "park"
"""``P:park:<pool> US <key>`` (two parts): built by ``k_park(pool, key)`` in Lua."""

_FIXED_USED = re.compile(r"\b(K_[A-Z]+)\b")
_BUILDER = re.compile(r"\b(k_[a-z]+)\(")


def lua(source: str) -> str:
    """``source`` with its keys written out: the fixed keys it uses defined at its top
    (``local K_RUN = P .. ':running'``), and each builder call replaced by the
    concatenation it stands for (``k_tg(r.id)`` becomes ``(P .. ':tg:' .. r.id)``).
    Expects ``P`` and ``US`` defined before it (see :func:`kubenenc_redis.scripts.header`).

    Speed: written out, the builders cost nothing per call; defined as Lua functions, a
    dozen closures would be made on every call of every script (bench/redis_tricks.py).
    """
    used = set(_FIXED_USED.findall(source))
    unknown = used - set(FIXED)
    if unknown:
        raise ValueError(f"unknown fixed keys in Lua: {sorted(unknown)}")
    lines = [f"local {name} = P .. ':{kind}'\n" for name, kind in FIXED.items() if name in used]
    return "".join(lines) + expand(source)


def expand(source: str) -> str:
    """``source`` with every builder call (nested ones too) replaced by its concatenation;
    ValueError for a builder not in :data:`PER` (or ``k_park``) or a wrong argument count."""
    out: list[str] = []
    at = 0
    while (m := _BUILDER.search(source, at)) is not None:
        name = m.group(1)
        args, end = _arguments(source, m.end())
        parts = [expand(a.strip()) for a in args]
        if name == "k_park" and len(parts) == 2:
            key = f"(P .. ':{PARK}:' .. {parts[0]} .. US .. {parts[1]})"
        elif name in PER and len(parts) == 1:
            key = f"(P .. ':{PER[name]}:' .. {parts[0]})"
        else:
            raise ValueError(f"unknown key builder in Lua: {source[m.start() : end]!r}")
        out += [source[at : m.start()], key]
        at = end
    out.append(source[at:])
    return "".join(out)


def _arguments(source: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of a call whose ``(`` ends just before ``start``, and
    where the call ends (after its ``)``). Arguments are Lua expressions without strings
    holding brackets or commas (keys are built from names and indexes)."""
    depth, args, begin = 0, [], start
    for i in range(start, len(source)):
        c = source[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                args.append(source[begin:i])
                return args, i + 1
            depth -= 1
        elif c == "," and depth == 0:
            args.append(source[begin:i])
            begin = i + 1
    raise ValueError(f"unclosed key builder call in Lua at {start}")


class Keys:
    """The keys of one prefix, as the Python side names them."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = "{" + prefix + "}"
        """``P``: the braced prefix, passed to every script as ``KEYS[1]``."""

    def fixed(self, name: str) -> str:
        """The key of ``name`` in :data:`FIXED` (``"K_BEATS"``, ...)."""
        return f"{self.prefix}:{FIXED[name]}"

    def per(self, name: str, part: str) -> str:
        """The key built by ``name`` in :data:`PER` for ``part`` (``"k_done"``, id)."""
        return f"{self.prefix}:{PER[name]}:{part}"

    def park(self, pool: str, key: str) -> str:
        """Where invocations of ``pool`` blocked by running key ``key`` are parked."""
        return f"{self.prefix}:{PARK}:{pool}{US}{key}"


SLOTS = 16384
"""Hash slots of a Redis Cluster."""


def shard_prefix(prefix: str, shard: int, shards: int) -> str:
    """The prefix of shard ``shard`` of ``shards`` (Redis Cluster, see
    :mod:`kubenenc_redis.shards`): ``prefix:shard:salt``, so its keys carry the hash tag
    ``{prefix:shard:salt}``. ``salt`` is the smallest number that puts the tag's slot near
    the middle of the shard's N-th of the slots (within an eighth of a share of it), so on
    a cluster whose M >= N masters split the slots evenly (what ``redis-cli --cluster
    create`` does) the shards land on different masters. Depends only on its arguments:
    the same prefix and N always give the same keys."""
    share = SLOTS / shards
    middle = (shard + 0.5) * share
    low, high = middle - share / 8, middle + share / 8
    salt = 0
    while not low <= key_slot(f"{prefix}:{shard}:{salt}".encode()) < high:
        salt += 1
    return f"{prefix}:{shard}:{salt}"


def coordination_prefix(prefix: str) -> str:
    """The prefix of the coordination slot of a sharded app (``{prefix:c}``): the wait
    graph across shards (see :mod:`kubenenc_redis.crossing`).

    ==========================  ======  ====================================================
    key                         type    what it holds
    ==========================  ======  ====================================================
    ``C:tg:<id>``               set     what waiter ``id`` waits on (every shard's waits)
    ``C:wt:<id>``               set     who waits on ``id``
    ``C:node:<id>``             hash    waiter ``id``: ``ck`` call key, ``dp`` display,
                                        ``at`` when its edges were written
    ``C:waiters``               zset    every waiter with edges, by ``at`` (the sweep)
    ``C:dp:<id>``               set     who declared ``depends_on`` ``id`` (dependents)
    ``C:dd:<id>``               set     what dependent ``id`` declared it depends on
    ``C:dn:<id>``               hash    dependent ``id``: ``dp`` display, ``at`` written
    ``C:dependents``            zset    every dependent with edges, by ``at`` (the sweep)
    ==========================  ======  ====================================================
    """
    return f"{prefix}:c"


def meta_key(prefix: str) -> str:
    """The layout record of a sharded app (``{prefix:meta}``, a hash of its own slot):
    ``shards`` the N its data is spread over, and ``to`` the N a reshard under way moves
    it to (see :mod:`kubenenc_redis.reshard`)."""
    return "{" + prefix + ":meta}"


COORD: dict[str, str] = {
    "k_tg": "tg", "k_wt": "wt", "k_node": "node", "K_WAITERS": "waiters",
    "k_dp": "dp", "k_dd": "dd", "k_dn": "dn", "K_DEPENDENTS": "dependents",
}  # fmt: skip
"""The coordination slot's keys (see :func:`coordination_prefix`): Lua name -> kind."""


def coord_key(braced: str, name: str, part: str = "") -> str:
    """The coordination-slot key ``name`` of :data:`COORD` (``"k_tg"`` with ``part`` an
    id, ``"K_WAITERS"`` without) under the braced prefix ``braced``."""
    kind = COORD[name]
    return f"{braced}:{kind}:{part}" if name.islower() else f"{braced}:{kind}"


def coord_lua(source: str) -> str:
    """``source`` (a coordination-slot script) with ``C`` (its braced prefix, ``KEYS[1]``)
    and its keys written out, as :func:`lua` does for the shards' scripts."""
    head = "local C = KEYS[1]\n" + "".join(
        f"local {n} = C .. ':{k}'\n" for n, k in COORD.items() if n.isupper() and n in source
    )

    def builder(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in COORD:
            raise ValueError(f"unknown coordination key builder in Lua: {name}")
        return f"C .. ':{COORD[name]}:' .. "

    return head + re.sub(r"\b(k_[a-z]+)\(", lambda m: builder(m) + "(", source)


__all__ = [
    "COORD", "FIXED", "PARK", "PER", "RS", "SLOTS", "US", "Keys", "coord_key", "coord_lua",
    "coordination_prefix", "expand", "lua", "meta_key", "shard_prefix",
]  # fmt: skip
