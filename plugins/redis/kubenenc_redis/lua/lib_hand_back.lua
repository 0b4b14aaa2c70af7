-- lib_hand_back.lua: hand_back, for recover.lua and release_unheld.lua.

-- Give back ``id`` if it is RUNNING or PAUSED on ``holder``: ``lost`` counted, slot and wait
-- edges released, PENDING again, or FAILED with WorkerLost past ``max_lost``. Whether it was.
local function hand_back(id, holder, max_lost, why)
  local r = load(id)
  if not (r and r.w == holder and (r.s == 'RUNNING' or r.s == 'PAUSED')) then return false end
  local lost = tonumber(r.lo) + 1
  redis.call('HSET', k_inv(id), 'lo', lost)
  if lost > max_lost then
    local message = 'worker ' .. holder .. ' ' .. why .. '; lost ' .. lost .. ' times'
    abort(r, 'FAILED', err_json(E_LOST, message), 'WorkerLost', false)
  else
    release_slot(r)
    for _, tid in ipairs(redis.call('SMEMBERS', k_tg(id))) do
      local t = load(tid)
      if t and not FINAL[t.s] then set_waiters(t, math.max(0, tonumber(t.wt) - 1)) end
    end
    remove_edges(id)
    move(r, 'PENDING', nil, 'worker ' .. holder .. ' lost', '')
  end
  return true
end
