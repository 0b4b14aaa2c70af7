-- release_unheld.lua: Coordination.release_unheld (after lib_hand_back.lua).

-- ARGV[4] worker, ARGV[5] max lost, ARGV[6..] the ids it holds. Hands back the rest of its
-- held set (see Coordination.release_unheld). Returns the ids handed back or failed.
local worker, max_lost = ARGV[4], tonumber(ARGV[5])
local mine = {}
for j = 6, #ARGV do mine[ARGV[j]] = true end
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', k_hw(worker))) do
  if not mine[id] then
    if hand_back(id, worker, max_lost, 'no longer holds it') then
      out[#out+1] = id
    else
      held(worker, id, false)  -- a stale entry: not RUNNING or PAUSED here any more
    end
  end
end
return reply(out)
