local io = require("io")

local function main(): integer
  local inbox = process.inbox()
  local events = process.events()
  process.spawn_monitored("app:child", "app:procs", process.pid())
  -- The planted bug: whichever is ready first wins, and this code assumes it is the reply.
  local r = channel.select { inbox:case_receive(), events:case_receive() }
  if r.channel == events then
    io.print("EXIT came before the reply")
    return 1
  end
  io.print("reply first")
  return 0
end

return { main = main }
