-- Event-bus patterns from user Lua: a subscription with ten `**` on system and kind, and
-- publishes on 24-segment names that do not match it (backtracking took ~2 s per publish), then
-- one that does, which the subscription must see.
local io, time, events = require("io"), require("time"), require("events")

local function main(n: string?): integer
  local count = tonumber(n) or 50
  local stars = string.rep("**.", 10)
  local sub, err = events.subscribe(stars .. "zzz", stars .. "zzz")
  if not sub then
    error(tostring(err))
  end
  local parts = {}
  for i = 1, 24 do
    parts[i] = "s" .. i
  end
  local long = table.concat(parts, ".")
  local t0 = time.now()
  for i = 1, count do
    assert(events.send(long, long, "/p", i))
  end
  io.print(string.format("published %d in %d ms", count, time.now():sub(t0):milliseconds()))
  assert(events.send(long .. ".zzz", long .. ".zzz", "/p", "hit"))
  local r = channel.select({ sub:channel():case_receive(), time.after("5s"):case_receive() })
  if r.channel == sub:channel() then
    io.print("received " .. tostring(r.value.data))
  else
    io.print("no event")
  end
  return 0
end

return { main = main }
