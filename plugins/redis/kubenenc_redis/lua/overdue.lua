-- overdue.lua: the RUNNING invocations that ran past their timeout by more than a grace.

-- ARGV[4] grace (seconds), ARGV[5] most ids to return. A run's start is its record's last
-- change (the claim, or the resume after a pause), as the enforcer has always judged it.
-- Reads only what workers hold (P:holders, P:hw:<worker>), never the index of every
-- invocation: the cost follows the work in flight, not the calls kept for retention.
local grace, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for _, holder in ipairs(redis.call('SMEMBERS', K_HOLDERS)) do
  for _, id in ipairs(redis.call('SMEMBERS', k_hw(holder))) do
    local v = redis.call('HMGET', k_inv(id), 's', 'u', 'd')
    if v[1] == 'RUNNING' and v[3] then
      local ok, d = pcall(cjson.decode, v[3])
      local timeout = ok and type(d) == 'table' and tonumber(d.timeout)
      if timeout and NOWN - tonumber(v[2]) > timeout + grace then
        out[#out+1] = id
        if #out >= limit then return out end
      end
    end
  end
end
return out
