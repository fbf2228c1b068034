-- A service that stops on request: its exit shows up as supervisor state "exited".
local function main()
  process.registry.register("worker")
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    if m:topic() == "stop" then
      return 0
    end
  end
end
return {main = main}
