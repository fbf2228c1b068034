local registry = require("registry")
local sql = require("sql")
local store = require("store")
local time = require("time")

local function report(what, n)
  -- Sent only after the write returned: it is durable then.
  process.send("printer", "committed", what .. " " .. tostring(n))
end

local function migrate(db)
  local _, err = db:execute([[
    CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS kv_store (key TEXT PRIMARY KEY, value TEXT, expires_at INTEGER);
  ]])
  return err
end

local writers = {}

function writers.registry()
  while true do
    local n = registry.current_version():id() + 1
    local v, err = registry.snapshot():changes()
      :create({ id = "dyn:v" .. n, kind = "registry.entry", data = { n = n } })
      :apply()
    if err then
      time.sleep("5ms")
    else
      report("registry", v:id())
    end
  end
end

function writers.sql()
  local db = assert(sql.get("app:db"))
  assert(migrate(db) == nil)
  while true do
    local tx = db:begin()
    local r, err = tx:execute("INSERT INTO rows (body) VALUES (?)", { "row" })
    if err then
      tx:rollback()
      time.sleep("5ms")
    else
      local _, cerr = tx:commit()
      if cerr == nil then
        report("sql", r.last_insert_id)
      end
    end
  end
end

function writers.store()
  local db = assert(sql.get("app:db"))
  assert(migrate(db) == nil)
  local kv = store.get("app:kv")
  local n = (kv:get("count") or 0)
  while true do
    local ok, err = kv:set("k" .. (n + 1), n + 1)
    if ok and not err then
      n = n + 1
      kv:set("count", n)
      report("store", n)
    else
      time.sleep("5ms") -- the database is busy with the other writers: try the same key again
    end
  end
end

local function main(what: string)
  return writers[what]()
end

return { main = main }
