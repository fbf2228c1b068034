local io = require("io")
local registry = require("registry")

-- Entries in version `v` (-1 when there is no such version).
local function count(v)
  local snap = registry.snapshot_at(v)
  if not snap then return -1 end
  return #snap:entries()
end

local function main()
  for _, v in ipairs(registry.versions()) do
    io.print("have " .. v:id())
  end
  io.print("at1 " .. count(1))
  io.print("at3000 " .. count(3000))
  return 0
end

return { main = main }
