local logger = require("logger")

-- Logs "ready", then waits for CANCEL and logs "stopped" before returning.
local function main(name: string)
    local events = process.events()
    logger:info("ready", { service = name })
    while true do
        local ev = events:receive()
        if ev.kind == process.event.CANCEL then
            logger:info("stopped", { service = name })
            return 0
        end
    end
end

return { main = main }
