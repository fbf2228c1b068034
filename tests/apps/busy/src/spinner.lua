local function spin(): integer
  local n = 0
  while true do
    n = n + 1
  end
  return n
end

-- "nested" spins inside a coroutine of its own, which the runtime must preempt as well.
local function main(how: string?): integer
  if how == "nested" then
    return coroutine.wrap(spin)()
  end
  return spin()
end

return { main = main }
