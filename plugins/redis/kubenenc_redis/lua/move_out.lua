-- move_out.lua: delete invocations from this shard after move_in.lua wrote them on their
-- new one (a reshard; see kubenenc_redis.reshard): the record, its queue and index
-- entries, its edge sets (move_edges.lua writes its dependency edges anew), and its count. Idempotent: an id without a record is skipped.

-- ARGV[4..] ids. Returns how many were deleted.
local gone = 0
for j = 4, #ARGV do
  local id = ARGV[j]
  local key = k_inv(id)
  local v = redis.call('HMGET', key, 's', 'a', 'p', 'ck', 'm', 'gk', 'pa', 'rk')
  if v[1] then
    local r = {id = id, s = v[1], a = v[2] or '', p = v[3] or '', ck = v[4] or ''}
    count(r, r.s, -1)
    local m, gk, pa, rk = v[5] or '', v[6] or '', v[7] or '', v[8] or ''
    if m ~= '' then
      redis.call('ZREM', k_q(r.p), m)
      redis.call('ZREM', k_dl(r.p), m)
      if rk ~= '' then redis.call('ZREM', k_park(r.p, rk), m) end
    end
    redis.call('ZREM', K_IX, id)
    redis.call('ZREM', k_ixa(r.a), id)
    redis.call('ZREM', K_IXF, id)
    redis.call('ZREM', K_FIN, id .. US .. r.a)
    if pa ~= '' then redis.call('ZREM', k_ch(pa), id) end
    if gk ~= '' and redis.call('HGET', K_REG, gk) == id then redis.call('HDEL', K_REG, gk) end
    redis.call('DEL', key, k_tg(id), k_wt(id), k_dep(id), k_done(id), k_xdep(id), k_xst(id))
    gone = gone + 1
  end
end
return reply(gone)
