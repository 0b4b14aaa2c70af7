-- lib_resume.lua: resume_paused, for resume.lua and resume_early.lua.

-- argv[4] worker, argv[5] limit, argv[6..] ids (the step's ARGV: a library function cannot
-- see it as a global). Resumes up to ``limit`` of the ids PAUSED on
-- ``worker`` whose running key has a free slot: those whose targets are all final, or, when
-- ``early`` (a timed wait ran out), whether or not they are, each target that is not losing
-- this waiter from its count. The other ids that are PAUSED stay so; the rest are gone.
-- Returns {resumed ids, gone ids}.
local function targets_final(id)
  for _, tid in ipairs(redis.call('SMEMBERS', k_tg(id))) do
    local ts = redis.call('HGET', k_inv(tid), 's')
    if ts and not FINAL[ts] then return false end
  end
  return true
end

local function take_slot(r)
  if r.rk == '' or r.rl == '' then return true end
  if tonumber(redis.call('HGET', K_RUN, r.rk) or '0') >= tonumber(r.rl) then return false end
  add_running(r.rk, 1)
  return true
end

local function resume_paused(argv, early)
  local worker, limit = argv[4], tonumber(argv[5])
  local resumed, gone = {}, {}
  for j = 6, #argv do
    local id = argv[j]
    local r = load(id)
    if not r or r.s ~= 'PAUSED' or r.w ~= worker then
      gone[#gone+1] = id
    elseif #resumed < limit and (early or targets_final(id)) and take_slot(r) then
      if early then
        for _, tid in ipairs(redis.call('SMEMBERS', k_tg(id))) do
          local t = load(tid)
          if t and not FINAL[t.s] then set_waiters(t, math.max(0, tonumber(t.wt) - 1)) end
        end
      end
      remove_edges(id)
      move(r, 'RUNNING', worker, early and 'wait timed out' or nil)
      resumed[#resumed+1] = id
    end
  end
  return {resumed, gone}
end
