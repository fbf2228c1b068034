-- Every 500 ms spawns a monitored worker on the next other node and pings "leader"; takes
-- whatever EXIT events and messages come back meanwhile. Errors from a partitioned or dead
-- node are expected under faults and ignored.
local time = require("time")

local function main(): integer
    local me = nodes.node_of(process.pid())
    local events = process.events()
    local inbox = process.inbox()
    if not me then
        inbox:receive() -- standalone: nothing to probe
        return 0
    end
    local ticks = time.ticker("500ms"):channel()
    local n = 0
    while true do
        local r = channel.select { events:case_receive(), inbox:case_receive(), ticks:case_receive() }
        if r.channel == ticks then
            n = n + 1
            local peer = nodes.NAMES[(n % #nodes.NAMES) + 1]
            if peer ~= me then
                process.spawn_monitored("app:worker", peer .. "@app:processes", process.pid(), me, n)
            end
            process.send("leader", "ping", n)
        end
    end
end

return { main = main }
