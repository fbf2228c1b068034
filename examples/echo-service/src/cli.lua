-- Reads lines from the terminal and prints what the relay's workers send back.
-- An empty line or end of input ends the program (exit code 0).
local io = require("io")
local time = require("time")

local function ask(inbox, text: string)
    local ok, err = process.send("relay", "echo", { reply_to = process.pid(), text = text })
    if not ok then
        io.print("  relay unavailable: " .. tostring(err))
        return
    end
    local deadline = time.after("2s")
    local r = channel.select { inbox:case_receive(), deadline:case_receive() }
    if r.channel == deadline then
        io.print("  (no answer within 2s)")
        return
    end
    local msg = r.value
    if msg:topic() == "echo_response" then
        local answer = msg:payload():data()
        io.print("  " .. answer.text)
        io.print("  from worker: " .. answer.worker)
    end
end

local function main(): integer
    local inbox = process.inbox()
    -- Give the relay service a moment to register its name.
    for _ = 1, 50 do
        if process.registry.lookup("relay") then break end
        time.sleep("10ms")
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
