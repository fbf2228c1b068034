-- Weft storage glue: the method tables of sql and store handles. Calls that ask the world go
-- through `blocking` (the prelude's park wrapper); results that must become handles (prepare,
-- begin) are wrapped here. Stateless: shared by all processes.
local raw, blocking = ...

local query = blocking(raw.sql_query)
local execute = blocking(raw.sql_execute)
local prepare_check = blocking(raw.sql_prepare)
local begin_tx = blocking(raw.sql_begin)
local tx_op = blocking(raw.sql_tx)
local stmt_run = blocking(raw.sql_stmt_run)
local store_op = blocking(raw.store_op)

local function prepare(h, sql)
  local ok, err = prepare_check(h, sql)
  if err then
    return nil, err
  end
  return raw.sql_new_stmt(h, sql)
end

local stmt = {
  query = function(s, params) return stmt_run(s, false, params) end,
  execute = function(s, params) return stmt_run(s, true, params) end,
  close = raw.sql_stmt_close,
}

local db = {
  query = query,
  execute = execute,
  prepare = prepare,
  begin = function(d, opts)
    local id, err = begin_tx(d, opts)
    if err then
      return nil, err
    end
    return raw.sql_new_tx(d, id)
  end,
  type = function() return "sqlite", nil end,
  stats = function(d) return raw.sql_stats(d), nil end,
  release = raw.sql_release,
}

local tx = {
  query = query,
  execute = execute,
  prepare = prepare,
  commit = function(t) return tx_op(t, "commit") end,
  rollback = function(t) return tx_op(t, "rollback") end,
  savepoint = function(t, name) return tx_op(t, "savepoint", name) end,
  rollback_to = function(t, name) return tx_op(t, "rollback_to", name) end,
  release = function(t, name) return tx_op(t, "release", name) end,
  db_type = function() return "sqlite", nil end,
}

local store = {
  get = function(s, k) return store_op(s, "get", k) end,
  set = function(s, k, v, ttl) return store_op(s, "set", k, v, ttl) end,
  has = function(s, k) return store_op(s, "has", k) end,
  delete = function(s, k) return store_op(s, "delete", k) end,
  entry = function(s, k) return store_op(s, "entry", k) end,
  put = function(s, k, v, opts) return store_op(s, "put", k, v, opts) end,
  list = function(s, opts) return store_op(s, "list", opts) end,
  info = function(s) return store_op(s, "info") end,
  release = raw.store_release,
}

return {
  sql_db = db,
  sql_tx = tx,
  sql_stmt = stmt,
  store = store,
  sql_get = raw.sql_get,
  store_get = raw.store_get,
}
