-- finish.lua: Queue.finish (after lib_finish.lua).

-- ARGV[4] worker, ARGV[5] the outcomes (see finish_all), ARGV[6] (optional; the shards of
-- a sharded app pass it): what else the step did, appended to the flags: 'x' when it wrote
-- news for dependents (P:xout, see kubenenc_redis.depending), 'q' when it put calls in a
-- queue (a retry, a hand-back, a callback, a parked call let go). One server passes none:
-- its reply is the flags alone.
local done = finish_all(ARGV[4], ARGV[5])
if ARGV[6] then done = done .. finish_notes() end
return reply(done)
