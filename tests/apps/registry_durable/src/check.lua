local io = require("io")
local registry = require("registry")

local function main()
  for _, v in ipairs(registry.versions()) do
    io.print("have " .. v:id())
  end
  return 0
end

return { main = main }
