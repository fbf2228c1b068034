local io = require("io")

local function main(): integer
  local inbox = process.inbox()
  local echo = process.spawn("app:echo", "app:procs")
  local order = {}
  for round = 1, 3 do
    local keys = {}
    for i = 1, 12 do
      keys[{ round = round, i = i }] = "t" .. i
      keys[function() return i end] = "f" .. i
    end
    local seen = {}
    for _, name in pairs(keys) do
      seen[#seen + 1] = name
      process.send(echo, "ask", { process.pid(), name })
    end
    for _ = 1, #seen do
      inbox:receive()
    end
    order[#order + 1] = table.concat(seen, ",")
  end
  io.print(table.concat(order, " | "))
  return 0
end

return { main = main }
