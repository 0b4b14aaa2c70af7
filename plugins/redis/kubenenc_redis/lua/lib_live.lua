-- lib_live.lua: the liveness clock, for heartbeat.lua and recover.lua.
--
-- Heartbeats are stamped and judged on the server's own clock (TIME), not on the times the
-- workers pass: workers whose clocks disagree still judge each other right. And a stretch in
-- which no heartbeat and no recovery reached the server for longer than the gap allowance
-- ``g`` (the server paused, asleep, restarted, or unreachable for everyone) is an outage:
-- recovery does not count it as silence beyond ``g``, so an outage everyone saw does not
-- make everyone look dead when the server answers again; a worker that stays silent for a
-- heartbeat timeout after it is. A live fleet beats every interval, so gaps that long do not
-- happen while the server is up; when one does (only the operator sweeps, say), at least
-- ``g`` of it counts, so recovery is delayed, never stopped.
--
-- ``P:live``: ``t`` the server time of the last heartbeat or recovery, ``g`` the allowance
-- (a third of the heartbeat timeout the last recovery passed), ``o`` the last outages as
-- ``from:to`` pairs (``from`` is where the uncounted part starts), comma separated.
local MAX_OUTAGES = 16

-- The server's time now, recording an outage if the last activity is longer ago than the
-- allowance (``gap``; the stored one when nil). Returns the time and the outages as
-- {from, to} pairs. Steps that call it must call it before any write (Redis 6.2 allows no
-- write before TIME without effects replication).
local function live_now(gap)
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local v = redis.call('HMGET', K_LIVE, 't', 'g', 'o')
  local last, text = tonumber(v[1]), v[3] or ''
  gap = gap or tonumber(v[2]) or 1
  local outages = {}
  for a, b in string.gmatch(text, '([^:,]+):([^:,]+)') do
    outages[#outages+1] = {tonumber(a), tonumber(b)}
  end
  local fields = {'g', string.format('%.6f', gap)}
  if last and now - last > gap then
    outages[#outages+1] = {last + gap, now}
    while #outages > MAX_OUTAGES do table.remove(outages, 1) end
    local parts = {}
    for j, o in ipairs(outages) do parts[j] = string.format('%.6f:%.6f', o[1], o[2]) end
    fields[#fields+1] = 'o'
    fields[#fields+1] = table.concat(parts, ',')
  end
  if not last or now > last then
    fields[#fields+1] = 't'
    fields[#fields+1] = string.format('%.6f', now)
  end
  redis.call('HSET', K_LIVE, unpack(fields))
  return now, outages
end

-- Seconds of silence since a beat at ``at`` (server time), outages not counted.
local function silence(at, now, outages)
  local s = now - at
  for _, o in ipairs(outages) do
    local from, to = math.max(o[1], at), math.min(o[2], now)
    if to > from then s = s - (to - from) end
  end
  return s
end
