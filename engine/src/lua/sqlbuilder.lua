-- sql.builder: a squirrel-style query builder. Builders are immutable (every method returns a
-- new one); to_sql() gives the text with placeholders and the argument array; run_with(db or
-- tx) gives an executor with query()/exec()/to_sql(). Pure Lua over the sql module's db calls.
local NULL = ...

local B = {}

-- Conditions --------------------------------------------------------------------------------
local Cond = {}
Cond.__index = Cond

local function cond(sql, args) return setmetatable({ sql = sql, args = args or {} }, Cond) end
function Cond:to_sql() return self.sql, self.args end
Cond.__tostring = function(c) return c.sql end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function cmp(op)
  return function(map)
    local parts, args = {}, {}
    for _, k in ipairs(sorted_keys(map)) do
      local v = map[k]
      if type(v) == "table" and getmetatable(v) == nil and op == "=" then
        local qs = {}
        for _, x in ipairs(v) do qs[#qs + 1] = "?"; args[#args + 1] = x end
        parts[#parts + 1] = k .. " IN (" .. table.concat(qs, ", ") .. ")"
      elseif v == nil or v == NULL then
        parts[#parts + 1] = k .. (op == "<>" and " IS NOT NULL" or " IS NULL")
      else
        parts[#parts + 1] = k .. " " .. op .. " ?"
        args[#args + 1] = v
      end
    end
    return cond(table.concat(parts, " AND "), args)
  end
end

B.eq, B.not_eq = cmp("="), cmp("<>")
B.lt, B.lte, B.gt, B.gte = cmp("<"), cmp("<="), cmp(">"), cmp(">=")
B.like, B.not_like = cmp("LIKE"), cmp("NOT LIKE")
function B.expr(sql, ...) return cond(sql, { ... }) end

local function to_cond(c, ...)
  if type(c) == "string" then return cond(c, { ... }) end
  if getmetatable(c) == Cond then return c end
  if type(c) == "table" then return B.eq(c) end
  error("sql.builder: unsupported condition", 3)
end

local function junction(word)
  return function(list)
    local parts, args = {}, {}
    for _, c in ipairs(list) do
      local s, a = to_cond(c):to_sql()
      parts[#parts + 1] = "(" .. s .. ")"
      for _, x in ipairs(a) do args[#args + 1] = x end
    end
    return cond(table.concat(parts, " " .. word .. " "), args)
  end
end
B.and_, B.or_ = junction("AND"), junction("OR")

-- Builders ----------------------------------------------------------------------------------
local Q = {}
Q.__index = Q

local function copy(q)
  local n = {}
  for k, v in pairs(q) do
    if type(v) == "table" and k ~= "db" then
      local c = {}
      for i, x in pairs(v) do c[i] = x end
      n[k] = c
    else
      n[k] = v
    end
  end
  return setmetatable(n, Q)
end

local function new(kind, t)
  local q = setmetatable({ kind = kind, cols = {}, wheres = {}, joins = {}, orders = {}, groups = {},
    havings = {}, sets = {}, rows = {}, prefixes = {}, suffixes = {}, format = "?" }, Q)
  for k, v in pairs(t or {}) do q[k] = v end
  return q
end

function B.select(...) return new("select", { cols = { ... } }) end
function B.insert(t) return new("insert", { tbl = t }) end
function B.update(t) return new("update", { tbl = t }) end
function B.delete(t) return new("delete", { tbl = t }) end

local function with(field)
  return function(self, ...)
    local n = copy(self)
    for _, v in ipairs({ ... }) do n[field][#n[field] + 1] = v end
    return n
  end
end

Q.columns, Q.order_by, Q.group_by = with("cols"), with("orders"), with("groups")
function Q:from(t) local n = copy(self); n.tbl = t; return n end
Q.into, Q.table = Q.from, Q.from
function Q:distinct() local n = copy(self); n.is_distinct = true; return n end
function Q:limit(v) local n = copy(self); n.lim = v; return n end
function Q:offset(v) local n = copy(self); n.off = v; return n end
function Q:where(c, ...) local n = copy(self); n.wheres[#n.wheres + 1] = to_cond(c, ...); return n end
function Q:having(c, ...) local n = copy(self); n.havings[#n.havings + 1] = to_cond(c, ...); return n end
function Q:prefix(s, ...) local n = copy(self); n.prefixes[#n.prefixes + 1] = cond(s, { ... }); return n end
function Q:suffix(s, ...) local n = copy(self); n.suffixes[#n.suffixes + 1] = cond(s, { ... }); return n end
function Q:values(...) local n = copy(self); n.rows[#n.rows + 1] = { ... }; return n end
function Q:set(col, v) local n = copy(self); n.sets[#n.sets + 1] = { col, v }; return n end
function Q:set_map(m)
  local n = copy(self)
  for _, k in ipairs(sorted_keys(m)) do n.sets[#n.sets + 1] = { k, m[k] } end
  return n
end
function Q:placeholder_format(f) local n = copy(self); n.format = f; return n end
function Q:options(...) return with("prefixes")(self) end
local function join(kind)
  return function(self, j, ...)
    local n = copy(self)
    n.joins[#n.joins + 1] = cond(kind .. " " .. j, { ... })
    return n
  end
end
Q.join, Q.left_join, Q.right_join, Q.inner_join = join("JOIN"), join("LEFT JOIN"), join("RIGHT JOIN"), join("INNER JOIN")

local function add_all(parts, args, list, sep, lead)
  if #list == 0 then return end
  local ss = {}
  for _, c in ipairs(list) do
    local s, a = c:to_sql()
    ss[#ss + 1] = s
    for _, x in ipairs(a) do args[#args + 1] = x end
  end
  parts[#parts + 1] = (lead or "") .. table.concat(ss, sep)
end

local function value_sql(v, args)
  if getmetatable(v) == Cond then
    local s, a = v:to_sql()
    for _, x in ipairs(a) do args[#args + 1] = x end
    return s
  elseif getmetatable(v) == Q then
    local s, a = v:to_sql()
    for _, x in ipairs(a) do args[#args + 1] = x end
    return "(" .. s .. ")"
  end
  args[#args + 1] = v
  return "?"
end

local function number_placeholders(sql, format)
  if format == "?" or format == "question" or format == nil then return sql end
  local i = 0
  local mark = ({ dollar = "$", at = "@p", colon = ":" })[format] or "$"
  return (sql:gsub("%?", function() i = i + 1; return mark .. i end))
end

function Q:to_sql()
  local parts, args = {}, {}
  add_all(parts, args, self.prefixes, " ")
  if self.kind == "select" then
    local cols = #self.cols > 0 and table.concat(self.cols, ", ") or "*"
    parts[#parts + 1] = "SELECT " .. (self.is_distinct and "DISTINCT " or "") .. cols
    if self.tbl then
      if getmetatable(self.tbl) == Q then
        parts[#parts + 1] = "FROM " .. value_sql(self.tbl, args)
      else
        parts[#parts + 1] = "FROM " .. self.tbl
      end
    end
    add_all(parts, args, self.joins, " ")
  elseif self.kind == "insert" then
    local vals = {}
    for _, row in ipairs(self.rows) do
      local qs = {}
      for _, v in ipairs(row) do qs[#qs + 1] = value_sql(v, args) end
      vals[#vals + 1] = "(" .. table.concat(qs, ", ") .. ")"
    end
    local cols = #self.cols > 0 and (" (" .. table.concat(self.cols, ", ") .. ")") or ""
    parts[#parts + 1] = "INSERT INTO " .. tostring(self.tbl) .. cols .. " VALUES " .. table.concat(vals, ", ")
  elseif self.kind == "update" then
    local ss = {}
    for _, kv in ipairs(self.sets) do ss[#ss + 1] = kv[1] .. " = " .. value_sql(kv[2], args) end
    parts[#parts + 1] = "UPDATE " .. tostring(self.tbl) .. " SET " .. table.concat(ss, ", ")
  else
    parts[#parts + 1] = "DELETE FROM " .. tostring(self.tbl)
  end
  add_all(parts, args, self.wheres, " AND ", "WHERE ")
  if #self.groups > 0 then parts[#parts + 1] = "GROUP BY " .. table.concat(self.groups, ", ") end
  add_all(parts, args, self.havings, " AND ", "HAVING ")
  if #self.orders > 0 then parts[#parts + 1] = "ORDER BY " .. table.concat(self.orders, ", ") end
  if self.lim then parts[#parts + 1] = "LIMIT " .. math.floor(self.lim) end
  if self.off then parts[#parts + 1] = "OFFSET " .. math.floor(self.off) end
  add_all(parts, args, self.suffixes, " ")
  return number_placeholders(table.concat(parts, " "), self.format), args
end
Q.__tostring = function(q) return (q:to_sql()) end

local Exec = {}
Exec.__index = Exec
function Q:run_with(db) return setmetatable({ q = self, db = db }, Exec) end
function Exec:to_sql() return self.q:to_sql() end
function Exec:query()
  local s, a = self.q:to_sql()
  return self.db:query(s, a)
end
function Exec:exec()
  local s, a = self.q:to_sql()
  return self.db:execute(s, a)
end

B.question, B.default_placeholder, B.dollar, B.at, B.colon = "question", "question", "dollar", "at", "colon"
-- Shared by every process: frozen so no process can change another's builders.
table.freeze(Cond)
table.freeze(Q)
table.freeze(Exec)
return B
