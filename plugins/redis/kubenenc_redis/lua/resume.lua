-- resume.lua: Coordination.resume.

-- ARGV[4] worker, ARGV[5] limit, ARGV[6..] ids. Returns {resumed ids, gone ids}.
local worker, limit = ARGV[4], tonumber(ARGV[5])
local resumed, gone = {}, {}
for j = 6, #ARGV do
  local id = ARGV[j]
  local r = load(id)
  if not r or r.s ~= 'PAUSED' or r.w ~= worker then
    gone[#gone+1] = id
  elseif #resumed < limit then
    local ready = true
    for _, tid in ipairs(redis.call('SMEMBERS', k_tg(id))) do
      local ts = redis.call('HGET', k_inv(tid), 's')
      if ts and not FINAL[ts] then
        ready = false
        break
      end
    end
    if ready and r.rk ~= '' and r.rl ~= '' then
      if tonumber(redis.call('HGET', K_RUN, r.rk) or '0') >= tonumber(r.rl) then
        ready = false
      else
        add_running(r.rk, 1)
      end
    end
    if ready then
      remove_edges(id)
      move(r, 'RUNNING', worker)
      resumed[#resumed+1] = id
    end
  end
end
return reply({resumed, gone})
