-- Reads lines from the terminal and sends each to the cluster-wide name "relay"; prints what
-- comes back (an answer from a worker, or the relay's word that the worker failed).
-- A line "slow N text" makes the worker think N seconds first. An empty line ends the program.
local io = require("io")
local time = require("time")

local function ask(inbox, text: string)
    local ok, err = process.send("relay", "echo", { reply_to = process.pid(), text = text })
    if not ok then
        io.print("  relay unavailable: " .. tostring(err))
        return
    end
    local deadline = time.after("15s")
    local r = channel.select { inbox:case_receive(), deadline:case_receive() }
    if r.channel == deadline then
        io.print("  (no answer within 15s)")
        return
    end
    local msg = r.value
    local answer = msg:payload():data()
    if msg:topic() == "echo_response" then
        io.print("  " .. answer.text)
        io.print("  from worker: " .. answer.worker)
    elseif msg:topic() == "echo_failed" then
        io.print("  failed: " .. answer.error)
    end
end

local function main(): integer
    local inbox = process.inbox()
    -- The relay's name reaches this node once the cluster has formed.
    local found = false
    for _ = 1, 300 do
        if process.registry.lookup("relay") then
            found = true
            break
        end
        time.sleep("20ms")
    end
    if not found then
        io.print("no relay in the cluster yet (is n2 running?)")
    end
    io.print("Echo client: type a line, empty line to quit.")
    while true do
        io.write("> ")
        local line = io.readline()
        if not line or #line == 0 then
            break
        end
        ask(inbox, line)
    end
    io.print("bye")
    return 0
end

return { main = main }
