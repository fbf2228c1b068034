local time = require("time")

-- Every write is retried until it is answered ok; I/O errors come back as error values.
local PAUSE = "100ms"

local function migrate(db)
  while true do
    local _, err = db:execute([[
      CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS kv_store (key TEXT PRIMARY KEY, value TEXT, expires_at INTEGER);
    ]])
    if err == nil then return end
    time.sleep(PAUSE)
  end
end

local function connect()
  local sql = require("sql")
  while true do
    local db = sql.get("app:db")
    if db then
      migrate(db)
      return db
    end
    time.sleep(PAUSE)
  end
end

local function registry()
  local reg = require("registry")
  while true do
    local n = reg.current_version():id() + 1
    reg.snapshot():changes()
      :create({ id = "dyn:v" .. n, kind = "registry.entry", data = { n = n } })
      :apply()
    time.sleep(PAUSE)
  end
end

local function sql()
  local db = connect()
  local n = 0
  while true do
    n = n + 1
    if n % 2 == 0 then
      db:execute("INSERT INTO rows (body) VALUES (?)", { "auto " .. n })
    else
      local tx = db:begin()
      if tx then
        local _, err = tx:execute("INSERT INTO rows (body) VALUES (?)", { "tx " .. n })
        if err then
          tx:rollback()
        else
          tx:commit()
        end
      end
    end
    time.sleep(PAUSE)
  end
end

local function store()
  connect()
  local kv = require("store").get("app:kv")
  local n = 0
  while true do
    n = n + 1
    kv:set("k" .. (n % 7), n)
    time.sleep(PAUSE)
  end
end

return { registry = registry, sql = sql, store = store }
