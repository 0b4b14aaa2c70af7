-- sweep.lua: the retention sweep, one batch (run by RedisBackend.recover in a loop).

-- ARGV[4] most final invocations to forget. Forgets those that ended more than RET seconds
-- ago, oldest first, with their index entries; returns how many it forgot. Commands take
-- the whole batch at once (one DEL, one ZREM per index), not one invocation at a time.
local limit = tonumber(ARGV[4])
local old = redis.call('ZRANGEBYSCORE', K_FIN, '-inf', string.format('%.17g', NOWN - RET),
                       'LIMIT', 0, limit)
if #old == 0 then return 0 end
local ids, gone, by_app = {}, {}, {}
for _, m in ipairs(old) do
  local sep = string.find(m, US, 1, true)
  local id, app = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
  ids[#ids+1] = id
  local of_app = by_app[app]
  if not of_app then
    of_app = {}
    by_app[app] = of_app
  end
  of_app[#of_app+1] = id
  gone[#gone+1] = k_inv(id)
  gone[#gone+1] = k_tg(id)
  gone[#gone+1] = k_wt(id)
  gone[#gone+1] = k_dep(id)
  gone[#gone+1] = k_ch(id)
end
for j = 1, #gone, 1000 do redis.call('DEL', unpack(gone, j, math.min(j + 999, #gone))) end
write_in_bulk('ZREM', K_IX, ids)
write_in_bulk('ZREM', K_IXF, ids)
for app, of_app in pairs(by_app) do write_in_bulk('ZREM', k_ixa(app), of_app) end
-- ``old`` is the head of P:fin in score order, so it goes by rank.
redis.call('ZREMRANGEBYRANK', K_FIN, 0, #old - 1)
return reply(#old)
