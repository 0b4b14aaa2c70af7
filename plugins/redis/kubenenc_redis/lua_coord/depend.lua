-- lua_coord/depend.lua: record a dependent of a sharded app and the calls it declared it
-- depends on, before it is registered (see kubenenc_redis.depending), so the cycle check
-- of lua_coord/pause.lua sees it as the single server's sees P:dep.

-- KEYS[1] C. ARGV[1] dependent id, ARGV[2] its display, ARGV[3] now, ARGV[4..] its
-- dependencies. Returns 1.
local id, dp, now = ARGV[1], ARGV[2], ARGV[3]
for j = 4, #ARGV do
  redis.call('SADD', k_dp(ARGV[j]), id)
  redis.call('SADD', k_dd(id), ARGV[j])
end
redis.call('HSET', k_dn(id), 'dp', dp, 'at', now)
redis.call('ZADD', K_DEPENDENTS, now, id)
return 1
