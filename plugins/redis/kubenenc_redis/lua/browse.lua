-- browse.lua: the candidates of one Browse.browse call (read only; see kubenenc_redis.reads).
-- Walks an id index below a sequence, at most ``budget`` entries, and checks the fields the
-- records keep apart with one HMGET each, reading only the fields a filter needs.

-- ARGV[4] the index ('failed', 'app' or 'all'), ARGV[5] top sequence (exclusive, '' for
-- none), ARGV[6] budget, ARGV[7] want, ARGV[8..12] status, pool, worker, task, app, ARGV[13]
-- text ('' for any; casefolded ASCII, matched only against display texts that are ASCII,
-- whose casefold is their lower case). Returns {scanned, last_seq, id, seq, dp, ...}.
local top = ARGV[5] == '' and '+inf' or ('(' .. ARGV[5])
local budget, want = tonumber(ARGV[6]), tonumber(ARGV[7])
local status, pool, worker, task, app = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local text = ARGV[13]
local index = K_IX
if ARGV[4] == 'failed' then index = K_IXF elseif ARGV[4] == 'app' then index = k_ixa(app) end
local tl = #task
local BF = {'s', 'dp'}
local function need(on, field)
  if not on then return nil end
  BF[#BF+1] = field
  return #BF
end
local ip, iw, ia, ic = need(pool ~= '', 'p'), need(worker ~= '', 'w'), need(app ~= '', 'a'),
                       need(tl > 0, 'ck')
local ids = redis.call('ZREVRANGEBYSCORE', index, top, '-inf', 'WITHSCORES', 'LIMIT', 0, budget)
local out, found, scanned, last = {0, ''}, 0, 0, ''
for j = 1, #ids, 2 do
  scanned = scanned + 1
  last = ids[j + 1]
  local v = redis.call('HMGET', k_inv(ids[j]), unpack(BF))
  local dp = v[2] or ''
  if v[1] and (status == '' or v[1] == status) and (not ip or v[ip] == pool)
     and (not iw or v[iw] == worker) and (not ia or v[ia] == app)
     and (not ic or (v[ic] and string.sub(v[ic], 1, tl + 1) == task .. '#'))
     and (text == '' or string.find(dp, '[\128-\255]')
          or string.find(string.lower(dp), text, 1, true)) then
    out[#out+1] = ids[j]
    out[#out+1] = ids[j + 1]
    out[#out+1] = dp
    found = found + 1
    if found >= want then break end
  end
end
out[1] = scanned
out[2] = last
return out
