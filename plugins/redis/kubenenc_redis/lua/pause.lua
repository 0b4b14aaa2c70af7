-- pause.lua: Coordination.pause, with the cycle check.

-- ARGV[4] id, ARGV[5] worker, ARGV[6] max nodes, ARGV[7..] targets.
-- Returns {'gone'} | {'ready'} | {'paused'} | {'cycle', line...}
local id, worker = ARGV[4], ARGV[5]
local max_nodes = tonumber(ARGV[6])
local r = load(id)
if not r or r.s ~= 'RUNNING' or r.w ~= worker then return reply({'gone'}) end
local open, seen = {}, {}
for j = 7, #ARGV do
  local tid = ARGV[j]
  if not seen[tid] then
    seen[tid] = true
    local t = load(tid)
    if t and not FINAL[t.s] then open[#open+1] = t end
  end
end
if #open == 0 then return reply({'ready'}) end

-- kubenenc.waitgraph.find_loop: walk the PAUSED waiters upward from the waiter, breadth
-- first, comparing ids and call keys with the targets'.
local by_id, by_key = {}, {}
for _, t in ipairs(open) do
  by_id[t.id] = t
  by_key[t.ck] = t
end
local below = {[id] = false}
local nodes = {[id] = r}
local queue = {r}
local head, walked = 1, 1
local found, top = nil, nil
while head <= #queue and not found do
  local node = queue[head]
  head = head + 1
  local t = by_id[node.id] or by_key[node.ck]
  if t then
    found, top = t, node
  else
    -- Who waits on the node: the PAUSED invocations with an edge to it, then the
    -- WAITING_DEPENDENCIES ones that declared it (they run no code yet, so they match by
    -- id only: their call key is replaced by one no target has).
    local ups = redis.call('SMEMBERS', k_wt(node.id))
    local first_dependent = #ups + 1
    for _, d in ipairs(redis.call('SMEMBERS', k_dep(node.id))) do ups[#ups+1] = d end
    for j, up in ipairs(ups) do
      if below[up] == nil then
        local u = redis.call('HMGET', k_inv(up), 's', 'ck', 'dp')
        local want = j < first_dependent and 'PAUSED' or 'WAITING_DEPENDENCIES'
        if u[1] == want then
          below[up] = node.id
          local ck = want == 'PAUSED' and u[2] or ('\0dependent:' .. up)
          nodes[up] = {id = up, ck = ck, dp = u[3]}
          walked = walked + 1
          if walked > max_nodes then
            queue = {}
            break
          end
          queue[#queue+1] = nodes[up]
        end
      end
    end
  end
end
if found then
  local lines = {top.dp}
  local chain = {[top.id] = true}
  local step = below[top.id]
  while step do
    lines[#lines+1] = nodes[step].dp
    chain[step] = true
    step = below[step]
  end
  lines[#lines+1] = found.dp
  if not chain[found.id] then
    -- kubenenc.waitgraph.format_loop
    local body = {}
    for j, line in ipairs(lines) do
      body[j] = (j == 1 and '  ' or '  -> waits on ') .. line
    end
    local message = 'waiting on ' .. lines[#lines] ..
      ' would close a loop that can never finish:\n' .. table.concat(body, '\n') ..
      '\n  (the last call is already waiting higher up this chain)'
    abort(found, 'FAILED', err_json(E_CYCLE, message), 'CycleDetected', true)
  end
  local res = {'cycle'}
  for _, line in ipairs(lines) do res[#res+1] = line end
  return reply(res)
end
for _, t in ipairs(open) do
  redis.call('SADD', k_tg(id), t.id)
  redis.call('SADD', k_wt(t.id), id)
  set_waiters(t, tonumber(t.wt) + 1)
end
release_slot(r)
move(r, 'PAUSED', worker)
return reply({'paused'})
