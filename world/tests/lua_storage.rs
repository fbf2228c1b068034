//! Lua-level tests of the `sql` and `store` modules: real Lua processes on a node whose world
//! commands are answered by a `World` over in-memory SQLite, with a virtual clock.

use weft_engine::drive::{drive, Scripted};
use weft_engine::entries::{parse_id, Entry};
use weft_engine::node::{Level, NodeConfig};
use weft_engine::value::{Table, Value};
use weft_engine::Node;
use weft_world::{Storage, World};

fn entry(id: &str, kind: &str, fields: &[(&str, Value)]) -> Entry {
    let (namespace, name) = parse_id(id);
    let mut data = Table::default();
    for (k, v) in fields {
        data = data.with(k, v.clone());
    }
    Entry {
        id: id.into(),
        namespace,
        name,
        kind: kind.into(),
        data,
        file: "<test>".into(),
        ..Default::default()
    }
}

fn lua_entry(id: &str, src: &str) -> Entry {
    let mods = Table {
        array: ["io", "time", "sql", "store"]
            .iter()
            .map(|m| Value::from(*m))
            .collect(),
        map: vec![],
    };
    entry(
        id,
        "process.lua",
        &[
            ("source", Value::from(src)),
            ("method", Value::from("main")),
            ("modules", Value::table(mods)),
        ],
    )
}

fn storage_entries() -> Vec<Entry> {
    vec![
        entry(
            "t:db",
            "db.sql.sqlite",
            &[("file", Value::from(":memory:"))],
        ),
        entry("t:mem", "store.memory", &[("max_size", Value::Int(3))]),
        entry(
            "t:kv",
            "store.sql",
            &[
                ("database", Value::from("t:db")),
                ("table_name", Value::from("kv")),
            ],
        ),
    ]
}

/// Runs `t:main` on a terminal with `others` as extra process entries; returns (exit, stdout).
fn run(main: &str, others: &[(&str, &str)]) -> (i32, String) {
    let mut world = World::new(Storage::Memory);
    let mut entries = storage_entries();
    world.configure(&entries).unwrap();
    entries.push(lua_entry("t:main", main));
    for (id, src) in others {
        entries.push(lua_entry(id, src));
    }
    let mut node = Node::builder(NodeConfig {
        seed: 7,
        step_budget: 1000,
        ..Default::default()
    })
    .log_level(Level::Error)
    .preload(entries)
    .host("t:term", "terminal.host")
    .host("t:host", "process.host")
    .lua()
    .build(None)
    .unwrap()
    .node;
    node.spawn("t:main", "t:term", vec![], true).unwrap();
    // The real world handlers answer every command, on virtual time.
    let mut answer = |cmd| Some(world.handle(cmd));
    let mut d = Scripted::new(&mut answer);
    match drive(&mut node, &mut d, 64) {
        Some(code) => (code, d.out),
        None => panic!(
            "node idle with nothing scheduled; output so far:\n{}",
            d.out
        ),
    }
}

/// Each script prints `ok <name>` per check or `FAIL ...`; returns the output after asserting
/// exit 0 and no failure.
#[track_caller]
fn check(main: &str, others: &[(&str, &str)]) -> String {
    let (code, out) = run(main, others);
    assert!(!out.contains("FAIL"), "{out}");
    assert_eq!(code, 0, "{out}");
    out
}

const PRELUDE: &str = r#"
local io = require("io")
local sql = require("sql")
local store = require("store")
local time = require("time")
local function ok(name, cond, detail)
  if cond then io.print("ok " .. name) else io.print("FAIL " .. name .. ": " .. tostring(detail)) end
end
"#;

fn script(body: &str) -> String {
    format!("{PRELUDE}\nreturn {{ main = function()\n{body}\nreturn 0\nend }}")
}

#[test]
fn query_execute_params_and_null() {
    let out = check(
        &script(
            r#"
  local db, err = sql.get("t:db")
  ok("get", db ~= nil and err == nil, err)
  ok("type", db:type() == sql.type.SQLITE, db:type())
  local r, err = db:execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, score REAL, note TEXT)")
  ok("create", err == nil, err)
  r, err = db:execute("INSERT INTO users (name, score, note) VALUES (?, ?, ?)", {"ann", 1.5, sql.NULL})
  ok("insert", err == nil and r.last_insert_id == 1 and r.rows_affected == 1, err)
  r, err = db:execute("INSERT INTO users (name, score, note) VALUES (?, ?, ?)", {"bob", sql.as.float(2), sql.as.text(42)})
  ok("insert typed", err == nil and r.last_insert_id == 2, err)
  local rows, err = db:query("SELECT id, name, score, note FROM users ORDER BY id")
  ok("query", err == nil and #rows == 2, err)
  ok("int", rows[1].id == 1 and rows[2].id == 2, rows[1].id)
  ok("float", rows[1].score == 1.5, rows[1].score)
  ok("null absent", rows[1].note == nil, rows[1].note)
  ok("text", rows[2].note == "42" and rows[2].name == "bob", rows[2].note)
  rows, err = db:query("SELECT name FROM users WHERE id = ?", {2})
  ok("param", err == nil and #rows == 1 and rows[1].name == "bob", err)
  rows, err = db:query("SELECT name FROM users WHERE id = ?", 2)
  ok("scalar params", rows == nil and err ~= nil and err:kind() == errors.INVALID, err)
  rows, err = db:query("SELEKT oops")
  ok("syntax error", rows == nil and err ~= nil, err)
  r, err = db:execute("UPDATE users SET score = score + 1")
  ok("rows affected", err == nil and r.rows_affected == 2, err)
  local st = db:stats()
  ok("stats", st.open_connections == 1, st)
  ok("release", db:release() == true and db:release() == true)
  rows, err = db:query("SELECT 1")
  ok("released", rows == nil and err:kind() == errors.INVALID, err)
  local none, err = sql.get("t:nope")
  ok("not found", none == nil and err:kind() == errors.NOT_FOUND, err)
"#,
        ),
        &[],
    );
    assert!(out.contains("ok released"), "{out}");
}

#[test]
fn prepared_statements_and_transactions() {
    let out = check(
        &script(
            r#"
  local db = sql.get("t:db")
  db:execute("CREATE TABLE t (v INTEGER)")
  local st, err = db:prepare("INSERT INTO t (v) VALUES (?)")
  ok("prepare", st ~= nil and err == nil, err)
  for i = 1, 3 do st:execute({i}) end
  st:close()
  local r, err = st:execute({9})
  ok("closed stmt", r == nil and err ~= nil, err)
  local bad, err = db:prepare("INSERT INTO nowhere VALUES (?)")
  ok("bad prepare", bad == nil and err ~= nil, err)
  local q = db:prepare("SELECT count(*) AS n FROM t WHERE v >= ?")
  local rows = q:query({2})
  ok("stmt query", rows[1].n == 2, rows[1].n)

  local tx, err = db:begin()
  ok("begin", tx ~= nil and err == nil, err)
  ok("db_type", tx:db_type() == "sqlite")
  tx:execute("INSERT INTO t (v) VALUES (10)")
  ok("savepoint", tx:savepoint("sp1") == true)
  tx:execute("INSERT INTO t (v) VALUES (11)")
  ok("rollback_to", tx:rollback_to("sp1") == true)
  local rows = tx:query("SELECT count(*) AS n FROM t")
  ok("in tx", rows[1].n == 4, rows[1].n)
  ok("commit", tx:commit() == true)
  local r, err = tx:execute("INSERT INTO t (v) VALUES (12)")
  ok("after commit", r == nil and err:kind() == errors.INVALID, err)
  rows = db:query("SELECT count(*) AS n FROM t")
  ok("committed", rows[1].n == 4, rows[1].n)

  tx = db:begin({isolation = sql.isolation.SERIALIZABLE})
  tx:execute("DELETE FROM t")
  ok("rollback", tx:rollback() == true)
  rows = db:query("SELECT count(*) AS n FROM t")
  ok("rolled back", rows[1].n == 4, rows[1].n)
  local none, err = db:begin({isolation = "sideways"})
  ok("bad isolation", none == nil and err:kind() == errors.INVALID, err)

  -- A child begins a transaction, writes and dies: its close rolls it back.
  local pid = process.spawn_monitored("t:child", "t:host")
  local ev = process.events():receive()
  ok("child exited", ev.kind == process.event.EXIT, ev.kind)
  rows, err = db:query("SELECT count(*) AS n FROM t")
  ok("dead tx rolled back", err == nil and rows[1].n == 4, err or rows[1].n)
"#,
        ),
        &[(
            "t:child",
            r#"local sql = require("sql")
            return { main = function()
              local db = sql.get("t:db")
              local tx = db:begin()
              tx:execute("INSERT INTO t (v) VALUES (99)")
              error("boom")
            end }"#,
        )],
    );
    assert_eq!(out.matches("ok ").count(), 17, "{out}");
}

#[test]
fn store_semantics_ttl_and_conditional_put() {
    let out = check(
        &script(
            r#"
  local s, err = store.get("t:mem")
  ok("get store", s ~= nil and err == nil, err)
  local v, err = s:get("missing")
  ok("missing", v == nil and err:kind() == errors.NOT_FOUND, err)
  ok("set", s:set("a", {n = 1, list = {1, 2}}) == true)
  v = s:get("a")
  ok("round trip", v.n == 1 and v.list[2] == 2, v)
  ok("has", s:has("a") == true and s:has("b") == false)
  local r, err = s:set(5, "x")
  ok("bad key", r == nil and err:kind() == errors.INVALID, err)
  r, err = s:set("n", nil)
  ok("nil value", r == nil and err:kind() == errors.INVALID, err)
  r, err = s:set("n", 1, -3)
  ok("bad ttl", r == nil and err:kind() == errors.INVALID and s:has("n") == false, err)
  r, err = s:list({limit = "ten"})
  ok("bad list limit", r == nil and err:kind() == errors.INVALID, err)

  s:set("ttl", "soon", 2)
  time.sleep("1s")
  ok("alive", s:get("ttl") == "soon")
  time.sleep("1500ms")
  v, err = s:get("ttl")
  ok("expired", v == nil and err:kind() == errors.NOT_FOUND, err)

  local e, err = s:put("k", 1, {only_if_absent = true})
  ok("put absent", e ~= nil and e.version == 1, err)
  e, err = s:put("k", 2, {only_if_absent = true})
  ok("put exists", e == nil and err:kind() == errors.ALREADY_EXISTS, err)
  e, err = s:put("k", 2, {if_version = 5})
  ok("put conflict", e == nil and err:kind() == errors.CONFLICT, err)
  e, err = s:put("k", 2, {if_version = 1})
  ok("put version", e ~= nil and e.version == 2 and s:get("k") == 2, err)
  e = s:entry("k")
  ok("entry", e.key == "k" and e.value == 2 and e.version == 2, e)

  ok("delete", s:delete("k") == true and s:delete("k") == false)
  s:set("p1", 1) s:set("p2", 2)
  local l = s:list({prefix = "p", limit = 1})
  ok("list", #l.items == 1 and l.items[1].key == "p1" and l.has_more == true, l)
  l = s:list({prefix = "p", after = l.cursor})
  ok("list next", #l.items == 1 and l.items[1].key == "p2" and l.has_more == false, l)
  local info = s:info()
  ok("info", info.backend == store.backend.MEMORY and info.versioned == true, info.backend)
  r, err = s:set("full", 1)
  ok("full", r == nil and err ~= nil, err)

  local db = sql.get("t:db")
  db:execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT, expires_at INTEGER)")
  local k = store.get("t:kv")
  ok("sql set", k:set("x", {a = "b"}) == true)
  ok("sql get", k:get("x").a == "b")
  ok("sql info", k:info().backend == store.backend.SQL)
  e, err = k:put("x", 1, {only_if_absent = true})
  ok("sql put exists", e == nil and err:kind() == errors.ALREADY_EXISTS, err)
  ok("sql release", k:release() == true and k:release() == true)
  v, err = k:get("x")
  ok("sql released", v == nil and err:kind() == errors.INVALID, err)
"#,
        ),
        &[],
    );
    assert_eq!(out.matches("ok ").count(), 27, "{out}");
}

#[test]
fn query_builder_renders_and_runs_in_coroutines() {
    let out = check(
        &script(
            r#"
  local db = sql.get("t:db")
  db:execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, active INTEGER)")
  local b = sql.builder
  local ins = b.insert("items"):columns("name", "active"):values("a", 1):values("b", 0):values("c", 1)
  local s, args = ins:to_sql()
  ok("insert sql", s == "INSERT INTO items (name, active) VALUES (?, ?), (?, ?), (?, ?)" and #args == 6, s)
  local r, err = ins:run_with(db):exec()
  ok("insert exec", err == nil and r.rows_affected == 3, err)
  local q = b.select("id", "name"):from("items"):where({active = 1}):where(b.gt({id = 0})):order_by("id DESC"):limit(5)
  s, args = q:to_sql()
  ok("select sql", s == "SELECT id, name FROM items WHERE active = ? AND id > ? ORDER BY id DESC LIMIT 5" and #args == 2, s)
  local base = b.select("name"):from("items")
  local _ = base:where({id = 1})
  ok("immutable", (base:to_sql()) == "SELECT name FROM items", base:to_sql())
  ok("dollar", (b.update("items"):set("name", "z"):where("id = ?", 2):placeholder_format(b.dollar):to_sql()) == "UPDATE items SET name = $1 WHERE id = $2")
  ok("or", tostring(b.delete("items"):where(b.or_({ {id = 1}, {id = 2} }))) == "DELETE FROM items WHERE (id = ?) OR (id = ?)")
  local done = channel.new(1)
  coroutine.spawn(function()
    local rows, err = q:run_with(sql.get("t:db")):query()
    done:send(err == nil and #rows == 2 and rows[1].name == "c")
  end)
  ok("in coroutine", done:receive())
"#,
        ),
        &[],
    );
    assert!(out.contains("ok in coroutine"), "{out}");
}
