-- lib_walk.lua: find_loop, the cycle check's walk, for pause.lua (one server) and
-- lua_coord/pause.lua (the coordination slot of a sharded app): the same walk over two
-- stores of the wait graph. Uses no key, so both loaders can prepend it.

-- kubenenc.waitgraph.find_loop: walk upward from ``root`` ({id, ck, dp}), breadth first,
-- comparing each node's id and call key with the open targets' (``by_id``, ``by_key``).
-- ``ups(id)`` lists who waits on ``id`` as {up id, kind} pairs, the PAUSED waiters first;
-- ``node(up, kind)`` gives {id, ck, dp} of one that still counts, or nil. A dependent (it
-- runs no code yet) must come with a call key no target has, so it matches by id only.
-- Past ``max_nodes`` nodes the walk stops and finds nothing (as the engine's does).
-- Returns nil, or the target found, whether it is in the chain, and the loop's lines.
local function find_loop(root, by_id, by_key, max_nodes, ups, node)
  local below = {[root.id] = false}
  local nodes = {[root.id] = root}
  local queue = {root}
  local head, walked = 1, 1
  local found, top = nil, nil
  while head <= #queue and not found do
    local at = queue[head]
    head = head + 1
    local t = by_id[at.id] or by_key[at.ck]
    if t then
      found, top = t, at
    else
      for _, up in ipairs(ups(at.id)) do
        local uid = up[1]
        if below[uid] == nil then
          local n = node(uid, up[2])
          if n then
            below[uid] = at.id
            nodes[uid] = n
            walked = walked + 1
            if walked > max_nodes then
              queue = {}
              break
            end
            queue[#queue + 1] = n
          end
        end
      end
    end
  end
  if not found then return nil end
  local lines = {top.dp}
  local chain = {[top.id] = true}
  local step = below[top.id]
  while step do
    lines[#lines + 1] = nodes[step].dp
    chain[step] = true
    step = below[step]
  end
  lines[#lines + 1] = found.dp
  return found, chain[found.id] == true, lines
end
