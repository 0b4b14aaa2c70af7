-- move_in.lua: write invocations read by move_read.lua on another shard into this one (a
-- reshard; see kubenenc_redis.reshard). Idempotent per invocation: one whose record is
-- here already is skipped, so a reshard resumed after a crash writes and counts each once.

-- A moved call whose sequence another call here has already (calls from two old shards,
-- registered at one time by two processes) gets the next free one, with its queue member
-- to match, so sequences stay one per call on each shard and paging by them skips none;
-- the calls of one step get theirs in the order of their old ones.

-- ARGV[4]: move_read.lua's JSON array. Returns how many were written.
local function field(it, name)
  for k = 1, #it.f, 2 do
    if it.f[k] == name then return k + 1 end
  end
  return nil
end
local function unique(it)
  local at = field(it, 'sq')
  if not at or it.f[at] == '' then return end
  local sq = tonumber(it.f[at])
  while true do
    local there = redis.call('ZRANGEBYSCORE', K_IX, sq, sq, 'LIMIT', 0, 2)
    if #there == 0 or (#there == 1 and there[1] == it.id) then break end
    sq = sq + 1
  end
  if sq == tonumber(it.f[at]) then return end
  local text = string.format('%015d', sq)
  it.f[at] = text
  local m = field(it, 'm')
  if m and it.f[m] ~= '' then  -- waiters %08d, priority %012d, sequence %015d, id
    it.f[m] = string.sub(it.f[m], 1, 20) .. text .. string.sub(it.f[m], 36)
  end
end
local items = cjson.decode(ARGV[4])
local function seq(it)
  local at = field(it, 'sq')
  return at and it.f[at] or ''
end
table.sort(items, function(x, y) return seq(x) < seq(y) end)
local moved = 0
for _, it in ipairs(items) do
  local id = it.id
  local key = k_inv(id)
  if redis.call('EXISTS', key) == 0 then
    unique(it)
    redis.call('HSET', key, unpack(it.f))
    if it.ttl > 0 then redis.call('PEXPIRE', key, it.ttl) end
    local r = {}
    for k = 1, #it.f, 2 do r[it.f[k]] = it.f[k + 1] end
    r.a, r.p, r.ck, r.id = r.a or '', r.p or '', r.ck or '', id
    count(r, r.s, 1)
    local m = r.m or ''
    if it.pl == 'dl' then
      redis.call('ZADD', k_dl(r.p), it.sc, m)
    elseif it.pl ~= '' then  -- parked ones are queued: a claim parks them again if need be
      redis.call('ZADD', k_q(r.p), 0, m)
      WAKE[r.p] = (WAKE[r.p] or 0) + 1
    end
    local sq = r.sq or ''
    if sq ~= '' then
      redis.call('ZADD', K_IX, sq, id)
      redis.call('ZADD', k_ixa(r.a), sq, id)
      if r.s == 'FAILED' then redis.call('ZADD', K_IXF, sq, id) end
      if (r.pa or '') ~= '' then redis.call('ZADD', k_ch(r.pa), sq, id) end
      if tonumber(redis.call('GET', K_SEQ) or '0') < tonumber(sq) then
        redis.call('SET', K_SEQ, string.format('%d', tonumber(sq)))
      end
    end
    if it.fin then redis.call('ZADD', K_FIN, it.fin, id .. US .. r.a) end
    if it.reg then redis.call('HSETNX', K_REG, r.gk, id) end
    if #it.dep > 0 then redis.call('SADD', k_dep(id), unpack(it.dep)) end
    if #it.tg > 0 then redis.call('SADD', k_tg(id), unpack(it.tg)) end
    if #it.wt > 0 then redis.call('SADD', k_wt(id), unpack(it.wt)) end
    moved = moved + 1
  end
end
return reply(moved)
