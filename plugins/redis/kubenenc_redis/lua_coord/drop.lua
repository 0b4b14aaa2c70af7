-- lua_coord/drop.lua: forget waiters in the coordination slot (resumed, gone, refused, or found
-- stale by the sweep; see kubenenc_redis.crossing).

-- KEYS[1] C. ARGV: waiter ids. Returns how many had edges.
return forget(ARGV, K_WAITERS, function(id) return k_tg(id) end,
              function(target) return k_wt(target) end, function(id) return k_node(id) end)
