local io = require("io")
local time = require("time")

local function main(): integer
    local events = process.events()
    -- Unmonitored: nobody hears about its failure.
    process.spawn("app:crasher", "app:procs")
    -- Monitored: the failure arrives as an EXIT event with an error.
    local crasher = process.spawn_monitored("app:crasher", "app:procs")
    local ev = events:receive()
    if ev.kind ~= process.event.EXIT or ev.from ~= crasher or ev.result.error == nil then
        io.print("unexpected event " .. tostring(ev.kind))
        return 2
    end
    io.print("crasher failed: " .. tostring(ev.result.error))
    time.sleep("50ms")
    -- Other processes still start and finish normally.
    local adder = process.spawn_monitored("app:adder", "app:procs", 2, 3)
    local ev2 = events:receive()
    if ev2.from ~= adder or ev2.result.value ~= 5 then
        io.print("adder did not answer 5")
        return 2
    end
    io.print("adder: " .. tostring(ev2.result.value))
    io.print("still alive")
    return 0
end

return { main = main }
