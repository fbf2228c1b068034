-- One worker per request: think for a moment ("slow N text" thinks N seconds), answer the
-- requester on whichever node it is, exit.
local time = require("time")

local function main(reply_to: string, text: string): integer
    local secs, rest = string.match(text, "^slow (%d+) (.*)$")
    if secs then
        time.sleep(secs .. "s")
        text = rest
    else
        time.sleep("50ms")
    end
    process.send(reply_to, "echo_response", {
        text = string.upper(text),
        worker = process.pid(),
    })
    return 0
end

return { main = main }
