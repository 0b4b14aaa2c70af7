-- move_edges.lua: write the declared-dependency edges of invocations on this shard as the
-- new layout keeps them (a reshard; see kubenenc_redis.reshard): for a dependency, its
-- dependents in P:dep (one shard) or P:xdep with their new shard numbers (more than one);
-- for a waiting dependent, what it knows of its dependencies in P:xst. Each set or hash is
-- replaced whole, so running it again writes the same; ids without a record are skipped.

-- ARGV[4]: JSON {id: {dep = [dependent ids], xdep = ['dependent US shard']}};
-- ARGV[5]: JSON {id: [dependency id, 'open' | 'missing' | 'status US display', ...]}.
-- Returns how many were written.
local n = 0
for id, e in pairs(cjson.decode(ARGV[4])) do
  if redis.call('EXISTS', k_inv(id)) == 1 then
    redis.call('DEL', k_dep(id), k_xdep(id))
    if #e.dep > 0 then redis.call('SADD', k_dep(id), unpack(e.dep)) end
    if #e.xdep > 0 then redis.call('SADD', k_xdep(id), unpack(e.xdep)) end
    if #e.dep + #e.xdep > 0 then redis.call('HSET', k_inv(id), 'hd', '1') end
    n = n + 1
  end
end
for id, flat in pairs(cjson.decode(ARGV[5])) do
  if redis.call('EXISTS', k_inv(id)) == 1 then
    redis.call('DEL', k_xst(id))
    if #flat > 0 then redis.call('HSET', k_xst(id), unpack(flat)) end
    n = n + 1
  end
end
return reply(n)
