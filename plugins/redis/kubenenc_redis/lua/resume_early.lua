-- resume_early.lua: ResumeEarly.resume_early (a timed wait inside a task ran out).

-- ARGV[4] worker, ARGV[5] limit, ARGV[6..] ids. Returns {resumed ids, gone ids}.
-- As resume.lua, whether or not the targets are final: each target that is not final loses
-- this waiter from its count.
local worker, limit = ARGV[4], tonumber(ARGV[5])
local resumed, gone = {}, {}
for j = 6, #ARGV do
  local id = ARGV[j]
  local r = load(id)
  if not r or r.s ~= 'PAUSED' or r.w ~= worker then
    gone[#gone+1] = id
  elseif #resumed < limit then
    local ready = true
    if r.rk ~= '' and r.rl ~= '' then
      if tonumber(redis.call('HGET', K_RUN, r.rk) or '0') >= tonumber(r.rl) then
        ready = false
      else
        add_running(r.rk, 1)
      end
    end
    if ready then
      for _, tid in ipairs(redis.call('SMEMBERS', k_tg(id))) do
        local t = load(tid)
        if t and not FINAL[t.s] then set_waiters(t, math.max(0, tonumber(t.wt) - 1)) end
      end
      remove_edges(id)
      move(r, 'RUNNING', worker, 'wait timed out')
      resumed[#resumed+1] = id
    end
  end
end
return reply({resumed, gone})
