-- cancel.lua: Queue.cancel and Queue.fail, with the dependents cascade.

-- ARGV[4] id, ARGV[5] 'cancel' or 'fail', ARGV[6] reason or error type, ARGV[7] message
local r = load(ARGV[4])
if not r or FINAL[r.s] then return reply(0) end
if ARGV[5] == 'cancel' then
  abort(r, 'CANCELLED', nil, ARGV[6], false)
else
  local reason = string.match(ARGV[6], '([^.]*)$')
  abort(r, 'FAILED', err_json(ARGV[6], ARGV[7]), reason, false)
end
return reply(1)
