-- running_keys.lua: KeyUsage.running_keys (read only; see kubenenc_redis.reads). Every
-- running key with slots held (K_RUN only holds those: a key is deleted at zero), and the
-- RUNNING invocations holding them, found through the held sets of the holding workers
-- (K_HOLDERS, then each one's held set): at most ``budget`` held invocations are read,
-- whatever is stored.

-- ARGV[4] budget. Returns {n_keys, key1, n1, key2, n2, ..., id1, rk1, id2, rk2, ...}.
local budget = tonumber(ARGV[4])
local run = redis.call('HGETALL', K_RUN)
local out = {#run / 2}
for i = 1, #run do out[#out+1] = run[i] end
local seen = 0
for _, w in ipairs(redis.call('SMEMBERS', K_HOLDERS)) do
  if seen >= budget then break end
  for _, id in ipairs(redis.call('SMEMBERS', k_hw(w))) do
    if seen >= budget then break end
    seen = seen + 1
    local f = redis.call('HMGET', k_inv(id), 's', 'rk')
    if f[1] == 'RUNNING' and f[2] and f[2] ~= '' then
      out[#out+1] = id
      out[#out+1] = f[2]
    end
  end
end
return out
