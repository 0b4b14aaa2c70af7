-- shard_settle.lua: tell dependents of a sharded app (on this shard) that one of their
-- dependencies ended (see kubenenc_redis.depending). Idempotent: a dependent no longer
-- WAITING_DEPENDENCIES is left alone; one not registered yet keeps the news in P:xst for
-- its registration to read.

-- ARGV[4..], three per news: dependent id, dependency id, 'missing' or 'status US display'.
-- Returns per news 'early' (not registered yet), 'done' (not waiting), 'waiting' (still
-- waits), 'pending' (every dependency succeeded) or 'failed' (it failed, cascading).
local ok = 'SUCCESS' .. US
local function settle(did, dep_id, st)
  local kx = k_xst(did)
  local d = load(did)
  if d and d.s ~= 'WAITING_DEPENDENCIES' then return 'done' end
  redis.call('HSET', kx, dep_id, st)
  if not d then
    redis.call('EXPIRE', kx, math.ceil(RET))
    return 'early'
  end
  if string.sub(st, 1, #ok) == ok then
    for x in string.gmatch(d.dn, '[^,]+') do
      local v = redis.call('HGET', kx, x)
      if not v or string.sub(v, 1, #ok) ~= ok then return 'waiting' end
    end
    redis.call('DEL', kx)
    move(d, 'PENDING', nil, 'dependencies succeeded')
    return 'pending'
  end
  local dep = nil
  if st ~= 'missing' then
    local s, dp = string.match(st, '^([^' .. US .. ']*)' .. US .. '(.*)$')
    dep = {id = dep_id, s = s, dp = dp, sq = ''}
  end
  fail_dependency(d, dep, dep_id)
  finalize(d, false, nil)
  return 'failed'
end
local out = {}
for j = 4, #ARGV, 3 do out[#out+1] = settle(ARGV[j], ARGV[j + 1], ARGV[j + 2]) end
return reply(out)
