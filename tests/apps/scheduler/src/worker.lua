local time = require("time")
local funcs = require("funcs")

local function main(reply_to: string, job: string, interval: string): integer
    local ticks = time.ticker(interval):channel()
    local events = process.events()
    local run = 0
    while true do
        local r = channel.select { events:case_receive(), ticks:case_receive() }
        if r.channel == events then
            if r.value.kind == process.event.CANCEL then
                return 0
            end
        else
            run = run + 1
            local result, err = funcs.call(job, run)
            process.send(reply_to, "tick", { job = job, run = run, result = result, err = err and tostring(err) })
        end
    end
end

return { main = main }
