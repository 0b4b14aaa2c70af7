-- lib_register.lua: register_items, for register.lua and claim_tick.lua (Queue.register,
-- with dedupe/reject and declared dependencies).

-- Index and queue entries are written in one command per key after the loop (nothing in
-- the loop reads them back): ``later`` collects them.
local function later(t, key, score, member)
  local list = t[key]
  if not list then
    list = {}
    t[key] = list
  end
  list[#list+1] = score
  list[#list+1] = member
end
-- What dependent ``id`` of a sharded app knows of its dependencies (kubenenc_redis.depending
-- writes ``P:xst:<id>`` before registering it): dep id -> a record-like table ({s, dp}, ``x``
-- set; ``s`` 'OPEN' while it runs) or false when it does not exist; nil when nothing was
-- written (one server: the dependencies are read from their records).
local function remote_states(id)
  local v = redis.call('HGETALL', k_xst(id))
  if #v == 0 then return nil end
  local out = {}
  for j = 1, #v, 2 do
    local st = v[j + 1]
    if st == 'missing' then
      out[v[j]] = false
    elseif st == 'open' then
      out[v[j]] = {id = v[j], s = 'OPEN', x = true}
    else
      local s, dp = string.match(st, '^([^' .. US .. ']*)' .. US .. '(.*)$')
      out[v[j]] = {id = v[j], s = s, dp = dp, sq = '', x = true}
    end
  end
  return out
end
-- Register ``items`` (decoded, as described in register.lua) whose ``d`` texts are
-- argv[base + 1], argv[base + 2], ... (the call's ARGV); returns [[kind, id], ...].
local function register_items(items, argv, base)
  local out = {}
  local IX, IXA, Q, DL = {}, {}, {}, {}
  local n = #items
  local top = redis.call('INCRBY', K_SEQ, n)
  local seq = top - n
  for k = 1, n do
    local it = items[k]
    local id, gk, policy, pool, pr, app = it[1], it[2], it[3], it[4], it[5], it[6]
    local rk, rl, ck, dp, pa, d = it[7], it[8], it[9], it[10], it[11], argv[base + k]
    local deps, nb, tk, tr, cb = it[12], it[13], it[14], it[15], it[16]
    local done = false
    -- Ids are unique per call: an item whose invocation exists was registered by an earlier
    -- try (a retry after a lost reply, or a step re-run after the first try, which comes
    -- without a request id and so has no cached reply). It is answered as the engine does,
    -- never written again: that would reset a running or final call to a fresh PENDING one.
    if redis.call('EXISTS', k_inv(id)) == 1 then
      out[#out+1] = {'created', id}
      done = true
    end
    if not done and gk ~= '' then
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
      -- A 17th field (a batch spread over shards, kubenenc_redis.shards): the least
      -- sequence number this item may get, so call order holds across the shards.
      local floor = it[17] and tonumber(it[17])
      if floor and floor > seq then seq = floor end
      local sq = string.format('%015d', seq)
      local r = {id = id, key = k_inv(id), s = 'REGISTERED', w = '', a = app, p = pool, pr = pr,
                 rk = rk, rl = rl, gk = gk, ck = ck, dp = dp, pa = pa, wt = '0', nb = nb, sq = sq,
                 m = '',
                 dn = table.concat(deps, ','), lo = '0', at = '0', hd = '', wn = '', h = ''}
      local waiting = {}
      local broken, broken_id = nil, nil
      local far = #deps > 0 and remote_states(id)
      for _, dep_id in ipairs(deps) do
        local dep
        if far then dep = far[dep_id] or nil else dep = load(dep_id) end
        if not dep or dep.s == 'FAILED' or dep.s == 'CANCELLED' then
          broken, broken_id = dep, dep_id
          break
        end
        if dep.s ~= 'SUCCESS' then waiting[#waiting+1] = dep_id end
      end
      local h0 = 'REGISTERED' .. US .. NOW .. US .. US .. RS
      later(IX, K_IX, sq, id)
      later(IXA, k_ixa(app), sq, id)
      if pa ~= '' then later(IX, k_ch(pa), sq, id) end  -- children, for browsing
      if broken_id or #waiting > 0 then
        redis.call('HSET', r.key, 'd', d, 's', 'REGISTERED', 'u', NOW, 'w', '', 'a', app,
                   'p', pool, 'pr', pr, 'rk', rk, 'rl', rl, 'gk', gk, 'ck', ck, 'dp', dp,
                   'pa', pa, 'wt', 0, 'at', 0, 'lo', 0, 'nb', nb, 'sq', sq, 'm', '', 'dn', r.dn,
                   'tk', tk, 'tr', tr, 'cb', cb, 'h', h0)
        r.h = h0
        count(r, 'REGISTERED', 1)
        if broken_id then
          fail_dependency(r, broken, broken_id)
          finalize(r, false, nil)
        else
          move(r, 'WAITING_DEPENDENCIES')
          if far then
            redis.call('PERSIST', k_xst(id))  -- kept while it waits
          else
            for _, dep_id in ipairs(waiting) do
              redis.call('SADD', k_dep(dep_id), id)
              redis.call('HSET', k_inv(dep_id), 'hd', '1')
            end
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
        local delayed = nb ~= '0' and tonumber(nb) > NOWN
        if nb ~= '0' then fields[#fields+1] = 'nb'; fields[#fields+1] = nb end
        if cb ~= '' then fields[#fields+1] = 'cb'; fields[#fields+1] = cb end
        if tk ~= '' then
          fields[#fields+1] = 'tk'; fields[#fields+1] = tk
          fields[#fields+1] = 'tr'; fields[#fields+1] = tr
        end
        redis.call('HSET', r.key, unpack(fields))
        count(r, 'PENDING', 1)
        if delayed then
          -- A delayed call waits with the retries not due yet; a claim moves it once due.
          later(DL, k_dl(pool), nb, r.m)
          -- Sleeping workers wake to read the earliest due time again (DueTimes).
          WAKE[pool] = (WAKE[pool] or 0) + 1
        else
          later(Q, k_q(pool), 0, r.m)
          WAKE[pool] = (WAKE[pool] or 0) + 1
        end
        r.s = 'PENDING'
      end
      if gk ~= '' and not FINAL[r.s] then redis.call('HSET', K_REG, gk, id) end
      out[#out+1] = {'created', id}
    end
  end
  if seq > top then redis.call('SET', K_SEQ, string.format('%d', seq)) end  -- floors passed it
  for _, t in ipairs({IX, IXA, Q, DL}) do
    for key, list in pairs(t) do
      for j = 1, #list, 1000 do
        redis.call('ZADD', key, unpack(list, j, math.min(j + 999, #list)))
      end
    end
  end
  return out
end
