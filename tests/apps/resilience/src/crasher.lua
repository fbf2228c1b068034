local time = require("time")

local function main()
    time.sleep("10ms")
    error("crasher went down")
end

return { main = main }
