-- Runs each behaviour check in order and prints `ok <name>` or `FAIL <name>: detail`.
-- A check that raises is reported as FAIL and the rest still run. Exit code 0 either way:
-- the test reads the lines.
local io = require("io")
local time = require("time")
local json = require("json")

type T = { a: integer }

local function double(x: number): number
    return x * 2
end

local inbox = nil
local events = nil

-- Next event matching `pred` within `limit`, or nil and a reason.
local function wait_event(pred, limit: string?)
    local deadline = time.after(limit or "3s")
    while true do
        local r = channel.select { events:case_receive(), deadline:case_receive() }
        if r.channel == deadline then
            return nil, "timed out"
        end
        if pred(r.value) then
            return r.value
        end
    end
end

local function wait_exit(pid)
    return wait_event(function(ev)
        return ev.kind == process.event.EXIT and ev.from == pid
    end)
end

-- Next inbox message with `topic` within 3s (others are dropped).
local function wait_msg(topic: string)
    local deadline = time.after("3s")
    while true do
        local r = channel.select { inbox:case_receive(), deadline:case_receive() }
        if r.channel == deadline then
            return nil, "timed out"
        end
        if r.value:topic() == topic then
            return r.value:payload():data()
        end
    end
end

local checks = {}
local function check(name: string, f)
    table.insert(checks, { name = name, f = f })
end

-- Each check returns nothing (pass) or a string (why it failed).

check("unbuffered_handoff", function()
    local ch = channel.new()
    local log = {}
    coroutine.spawn(function()
        for i = 1, 3 do
            ch:send(i)
            table.insert(log, "sent" .. i)
        end
        ch:close()
    end)
    local got = {}
    while true do
        local v, ok = ch:receive()
        if not ok then break end
        table.insert(got, v)
        table.insert(log, "recv" .. v)
    end
    if table.concat(got, ",") ~= "1,2,3" then
        return "received " .. table.concat(got, ",")
    end
    -- An unbuffered send completes only once the receiver took the value, so send i+1 cannot
    -- complete before the receiver came back for it (after logging "recv i").
    for i = 2, 3 do
        local s, r = table.find(log, "sent" .. i), table.find(log, "recv" .. (i - 1))
        if not s or not r or s < r then
            return "send " .. i .. " completed before receive " .. (i - 1) .. ": " .. table.concat(log, " ")
        end
    end
end)

check("buffered_close_drain", function()
    local ch = channel.new(3)
    ch:send("a")
    ch:send("b")
    ch:close()
    local v1, ok1 = ch:receive()
    local v2, ok2 = ch:receive()
    local v3, ok3 = ch:receive()
    if v1 ~= "a" or ok1 ~= true or v2 ~= "b" or ok2 ~= true then
        return "got " .. tostring(v1) .. "," .. tostring(ok1) .. " " .. tostring(v2) .. "," .. tostring(ok2)
    end
    if v3 ~= nil or ok3 ~= false then
        return "after drain got " .. tostring(v3) .. "," .. tostring(ok3)
    end
end)

check("select_list_order", function()
    local a, b = channel.new(1), channel.new(1)
    a:send("a")
    b:send("b")
    local r = channel.select { b:case_receive(), a:case_receive() }
    if r.channel ~= b or r.value ~= "b" then
        return "picked " .. tostring(r.value)
    end
    local r2 = channel.select { b:case_receive(), a:case_receive() }
    if r2.channel ~= a or r2.value ~= "a" then
        return "second pick " .. tostring(r2.value)
    end
end)

check("select_default", function()
    local c = channel.new()
    local r = channel.select { c:case_receive(), default = true }
    if not r.default then
        return "no r.default"
    end
    if r.channel ~= nil then
        return "default result has a channel"
    end
end)

check("time_after_order", function()
    -- Wide gaps so a loaded machine cannot fire both timers in the same wake-up.
    local slow = time.after("200ms")
    local fast = time.after("10ms")
    local r = channel.select { slow:case_receive(), fast:case_receive() }
    if r.channel ~= fast then
        return "200ms after fired before 10ms after"
    end
    -- Not yet: 200ms has not passed.
    local r2 = channel.select { slow:case_receive(), default = true }
    if not r2.default then
        return "200ms after fired after ~10ms"
    end
    time.sleep("250ms")
    local r3 = channel.select { slow:case_receive(), default = true }
    if r3.default then
        return "200ms after not ready after sleeping 250ms more"
    end
end)

check("ticker", function()
    local tk = time.ticker("10ms")
    local ch = tk:channel()
    local start = time.now()
    for i = 1, 3 do
        local deadline = time.after("1s")
        local r = channel.select { ch:case_receive(), deadline:case_receive() }
        if r.channel == deadline then
            return "tick " .. i .. " did not arrive"
        end
    end
    local elapsed = time.now():sub(start):milliseconds()
    if elapsed < 25 then
        return "3 ticks of 10ms took only " .. elapsed .. "ms"
    end
    tk:stop()
    -- After stop the channel is closed: draining ends with ok == false, no endless ticks.
    local n = 0
    while true do
        local deadline = time.after("500ms")
        local r = channel.select { ch:case_receive(), deadline:case_receive() }
        if r.channel == deadline then
            return "ticker channel not closed after stop"
        end
        if not r.ok then break end
        n = n + 1
        if n > 3 then
            return "still ticking after stop"
        end
    end
end)

check("monitor_exit_value", function()
    local pid, err = process.spawn_monitored("app:ret7", "app:procs")
    if not pid then return "spawn: " .. tostring(err) end
    local ev, why = wait_exit(pid)
    if not ev then return why end
    if ev.result.value ~= 7 then
        return "result.value = " .. tostring(ev.result.value)
    end
    if ev.result.error ~= nil then
        return "result.error set: " .. tostring(ev.result.error)
    end
end)

check("monitor_exit_error", function()
    local pid, err = process.spawn_monitored("app:fails", "app:procs")
    if not pid then return "spawn: " .. tostring(err) end
    local ev, why = wait_exit(pid)
    if not ev then return why end
    if ev.result.error == nil then
        return "no result.error"
    end
    if not string.find(tostring(ev.result.error), "kaboom", 1, true) then
        return "error is " .. tostring(ev.result.error)
    end
end)

check("send_unknown_name", function()
    local ok, err = process.send("no-such-process-name", "ping", 1)
    if ok ~= nil then
        return "first result is " .. tostring(ok)
    end
    if err == nil then
        return "no error"
    end
end)

check("registry", function()
    local name = "semantics-namer"
    local pid = process.spawn_monitored("app:namer", "app:procs", process.pid(), name)
    local ready, why = wait_msg("namer_ready")
    if not ready then return "namer_ready: " .. why end
    if not ready.ok then return "register failed: " .. tostring(ready.err) end
    local found, lerr = process.registry.lookup(name)
    if found ~= pid then
        return "lookup gave " .. tostring(found) .. " (" .. tostring(lerr) .. "), expected " .. pid
    end
    -- A second register of a taken name fails.
    local ok2 = process.registry.register(name)
    if ok2 then
        return "registered a name another process holds"
    end
    process.send(name, "quit")
    local ev, why2 = wait_exit(pid)
    if not ev then return "namer exit: " .. why2 end
    local after, aerr = process.registry.lookup(name)
    if after ~= nil or aerr == nil then
        return "name still registered after owner exit: " .. tostring(after)
    end
    local ok3, rerr = process.registry.register(name)
    if not ok3 then
        return "cannot take the released name: " .. tostring(rerr)
    end
    process.registry.unregister(name)
end)

check("link_kills_parent", function()
    local pid = process.spawn_monitored("app:link_parent", "app:procs")
    local ev, why = wait_exit(pid)
    if not ev then return why end
    if ev.result.error == nil then
        return "linked parent exited normally with " .. tostring(ev.result.value)
    end
end)

check("trap_links_link_down", function()
    local pid = process.spawn_monitored("app:link_parent_trap", "app:procs")
    local ev, why = wait_exit(pid)
    if not ev then return why end
    if ev.result.error ~= nil then
        return "trapping parent died: " .. tostring(ev.result.error)
    end
    if ev.result.value ~= "got LINK_DOWN" then
        return tostring(ev.result.value)
    end
end)

check("cancel_event", function()
    local pid = process.spawn_monitored("app:cancellee", "app:procs")
    time.sleep("20ms")
    local ok, err = process.cancel(pid, "stop-please")
    if not ok then return "cancel: " .. tostring(err) end
    local ev, why = wait_exit(pid)
    if not ev then return why end
    if ev.result.value ~= "cancel:stop-please" then
        return "child returned " .. tostring(ev.result.value) .. " / " .. tostring(ev.result.error)
    end
end)

check("json_round_trip", function()
    local src = { name = "weft", n = 42, pi = 1.5, ok = true, list = { 1, 2, 3 }, nested = { k = "v" } }
    local text, err = json.encode(src)
    if not text then return "encode: " .. tostring(err) end
    local back, derr = json.decode(text)
    if not back then return "decode: " .. tostring(derr) end
    if back.name ~= "weft" or back.n ~= 42 or back.pi ~= 1.5 or back.ok ~= true
        or #back.list ~= 3 or back.list[3] ~= 3 or back.nested.k ~= "v" then
        return "round trip gave " .. text
    end
    local arr = json.decode("[1,\"two\",null,false]")
    if arr[1] ~= 1 or arr[2] ~= "two" or arr[4] ~= false then
        return "decode array"
    end
end)

check("typed_lua", function()
    local t: T = { a = 21 }
    local v = double(t.a)
    if v ~= 42 then
        return "double(21) = " .. tostring(v)
    end
end)

check("globals_per_process", function()
    cli_global = "set by cli"
    for i = 1, 2 do
        local pid = process.spawn_monitored("app:globals", "app:procs")
        local ev, why = wait_exit(pid)
        if not ev then return why end
        if ev.result.value ~= "nil/nil" then
            return "child " .. i .. " saw " .. tostring(ev.result.value)
        end
    end
    if child_global ~= nil then
        return "cli sees the child's global"
    end
end)

check("math_random", function()
    local seen = {}
    for _ = 1, 200 do
        local u = math.random()
        if type(u) ~= "number" or u < 0 or u >= 1 then
            return "math.random() = " .. tostring(u)
        end
        local k = math.random(10)
        if k < 1 or k > 10 or k ~= math.floor(k) then
            return "math.random(10) = " .. tostring(k)
        end
        seen[k] = true
        local m = math.random(5, 6)
        if m ~= 5 and m ~= 6 then
            return "math.random(5, 6) = " .. tostring(m)
        end
    end
    local distinct = 0
    for _ in pairs(seen) do distinct = distinct + 1 end
    if distinct < 5 then
        return "only " .. distinct .. " distinct values of math.random(10) in 200 draws"
    end
end)

check("send_order", function()
    local n = 100
    local pid = process.spawn_monitored("app:sender", "app:procs", process.pid(), n)
    for i = 1, n do
        local v, why = wait_msg("seq")
        if v == nil then return "message " .. i .. ": " .. tostring(why) end
        if v ~= i then
            return "message " .. i .. " was " .. tostring(v)
        end
    end
    wait_exit(pid)
end)

local function main(): integer
    inbox = process.inbox()
    events = process.events()
    for _, c in ipairs(checks) do
        local ok, res = pcall(c.f)
        if not ok then
            io.print("FAIL " .. c.name .. ": raised " .. tostring(res))
        elseif res ~= nil then
            io.print("FAIL " .. c.name .. ": " .. tostring(res))
        else
            io.print("ok " .. c.name)
        end
    end
    io.print("done")
    return 0
end

return { main = main }
