-- lua_coord/pause.lua: the cycle check and wait edges of every pause of a sharded app, in the
-- coordination slot C (see kubenenc_redis.crossing for why this is enough). The walk is
-- lua/lib_walk.lua's find_loop, shared with the single server's pause.lua.

-- KEYS[1] C. ARGV[1] waiter id, ARGV[2] its call key, ARGV[3] its display, ARGV[4] now,
-- ARGV[5] the waiter's shard, ARGV[6] max nodes walked, then per open target: id, call key,
-- display. Returns {'ok'} | {'cycle', found id, '1' when found is in the chain, line...}.
local id, ck, dp, now, shard = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local max_nodes = tonumber(ARGV[6])
local by_id, by_key, targets = {}, {}, {}
for j = 7, #ARGV, 3 do
  local t = {id = ARGV[j], ck = ARGV[j + 1], dp = ARGV[j + 2]}
  by_id[t.id] = t
  by_key[t.ck] = t
  targets[#targets + 1] = t.id
end
-- Who waits on a node, as recorded here: the paused waiters (C:wt), then the dependents
-- still waiting on their declared dependencies (C:dp, see kubenenc_redis.depending).
local function ups(nid)
  local out = {}
  for _, up in ipairs(redis.call('SMEMBERS', k_wt(nid))) do out[#out + 1] = {up, 'w'} end
  for _, up in ipairs(redis.call('SMEMBERS', k_dp(nid))) do out[#out + 1] = {up, 'd'} end
  return out
end
local function node(up, kind)
  if kind == 'w' then
    local u = redis.call('HMGET', k_node(up), 'ck', 'dp')
    if not u[1] then return nil end
    return {id = up, ck = u[1], dp = u[2]}
  end
  local d = redis.call('HGET', k_dn(up), 'dp')
  if not d then return nil end
  return {id = up, ck = '\0dependent:' .. up, dp = d}
end
local found, in_chain, lines = find_loop({id = id, ck = ck, dp = dp}, by_id, by_key,
                                         max_nodes, ups, node)
if found then
  local res = {'cycle', found.id, in_chain and '1' or '0'}
  for _, line in ipairs(lines) do res[#res + 1] = line end
  return res
end
for _, tid in ipairs(targets) do
  redis.call('SADD', k_tg(id), tid)
  redis.call('SADD', k_wt(tid), id)
end
redis.call('HSET', k_node(id), 'ck', ck, 'dp', dp, 'at', now, 'sh', shard)
redis.call('ZADD', K_WAITERS, now, id)
return {'ok'}
