-- read.lua: records for get, get_many and query (read only).

-- ARGV[4] '1' to include the history; ARGV[5..] ids. Two texts, one entry per id: the
-- records' own ``d`` JSON joined by RS (which JSON text cannot hold unescaped; '' for a
-- missing record), so that the client can keep each unparsed until it needs it, and the
-- JSON of the rest of each row with 0 in the place of ``d`` (false for a missing record).
-- Atomic, and two bulk replies however many records: parsing many small replies costs more
-- in a Python client than the whole read on the server.
local history = ARGV[4] == '1'
local ds, rows = {}, {}
for j = 5, #ARGV do
  local v = row(ARGV[j], history)
  if v then
    ds[#ds+1] = v[1]
    v[1] = 0
    rows[#rows+1] = v
  else
    ds[#ds+1] = ''
    rows[#rows+1] = false
  end
end
if #rows == 0 then return {'', '[]'} end
return {table.concat(ds, RS), cjson.encode(rows)}
