local io = require("io")
local time = require("time")

local function main()
  local wall0 = time.now():unix_nano()
  local mono0 = os.clock()
  local wall, mono = wall0, mono0
  local back, ahead = 0, 0
  for _ = 1, 200 do
    time.sleep("100ms")
    local w, m = time.now():unix_nano(), os.clock()
    if m < mono + 0.0999 then
      io.print("MONOTONIC BROKEN: " .. mono .. " then " .. m)
      return 1
    end
    if w < wall then back = back + 1 end
    if w > wall + 2e9 then ahead = ahead + 1 end
    wall, mono = w, m
  end
  io.print("wall start offset " .. math.floor((wall0 - 1767225600e9) / 1e9) .. "s")
  io.print("wall back " .. back .. " ahead " .. ahead)
  return 0
end

return { main = main }
