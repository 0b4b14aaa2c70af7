-- heartbeat.lua: Coordination.heartbeat (after lib_live.lua).

-- ARGV[4] worker, ARGV[5] its heartbeat as JSON, ARGV[6] '1' to stamp the server's time
-- (see lib_live.lua), '0' the time the worker passed (``clock=caller``: tests that make
-- time up).
local at = NOW
if ARGV[6] == '1' then at = string.format('%.6f', (live_now(nil))) end
redis.call('ZADD', K_BEATS, at, ARGV[4])
redis.call('HSET', K_WORKERS, ARGV[4], ARGV[5])
return reply(1)
