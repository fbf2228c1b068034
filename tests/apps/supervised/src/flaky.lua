local time = require("time")

local function main(): integer
    local ticks = 0
    while true do
        time.sleep("500ms")
        ticks = ticks + 1
        if ticks == 3 then
            error("flaky worker gives up after 3 ticks")
        end
    end
end

return { main = main }
