-- finish_and_claim.lua: FinishAndClaim, one atomic step (after lib_finish.lua and
-- lib_claim.lua).

-- ARGV[4] pool, ARGV[5] worker, ARGV[6] limit, ARGV[7] the outcomes; ARGV[8] (optional; the
-- shards of a sharded app pass it, with ARGV[9]) the claim's bound ('' for none, see
-- claim_some). Returns {finished flags, d texts, rows} (the two JSON texts of rows_json, ''
-- when none were claimed); with ARGV[9] also the pool's queue head and first delayed score
-- after the step (as claim.lua), and the flags followed by the finish's notes (as
-- finish.lua). A replayed call: {flags, claimed ids} as JSON.
local done = finish_all(ARGV[5], ARGV[7])
local bound = ARGV[8]
if bound == '' then bound = nil end
local ids, ds, rows = claim_some(ARGV[4], ARGV[5], tonumber(ARGV[6]), bound)
if ARGV[9] then
  done = done .. finish_notes()
  local head, due = queue_head(ARGV[4])
  if #ids == 0 then return reply({done, '', '', head, due}, {done, ids}) end
  local dtext, rtext = rows_json(ds, rows)
  return reply({done, dtext, rtext, head, due}, {done, ids})
end
if #ids == 0 then return reply({done, '', ''}, {done, ids}) end
local dtext, rtext = rows_json(ds, rows)
return reply({done, dtext, rtext}, {done, ids})
