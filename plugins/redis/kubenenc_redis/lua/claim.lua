-- claim.lua: Queue.claim (after lib_claim.lua).

-- ARGV[4] pool, ARGV[5] worker, ARGV[6] limit, ARGV[7] (optional) the bound (see
-- claim_some). Returns the rows of the claimed invocations
-- as two JSON texts (see rows_json; history left out), or {} when none; a replayed call,
-- their ids only.
local ids, ds, rows = claim_some(ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7])
if #ids == 0 then return reply(ids) end
local dtext, rtext = rows_json(ds, rows)
return reply({dtext, rtext}, ids)
