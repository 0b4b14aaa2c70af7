-- lib_finish.lua: finish_all, for finish.lua and finish_and_claim.lua.

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
local FF = {'s', 'w', 'a', 'p', 'rk', 'rl', 'gk', 'ck', 'at', 'hd', 'wn', 'h', 'cb'}
-- The record with those fields, the table built by one constructor (sized once).
local function load_finish(id)
  local k = k_inv(id)
  local v = redis.call('HMGET', k, unpack(FF))
  if not v[1] then return nil end
  return {id = id, key = k, prev = false, s = v[1], w = v[2] or '', a = v[3] or '',
          p = v[4] or '', rk = v[5] or '', rl = v[6] or '', gk = v[7] or '', ck = v[8] or '',
          at = v[9] or '0', hd = v[10] or '', wn = v[11] or '', h = v[12] or '',
          cb = v[13] or ''}
end

-- The error as a callback receives it (kubenenc.callbacks.error_json).
local function error_value(err)
  if err == '' then return 'null' end
  local e = cjson.decode(err)
  return cjson.encode({type = e[1], message = e[2], traceback = e[3] or ''})
end

-- Register the call planned as ``t`` after ``r`` ended (``label``: its kind, and for a status
-- trigger ``kind:task``), after try ``attempt``, with ``value`` (JSON text) as its second
-- argument, in this same step: kubenenc.callbacks.spawn and Engine's REGISTERED -> PENDING,
-- re-expressed (a callback has no keys, dependencies or delay).
local function spawn_one(r, t, label, attempt, value)
  local id = string.sub(redis.sha1hex(r.id .. ':' .. label .. ':' .. attempt), 1, 32)
  local key = k_inv(id)
  if redis.call('EXISTS', key) == 1 then return end
  local js = cjson.encode
  local args = '{' .. js(t.id_arg) .. ':' .. js(r.id) .. ',' .. js(t.value_arg) .. ':'
               .. value .. '}'
  local ck = t.task .. '#cb:' .. id
  local dp = t.name .. '(' .. r.id .. ', ...)'
  local sq = string.format('%015d', redis.call('INCR', K_SEQ))
  local pr = string.format('%d', t.priority)
  local cbs = type(t.callbacks) == 'string' and t.callbacks or ''
  local timeout = type(t.timeout) == 'number' and js(t.timeout) or 'null'
  local d = '{"id":' .. js(id) .. ',"app":' .. js(r.a) .. ',"task":' .. js(t.task)
            .. ',"args":' .. js(args) .. ',"call_key":' .. js(ck) .. ',"display":' .. js(dp)
            .. ',"pool":' .. js(t.pool) .. ',"priority":' .. pr .. ',"max_retries":'
            .. string.format('%d', t.max_retries) .. ',"timeout":' .. timeout
            .. ',"running_key":null,"running_limit":null,"registration_key":null,'
            .. '"depends_on":[],"parent":null,"serializer":"json","created_at":' .. NOW
            .. (cbs ~= '' and (',"callbacks":' .. js(cbs)) or '') .. '}'
  local n = {id = id, key = key, s = 'PENDING', a = r.a, p = t.pool, pr = pr, wt = '0',
             sq = sq, ck = ck}
  n.m = member(n)
  local h = 'REGISTERED' .. US .. NOW .. US .. US .. RS .. 'PENDING' .. US .. NOW .. US .. US .. RS
  local fields = {'d', d, 's', 'PENDING', 'u', NOW, 'a', r.a, 'p', t.pool, 'pr', pr, 'ck', ck,
                  'dp', dp, 'sq', sq, 'm', n.m, 'h', h}
  if cbs ~= '' then
    fields[#fields+1] = 'cb'
    fields[#fields+1] = cbs
  end
  redis.call('HSET', key, unpack(fields))
  count(n, 'PENDING', 1)
  redis.call('ZADD', k_q(t.pool), 0, n.m)
  QUEUED = true
  WAKE[t.pool] = (WAKE[t.pool] or 0) + 1
  redis.call('ZADD', K_IX, sq, id)
  redis.call('ZADD', k_ixa(r.a), sq, id)
end
-- Register the ``kind`` callback of ``r`` and the status triggers watching ``kind`` (see
-- kubenenc.triggers), in this same step.
local function spawn_callback(r, kind, attempt, value)
  if r.cb == '' then return end
  local p = cjson.decode(r.cb)
  local t = p[kind]
  if type(t) == 'table' then spawn_one(r, t, kind, attempt, value) end
  local on = type(p.on) == 'table' and p.on[kind]
  if type(on) == 'table' then
    for _, w in ipairs(on) do spawn_one(r, w, kind .. ':' .. w.task, attempt, value) end
  end
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
      for _, tid in ipairs(redis.call('SMEMBERS', k_tg(id))) do
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
        spawn_callback(r, 'success', r.at, hasres == '1' and result or 'null')
      elseif kind == 'failed' then
        local attempt = tostring(tonumber(r.at) + 1)
        move(r, 'FAILED', worker, reason, '', with_error(k, {'at', attempt}, err))
        finalize(r, false, nil)
        spawn_callback(r, 'failure', attempt, error_value(err))
      elseif kind == 'retry' then
        local attempt = tostring(tonumber(r.at) + 1)
        r.nb = retry_at
        move(r, 'RETRY', worker, reason, '', with_error(k, {'at', attempt, 'nb', retry_at}, err))
        move(r, 'PENDING', worker)
        spawn_callback(r, 'retry', attempt, error_value(err))
      else
        move(r, 'PENDING', worker, reason or 'handed back', '')
      end
      out[#out+1] = '1'
    end
  end
  return table.concat(out)
end

-- What else a finish step did, for a sharded app (finish.lua, finish_and_claim.lua): 'x'
-- when it wrote news for dependents on other shards, 'q' when it put calls in a queue.
local function finish_notes()
  return (NEWS and 'x' or '') .. (QUEUED and 'q' or '')
end
