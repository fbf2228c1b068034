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
  local woke = 0
  while woke < 2 do
    local m = inbox:receive()
    if m:topic() == "woke" then -- a swarm's noise fault sends stray messages too
      woke += 1
      order[#order + 1] = m:payload():data()
    end
  end
  io.print(table.concat(order, " "))
  return 0
end

return { main = main }
