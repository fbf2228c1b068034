local io = require("io")
local time = require("time")
local registry = require("registry")

local RUNS = 3

local function main(): integer
    local jobs = registry.find({ [".kind"] = "function.lua", ["meta.type"] = "job" })
    table.sort(jobs, function(a, b) return a.id < b.id end)
    io.print("jobs", #jobs)
    local inbox = process.inbox()
    local workers = {}
    for _, job in ipairs(jobs) do
        local pid, err = process.spawn_monitored("app:worker", "app:processes", process.pid(), job.id, job.meta.interval)
        if err then
            io.print("spawn failed", tostring(err))
            return 1
        end
        workers[job.id] = pid
    end
    local seen, last = {}, {}
    local deadline = time.after("5s")
    local done = 0
    while done < #jobs do
        local r = channel.select { inbox:case_receive(), deadline:case_receive() }
        if r.channel == deadline then
            io.print("timeout")
            return 1
        end
        local t = r.value:payload():data()
        seen[t.job] = (seen[t.job] or 0) + 1
        last[t.job] = t.result
        if seen[t.job] == RUNS then
            done = done + 1
            process.cancel(workers[t.job], "enough")
        end
    end
    for _, job in ipairs(jobs) do
        io.print(job.id, seen[job.id], last[job.id])
    end
    return 0
end

return { main = main }
