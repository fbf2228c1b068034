local io = require("io")
local sql = require("sql")

local function main(): integer
  for _ = 1, 2 do
    process.spawn("app:spinner", "app:workers")
    process.spawn("app:spinner", "app:workers", "nested")
  end
  local db, err = sql.get("app:db")
  if err then
    io.print("no db: " .. tostring(err))
    return 1
  end
  io.print("ready")
  while true do
    local line = io.readline()
    if line == nil or line == "" then
      return 0
    end
    local rows, qerr = db:query("SELECT upper(?) AS v", { line })
    if qerr then
      io.print("query failed: " .. tostring(qerr))
      return 1
    end
    io.print("ok " .. rows[1].v)
  end
end

return { main = main }
