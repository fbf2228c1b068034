-- A table that grows forever; with "sort" it grows inside a comparator, where it cannot yield.
local function grow(t)
  local i = 0
  while true do
    i = i + 1
    t[i] = string.rep("x", 64) .. i
  end
end

local function main(how: string?): integer
  local t = {}
  if how == "sort" then
    table.sort({ 2, 1 }, function() grow(t) return false end)
  elseif how == "rep" then
    local parts = {}
    for i = 1, 1000 do
      parts[i] = string.rep("y", 1048576) .. i
    end
  else
    grow(t)
  end
  return 0
end

return { main = main }
