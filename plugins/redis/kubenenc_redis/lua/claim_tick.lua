-- claim_tick.lua: TickClaims.claim_tick, a compare-and-set of a schedule's last tick that
-- registers the tick's calls in the same step.

-- ARGV[4]: the schedule; ARGV[5]: the last tick the caller read ('' for none); ARGV[6]: the
-- tick to claim (whole seconds); ARGV[7]: the calls as register.lua's ARGV[4], and their
-- ``d`` texts from ARGV[8]. Returns '' when the stored tick is not ARGV[5] or not before
-- ARGV[6] (nothing written), else register.lua's reply.
local stored = redis.call('HGET', K_TICKS, ARGV[4]) or ''
if stored ~= ARGV[5] or (stored ~= '' and tonumber(stored) >= tonumber(ARGV[6])) then
  return reply('')
end
redis.call('HSET', K_TICKS, ARGV[4], ARGV[6])
return reply(cjson.encode(register_items(cjson.decode(ARGV[7]), ARGV, 7)))
