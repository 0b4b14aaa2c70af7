-- lib.lua: the functions every step shares (checked moves, counters, queue entries,
-- finalization, the reply cache). Prepended to every step's files, after the header that
-- kubenenc_redis.scripts generates and call.lua; in the function library (Redis >= 7) it
-- is defined once, at load, and its per-call state is made new by call.lua on each call. Keys are named as in kubenenc_redis.keys (K_RUN,
-- k_inv(id), ...): those names are written out when the script is assembled.

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

-- The per-call state (CD, HOLD, WAKE, HW, FIN, TASK, NEWS, QUEUED) is declared by the header and made new
-- by call.lua, which says what each holds.
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
    write_in_bulk('SREM', k_hw(w), rem)
    write_in_bulk('SADD', k_hw(w), add)
  end
  write_in_bulk('ZADD', K_FIN, FIN)
  for pool, n in pairs(WAKE) do
    local kw = k_wake(pool)
    local tokens = {}
    for j = 1, math.min(n, 8) do tokens[j] = '1' end  -- wakes up to 8 idle workers
    redis.call('RPUSH', kw, unpack(tokens))
    redis.call('LTRIM', kw, -64, -1)
  end
  if REQ ~= '' then
    redis.call('SET', k_rq(REQ), cjson.encode(cache or value), 'EX', REPLY_TTL)
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
-- a missing field (see kubenenc_redis.rows.full_record); false for a missing record.
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

local function dequeue(r)
  if r.m ~= '' then
    redis.call('ZREM', k_q(r.p), r.m)
    redis.call('ZREM', k_dl(r.p), r.m)
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
  QUEUED = true
  r.m = member(r)
  if tonumber(r.nb) > NOWN then
    redis.call('ZADD', k_dl(r.p), r.nb, r.m)
  else
    redis.call('ZADD', k_q(r.p), 0, r.m)
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
  local kpools = k_parked(key)
  for _, pool in ipairs(redis.call('SMEMBERS', kpools)) do
    local kp = k_park(pool, key)
    local first = redis.call('ZPOPMIN', kp)
    if first[1] then
      redis.call('ZADD', k_q(pool), 0, first[1])
      QUEUED = true
    end
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
  local tg = k_tg(id)
  for _, t in ipairs(redis.call('SMEMBERS', tg)) do
    redis.call('SREM', k_wt(t), id)
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
    for _, tid in ipairs(redis.call('SMEMBERS', k_tg(r.id))) do
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
    kdep = k_dep(r.id)
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
  if kdep then
    -- Dependents of a sharded app (kubenenc_redis.depending): told through the outbox.
    local kx = k_xdep(r.id)
    local far = redis.call('SMEMBERS', kx)
    if #far > 0 then
      complete(r)
      for _, m in ipairs(far) do
        redis.call('SADD', K_XOUT, m .. US .. r.id .. US .. r.s .. US .. r.dp)
      end
      NEWS = true
      redis.call('DEL', kx)
    end
  end
  if r.prev == 'WAITING_DEPENDENCIES' then redis.call('DEL', k_xst(r.id)) end
  FIN[#FIN+1] = NOW
  FIN[#FIN+1] = r.id .. US .. r.a
  if r.s == 'FAILED' then  -- failures by sequence, so browsing them reads no others
    local sq = (r.sq and r.sq ~= '') and r.sq or redis.call('HGET', k, 'sq')
    if sq then redis.call('ZADD', K_IXF, sq, r.id) end
  end
  redis.call('EXPIRE', k, math.ceil(RET))
  if r.wn ~= '' then  -- someone blocks on it (see the open script)
    local done = k_done(r.id)
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
