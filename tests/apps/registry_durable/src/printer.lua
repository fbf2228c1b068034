local io = require("io")

local function main()
  process.registry.register("printer")
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    io.print("committed " .. tostring(m:payload():data()))
  end
end

return { main = main }
