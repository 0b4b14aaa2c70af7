-- shard_cycle.lua: fail a target of a refused pause across shards (see
-- kubenenc_redis.crossing) as pause.lua fails one on a single shard: CycleDetected, with
-- the loop's message, and its dependents cascaded.

-- ARGV[4] id, ARGV[5] message. Returns 1 when it was failed, 0 when it was final already.
local r = load(ARGV[4])
if not r or FINAL[r.s] then return reply(0) end
abort(r, 'FAILED', err_json(E_CYCLE, ARGV[5]), 'CycleDetected', true)
return reply(1)
