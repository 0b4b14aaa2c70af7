-- lua_coord/undepend.lua: forget dependents that no longer wait on their dependencies
-- (pending, final, or never registered; see kubenenc_redis.depending).

-- KEYS[1] C. ARGV: dependent ids. Returns how many were recorded.
local n = 0
for _, id in ipairs(ARGV) do
  for _, dep in ipairs(redis.call('SMEMBERS', k_dd(id))) do
    redis.call('SREM', k_dp(dep), id)
  end
  n = n + redis.call('ZREM', K_DEPENDENTS, id)
  redis.call('DEL', k_dd(id), k_dn(id))
end
return n
