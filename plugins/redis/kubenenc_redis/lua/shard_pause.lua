-- shard_pause.lua: the waiter's own shard's half of a pause across shards (see
-- kubenenc_redis.crossing): the cycle check and the edges to other shards were written in
-- the coordination slot just before, so this step only checks the waiter, writes the edges
-- to the targets on this shard, and pauses the waiter.

-- ARGV[4] id, ARGV[5] worker, ARGV[6..] the targets on this shard.
-- Returns {'gone'} | {'paused'}.
local id, worker = ARGV[4], ARGV[5]
local r = load(id)
if not r or r.s ~= 'RUNNING' or r.w ~= worker then return reply({'gone'}) end
local seen = {}
for j = 6, #ARGV do
  local tid = ARGV[j]
  if not seen[tid] then
    seen[tid] = true
    local t = load(tid)
    if t and not FINAL[t.s] then
      redis.call('SADD', k_tg(id), t.id)
      redis.call('SADD', k_wt(t.id), id)
      set_waiters(t, tonumber(t.wt) + 1)
    end
  end
end
release_slot(r)
move(r, 'PAUSED', worker)
return reply({'paused'})
