-- The relay owns the name "relay". Each "echo" request becomes one monitored worker;
-- a background coroutine logs counters every few seconds.
local logger = require("logger")
local time = require("time")

type Counters = { received: integer, spawned: integer, failed: integer }

local counters: Counters = { received = 0, spawned = 0, failed = 0 }

local function report_loop()
    while true do
        time.sleep("5s")
        logger:info("relay counters", counters)
    end
end

local function on_request(req)
    counters.received = counters.received + 1
    local pid, err = process.spawn_monitored("app:worker", "app:processes", req.reply_to, req.text)
    if err then
        counters.failed = counters.failed + 1
        logger:error("could not start a worker", { error = err })
        return
    end
    counters.spawned = counters.spawned + 1
end

local function main(): integer
    local inbox = process.inbox()
    local events = process.events()
    local ok, err = process.registry.register("relay")
    if not ok then
        error("relay name taken: " .. tostring(err))
    end
    logger:info("relay ready", { pid = process.pid() })
    coroutine.spawn(report_loop)

    while true do
        local r = channel.select {
            events:case_receive(),
            inbox:case_receive(),
        }
        if r.channel == events then
            local ev = r.value
            if ev.kind == process.event.CANCEL then
                logger:info("relay stopping", { reason = ev.reason })
                return 0
            elseif ev.kind == process.event.EXIT and ev.result.error then
                logger:warn("worker failed", { from = ev.from, error = ev.result.error })
            end
        elseif r.value:topic() == "echo" then
            on_request(r.value:payload():data())
        end
    end
end

return { main = main }
