-- lua_coord/undepend.lua: forget dependents that no longer wait on their dependencies
-- (pending, final, or never registered; see kubenenc_redis.depending).

-- KEYS[1] C. ARGV: dependent ids. Returns how many were recorded.
return forget(ARGV, K_DEPENDENTS, function(id) return k_dd(id) end,
              function(dep) return k_dp(dep) end, function(id) return k_dn(id) end)
