-- purge.lua: Admin.purge. Deletes each final record with everything the retention sweep
-- deletes (record, edges, dependents, done list, index entries); other ids are left alone.
-- The counters in K_COUNTS keep counting purged invocations, as after retention.

-- ARGV[4..] ids
local deleted = 0
for j = 4, #ARGV do
  local id = ARGV[j]
  local fields = redis.call('HMGET', k_inv(id), 's', 'a')
  local s, app = fields[1], fields[2]
  if s and FINAL[s] then
    redis.call('DEL', k_inv(id), k_tg(id), k_wt(id), k_dep(id), k_done(id), k_ch(id))
    redis.call('ZREM', K_IX, id)
    redis.call('ZREM', K_IXF, id)
    if app then
      redis.call('ZREM', k_ixa(app), id)
      redis.call('ZREM', K_FIN, id .. US .. app)
    end
    deleted = deleted + 1
  end
end
return reply(deleted)
