-- open.lua: which of a window of ids may still be open, for wait_final.

-- ARGV[4..] ids. Returns how many of them, counted from the first, may still be open: the
-- position of the last one that exists and is not final (0 when none). The ids are read
-- from the last one backwards and only down to that one: every id after it is final (or
-- gone), and those before it are left for the caller's next call. So while a window ends
-- in order each id is read about once, not once per call.
-- Marks that last open one as waited on, so that becoming final pushes to its ``done``
-- list (in the same atomic step: no push can be missed between this read and the
-- caller's block). When the last id given is final or missing already, it is pushed now,
-- so that a block on its list pipelined behind this call returns at once.
local n = #ARGV - 3
local open = 0
for j = #ARGV, 4, -1 do
  local s = redis.call('HGET', k_inv(ARGV[j]), 's')
  if s and not FINAL[s] then
    open = j - 3
    break
  end
end
if open > 0 then
  local id = ARGV[open + 3]
  redis.call('HSET', k_inv(id), 'wn', '1')
  -- Only a push for an id that did not exist yet can be in the list of an open one.
  redis.call('DEL', k_done(id))
end
if n > 0 and open ~= n then
  local done = k_done(ARGV[#ARGV])
  if redis.call('LLEN', done) == 0 then
    redis.call('RPUSH', done, '1')
    redis.call('EXPIRE', done, DONE_TTL)
  end
end
return open
