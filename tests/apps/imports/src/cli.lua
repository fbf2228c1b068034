local io = require("io")

local function main(): integer
    io.print("global: " .. util.shout("hi"))
    io.print("require: " .. require("util").shout("x"))
    io.print("same table: " .. tostring(require("util") == util))
    io.print("encoded: " .. util.encode({ 1, 2 }))
    -- The library's modules are its own: the process did not list json.
    local ok = pcall(require, "json")
    io.print("cli sees json: " .. tostring(ok))
    io.print("cli sees marks: " .. tostring(marks ~= nil))
    io.print("calls: " .. tostring(util.calls()))
    return 0
end

return { main = main }
