local io = require("io")

local WORKERS, ROUNDS = 3, 40

local function main(): integer
  local inbox = process.inbox()
  local events = process.events()
  for _ = 1, WORKERS do
    process.spawn_monitored("app:worker", "app:procs", process.pid(), ROUNDS)
  end
  local ticks, finished = 0, 0
  while finished < WORKERS do
    local r = channel.select { inbox:case_receive(), events:case_receive() }
    if r.channel == events then
      local ev = r.value
      if ev.kind == process.event.EXIT then
        if ev.result and ev.result.error then
          -- The planted bug: a dead worker is fatal, though the run could go on without it.
          io.print("worker died: " .. tostring(ev.result.error))
          return 1
        end
        finished += 1
      end
    elseif r.value:topic() == "tick" then -- noise faults send stray messages too
      ticks += 1
    end
  end
  io.print("ticks " .. ticks)
  return 0
end

return { main = main }
