-- oldest_pending.lua: Admin.oldest_pending (read only). created_at of the pool's oldest
-- PENDING invocation: the least sequence among the members of its ready queue, its delayed
-- queue and its parked queues (one per running key), whose characters 21-35 are the
-- sequence, then the id.

-- ARGV[4] the pool
local pool = ARGV[4]
local best, best_m = nil, nil
local function scan(key)
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local sq = tonumber(string.sub(m, 21, 35))
    if sq and (best == nil or sq < best) then best, best_m = sq, m end
  end
end
scan(k_q(pool))
scan(k_dl(pool))
for _, rk in ipairs(redis.call('HKEYS', K_RUN)) do
  scan(k_park(pool, rk))
end
if not best_m then return false end
local d = redis.call('HGET', k_inv(string.sub(best_m, 36)), 'd')
if not d then return false end
return cjson.encode(cjson.decode(d).created_at)
