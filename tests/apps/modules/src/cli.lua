local io = require("io")
local env = require("env")
local uuid = require("uuid")
local hash = require("hash")
local base64 = require("base64")
local yaml = require("yaml")

local function main(): integer
    io.print("greeting", env.get("GREETING"))
    io.print("token", env.get("WEFT_E2E_TOKEN"))
    local ok, err = env.set("WEFT_E2E_TOKEN", "saved")
    io.print("set", ok, err)
    io.print("token now", env.get("WEFT_E2E_TOKEN"))
    local id = uuid.v4()
    io.print("uuid", id, uuid.version(id))
    io.print("sha256", hash.sha256("weft"))
    io.print("b64", base64.encode("weft"))
    io.print("yaml", (yaml.encode({b = 2, a = 1}):gsub("\n", " ")))
    local p = payload.new({n = 1}):transcode(payload.format.JSON)
    io.print("payload", p:get_format(), p:data().n)
    local e = errors.wrap(errors.new({message = "inner", kind = errors.NOT_FOUND}), "outer")
    io.print("error", tostring(e), e:kind())
    return 0
end

return { main = main }
