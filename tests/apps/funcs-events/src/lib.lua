local function fail(reason: string)
  return nil, errors.new({message = reason, kind = errors.CONFLICT, retryable = true})
end

local function whoami()
  local user = ctx.get("user")
  local nested = funcs.call("app:add", 1, 1)
  return {user = user, nested = nested}
end

local function slow(v, d)
  local time = require("time")
  time.sleep(d)
  return v
end

return {fail = fail, whoami = whoami, slow = slow}
