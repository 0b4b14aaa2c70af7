-- lib_claim.lua: claim_some and rows_json, for claim.lua and finish_and_claim.lua.

-- Only the fields a claim uses (a smaller read: every value read becomes a Lua string):
-- the record as ``load`` gives it, limited to those, and the values read (``d``, ``r``,
-- ``e`` at 13 to 15, false when missing). The table is built by one constructor, sized
-- once, instead of growing field by field.
local CF = {'s', 'w', 'a', 'p', 'rk', 'rl', 'ck', 'wt', 'nb', 'lo', 'at', 'h', 'd', 'r', 'e',
            'tk', 'tr'}
local function load_claim(id)
  local k = k_inv(id)
  local v = redis.call('HMGET', k, unpack(CF))
  if not v[1] then return nil end
  return {id = id, key = k, m = '', prev = false, s = v[1], w = v[2] or '', a = v[3] or '',
          p = v[4] or '', rk = v[5] or '', rl = v[6] or '', ck = v[7] or '', wt = v[8] or '0',
          nb = v[9] or '0', lo = v[10] or '0', at = v[11] or '0', h = v[12] or '',
          tk = v[16] or '', tr = v[17] or ''}, v
end

-- Rate limits (Engine's RateLog): ``P:rate:<key>`` lists the last N start times of a rate
-- key, newest first. A start at NOW is allowed when the N-th most recent start is at least
-- a window old, and the burst-th one at least window * burst / N old. RATES (the rates read
-- in this call) is per-call state: declared by the header, made new by call.lua.
local function rate_of(key, spec)
  local r = RATES[key]
  if r then return r end
  local n, win, b = string.match(spec, '^(%d+)/([^/]+)/(%d+)$')
  r = {k = k_rate(key), n = tonumber(n), win = tonumber(win), b = tonumber(b), waiting = 0}
  r.len = redis.call('LLEN', r.k)
  RATES[key] = r
  return r
end

local function nth_back(r, k)
  if k > r.len then return nil end
  return tonumber(redis.call('LINDEX', r.k, k - 1))
end

local function within(r, k, span)
  local at = nth_back(r, k)
  return at ~= nil and at > NOWN - span
end

-- Record a start at NOW if the rate allows it (true).
local function rate_start(r)
  if within(r, r.n, r.win) then return false end
  if r.b < r.n and within(r, r.b, r.win * r.b / r.n) then return false end
  redis.call('LPUSH', r.k, NOW)
  redis.call('LTRIM', r.k, 0, r.n - 1)
  redis.call('PEXPIRE', r.k, math.ceil(r.win * 1000) + 1000)
  r.len = math.min(r.len + 1, r.n)
  return true
end

local function free_at(r, j, n, win)
  local at = nth_back(r, n - (j - 1) % n)
  if at == nil then return 0 end
  return at + win * (math.floor((j - 1) / n) + 1)
end

-- When the next call found over the rate in this claim may try again (see RateLog.next_free).
local function rate_free(r)
  r.waiting = r.waiting + 1
  local at = free_at(r, r.waiting, r.n, r.win)
  if r.b < r.n then at = math.max(at, free_at(r, r.waiting, r.b, r.win * r.b / r.n)) end
  return math.max(NOWN + 0.000001, at)
end

-- Claim up to ``limit`` of ``pool`` for ``worker``: the ids, the records' ``d`` texts and
-- the rest of their rows for the client (see ``rows_json``). With ``bound`` (a queue member,
-- from kubenenc_redis.shards' claim over shards), none at or after it: the claim stops there.
local function claim_some(pool, worker, limit, bound)
  local kq, kdl = k_q(pool), k_dl(pool)
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
    local stop = false
    for j = 1, #popped, 2 do
      local m = popped[j]
      local r, v
      if bound and m >= bound then stop = true end
      if not stop then r, v = load_claim(string.sub(m, 36)) end
      local take = true
      if stop then
        back[#back+1] = 0
        back[#back+1] = m
        take = false
      elseif not r or r.s ~= 'PENDING' then
        take = false  -- a stale member (should not happen): dropped
      elseif r.nb ~= '0' and tonumber(r.nb) > NOWN then
        back[#back+1] = 0
        back[#back+1] = m
        take = false
      else
        local slot = r.rk ~= '' and r.rl ~= ''
        if slot and (full[r.rk]
                     or tonumber(redis.call('HGET', K_RUN, r.rk) or '0') >= tonumber(r.rl)) then
          -- Park it until a slot of its key is freed, so that later claims do not read
          -- a long queue behind one busy key again and again. It keeps its member, and
          -- so its place in the claim order.
          full[r.rk] = true
          redis.call('ZADD', k_park(pool, r.rk), 0, m)
          redis.call('SADD', k_parked(r.rk), pool)
          take = false
        elseif r.tk ~= '' and not rate_start(rate_of(r.tk, r.tr)) then
          -- Over its rate: it waits with the calls not due yet, until the rate may allow it.
          local due = string.format('%.6f', rate_free(rate_of(r.tk, r.tr)))
          redis.call('HSET', r.key, 'nb', due)
          redis.call('ZADD', kdl, due, m)
          take = false
        elseif slot then
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
    if stop or #popped < 2 * want then break end
  end
  write_in_bulk('ZADD', kq, back)
  return out, ds, rows
end

-- The queue of pool as a claim leaves it, for a sharded app's head hints
-- (kubenenc_redis.hints): its first member and the score (not_before) of its first delayed
-- call, '' for none.
local function queue_head(pool)
  local first = redis.call('ZRANGE', k_q(pool), 0, 0)
  local later = redis.call('ZRANGE', k_dl(pool), 0, 0, 'WITHSCORES')
  return first[1] or '', later[2] or ''
end

-- Rows for the client as two JSON texts (see kubenenc_redis.rows.claimed): the records' own ``d``
-- JSON inlined (not quoted), and the rest of each row with 0 in the place of ``d``. Two
-- encodings per call instead of one per row, and no row text built around ``d``.
local function rows_json(ds, rows)
  return '[' .. table.concat(ds, ',') .. ']', cjson.encode(rows)
end
