-- Answers every "ping" with a "pong" carrying the same payload. Registers itself cluster-wide
-- as "echo@NODE" and claims the contested name "leader" (one claim wins on every node).
local function main(): integer
    local me = nodes.node_of(process.pid())
    if me then
        process.registry.register("echo@" .. me, nil, process.registry.EVENTUAL)
        process.registry.register("leader", nil, process.registry.EVENTUAL)
    end
    local inbox = process.inbox()
    while true do
        local m = inbox:receive()
        if m:topic() == "ping" and m:from() then
            process.send(m:from(), "pong", m:payload():data())
        end
    end
end

return { main = main }
