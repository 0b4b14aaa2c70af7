-- finish.lua: Queue.finish (after lib_finish.lua).

-- ARGV[4] worker, ARGV[5] the outcomes (see finish_all).
return reply(finish_all(ARGV[4], ARGV[5]))
