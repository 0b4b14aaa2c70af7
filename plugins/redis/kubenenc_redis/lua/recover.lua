-- recover.lua: Coordination.recover (after lib_hand_back.lua and lib_live.lua).

-- ARGV[4] heartbeat timeout, ARGV[5] max lost, ARGV[6] '1' to judge on the server's clock,
-- outages not counted (see lib_live.lua), '0' on the time the caller passed. Returns the
-- ids handed back. The retention sweep is a step of its own (sweep.lua).
local timeout, max_lost = tonumber(ARGV[4]), tonumber(ARGV[5])
local now, outages = NOWN, {}
if ARGV[6] == '1' then now, outages = live_now(timeout / 3) end
local alive = {}
local beats = redis.call('ZRANGE', K_BEATS, 0, -1, 'WITHSCORES')
for j = 1, #beats, 2 do
  local w, at = beats[j], tonumber(beats[j+1])
  if silence(at, now, outages) <= timeout then
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
return reply(out)
