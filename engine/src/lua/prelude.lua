-- Weft prelude: the Lua half of every blocking call. A Rust primitive either answers at once or
-- returns PARK after registering the coroutine as waiting; PARK is then yielded to the process
-- scheduler, which resumes the coroutine with the real results. Stateless: shared by all processes.
local PARK, raw, yield, PREEMPT = ...
local co_create, co_resume, co_status = coroutine.create, coroutine.resume, coroutine.status
local co_yieldable = coroutine.isyieldable

-- A coroutine the user resumes by hand is preempted like any other: the interrupt yields it
-- with PREEMPT, and its resumer passes that on up to the process's scheduler, then resumes it
-- where it stopped. So an endless loop inside `coroutine.wrap(f)()` cannot hold the node.
local function after(co, ok, a, ...)
  if ok and a == PREEMPT and co_status(co) == "suspended" then
    -- Inside a C call (a sort comparator, say) there is nowhere to yield to: just go on.
    if co_yieldable() then
      yield(PREEMPT)
    end
    return after(co, co_resume(co))
  end
  return ok, a, ...
end

local function resume(co, ...)
  return after(co, co_resume(co, ...))
end

local function unwrap(ok, ...)
  if not ok then
    error((...), 0)
  end
  return ...
end

local function wrap(f)
  local co = co_create(f)
  return function(...)
    return unwrap(resume(co, ...))
  end
end

local function park(a, ...)
  if a == PARK then
    return yield(PARK)
  end
  return a, ...
end

local chan_methods = {
  send = function(ch, v) return park(raw.chan_send(ch, v)) end,
  receive = function(ch) return park(raw.chan_recv(ch)) end,
  close = raw.chan_close,
  case_send = raw.case_send,
  case_receive = raw.case_receive,
}

local function select(cases, default)
  return park(raw.select(cases, default))
end

local function sleep(d)
  return park(raw.sleep(d))
end

local function readline()
  return park(raw.readline())
end

local function read(n)
  return park(raw.read(n))
end

-- require(name): a plain lookup in the caller's globals; raises like Lua does (a string error
-- at the caller's line) when the module is absent, with the fix in the entry when one is known.
local function require(name)
  local v, hint = raw.require_lookup(name)
  if v == nil then
    local msg = "module '" .. tostring(name) .. "' not found"
    error(hint and (msg .. ": " .. hint) or msg, 2)
  end
  return v
end

-- Turns a Rust primitive that may return PARK into a blocking Lua function.
local function blocking(f)
  return function(...)
    return park(f(...))
  end
end

-- Runs each imported library once, dependencies first, binding its return value under its
-- alias in the importer's env; the last step is the process's own env (no chunk).
-- libs = { {chunk, env, {alias, index, ...}}, ... }
local function link(libs)
  local vals = {}
  for i = 1, #libs do
    local step = libs[i]
    local env, binds = step[2], step[3]
    for j = 1, #binds, 2 do
      rawset(env, binds[j], vals[binds[j + 1]])
    end
    if step[1] then
      vals[i] = step[1]()
    end
  end
end

local function boot(chunk, method, libs, ...)
  if libs then
    link(libs)
  end
  if method == "" then
    -- function.lua without `method:`: the chunk is the function body, arguments in `...`.
    return chunk(...)
  end
  local mod = chunk()
  local f = mod
  if type(mod) == "table" then
    f = rawget(mod, method)
  end
  if type(f) ~= "function" then
    error("entry does not export a function named '" .. tostring(method) .. "'", 0)
  end
  return f(...)
end

return {
  chan_methods = chan_methods,
  select = select,
  sleep = sleep,
  readline = readline,
  read = read,
  boot = boot,
  blocking = blocking,
  require = require,
  resume = resume,
  wrap = wrap,
}
