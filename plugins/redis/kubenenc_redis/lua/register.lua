-- register.lua: Queue.register (register_items, in lib_register.lua).

-- ARGV[4]: the items as one JSON array (one argument parses faster on both sides than
-- twelve per item), each [id gk policy pool priority app rk rl ck dp pa [deps...] nb tk tr cb],
-- every value a string (``nb``: not_before, '0' for at once; ``tk``/``tr``: rate key and
-- rate spec, '' for none; ``cb``: the callbacks plan, '' for none); ARGV[5..]: each
-- item's ``d`` text (apart: JSON in JSON parses slowly).
-- Returns one JSON text, [[kind, id], ...].
return reply(cjson.encode(register_items(cjson.decode(ARGV[4]), ARGV, 4)))
