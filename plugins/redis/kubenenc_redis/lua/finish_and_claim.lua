-- finish_and_claim.lua: FinishAndClaim, one atomic step (after lib_finish.lua and
-- lib_claim.lua).

-- ARGV[4] pool, ARGV[5] worker, ARGV[6] limit, ARGV[7] the outcomes. Returns
-- {finished flags, d texts, rows} (the two JSON texts of rows_json, '' when none were
-- claimed); a replayed call, {flags, claimed ids} as JSON.
local done = finish_all(ARGV[5], ARGV[7])
local ids, ds, rows = claim_some(ARGV[4], ARGV[5], tonumber(ARGV[6]))
if #ids == 0 then return reply({done, '', ''}, {done, ids}) end
local dtext, rtext = rows_json(ds, rows)
return reply({done, dtext, rtext}, {done, ids})
