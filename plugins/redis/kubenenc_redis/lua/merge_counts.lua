-- merge_counts.lua: add a removed shard's remaining counters (invocations that expired or
-- were purged, still counted) to this shard's, once (a reshard; see kubenenc_redis.reshard).

-- ARGV[4]: the removed shard's prefix; ARGV[5..]: counter field, number, ... Returns 1 when
-- added, 0 when that shard's counters were added here before.
if redis.call('SISMEMBER', K_MERGED, ARGV[4]) == 1 then return reply(0) end
for j = 5, #ARGV, 2 do
  redis.call('HINCRBY', K_COUNTS, ARGV[j], tonumber(ARGV[j + 1]))
end
redis.call('SADD', K_MERGED, ARGV[4])
return reply(1)
