local function echo(x)
  return { node = "a", got = x }
end

local function relay(x)
  local r, err = funcs.call("beta:double", x)
  if err then
    error("beta:double failed: " .. tostring(err))
  end
  return { via = "a", result = r }
end

return { echo = echo, relay = relay }
