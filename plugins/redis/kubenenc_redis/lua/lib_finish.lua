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
