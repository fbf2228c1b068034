-- Waiting inside a plain coroutine (coroutine.create/wrap, not coroutine.spawn): a clear error,
-- and the process's own timers keep their time afterwards.
local io, time = require("io"), require("time")

local function main(): integer
  local ok, err = pcall(coroutine.wrap(function() time.sleep("1s") end))
  io.print("sleep", tostring(ok), tostring(err))
  local co = coroutine.create(function()
    return process.inbox():receive()
  end)
  local ok2, err2 = coroutine.resume(co)
  io.print("receive", tostring(ok2), tostring(err2))
  local t0 = time.now()
  time.sleep("300ms")
  io.print(string.format("slept %d ms", time.now():sub(t0):milliseconds()))
  return 0
end

return { main = main }
