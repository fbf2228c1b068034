-- Spawned on another node by a prober: pings the echo of the prober's node by name, waits a
-- little for the answer, stays busy for a while (so node deaths find workers to report), and
-- exits; every fifth worker fails on purpose.
local time = require("time")

local function main(parent: string, origin: string, n: number): integer
    process.send("echo@" .. origin, "ping", n)
    local inbox = process.inbox()
    local deadline = time.after("2s")
    channel.select { inbox:case_receive(), deadline:case_receive() }
    time.sleep("1500ms")
    process.send(parent, "done", n)
    if n % 5 == 0 then
        error("worker " .. tostring(n) .. " fails on purpose")
    end
    return 0
end

return { main = main }
