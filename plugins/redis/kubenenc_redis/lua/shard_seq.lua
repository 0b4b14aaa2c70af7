-- shard_seq.lua: raise this shard's sequence counter to at least ARGV[4] (see
-- kubenenc_redis.shards: sequences comparable across shards). Never lowers it.
local floor = tonumber(ARGV[4])
if tonumber(redis.call('GET', K_SEQ) or '0') < floor then
  redis.call('SET', K_SEQ, string.format('%d', floor))
end
return 0
