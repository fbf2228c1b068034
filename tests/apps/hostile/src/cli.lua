local io = require("io")
local time = require("time")

-- cli KIND N [TICKS [MS]]: starts N processes running KIND ("bomb[:how]" or "bigbomb[:how]" for
-- a memory bomb with an entry limit of its own or with the node's,
-- "flood:COUNT" to send COUNT messages to a process that never receives), monitors them,
-- prints "exit <error>" for each that dies and "tick <ms>" for each of TICKS ticks of MS
-- milliseconds (100 by default; TICKS 0: until stopped).
local function main(kind: string, n: string?, ticks: string?, ms: string?): integer
  local count = tonumber(n) or 1
  local events = process.events()
  if kind:sub(1, 5) == "flood" then
    local total = tonumber(kind:sub(7)) or 0
    local sink = process.spawn_monitored("app:sink", "app:workers")
    local accepted, refused, first_err = 0, 0, nil
    for i = 1, total do
      local ok, err = process.send(sink, "m", i)
      if ok then
        accepted = accepted + 1
      else
        refused = refused + 1
        first_err = first_err or tostring(err)
      end
    end
    io.print(string.format("flood accepted=%d refused=%d", accepted, refused))
    if first_err then
      io.print("flood error " .. first_err)
    end
  else
    for _ = 1, count do
      local bomb, how = kind:match("^(%a*bomb):?(.*)$")
      if bomb then
        process.spawn_monitored("app:" .. bomb, "app:workers", how)
      else
        process.spawn_monitored("app:spinner", "app:workers", kind)
      end
    end
  end
  io.print("ready")
  local ticker = time.ticker(tostring(tonumber(ms) or 100) .. "ms")
  local last = time.now()
  local left = tonumber(ticks) or 10
  if left == 0 then
    left = math.huge
  end
  while left > 0 do
    local r = channel.select({ events:case_receive(), ticker:channel():case_receive() })
    if r.channel == events then
      local ev = r.value
      local err = ev.result and ev.result.error
      io.print("exit " .. tostring(err))
    else
      local now = time.now()
      io.print(string.format("tick %d", now:sub(last):milliseconds()))
      last = now
      left = left - 1
    end
  end
  return 0
end

return { main = main }
