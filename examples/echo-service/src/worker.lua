-- One worker per request: think for a moment, answer the requester, exit.
local time = require("time")

local function main(reply_to: string, text: string): integer
    time.sleep("50ms")
    process.send(reply_to, "echo_response", {
        text = string.upper(text),
        worker = process.pid(),
    })
    return 0
end

return { main = main }
