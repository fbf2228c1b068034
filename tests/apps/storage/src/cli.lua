local io = require("io")
local sql = require("sql")
local store = require("store")
local time = require("time")

local function main(): integer
  local db, err = sql.get("app:db")
  if err then
    io.print("no db: " .. tostring(err))
    return 1
  end
  local _, err = db:execute([[
    CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS kv_store (key TEXT PRIMARY KEY, value TEXT, expires_at INTEGER);
  ]])
  if err then
    io.print("migrate failed: " .. tostring(err))
    return 1
  end

  local kv = store.get("app:kv")
  local runs, err = kv:get("runs")
  if err and err:kind() ~= errors.NOT_FOUND then
    io.print("store failed: " .. tostring(err))
    return 1
  end
  runs = (runs or 0) + 1
  kv:set("runs", runs)

  local tx = db:begin()
  tx:execute("INSERT INTO notes (body) VALUES (?)", {"run " .. tostring(runs)})
  tx:commit()
  local doomed = db:begin()
  doomed:execute("INSERT INTO notes (body) VALUES (?)", {"never"})
  doomed:rollback()

  local rows = db:query("SELECT id, body FROM notes ORDER BY id")
  io.print("runs=" .. tostring(runs) .. " notes=" .. tostring(#rows))
  for _, r in ipairs(rows) do
    io.print("note " .. tostring(r.id) .. ": " .. r.body)
  end

  local cache = store.get("app:cache")
  cache:set("token", "abc", 1)
  local before = cache:get("token")
  time.sleep("2s")
  local after, gone = cache:get("token")
  io.print("cache " .. tostring(before) .. " then " .. (gone and gone:kind() or tostring(after)))
  return 0
end

return { main = main }
