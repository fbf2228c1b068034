local json = require("json")

local calls = 0

local function shout(s: string): string
    calls += 1
    return string.upper(s) .. marks.bang
end

local function encode(v): string
    -- A require inside a function body resolves against the library's own environment too.
    return require("json").encode(v)
end

return {
    shout = shout,
    encode = encode,
    calls = function() return calls end,
    json_loaded = json ~= nil,
}
