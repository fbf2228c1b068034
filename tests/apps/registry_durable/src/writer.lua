local registry = require("registry")
local time = require("time")

local function main()
  while true do
    local next_id = registry.current_version():id() + 1
    local v, err = registry.snapshot():changes()
      :create({id = "dyn:v" .. next_id, kind = "registry.entry", meta = {n = next_id}, data = {n = next_id}})
      :apply()
    if err then
      time.sleep("5ms")
    else
      -- Reported only after apply returned: the version is durable.
      process.send("printer", "committed", v:id())
    end
  end
end

return { main = main }
