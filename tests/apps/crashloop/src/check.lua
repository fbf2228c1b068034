local io = require("io")
local registry = require("registry")
local sql = require("sql")
local store = require("store")

local function main()
  for _, v in ipairs(registry.versions()) do
    io.print("have registry " .. v:id())
  end
  local db = assert(sql.get("app:db"))
  local rows = db:query("SELECT id FROM rows ORDER BY id") or {}
  for _, r in ipairs(rows) do
    io.print("have sql " .. tostring(r.id))
  end
  local kv = store.get("app:kv")
  -- Every key the store holds, from its table; each must read back through the store too.
  local keys = db:query("SELECT key FROM kv_store WHERE key LIKE 'k%'") or {}
  for _, r in ipairs(keys) do
    local v = kv:get(r.key)
    if v ~= nil then
      io.print("have store " .. tostring(v))
    end
  end
  local check = db:query("PRAGMA integrity_check")
  io.print("integrity " .. tostring(check and check[1] and check[1].integrity_check))
  return 0
end

return { main = main }
