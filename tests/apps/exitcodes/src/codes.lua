return {
    yes = function() return true end,
    no = function() return false end,
    nothing = function() end,
    boom = function() error("boom") end,
}
