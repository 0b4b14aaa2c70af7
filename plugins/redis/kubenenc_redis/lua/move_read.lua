-- move_read.lua: read what a reshard moves of each invocation (read only; see
-- kubenenc_redis.reshard): its record, its place in the queues and indexes, its edge sets.

-- ARGV[4..] ids. Returns one JSON array: per id found, {id, f (the record's fields, flat),
-- ttl (ms, -1 none), pl ('q', 'dl', 'park' or ''), sc (its delay score), fin (its end time
-- in the final index, or false), reg (whether it holds its registration key), dep, tg, wt
-- (members of its edge sets)}; ids without a record are left out.
local out = {}
for j = 4, #ARGV do
  local id = ARGV[j]
  local key = k_inv(id)
  local flat = redis.call('HGETALL', key)
  if #flat > 0 then
    local r = {}
    for k = 1, #flat, 2 do r[flat[k]] = flat[k + 1] end
    local p, m, a = r.p or '', r.m or '', r.a or ''
    local pl, sc = '', '0'
    if m ~= '' then
      if redis.call('ZSCORE', k_q(p), m) then
        pl = 'q'
      else
        local s = redis.call('ZSCORE', k_dl(p), m)
        if s then
          pl, sc = 'dl', s
        elseif (r.rk or '') ~= '' and redis.call('ZSCORE', k_park(p, r.rk), m) then
          pl = 'park'
        end
      end
    end
    local gk = r.gk or ''
    out[#out+1] = {
      id = id, f = flat, ttl = redis.call('PTTL', key), pl = pl, sc = sc,
      fin = redis.call('ZSCORE', K_FIN, id .. US .. a) or false,
      reg = gk ~= '' and redis.call('HGET', K_REG, gk) == id,
      dep = redis.call('SMEMBERS', k_dep(id)), tg = redis.call('SMEMBERS', k_tg(id)),
      wt = redis.call('SMEMBERS', k_wt(id)),
    }
  end
end
return cjson.encode(out)
