"""The Redis key schema and the Lua scripts that move invocations, in one place.

Every multi-key step of the contract is one script, so it is atomic: Redis runs a script to
the end before serving any other command. The scripts re-express the rules of
:class:`kubenenc.backends.engine.Engine` (the embedded backends' policy) step by step; the
allowed transitions and the error types are generated from :mod:`kubenenc.status` and
:mod:`kubenenc.errors`, not retyped, and the conformance suite holds both to the same
behaviour.

Key schema (``P`` is ``{prefix}``; the braces make every key of one app hash to the same
Redis Cluster slot):

- ``P:inv:<id>`` (hash): one invocation. ``d`` holds the JSON of the fields fixed at
  registration; the fields the scripts read or change are ``s`` status, ``u`` updated_at,
  ``w`` worker (``""``: none), ``wt`` waiters, ``at`` attempt, ``lo`` lost, ``nb``
  not_before, ``r`` result, ``e`` error (JSON ``[type, message, traceback]``), ``sq``
  sequence, ``m`` its queue member, and copies of ``a`` app, ``p`` pool, ``pr`` priority,
  ``rk``/``rl`` running key/limit, ``gk`` registration key, ``ck`` call key, ``dp`` display,
  ``pa`` parent, ``dn`` depends_on (comma separated), and ``h`` the history: one
  ``status US at US worker US reason RS`` entry per change (in the record, not a key of its
  own: one write less per transition, one key less per invocation). A new record leaves out
  the empty fields and ``wt``/``at``/``lo``/``nb`` while they are 0: a missing field reads
  as ``''`` (those four as ``0``).
- ``P:q:<pool>`` (zset): PENDING invocations that are due, all at score 0 so they sort by
  member, ``(99999999-waiters)%08d (5e11-priority)%012d seq%015d id``: more waiters, then
  higher priority, then older first -- the claim order, exact at any size.
- ``P:dl:<pool>`` (zset): PENDING invocations not due yet (retry back-off), the same members
  scored by not_before; a claim moves the due ones to ``P:q:<pool>``.
- ``P:running`` (hash): running key -> slots held.
- ``P:park:<pool> US <key>`` (zset): PENDING invocations a claim found blocked by their full
  running key, with their queue members; each freed slot of the key moves the first back to
  ``P:q:<pool>``. ``P:parked:<key>`` (set): the pools with invocations parked on ``key``.
- ``P:reg`` (hash): registration key -> id of the invocation holding it.
- ``P:tg:<id>`` / ``P:wt:<id>`` (sets): wait edges, what ``id`` waits on / who waits on it.
- ``P:dep:<id>`` (set): invocations that declared ``depends_on`` ``id``.
- ``P:ch:<id>`` (zset): invocations registered from inside ``id`` (its children), by sequence.
- ``P:hw:<worker>`` (set): the RUNNING and PAUSED invocations ``worker`` holds; ``P:holders``
  (set): the workers holding any. Recovery looks only at silent holders' sets, so its cost
  grows with the number of workers, not of invocations in flight.
- ``P:beats`` (zset): worker -> time of its last heartbeat; ``P:workers`` (hash): worker ->
  that heartbeat as JSON.
- ``P:counts`` (hash): ``app US pool US status US task`` -> exact number of invocations
  (``task`` is the call key up to its ``#``; fields without it come from older versions).
- ``P:seq`` (string): the FIFO sequence counter.
- ``P:ix`` / ``P:ix:a:<app>`` (zsets): ids by sequence, for ``query`` (newest first);
  ``P:ix:failed``: the FAILED ones, for browsing failures without reading the others.
- ``P:fin`` (zset): ``id US app`` of final invocations, by when they ended; the retention
  sweep (run by ``recover``) deletes those older than the retention.
- ``P:done:<id>`` (list): one element pushed when ``id`` becomes final. Waiters block on it
  with ``BLMOVE`` from the list onto itself, so nobody consumes it.
- ``P:wake:<pool>`` (list): a few tokens pushed when invocations become claimable in ``pool``;
  an idle worker blocks on it (``wait_for_work``) instead of polling.
- ``P:policies`` (hash): concurrency policy name -> spec (JSON).
- ``P:rq:<request>`` (string): the reply of a script call, kept two minutes, so that a call
  retried after a lost connection is answered again but applied once.

``US`` and ``RS`` are the unit and record separators ``\\x1f`` and ``\\x1e``. Times travel as
Python ``repr`` strings and are stored unchanged, so they read back exactly; Lua compares
them as numbers.

Final invocations (and their history) expire ``retention`` seconds after they end; the
counters in ``P:counts`` are kept apart from the records, so counts by status stay exact.
"""

from __future__ import annotations

from collections.abc import Iterable

from kubenenc.backends.engine import error_path
from kubenenc.errors import CycleDetectedError, DependencyFailed, WorkerLost
from kubenenc.status import FINAL, TRANSITIONS, Status

DONE_TTL = 300
"""Seconds a ``P:done:<id>`` list outlives the moment ``id`` became final. A waiter that
comes later finds the final status in the record and does not block."""

REPLY_TTL = 120
"""Seconds the reply of a script call is kept for a retry of the same request."""


def _lua_set(names: Iterable[Status]) -> str:
    return "{" + ", ".join(f"{n.value}=true" for n in sorted(names)) + "}"


def _allowed() -> str:
    """Every allowed move as `` SRC>DST `` in one string: looked up with string.find, it
    costs nothing to build on each call (a table of tables would, on every script run)."""
    pairs = (f"{src.value}>{dst.value}" for src, dsts in TRANSITIONS.items() for dst in dsts)
    return " " + " ".join(sorted(pairs)) + " "


def _preamble() -> str:
    return f"""
local P = KEYS[1]
local NOW = ARGV[1]
local NOWN = tonumber(NOW)
local RET = tonumber(ARGV[2])
local REQ = ARGV[3]
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


_COMMON = r"""
local K_RUN = P .. ':running'
local K_REG = P .. ':reg'
local K_HOLDERS = P .. ':holders'
local K_COUNTS = P .. ':counts'
local K_FIN = P .. ':fin'

local function k_inv(id) return P .. ':inv:' .. id end
-- The record's key, built once per record table (``key``): every string built in a script
-- is hashed and interned, so building the same key again costs about as much as a command.
local function kr(r)
  local k = r.key
  if not k then
    k = k_inv(r.id)
    r.key = k
  end
  return k
end

if REQ ~= '' then
  local cached = redis.call('GET', P .. ':rq:' .. REQ)
  if cached then return {'replay', cached} end
end

-- Counter changes and holders are collected during the call and written once at its end.
-- So are the held sets (HW[worker][id]: true added, false removed; the last change wins)
-- and the final index entries (FIN): one command per key instead of one per invocation.
-- Counter changes are nested tables, CD[app][pool][task][status], so a change builds no
-- string; the field names are built once per call, when written.
local CD, HOLD, WAKE, HW, FIN, TASK = {}, {}, {}, {}, {}, {}
local function held(worker, id, yes)
  local t = HW[worker]
  if not t then
    t = {}
    HW[worker] = t
  end
  t[id] = yes
end

local function write_in_bulk(command, key, args)
  for j = 1, #args, 1000 do
    redis.call(command, key, unpack(args, j, math.min(j + 999, #args)))
  end
end
local function count(r, status, n)
  -- The task is the call key up to its '#' (kubenenc.concurrency.call_key builds it so).
  local ck = r.ck
  local task = TASK[ck]
  if not task then
    task = string.match(ck, '^[^#]*')
    TASK[ck] = task
  end
  local t = CD[r.a]
  if not t then
    t = {}
    CD[r.a] = t
  end
  local u = t[r.p]
  if not u then
    u = {}
    t[r.p] = u
  end
  t = u[task]
  if not t then
    t = {}
    u[task] = t
  end
  t[status] = (t[status] or 0) + n
end

local function reply(value, cache)
  for a, pools in pairs(CD) do
    for p, tasks in pairs(pools) do
      for task, by_status in pairs(tasks) do
        for status, n in pairs(by_status) do
          if n ~= 0 then
            redis.call('HINCRBY', K_COUNTS, a .. US .. p .. US .. status .. US .. task, n)
          end
        end
      end
    end
  end
  for w in pairs(HOLD) do redis.call('SADD', K_HOLDERS, w) end
  for w, ids in pairs(HW) do
    local add, rem = {}, {}
    for id, yes in pairs(ids) do
      if yes then add[#add+1] = id else rem[#rem+1] = id end
    end
    write_in_bulk('SREM', P .. ':hw:' .. w, rem)
    write_in_bulk('SADD', P .. ':hw:' .. w, add)
  end
  write_in_bulk('ZADD', K_FIN, FIN)
  for pool, n in pairs(WAKE) do
    local kw = P .. ':wake:' .. pool
    local tokens = {}
    for j = 1, math.min(n, 8) do tokens[j] = '1' end  -- wakes up to 8 idle workers
    redis.call('RPUSH', kw, unpack(tokens))
    redis.call('LTRIM', kw, -64, -1)
  end
  if REQ ~= '' then
    redis.call('SET', P .. ':rq:' .. REQ, cjson.encode(cache or value), 'EX', REPLY_TTL)
  end
  return value
end

-- Fields a new record leaves out while they hold their first value (a smaller write).
local ZERO = {wt = '0', nb = '0', lo = '0', at = '0'}

local F = {'s', 'w', 'a', 'p', 'pr', 'rk', 'rl', 'gk', 'ck', 'dp', 'pa', 'wt', 'nb', 'sq', 'm',
           'dn', 'lo', 'at', 'hd', 'wn', 'h'}

-- The fields the scripts work with, as a table (missing ones as ''); with ``names``, only
-- those (a smaller read where a script needs fewer: every value read becomes a Lua string).
local function load(id, names)
  names = names or F
  local k = k_inv(id)
  local v = redis.call('HMGET', k, unpack(names))
  if not v[1] then return nil end
  local r = {id = id, key = k}
  for i, f in ipairs(names) do r[f] = v[i] or ZERO[f] or '' end
  return r
end

-- A record as the client reads it: {d, s, u, at, lo, w, wt, nb, r, e[, history]}, false for
-- a missing field (see RedisBackend._record); false for a missing record.
local ROW = {'d', 's', 'u', 'at', 'lo', 'w', 'wt', 'nb', 'r', 'e'}
local ROWH = {'d', 's', 'u', 'at', 'lo', 'w', 'wt', 'nb', 'r', 'e', 'h'}
local function row(id, history)
  local v = redis.call('HMGET', k_inv(id), unpack(history and ROWH or ROW))
  if not v[1] then return false end
  return v
end

local function member(r)
  local wt = math.min(tonumber(r.wt), 99999999)
  local pr = math.max(math.min(tonumber(r.pr), 400000000000), -400000000000)
  return string.format('%08d%012d', 99999999 - wt, 500000000000 - pr) .. r.sq .. r.id
end

local function k_park(pool, key) return P .. ':park:' .. pool .. US .. key end

local function dequeue(r)
  if r.m ~= '' then
    redis.call('ZREM', P .. ':q:' .. r.p, r.m)
    redis.call('ZREM', P .. ':dl:' .. r.p, r.m)
    if r.rk ~= '' then redis.call('ZREM', k_park(r.p, r.rk), r.m) end
  end
end

-- The fields a partial load (``load_finish``) leaves out, read on the rare paths that need
-- them: a requeue (the queue member) and a dependent's failure (the display). A field the
-- script set meanwhile is kept.
local function complete(r)
  if r.sq then return end
  local v = redis.call('HMGET', kr(r), 'pr', 'sq', 'wt', 'nb', 'dp')
  r.pr, r.sq, r.wt = r.pr or v[1] or '', v[2] or '', r.wt or v[3] or '0'
  r.nb, r.dp = r.nb or v[4] or '0', r.dp or v[5] or ''
end

local function enqueue(r)
  complete(r)
  r.m = member(r)
  if tonumber(r.nb) > NOWN then
    redis.call('ZADD', P .. ':dl:' .. r.p, r.nb, r.m)
  else
    redis.call('ZADD', P .. ':q:' .. r.p, 0, r.m)
    WAKE[r.p] = (WAKE[r.p] or 0) + 1
  end
  redis.call('HSET', kr(r), 'm', r.m)
end

local function setw(r, w)
  r.w = w
  redis.call('HSET', kr(r), 'w', w)
end

-- One checked transition, recorded in the history and the counters; keeps the queue and
-- the held index in step with the status.
-- ``w``, when given, becomes the record's worker, and the ``extra`` field/value pairs are
-- written, in the same write.
local OK = {}  -- OK[src][dst]: whether ALLOWED has the move, looked up once per call
local function move(r, dst, worker, reason, w, extra)
  local src = r.s
  local by_dst = OK[src]
  if not by_dst then
    by_dst = {}
    OK[src] = by_dst
  end
  local ok = by_dst[dst]
  if ok == nil then
    ok = string.find(ALLOWED, ' ' .. src .. '>' .. dst .. ' ', 1, true) ~= nil
    by_dst[dst] = ok
  end
  if not ok then
    error('InvalidTransition: ' .. src .. ' -> ' .. dst .. ' is not allowed')
  end
  local holder = r.w
  count(r, src, -1)
  count(r, dst, 1)
  r.prev = src
  r.s = dst
  r.h = r.h .. dst .. US .. NOW .. US .. (worker or '') .. US .. (reason or '') .. RS
  local fields = {'s', dst, 'u', NOW, 'h', r.h}
  if w then
    r.w = w
    fields[7], fields[8] = 'w', w
  end
  if extra then
    for _, x in ipairs(extra) do fields[#fields+1] = x end
  end
  redis.call('HSET', kr(r), unpack(fields))
  if src == 'PENDING' then dequeue(r) end
  if dst == 'PENDING' then enqueue(r) end
  if (src == 'RUNNING' or src == 'PAUSED') and holder ~= '' then
    held(holder, r.id, false)
  end
  if dst == 'RUNNING' or dst == 'PAUSED' then
    held(r.w, r.id, true)
    HOLD[r.w] = true
  end
end

local function set_error(r, err)
  if err and err ~= '' then
    redis.call('HSET', kr(r), 'e', err)
  else
    redis.call('HDEL', kr(r), 'e')
  end
end

-- A freed slot of ``key`` puts back, in each pool, the first invocation parked on it.
local function unpark(key)
  local kpools = P .. ':parked:' .. key
  for _, pool in ipairs(redis.call('SMEMBERS', kpools)) do
    local kp = k_park(pool, key)
    local first = redis.call('ZPOPMIN', kp)
    if first[1] then redis.call('ZADD', P .. ':q:' .. pool, 0, first[1]) end
    if redis.call('EXISTS', kp) == 0 then redis.call('SREM', kpools, pool) end
  end
end

local function add_running(key, delta)
  local n = redis.call('HINCRBY', K_RUN, key, delta)
  if n <= 0 then redis.call('HDEL', K_RUN, key) end
  if delta < 0 then unpark(key) end
end

local function release_slot(r)
  if r.s == 'RUNNING' and r.rk ~= '' and r.rl ~= '' then add_running(r.rk, -1) end
end

local function set_waiters(r, n)
  if r.s == 'PENDING' then
    dequeue(r)
    r.wt = tostring(n)
    redis.call('HSET', kr(r), 'wt', n)
    enqueue(r)
  else
    r.wt = tostring(n)
    redis.call('HSET', kr(r), 'wt', n)
  end
end

local function remove_edges(id)
  local tg = P .. ':tg:' .. id
  for _, t in ipairs(redis.call('SMEMBERS', tg)) do
    redis.call('SREM', P .. ':wt:' .. t, id)
  end
  redis.call('DEL', tg)
end

local function err_json(kind, message)
  return cjson.encode({kind, message, ''})
end

local function fail_dependency(r, dep, dep_id)
  local what
  if dep then
    complete(dep)
    what = 'dependency ' .. dep.dp .. ' [' .. dep.id .. '] ended ' .. dep.s
  else
    what = 'dependency ' .. dep_id .. ' does not exist'
  end
  set_error(r, err_json(E_DEP, what))
  move(r, 'FAILED', nil, 'DependencyFailed')
end

local abort

-- Side effects of reaching a final status (the engine's _finalize).
local function finalize(r, cascade, err)
  local k = kr(r)
  if r.w ~= '' then setw(r, '') end
  if r.gk ~= '' and redis.call('HGET', K_REG, r.gk) == r.id then
    redis.call('HDEL', K_REG, r.gk)
  end
  if r.prev == 'PAUSED' then
    for _, tid in ipairs(redis.call('SMEMBERS', P .. ':tg:' .. r.id)) do
      local t = load(tid)
      if t and not FINAL[t.s] then
        local n = math.max(0, tonumber(t.wt) - 1)
        set_waiters(t, n)
        if cascade and t.pa == r.id and n == 0 then
          abort(t, 'FAILED', err, 'CycleDetected', true)
        end
      end
    end
    remove_edges(r.id)
  end
  local kdep, dependents = nil, {}
  if r.hd ~= '' then
    kdep = P .. ':dep:' .. r.id
    dependents = redis.call('SMEMBERS', kdep)
  end
  for _, did in ipairs(dependents) do
    local d = load(did)
    if d and d.s == 'WAITING_DEPENDENCIES' then
      if r.s == 'SUCCESS' then
        local ok = true
        for dep_id in string.gmatch(d.dn, '[^,]+') do
          if dep_id ~= r.id and redis.call('HGET', k_inv(dep_id), 's') ~= 'SUCCESS' then
            ok = false
            break
          end
        end
        if ok then move(d, 'PENDING', nil, 'dependencies succeeded') end
      else
        fail_dependency(d, r)
        finalize(d, false, nil)
      end
    end
  end
  if #dependents > 0 then redis.call('DEL', kdep) end
  FIN[#FIN+1] = NOW
  FIN[#FIN+1] = r.id .. US .. r.a
  if r.s == 'FAILED' then  -- failures by sequence, so browsing them reads no others
    local sq = (r.sq and r.sq ~= '') and r.sq or redis.call('HGET', k, 'sq')
    if sq then redis.call('ZADD', P .. ':ix:failed', sq, r.id) end
  end
  redis.call('EXPIRE', k, math.ceil(RET))
  if r.wn ~= '' then  -- someone blocks on it (see the open script)
    local done = P .. ':done:' .. r.id
    redis.call('RPUSH', done, '1')
    redis.call('EXPIRE', done, DONE_TTL)
  end
end

abort = function(r, dst, err, reason, cascade)
  release_slot(r)
  set_error(r, err)
  move(r, dst, nil, reason)
  finalize(r, cascade, err)
end
"""


REGISTER = r"""
-- ARGV[4]: the items as one JSON array (one argument parses faster on both sides than
-- twelve per item), each [id gk policy pool priority app rk rl ck dp pa [deps...]], every
-- value a string; ARGV[5..]: each item's ``d`` text (apart: JSON in JSON parses slowly).
-- Returns one JSON text, [[kind, id], ...].
local out = {}
local items = cjson.decode(ARGV[4])
local n = #items
local seq = redis.call('INCRBY', P .. ':seq', n) - n
-- Index and queue entries are written in one command per key after the loop (nothing in
-- the loop reads them back).
local IX, IXA, Q = {}, {}, {}
local function later(t, key, score, member)
  local list = t[key]
  if not list then
    list = {}
    t[key] = list
  end
  list[#list+1] = score
  list[#list+1] = member
end
for k = 1, n do
  local it = items[k]
  local id, gk, policy, pool, pr, app = it[1], it[2], it[3], it[4], it[5], it[6]
  local rk, rl, ck, dp, pa, d = it[7], it[8], it[9], it[10], it[11], ARGV[4 + k]
  local deps = it[12]
  local done = false
  if gk ~= '' then
    local holder = redis.call('HGET', K_REG, gk)
    if holder then
      local hs = redis.call('HGET', k_inv(holder), 's')
      if hs and not FINAL[hs] then
        out[#out+1] = {policy == 'reject' and 'rejected' or 'deduplicated', holder}
        done = true
      end
    end
  end
  if not done then
    seq = seq + 1
    local sq = string.format('%015d', seq)
    local r = {id = id, key = k_inv(id), s = 'REGISTERED', w = '', a = app, p = pool, pr = pr,
               rk = rk, rl = rl, gk = gk, ck = ck, dp = dp, pa = pa, wt = '0', nb = '0', sq = sq,
               m = '',
               dn = table.concat(deps, ','), lo = '0', at = '0', hd = '', wn = '', h = ''}
    local waiting = {}
    local broken, broken_id = nil, nil
    for _, dep_id in ipairs(deps) do
      local dep = load(dep_id)
      if not dep or dep.s == 'FAILED' or dep.s == 'CANCELLED' then
        broken, broken_id = dep, dep_id
        break
      end
      if dep.s ~= 'SUCCESS' then waiting[#waiting+1] = dep_id end
    end
    local h0 = 'REGISTERED' .. US .. NOW .. US .. US .. RS
    later(IX, P .. ':ix', sq, id)
    later(IXA, P .. ':ix:a:' .. app, sq, id)
    if pa ~= '' then later(IX, P .. ':ch:' .. pa, sq, id) end  -- children, for browsing
    if broken_id or #waiting > 0 then
      redis.call('HSET', r.key, 'd', d, 's', 'REGISTERED', 'u', NOW, 'w', '', 'a', app,
                 'p', pool, 'pr', pr, 'rk', rk, 'rl', rl, 'gk', gk, 'ck', ck, 'dp', dp,
                 'pa', pa, 'wt', 0, 'at', 0, 'lo', 0, 'nb', '0', 'sq', sq, 'm', '', 'dn', r.dn,
                 'h', h0)
      r.h = h0
      count(r, 'REGISTERED', 1)
      if broken_id then
        fail_dependency(r, broken, broken_id)
        finalize(r, false, nil)
      else
        move(r, 'WAITING_DEPENDENCIES')
        for _, dep_id in ipairs(waiting) do
          redis.call('SADD', P .. ':dep:' .. dep_id, id)
          redis.call('HSET', k_inv(dep_id), 'hd', '1')
        end
      end
    else
      -- The common path, REGISTERED -> PENDING, written in one go.
      r.m = member(r)
      -- Empty fields and those in ZERO are left out: reads take them as '' or ZERO.
      local fields = {'d', d, 's', 'PENDING', 'u', NOW, 'a', app, 'p', pool, 'pr', pr,
                      'ck', ck, 'dp', dp, 'sq', sq, 'm', r.m,
                      'h', h0 .. 'PENDING' .. US .. NOW .. US .. US .. RS}
      if rk ~= '' then fields[#fields+1] = 'rk'; fields[#fields+1] = rk end
      if rl ~= '' then fields[#fields+1] = 'rl'; fields[#fields+1] = rl end
      if gk ~= '' then fields[#fields+1] = 'gk'; fields[#fields+1] = gk end
      if pa ~= '' then fields[#fields+1] = 'pa'; fields[#fields+1] = pa end
      redis.call('HSET', r.key, unpack(fields))
      count(r, 'PENDING', 1)
      later(Q, P .. ':q:' .. pool, 0, r.m)
      WAKE[pool] = (WAKE[pool] or 0) + 1
      r.s = 'PENDING'
    end
    if gk ~= '' and not FINAL[r.s] then redis.call('HSET', K_REG, gk, id) end
    out[#out+1] = {'created', id}
  end
end
for _, t in ipairs({IX, IXA, Q}) do
  for key, list in pairs(t) do
    for j = 1, #list, 1000 do
      redis.call('ZADD', key, unpack(list, j, math.min(j + 999, #list)))
    end
  end
end
return reply(cjson.encode(out))
"""


CLAIM_FN = r"""
-- Only the fields a claim uses (a smaller read: every value read becomes a Lua string):
-- the record as ``load`` gives it, limited to those, and the values read (``d``, ``r``,
-- ``e`` at 13 to 15, false when missing). The table is built by one constructor, sized
-- once, instead of growing field by field.
local CF = {'s', 'w', 'a', 'p', 'rk', 'rl', 'ck', 'wt', 'nb', 'lo', 'at', 'h', 'd', 'r', 'e'}
local function load_claim(id)
  local k = k_inv(id)
  local v = redis.call('HMGET', k, unpack(CF))
  if not v[1] then return nil end
  return {id = id, key = k, m = '', prev = false, s = v[1], w = v[2] or '', a = v[3] or '',
          p = v[4] or '', rk = v[5] or '', rl = v[6] or '', ck = v[7] or '', wt = v[8] or '0',
          nb = v[9] or '0', lo = v[10] or '0', at = v[11] or '0', h = v[12] or ''}, v
end

-- Claim up to ``limit`` of ``pool`` for ``worker``: the ids, the records' ``d`` texts and
-- the rest of their rows for the client (see ``rows_json``).
local function claim_some(pool, worker, limit)
  local kq, kdl = P .. ':q:' .. pool, P .. ':dl:' .. pool
  local due = redis.call('ZRANGEBYSCORE', kdl, '-inf', NOW, 'LIMIT', 0, 1000)
  for _, m in ipairs(due) do
    redis.call('ZREM', kdl, m)
    redis.call('ZADD', kq, 0, m)
  end
  local out, ds, rows = {}, {}, {}
  local full, back = {}, {}
  -- Pop from the head of the queue (score 0: member order, the claim order) as many as are
  -- still wanted; what cannot be taken is parked, put back (not due yet) or dropped (stale).
  while #out < limit do
    local want = limit - #out
    local popped = redis.call('ZPOPMIN', kq, want)
    for j = 1, #popped, 2 do
      local m = popped[j]
      local r, v = load_claim(string.sub(m, 36))
      local take = true
      if not r or r.s ~= 'PENDING' then
        take = false  -- a stale member (should not happen): dropped
      elseif r.nb ~= '0' and tonumber(r.nb) > NOWN then
        back[#back+1] = 0
        back[#back+1] = m
        take = false
      elseif r.rk ~= '' and r.rl ~= '' then
        if full[r.rk] or tonumber(redis.call('HGET', K_RUN, r.rk) or '0') >= tonumber(r.rl) then
          -- Park it until a slot of its key is freed, so that later claims do not read
          -- a long queue behind one busy key again and again. It keeps its member, and
          -- so its place in the claim order.
          full[r.rk] = true
          redis.call('ZADD', k_park(pool, r.rk), 0, m)
          redis.call('SADD', P .. ':parked:' .. r.rk, pool)
          take = false
        else
          add_running(r.rk, 1)
        end
      end
      if take then
        r.m = ''
        move(r, 'RUNNING', worker, nil, worker)
        out[#out+1] = r.id
        ds[#ds+1] = v[13]
        rows[#rows+1] = {0, r.s, NOW, r.at, r.lo, r.w, r.wt, r.nb, v[14], v[15]}
      end
    end
    if #popped < 2 * want then break end
  end
  write_in_bulk('ZADD', kq, back)
  return out, ds, rows
end

-- Rows for the client as two JSON texts (see RedisBackend._rows): the records' own ``d``
-- JSON inlined (not quoted), and the rest of each row with 0 in the place of ``d``. Two
-- encodings per call instead of one per row, and no row text built around ``d``.
local function rows_json(ds, rows)
  return '[' .. table.concat(ds, ',') .. ']', cjson.encode(rows)
end
"""

CLAIM = r"""
-- ARGV[4] pool, ARGV[5] worker, ARGV[6] limit. Returns the rows of the claimed invocations
-- as two JSON texts (see rows_json; history left out), or {} when none; a replayed call,
-- their ids only.
local ids, ds, rows = claim_some(ARGV[4], ARGV[5], tonumber(ARGV[6]))
if #ids == 0 then return reply(ids) end
local dtext, rtext = rows_json(ds, rows)
return reply({dtext, rtext}, ids)
"""


FINISH_FN = r"""
-- ``fields`` plus the error, or the error deleted when there is none.
local function with_error(k, fields, err)
  if err == '' then
    redis.call('HDEL', k, 'e')
  else
    fields[#fields+1] = 'e'
    fields[#fields+1] = err
  end
  return fields
end

-- Store the outcomes of ``worker`` given as a JSON array of [id kind hasres result error
-- retry_at reason] (strings). Returns one character per outcome, '1' (stored) or '0' (not
-- RUNNING there, or for handed_back not PAUSED there either: dropped): one bulk string
-- for the client to read instead of an array reply of one element per outcome.
-- The fields finish_all and what it calls read of a finished record on every path: F without
-- ``pa``, ``dn``, ``lo`` (not read), ``m`` (read by a move from PENDING only; set by
-- enqueue), and the five that ``complete`` reads when a path needs them (``pr``, ``sq``,
-- ``wt``, ``nb``, ``dp``: a requeue or a dependent's failure). Each field read costs.
local FF = {'s', 'w', 'a', 'p', 'rk', 'rl', 'gk', 'ck', 'at', 'hd', 'wn', 'h'}
-- The record with those fields, the table built by one constructor (sized once).
local function load_finish(id)
  local k = k_inv(id)
  local v = redis.call('HMGET', k, unpack(FF))
  if not v[1] then return nil end
  return {id = id, key = k, prev = false, s = v[1], w = v[2] or '', a = v[3] or '',
          p = v[4] or '', rk = v[5] or '', rl = v[6] or '', gk = v[7] or '', ck = v[8] or '',
          at = v[9] or '0', hd = v[10] or '', wn = v[11] or '', h = v[12] or ''}
end
local function finish_all(worker, text)
  local out = {}
  for _, o in ipairs(cjson.decode(text)) do
    local id, kind, hasres, result = o[1], o[2], o[3], o[4]
    local err, retry_at, reason = o[5], o[6], o[7]
    if reason == '' then reason = nil end
    local r = load_finish(id)
    if r and r.s == 'PAUSED' and r.w == worker and kind == 'handed_back' then
      -- A draining worker gives back a paused call: its waits undone, no loss counted.
      for _, tid in ipairs(redis.call('SMEMBERS', P .. ':tg:' .. id)) do
        local t = load(tid)
        if t and not FINAL[t.s] then set_waiters(t, math.max(0, tonumber(t.wt) - 1)) end
      end
      remove_edges(id)
      move(r, 'PENDING', worker, reason or 'handed back', '')
      out[#out+1] = '1'
    elseif not r or r.s ~= 'RUNNING' or r.w ~= worker then
      out[#out+1] = '0'
    else
      local k = r.key
      release_slot(r)
      if kind == 'success' then
        -- (a RUNNING record has no result yet, so a None result needs no delete)
        move(r, 'SUCCESS', worker, nil, '', hasres == '1' and {'r', result} or nil)
        finalize(r, false, nil)
      elseif kind == 'failed' then
        local attempt = tostring(tonumber(r.at) + 1)
        move(r, 'FAILED', worker, reason, '', with_error(k, {'at', attempt}, err))
        finalize(r, false, nil)
      elseif kind == 'retry' then
        local attempt = tostring(tonumber(r.at) + 1)
        r.nb = retry_at
        move(r, 'RETRY', worker, reason, '', with_error(k, {'at', attempt, 'nb', retry_at}, err))
        move(r, 'PENDING', worker)
      else
        move(r, 'PENDING', worker, reason or 'handed back', '')
      end
      out[#out+1] = '1'
    end
  end
  return table.concat(out)
end
"""

FINISH = r"""
-- ARGV[4] worker, ARGV[5] the outcomes (see finish_all).
return reply(finish_all(ARGV[4], ARGV[5]))
"""

FINISH_AND_CLAIM = r"""
-- ARGV[4] pool, ARGV[5] worker, ARGV[6] limit, ARGV[7] the outcomes. Returns
-- {finished flags, d texts, rows} (the two JSON texts of rows_json, '' when none were
-- claimed); a replayed call, {flags, claimed ids} as JSON.
local done = finish_all(ARGV[5], ARGV[7])
local ids, ds, rows = claim_some(ARGV[4], ARGV[5], tonumber(ARGV[6]))
if #ids == 0 then return reply({done, '', ''}, {done, ids}) end
local dtext, rtext = rows_json(ds, rows)
return reply({done, dtext, rtext}, {done, ids})
"""


CANCEL = r"""
-- ARGV[4] id, ARGV[5] 'cancel' or 'fail', ARGV[6] reason or error type, ARGV[7] message
local r = load(ARGV[4])
if not r or FINAL[r.s] then return reply(0) end
if ARGV[5] == 'cancel' then
  abort(r, 'CANCELLED', nil, ARGV[6], false)
else
  local reason = string.match(ARGV[6], '([^.]*)$')
  abort(r, 'FAILED', err_json(ARGV[6], ARGV[7]), reason, false)
end
return reply(1)
"""


PAUSE = r"""
-- ARGV[4] id, ARGV[5] worker, ARGV[6] max nodes, ARGV[7..] targets.
-- Returns {'gone'} | {'ready'} | {'paused'} | {'cycle', line...}
local id, worker = ARGV[4], ARGV[5]
local max_nodes = tonumber(ARGV[6])
local r = load(id)
if not r or r.s ~= 'RUNNING' or r.w ~= worker then return reply({'gone'}) end
local open, seen = {}, {}
for j = 7, #ARGV do
  local tid = ARGV[j]
  if not seen[tid] then
    seen[tid] = true
    local t = load(tid)
    if t and not FINAL[t.s] then open[#open+1] = t end
  end
end
if #open == 0 then return reply({'ready'}) end

-- kubenenc.waitgraph.find_loop: walk the PAUSED waiters upward from the waiter, breadth
-- first, comparing ids and call keys with the targets'.
local by_id, by_key = {}, {}
for _, t in ipairs(open) do
  by_id[t.id] = t
  by_key[t.ck] = t
end
local below = {[id] = false}
local nodes = {[id] = r}
local queue = {r}
local head, walked = 1, 1
local found, top = nil, nil
while head <= #queue and not found do
  local node = queue[head]
  head = head + 1
  local t = by_id[node.id] or by_key[node.ck]
  if t then
    found, top = t, node
  else
    -- Who waits on the node: the PAUSED invocations with an edge to it, then the
    -- WAITING_DEPENDENCIES ones that declared it (they run no code yet, so they match by
    -- id only: their call key is replaced by one no target has).
    local ups = redis.call('SMEMBERS', P .. ':wt:' .. node.id)
    local first_dependent = #ups + 1
    for _, d in ipairs(redis.call('SMEMBERS', P .. ':dep:' .. node.id)) do ups[#ups+1] = d end
    for j, up in ipairs(ups) do
      if below[up] == nil then
        local u = redis.call('HMGET', k_inv(up), 's', 'ck', 'dp')
        local want = j < first_dependent and 'PAUSED' or 'WAITING_DEPENDENCIES'
        if u[1] == want then
          below[up] = node.id
          local ck = want == 'PAUSED' and u[2] or ('\0dependent:' .. up)
          nodes[up] = {id = up, ck = ck, dp = u[3]}
          walked = walked + 1
          if walked > max_nodes then
            queue = {}
            break
          end
          queue[#queue+1] = nodes[up]
        end
      end
    end
  end
end
if found then
  local lines = {top.dp}
  local chain = {[top.id] = true}
  local step = below[top.id]
  while step do
    lines[#lines+1] = nodes[step].dp
    chain[step] = true
    step = below[step]
  end
  lines[#lines+1] = found.dp
  if not chain[found.id] then
    -- kubenenc.waitgraph.format_loop
    local body = {}
    for j, line in ipairs(lines) do
      body[j] = (j == 1 and '  ' or '  -> waits on ') .. line
    end
    local message = 'waiting on ' .. lines[#lines] ..
      ' would close a loop that can never finish:\n' .. table.concat(body, '\n') ..
      '\n  (the last call is already waiting higher up this chain)'
    abort(found, 'FAILED', err_json(E_CYCLE, message), 'CycleDetected', true)
  end
  local res = {'cycle'}
  for _, line in ipairs(lines) do res[#res+1] = line end
  return reply(res)
end
for _, t in ipairs(open) do
  redis.call('SADD', P .. ':tg:' .. id, t.id)
  redis.call('SADD', P .. ':wt:' .. t.id, id)
  set_waiters(t, tonumber(t.wt) + 1)
end
release_slot(r)
move(r, 'PAUSED', worker)
return reply({'paused'})
"""


RESUME = r"""
-- ARGV[4] worker, ARGV[5] limit, ARGV[6..] ids. Returns {resumed ids, gone ids}.
local worker, limit = ARGV[4], tonumber(ARGV[5])
local resumed, gone = {}, {}
for j = 6, #ARGV do
  local id = ARGV[j]
  local r = load(id)
  if not r or r.s ~= 'PAUSED' or r.w ~= worker then
    gone[#gone+1] = id
  elseif #resumed < limit then
    local ready = true
    for _, tid in ipairs(redis.call('SMEMBERS', P .. ':tg:' .. id)) do
      local ts = redis.call('HGET', k_inv(tid), 's')
      if ts and not FINAL[ts] then
        ready = false
        break
      end
    end
    if ready and r.rk ~= '' and r.rl ~= '' then
      if tonumber(redis.call('HGET', K_RUN, r.rk) or '0') >= tonumber(r.rl) then
        ready = false
      else
        add_running(r.rk, 1)
      end
    end
    if ready then
      remove_edges(id)
      move(r, 'RUNNING', worker)
      resumed[#resumed+1] = id
    end
  end
end
return reply({resumed, gone})
"""


HAND_BACK_FN = r"""
-- Give back ``id`` if it is RUNNING or PAUSED on ``holder``: ``lost`` counted, slot and wait
-- edges released, PENDING again, or FAILED with WorkerLost past ``max_lost``. Whether it was.
local function hand_back(id, holder, max_lost, why)
  local r = load(id)
  if not (r and r.w == holder and (r.s == 'RUNNING' or r.s == 'PAUSED')) then return false end
  local lost = tonumber(r.lo) + 1
  redis.call('HSET', k_inv(id), 'lo', lost)
  if lost > max_lost then
    local message = 'worker ' .. holder .. ' ' .. why .. '; lost ' .. lost .. ' times'
    abort(r, 'FAILED', err_json(E_LOST, message), 'WorkerLost', false)
  else
    release_slot(r)
    for _, tid in ipairs(redis.call('SMEMBERS', P .. ':tg:' .. id)) do
      local t = load(tid)
      if t and not FINAL[t.s] then set_waiters(t, math.max(0, tonumber(t.wt) - 1)) end
    end
    remove_edges(id)
    move(r, 'PENDING', nil, 'worker ' .. holder .. ' lost', '')
  end
  return true
end
"""

RELEASE_UNHELD = r"""
-- ARGV[4] worker, ARGV[5] max lost, ARGV[6..] the ids it holds. Hands back the rest of its
-- held set (see Coordination.release_unheld). Returns the ids handed back or failed.
local worker, max_lost = ARGV[4], tonumber(ARGV[5])
local mine = {}
for j = 6, #ARGV do mine[ARGV[j]] = true end
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', P .. ':hw:' .. worker)) do
  if not mine[id] then
    if hand_back(id, worker, max_lost, 'no longer holds it') then
      out[#out+1] = id
    else
      held(worker, id, false)  -- a stale entry: not RUNNING or PAUSED here any more
    end
  end
end
return reply(out)
"""

RECOVER = r"""
-- ARGV[4] heartbeat timeout, ARGV[5] max lost, ARGV[6] sweep batch. Returns ids handed back.
local timeout, max_lost = tonumber(ARGV[4]), tonumber(ARGV[5])
local alive = {}
local beats = redis.call('ZRANGE', P .. ':beats', 0, -1, 'WITHSCORES')
for j = 1, #beats, 2 do
  local w, at = beats[j], tonumber(beats[j+1])
  if at >= NOWN - timeout then
    alive[w] = true
  else
    redis.call('ZREM', P .. ':beats', w)
    redis.call('HDEL', P .. ':workers', w)
  end
end
local out = {}
for _, holder in ipairs(redis.call('SMEMBERS', K_HOLDERS)) do
  local khw = P .. ':hw:' .. holder
  if not alive[holder] then
    for _, id in ipairs(redis.call('SMEMBERS', khw)) do
      if hand_back(id, holder, max_lost, 'stopped heartbeating') then out[#out+1] = id end
    end
    redis.call('DEL', khw)
    redis.call('SREM', K_HOLDERS, holder)
  elseif redis.call('SCARD', khw) == 0 then
    redis.call('SREM', K_HOLDERS, holder)
  end
end
-- Retention: forget final invocations that ended more than RET seconds ago.
local old = redis.call('ZRANGEBYSCORE', K_FIN, '-inf', string.format('%.17g', NOWN - RET),
                       'LIMIT', 0, tonumber(ARGV[6]))
for _, m in ipairs(old) do
  local sep = string.find(m, US, 1, true)
  local id, app = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
  redis.call('DEL', k_inv(id), P .. ':tg:' .. id, P .. ':wt:' .. id,
             P .. ':dep:' .. id, P .. ':ch:' .. id)
  redis.call('ZREM', P .. ':ix', id)
  redis.call('ZREM', P .. ':ix:a:' .. app, id)
  redis.call('ZREM', P .. ':ix:failed', id)
  redis.call('ZREM', K_FIN, m)
end
return reply(out)
"""


READ = r"""
-- ARGV[4] '1' to include the history; ARGV[5..] ids. Two texts, one entry per id: the
-- records' own ``d`` JSON joined by RS (which JSON text cannot hold unescaped; '' for a
-- missing record), so that the client can keep each unparsed until it needs it, and the
-- JSON of the rest of each row with 0 in the place of ``d`` (false for a missing record).
-- Atomic, and two bulk replies however many records: parsing many small replies costs more
-- in a Python client than the whole read on the server.
local history = ARGV[4] == '1'
local ds, rows = {}, {}
for j = 5, #ARGV do
  local v = row(ARGV[j], history)
  if v then
    ds[#ds+1] = v[1]
    v[1] = 0
    rows[#rows+1] = v
  else
    ds[#ds+1] = ''
    rows[#rows+1] = false
  end
end
if #rows == 0 then return {'', '[]'} end
return {table.concat(ds, RS), cjson.encode(rows)}
"""


OPEN = r"""
-- ARGV[4..] ids. Returns how many of them, counted from the first, may still be open: the
-- position of the last one that exists and is not final (0 when none). The ids are read
-- from the last one backwards and only down to that one: every id after it is final (or
-- gone), and those before it are left for the caller's next call. So while a window ends
-- in order each id is read about once, not once per call.
-- Marks that last open one as waited on, so that becoming final pushes to its ``done``
-- list (in the same atomic step: no push can be missed between this read and the
-- caller's block). When the last id given is final or missing already, it is pushed now,
-- so that a block on its list pipelined behind this call returns at once.
local n = #ARGV - 3
local open = 0
for j = #ARGV, 4, -1 do
  local s = redis.call('HGET', k_inv(ARGV[j]), 's')
  if s and not FINAL[s] then
    open = j - 3
    break
  end
end
if open > 0 then
  local id = ARGV[open + 3]
  redis.call('HSET', k_inv(id), 'wn', '1')
  -- Only a push for an id that did not exist yet can be in the list of an open one.
  redis.call('DEL', P .. ':done:' .. id)
end
if n > 0 and open ~= n then
  local done = P .. ':done:' .. ARGV[#ARGV]
  if redis.call('LLEN', done) == 0 then
    redis.call('RPUSH', done, '1')
    redis.call('EXPIRE', done, DONE_TTL)
  end
end
return open
"""


def build(body: str) -> str:
    """The full source of one script: preamble, shared functions, then ``body``."""
    return _preamble() + _COMMON + body


SCRIPTS: dict[str, str] = {
    "register": build(REGISTER),
    "claim": build(CLAIM_FN + CLAIM),
    "finish": build(FINISH_FN + FINISH),
    "finish_and_claim": build(FINISH_FN + CLAIM_FN + FINISH_AND_CLAIM),
    "cancel": build(CANCEL),
    "pause": build(PAUSE),
    "resume": build(RESUME),
    "recover": build(HAND_BACK_FN + RECOVER),
    "release_unheld": build(HAND_BACK_FN + RELEASE_UNHELD),
    "read": build(READ),
    "open": build(OPEN),
}
"""Every script, by the contract operation it implements."""

__all__ = ["DONE_TTL", "REPLY_TTL", "SCRIPTS", "build"]
