local io = require("io")
local time = require("time")

local function main(): integer
  local inbox = process.inbox()
  process.spawn("app:napper", "app:procs", process.pid(), "p1")
  process.spawn("app:napper", "app:procs", process.pid(), "p2")
  local done = channel.new(3)
  local order = {}
  for _, name in ipairs({ "a", "b", "c" }) do
    coroutine.spawn(function()
      time.sleep("10ms")
      order[#order + 1] = name
      done:send(name)
    end)
  end
  for _ = 1, 3 do
    done:receive()
  end
  for _ = 1, 2 do
    order[#order + 1] = inbox:receive():payload():data()
  end
  io.print(table.concat(order, " "))
  return 0
end

return { main = main }
