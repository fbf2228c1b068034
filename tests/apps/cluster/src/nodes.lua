-- The nodes of the simulated cluster and the node a PID names ({n2@host|0x…} → "n2"; nil on a
-- standalone node).
local function node_of(pid): string?
    return string.match(tostring(pid), "^{([^@|}]+)@")
end

return { NAMES = { "n1", "n2", "n3" }, node_of = node_of }
