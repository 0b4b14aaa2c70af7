-- lua_coord/lib_forget.lua: forget, for drop.lua (waiters and their wait edges) and
-- undepend.lua (dependents and their declared dependencies): one shape of record in the
-- coordination slot, an index of nodes, each node's set of targets, each target's set of
-- nodes pointing at it, and the node's own record.

-- Remove each of ``ids`` from ``index`` (a sorted set) and from the back set
-- ``back(target)`` of each target in its set ``targets(id)``, and delete that set and the
-- node's record ``record(id)``. Returns how many of ``ids`` were in ``index``.
local function forget(ids, index, targets, back, record)
  local n = 0
  for _, id in ipairs(ids) do
    for _, target in ipairs(redis.call('SMEMBERS', targets(id))) do
      redis.call('SREM', back(target), id)
    end
    n = n + redis.call('ZREM', index, id)
    redis.call('DEL', targets(id), record(id))
  end
  return n
end
