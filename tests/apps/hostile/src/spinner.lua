-- Endless loops of every kind issue 11 lists. Those Luau can yield out of are preempted; the
-- ones inside a C call (sort, gsub, metamethods, handlers, patterns) are killed after a budget.
local kinds = {}

function kinds.root()
  while true do end
end

function kinds.nested()
  coroutine.wrap(function() while true do end end)()
end

function kinds.sort()
  local t = { 3, 1, 2 }
  table.sort(t, function(a, b)
    while true do end
  end)
end

function kinds.gsub()
  string.gsub("abc", "%w", function(c)
    while true do end
  end)
end

function kinds.index()
  local t = setmetatable({}, { __index = function() while true do end end })
  return t.x
end

function kinds.tostring()
  local t = setmetatable({}, { __tostring = function() while true do end end })
  return tostring(t)
end

function kinds.xpcall()
  xpcall(function() error("boom") end, function() while true do end end)
end

function kinds.pattern()
  string.find(string.rep("a", 5000), ".-.-.-.-.-b")
end

-- A kill that a pcall tries to swallow, in a loop.
function kinds.pcall()
  while true do
    pcall(kinds.sort)
  end
end

local function main(kind: string): integer
  local f = kinds[kind]
  if not f then
    error("no such kind: " .. tostring(kind))
  end
  f()
  return 0
end

return { main = main }
