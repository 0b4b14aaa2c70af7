-- activity.lua: Browse.activity (read only; see kubenenc_redis.reads). Counts K_FIN (final
-- invocations by when they ended) per bucket and reads the status (and app) of up to
-- ``sample`` members of each bucket.

-- ARGV[4] since, ARGV[5] width, ARGV[6] buckets, ARGV[7] sample, ARGV[8] app ('' for any).
-- Returns per bucket {count, sampled, of_app, failed}, flattened.
local since, width, n = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local sample, app = tonumber(ARGV[7]), ARGV[8]
local out = {}
for b = 0, n - 1 do
  local lo = string.format('%.17g', since + b * width)
  local hi = '(' .. string.format('%.17g', since + (b + 1) * width)
  local count = redis.call('ZCOUNT', K_FIN, lo, hi)
  local of_app, failed, sampled = 0, 0, 0
  if count > 0 then
    local ms = redis.call('ZRANGEBYSCORE', K_FIN, lo, hi, 'LIMIT', 0, sample)
    sampled = #ms
    for _, m in ipairs(ms) do
      local sep = string.find(m, US, 1, true)
      if app == '' or string.sub(m, sep + 1) == app then
        of_app = of_app + 1
        if redis.call('HGET', k_inv(string.sub(m, 1, sep - 1)), 's') == 'FAILED' then
          failed = failed + 1
        end
      end
    end
  end
  out[#out+1] = count
  out[#out+1] = sampled
  out[#out+1] = of_app
  out[#out+1] = failed
end
return out
