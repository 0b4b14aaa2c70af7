-- shard_boost.lua: change the waiter count (claim order) of targets on this shard whose
-- waiter lives on another shard (see kubenenc_redis.crossing).

-- ARGV[4] the change (+1 or -1), ARGV[5..] target ids. Final or missing ones are skipped.
local delta = tonumber(ARGV[4])
for j = 5, #ARGV do
  local t = load(ARGV[j])
  if t and not FINAL[t.s] then set_waiters(t, math.max(0, tonumber(t.wt) + delta)) end
end
return reply(0)
