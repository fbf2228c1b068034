-- Registers "<node>:work" on this node, then calls the work function of each node in turn:
-- plain calls (at most once), idempotent ones with a timeout and two arguments (may be retried
-- elsewhere), async ones, and async ones canceled at once (the remote run is withdrawn).
local time = require("time")
local funcs = require("funcs")
local registry = require("registry")

local NAMES = { "n1", "n2", "n3" }

local WORK = [[
return { handler = function(x, extra)
    if type(x) == "table" and x.fail then error("asked to fail") end
    return { by = NODE, n = type(x) == "table" and x.n or 0, extra = extra }
end }
]]

local function serve(me: string)
    if registry.get(me .. ":work") then
        return
    end
    local source = WORK:gsub("NODE", string.format("%q", me))
    local changes = registry.snapshot():changes()
    changes:create({ id = me .. ":work", kind = "function.lua", data = { source = source, method = "handler" } })
    changes:apply() -- a failed write is retried by the next start of this service
end

local function main(): integer
    local me = tostring(process.pid()):match("^{([^@|}]+)@")
    if not me then
        process.inbox():receive() -- standalone: nothing to call
        return 0
    end
    serve(me)
    local ticks = time.ticker("100ms"):channel()
    local n, ok, failed = 0, 0, 0
    local retrying = funcs.new():with_options({ idempotent = true, timeout = 1500 })
    while true do
        ticks:receive()
        n = n + 1
        local peer = NAMES[(n % #NAMES) + 1]
        if n % 10 == 0 then
            local f = funcs.async(peer .. ":work", { n = n })
            if f then
                f:cancel()
            end
        elseif n % 5 == 0 then
            local f = funcs.async(peer .. ":work", { n = n })
            if f then
                f:response():receive()
            end
        elseif n % 3 == 0 then
            local r, err = retrying:call(peer .. ":work", { n = n }, "extra")
            if err then failed = failed + 1 else ok = ok + 1 end
        else
            local r, err = funcs.call(peer .. ":work", { n = n, fail = n % 7 == 0 })
            if err then failed = failed + 1 else ok = ok + 1 end
        end
    end
end

return { main = main }
