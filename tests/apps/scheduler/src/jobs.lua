local function ping(run: number): string
    return "pong " .. run
end

local function count(run: number): number
    return run * 10
end

return { ping = ping, count = count }
