local io = require("io")

local function main()
  process.registry.register("printer")
  local inbox = process.inbox()
  for _, what in ipairs({ "registry", "sql", "store" }) do
    process.spawn_linked("app:writer", "app:processes", what)
  end
  while true do
    local m = inbox:receive()
    io.print("committed " .. tostring(m:payload():data()))
  end
end

return { main = main }
