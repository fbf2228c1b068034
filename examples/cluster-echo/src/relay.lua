-- The relay holds the cluster-wide name "relay". Each "echo" request becomes one monitored
-- worker on the workers' node; when a worker fails (its node died, say), the requester hears of
-- it and the relay goes on serving.
local logger = require("logger")

-- Where workers run: the processes host of node n3.
local WORKERS = "n3@app:processes"

local function main(): integer
    local inbox = process.inbox()
    local events = process.events()
    local ok, err = process.registry.register("relay", process.pid(), process.registry.EVENTUAL)
    if not ok then
        error("relay name taken: " .. tostring(err))
    end
    logger:info("relay ready", { pid = process.pid(), workers = WORKERS })
    -- worker PID -> who asked
    local waiting: { [string]: string } = {}

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
            elseif ev.kind == process.event.EXIT then
                local asker = waiting[tostring(ev.from)]
                waiting[tostring(ev.from)] = nil
                if ev.result.error and asker then
                    logger:warn("worker failed", { from = ev.from, error = ev.result.error })
                    process.send(asker, "echo_failed", { error = tostring(ev.result.error) })
                end
            end
        elseif r.value:topic() == "echo" then
            local req = r.value:payload():data()
            local pid, e = process.spawn_monitored("app:worker", WORKERS, req.reply_to, req.text)
            if e then
                logger:error("could not start a worker", { error = e })
                process.send(req.reply_to, "echo_failed", { error = "could not start a worker: " .. tostring(e) })
            else
                waiting[tostring(pid)] = req.reply_to
            end
        end
    end
end

return { main = main }
