local function double(x)
  if type(x) ~= "number" then
    error("double wants a number, got " .. type(x))
  end
  return { node = "b", value = 2 * x }
end

return { double = double }
