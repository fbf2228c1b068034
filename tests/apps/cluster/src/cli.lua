-- On a terminal: spawns a monitored worker on every other node, waits for each one's EXIT
-- (10 s at most) and prints how each ended.
local io = require("io")
local time = require("time")

local function main(): integer
    local me = nodes.node_of(process.pid())
    if not me then
        io.print("not in a cluster")
        return 0
    end
    time.sleep("3s") -- let the membership form
    local events = process.events()
    local waiting = 0
    for i, peer in ipairs(nodes.NAMES) do
        if peer ~= me then
            local pid, err = process.spawn_monitored("app:worker", peer .. "@app:processes", process.pid(), me, i)
            if pid then
                waiting = waiting + 1
            else
                io.print(peer, "spawn failed:", tostring(err))
            end
        end
    end
    local deadline = time.after("10s")
    while waiting > 0 do
        local r = channel.select { events:case_receive(), deadline:case_receive() }
        if r.channel == deadline then
            io.print("timeout waiting for", waiting, "worker(s)")
            return 1
        end
        if r.value.kind == process.event.EXIT then
            waiting = waiting - 1
            io.print("worker", nodes.node_of(r.value.from), r.value.result and r.value.result.error and "failed" or "done")
        end
    end
    return 0
end

return { main = main }
