-- A process granted `registry` (but not `sql`) tries to gain SQL through the registry: a new
-- entry with `modules: [sql]`, its own source in an entry that holds sql, and a new entry that
-- imports a library holding sql. Each must be refused; an entry within its own modules is fine.
local io, registry = require("io"), require("registry")

local SRC = 'return { main = function() return 0 end }'

local function try(what, change)
  local v, err = change(registry.snapshot():changes()):apply()
  if err then
    io.print(what, "refused", err:kind(), err:message())
  else
    io.print(what, "applied", v:id())
  end
end

local function main(): integer
  try("create", function(c)
    return c:create({ id = "app:evil", kind = "process.lua",
      data = { source = SRC, method = "main", modules = { "sql" } } })
  end)
  try("update", function(c)
    return c:update({ id = "app:dbuser", kind = "process.lua",
      data = { source = SRC, method = "main", modules = { "sql" } } })
  end)
  try("update-drop", function(c)
    return c:update({ id = "app:dbuser", kind = "process.lua",
      data = { source = SRC, method = "main" } })
  end)
  try("import", function(c)
    return c:create({ id = "app:evil2", kind = "process.lua",
      data = { source = SRC, method = "main", imports = { lib = "app:sqllib" } } })
  end)
  try("allowed", function(c)
    return c:create({ id = "app:fine", kind = "process.lua",
      data = { source = SRC, method = "main", modules = { "io", "time" } } })
  end)
  local pid, err = process.spawn("app:evil", "app:workers")
  io.print("spawn", tostring(pid), tostring(err))
  return 0
end

return { main = main }
