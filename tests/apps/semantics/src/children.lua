-- Helper processes spawned by cli.lua; each entry picks one function by `method:`.
local time = require("time")

local function ret7()
    return 7
end

local function fails(delay)
    if delay then
        time.sleep(delay)
    end
    error("kaboom")
end

-- Registers a name, tells the cli, then waits for "quit" and exits normally.
local function namer(reply_to, name)
    local ok, err = process.registry.register(name)
    process.send(reply_to, "namer_ready", { ok = ok == true, err = err and tostring(err) })
    local inbox = process.inbox()
    while true do
        local msg = inbox:receive()
        if msg:topic() == "quit" then
            return 0
        end
    end
end

-- Linked to a child that fails after 20ms; without trap_links this process must die with it.
local function link_parent()
    process.spawn_linked("app:fails", "app:procs", "20ms")
    time.sleep("2s")
    return "survived"
end

-- The same with trap_links: a LINK_DOWN event arrives and this process carries on.
local function link_parent_trap()
    process.set_options({ trap_links = true })
    local events = process.events()
    local child = process.spawn_linked("app:fails", "app:procs", "20ms")
    local deadline = time.after("2s")
    while true do
        local r = channel.select { events:case_receive(), deadline:case_receive() }
        if r.channel == deadline then
            return "no LINK_DOWN within 2s"
        end
        local ev = r.value
        if ev.kind == process.event.LINK_DOWN then
            if ev.from ~= child then
                return "LINK_DOWN from " .. tostring(ev.from) .. ", expected " .. tostring(child)
            end
            return "got LINK_DOWN"
        end
    end
end

-- Waits for a CANCEL event and returns its reason.
local function cancellee()
    local events = process.events()
    local deadline = time.after("2s")
    while true do
        local r = channel.select { events:case_receive(), deadline:case_receive() }
        if r.channel == deadline then
            return "no CANCEL within 2s"
        end
        if r.value.kind == process.event.CANCEL then
            return "cancel:" .. tostring(r.value.reason)
        end
    end
end

-- Reports globals it can see, then sets one of its own.
local function globals()
    local seen = tostring(cli_global) .. "/" .. tostring(child_global)
    child_global = "set by child"
    return seen
end

local function sender(to, n)
    for i = 1, n do
        process.send(to, "seq", i)
    end
    return 0
end

return {
    ret7 = ret7,
    fails = fails,
    namer = namer,
    link_parent = link_parent,
    link_parent_trap = link_parent_trap,
    cancellee = cancellee,
    globals = globals,
    sender = sender,
}
