-- Never receives: its mailbox only fills.
local function main(): integer
  while true do
    time.sleep("1h")
  end
end

return { main = main }
