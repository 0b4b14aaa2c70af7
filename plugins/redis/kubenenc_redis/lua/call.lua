-- call.lua: the start of every call, before its step. Makes the per-call state new (the
-- header declares it; in the function library the functions of lib.lua keep it as upvalues
-- across calls, so each call must start from empty tables) and answers a request already
-- applied from its stored reply (see ``reply`` in lib.lua).

-- Counter changes and holders are collected during the call and written once at its end.
-- So are the held sets (HW[worker][id]: true added, false removed; the last change wins)
-- and the final index entries (FIN): one command per key instead of one per invocation.
-- Counter changes are nested tables, CD[app][pool][task][status], so a change builds no
-- string; the field names are built once per call, when written.
-- RATES: the rate keys read in this call (see lib_claim.lua). NEWS: whether the call wrote
-- news for dependents on other shards (P:xout); QUEUED: whether it put a call in a queue
-- (ready or delayed) or back from a parking place: a sharded app's finish reports both
-- (finish.lua), so its process reads the outbox only after news and knows which shards'
-- queue heads moved (kubenenc_redis.shards).
CD, HOLD, WAKE, HW, FIN, TASK, RATES, NEWS, QUEUED = {}, {}, {}, {}, {}, {}, {}, false, false
if REQ ~= '' then
  local cached = redis.call('GET', k_rq(REQ))
  if cached then return {'replay', cached} end
end
