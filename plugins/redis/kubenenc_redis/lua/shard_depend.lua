-- shard_depend.lua: a dependency's shard's half of declaring ``depends_on`` in a sharded
-- app (see kubenenc_redis.depending): each dependency here that is not final records the
-- dependent (with its shard), so its end is put in the outbox (lib.lua's finalize); one
-- that is final or missing is answered, as this same step sees it.

-- ARGV[4] 'dependent US its shard', ARGV[5..] dependency ids on this shard.
-- Returns {id, 'open' | 'missing' | 'status US display'} per dependency.
local who = ARGV[4]
local out = {}
for j = 5, #ARGV do
  local did = ARGV[j]
  local v = redis.call('HMGET', k_inv(did), 's', 'dp')
  if not v[1] then
    out[#out+1] = {did, 'missing'}
  elseif FINAL[v[1]] then
    out[#out+1] = {did, v[1] .. US .. (v[2] or '')}
  else
    redis.call('SADD', k_xdep(did), who)
    redis.call('HSET', k_inv(did), 'hd', '1')
    out[#out+1] = {did, 'open'}
  end
end
return reply(out)
