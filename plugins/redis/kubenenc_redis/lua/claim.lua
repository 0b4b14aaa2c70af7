-- claim.lua: Queue.claim (after lib_claim.lua).

-- ARGV[4] pool, ARGV[5] worker, ARGV[6] limit, ARGV[7] (optional, '' for none) the bound
-- (see claim_some), ARGV[8] (optional; the shards of a sharded app pass it): also return
-- the queue's head after the claim. Returns the rows of the claimed invocations as two
-- JSON texts (see rows_json; history left out), or {} when none; with ARGV[8], always four
-- values: the two texts ('' when none), the first member of the pool's queue and the
-- score (not_before) of the first of its delayed calls ('' for none), read after the
-- claim, so in the same atomic step (kubenenc_redis.shards keeps them as head hints). A
-- replayed call: the ids only.
local pool = ARGV[4]
local bound = ARGV[7]
if bound == '' then bound = nil end
local ids, ds, rows = claim_some(pool, ARGV[5], tonumber(ARGV[6]), bound)
if ARGV[8] then
  local head, due = queue_head(pool)
  if #ids == 0 then return reply({'', '', head, due}, ids) end
  local dtext, rtext = rows_json(ds, rows)
  return reply({dtext, rtext, head, due}, ids)
end
if #ids == 0 then return reply(ids) end
local dtext, rtext = rows_json(ds, rows)
return reply({dtext, rtext}, ids)
