local logger = require("logger")
local time = require("time")

-- Logs "ready", then ignores CANCEL and keeps sleeping.
local function main(name: string)
    local events = process.events()
    logger:info("ready", { service = name })
    while true do
        time.sleep("100ms")
        -- Drain events without acting on them.
        local _ = events
    end
end

return { main = main }
