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

local by_id, by_key = {}, {}
for _, t in ipairs(open) do
  by_id[t.id] = t
  by_key[t.ck] = t
end
-- Who waits on a node: the PAUSED invocations with an edge to it, then the
-- WAITING_DEPENDENCIES ones that declared it.
local function ups(nid)
  local out = {}
  for _, up in ipairs(redis.call('SMEMBERS', k_wt(nid))) do out[#out+1] = {up, 'PAUSED'} end
  for _, up in ipairs(redis.call('SMEMBERS', k_dep(nid))) do
    out[#out+1] = {up, 'WAITING_DEPENDENCIES'}
  end
  return out
end
local function node(up, want)
  local u = redis.call('HMGET', k_inv(up), 's', 'ck', 'dp')
  if u[1] ~= want then return nil end
  return {id = up, ck = want == 'PAUSED' and u[2] or ('\0dependent:' .. up), dp = u[3]}
end
local found, in_chain, lines = find_loop(r, by_id, by_key, max_nodes, ups, node)
if found then
  if not in_chain then
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
