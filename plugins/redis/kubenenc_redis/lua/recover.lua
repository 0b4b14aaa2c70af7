-- recover.lua: Coordination.recover and the retention sweep (after lib_hand_back.lua).

-- ARGV[4] heartbeat timeout, ARGV[5] max lost, ARGV[6] sweep batch. Returns ids handed back.
local timeout, max_lost = tonumber(ARGV[4]), tonumber(ARGV[5])
local alive = {}
local beats = redis.call('ZRANGE', K_BEATS, 0, -1, 'WITHSCORES')
for j = 1, #beats, 2 do
  local w, at = beats[j], tonumber(beats[j+1])
  if at >= NOWN - timeout then
    alive[w] = true
  else
    redis.call('ZREM', K_BEATS, w)
    redis.call('HDEL', K_WORKERS, w)
  end
end
local out = {}
for _, holder in ipairs(redis.call('SMEMBERS', K_HOLDERS)) do
  local khw = k_hw(holder)
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
  redis.call('DEL', k_inv(id), k_tg(id), k_wt(id), k_dep(id), k_ch(id))
  redis.call('ZREM', K_IX, id)
  redis.call('ZREM', K_IXF, id)
  redis.call('ZREM', k_ixa(app), id)
  redis.call('ZREM', K_FIN, m)
end
return reply(out)
