-- move_in.lua: write invocations read by move_read.lua on another shard into this one (a
-- reshard; see kubenenc_redis.reshard). Idempotent per invocation: one whose record is
-- here already is skipped, so a reshard resumed after a crash writes and counts each once.

-- ARGV[4]: move_read.lua's JSON array. Returns how many were written.
local moved = 0
for _, it in ipairs(cjson.decode(ARGV[4])) do
  local id = it.id
  local key = k_inv(id)
  if redis.call('EXISTS', key) == 0 then
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
