-- lua_coord/pause.lua: the cycle check and wait edges of every pause of a sharded app, in the
-- coordination slot C (see kubenenc_redis.crossing for why this is enough).

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
-- kubenenc.waitgraph.find_loop, as in pause.lua, over the waiters recorded here.
local below = {[id] = false}
local nodes = {[id] = {id = id, ck = ck, dp = dp}}
local queue = {nodes[id]}
local head, walked = 1, 1
local found, top = nil, nil
while head <= #queue and not found do
  local node = queue[head]
  head = head + 1
  local t = by_id[node.id] or by_key[node.ck]
  if t then
    found, top = t, node
  else
    for _, up in ipairs(redis.call('SMEMBERS', k_wt(node.id))) do
      if below[up] == nil then
        local u = redis.call('HMGET', k_node(up), 'ck', 'dp')
        if u[1] then
          below[up] = node.id
          nodes[up] = {id = up, ck = u[1], dp = u[2]}
          walked = walked + 1
          if walked > max_nodes then
            queue = {}
            break
          end
          queue[#queue + 1] = nodes[up]
        end
      end
    end
  end
end
if found then
  local lines = {top.dp}
  local chain = {[top.id] = true}
  local step = below[top.id]
  while step do
    lines[#lines + 1] = nodes[step].dp
    chain[step] = true
    step = below[step]
  end
  lines[#lines + 1] = found.dp
  local res = {'cycle', found.id, chain[found.id] and '1' or '0'}
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
