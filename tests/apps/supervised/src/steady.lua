local time = require("time")

local function main(): integer
    local ticker = time.ticker("1s")
    local ch = ticker:channel()
    local n = 0
    while true do
        ch:receive()
        n = n + 1
        process.registry.register("steady")
    end
end

return { main = main }
