local function main(a, b)
    return a + b
end

return { main = main }
