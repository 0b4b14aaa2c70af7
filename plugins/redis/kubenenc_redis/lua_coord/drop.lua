-- lua_coord/drop.lua: forget waiters in the coordination slot (resumed, gone, refused, or found
-- stale by the sweep; see kubenenc_redis.crossing).

-- KEYS[1] C. ARGV: waiter ids. Returns how many had edges.
local n = 0
for _, id in ipairs(ARGV) do
  for _, tid in ipairs(redis.call('SMEMBERS', k_tg(id))) do
    redis.call('SREM', k_wt(tid), id)
  end
  n = n + redis.call('ZREM', K_WAITERS, id)
  redis.call('DEL', k_tg(id), k_node(id))
end
return n
