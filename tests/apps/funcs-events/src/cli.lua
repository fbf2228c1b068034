local io = require("io")
local time = require("time")
local funcs = require("funcs")
local events = require("events")

local function check(name, ok, detail)
  if ok then
    io.print("ok " .. name)
  else
    io.print("FAIL " .. name .. ": " .. tostring(detail))
  end
end

local function main()
  local v, err = funcs.call("app:add", 2, 3)
  check("call", v == 5 and err == nil, v)

  local _, ferr = funcs.call("app:lib", "taken")
  check("call_error", ferr and ferr:kind() == errors.CONFLICT and ferr:retryable() == true
    and ferr:message() == "taken", ferr)

  local _, inv = funcs.call("add")
  local _, nf = funcs.call("app:nope")
  check("call_bad_target", inv:kind() == errors.INVALID and nf:kind() == errors.NOT_FOUND)

  local f = funcs.async("app:slow", "later", "20ms")
  local pending = f:is_complete() == false
  local p = f:channel():receive()
  check("async", pending and p:data() == "later" and f:result():data() == "later")

  local c = funcs.async("app:slow", "never", "1h")
  c:cancel()
  local _, cerr = c:result()
  check("async_cancel", c:is_canceled() and cerr:kind() == errors.CANCELED, cerr)

  local who = funcs.new():with_context({user = "bob"}):call("app:whoami")
  check("ctx_call", who.user == "bob" and who.nested == 2, who and who.user)

  local inbox = process.inbox()
  local procs = events.subscribe("process")
  local pid = process.with_context({tenant = "acme"}):spawn("app:child", "app:procs", process.pid())
  local m = inbox:receive()
  check("ctx_spawn", m:payload():data() == "acme", m:payload():data())
  local started = procs:channel():receive()
  local stopped = procs:channel():receive()
  check("process_topics", started.kind == "started" and started.path == pid
    and started.data.id == "app:child" and stopped.kind == "stopped" and stopped.path == pid)
  procs:close()

  local sub = events.subscribe("app.*", "created")
  events.send("app.orders", "deleted", "/orders/1")
  events.send("app.orders", "created", "/orders/2", {n = 2})
  local e = sub:channel():receive()
  check("events", e.system == "app.orders" and e.kind == "created" and e.path == "/orders/2"
    and e.data.n == 2, e.path)
  sub:close()

  local sup = events.subscribe("supervisor", "state.*")
  process.send("worker", "stop")
  local s = sup:channel():receive()
  check("supervisor_topic", s.kind == "state.exited" and s.path == "app:worker-service", s.kind)

  io.print("done")
  return 0
end

return {main = main}
