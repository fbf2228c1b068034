//! The `sql` module: `db.sql.sqlite` handles, statements and transactions. Every query is a world
//! command (ids 80–99) run by the driver off the engine's thread; these primitives only check
//! arguments, issue the command and park. The method tables are Lua (storage.lua) so the
//! blocking calls go through the prelude's `blocking`.
//!
//! A process that begins a transaction registers `SQL_RELEASE_OWNER` to be sent from its
//! `close()`: whatever it leaves open (exit, failure or kill) is rolled back by the world.

use super::current;
use super::errors::fail;
use super::lua_process::world_call;
use crate::entries::EntryKind;
use crate::value::{kind, ErrorValue, Table as VTable, Value};
use crate::world::{Isolation, TxOp, WorldCommand};
use mlua::{AnyUserData, Lua, MetaMethod, Table, UserData, UserDataFields, Value as LV};

/// Marks a parameter the world binds as a BLOB (see weft-world's `sql::BLOB_KEY`).
const BLOB_KEY: &str = "__weft_blob";

pub struct DbUd {
    pub id: String,
    pub released: bool,
}

pub struct TxUd {
    pub db: String,
    pub tx: i64,
    pub finished: bool,
}

pub struct StmtUd {
    pub db: String,
    pub tx: i64,
    pub sql: String,
    pub closed: bool,
}

/// `sql.NULL`.
pub struct SqlNull;

/// A value forced to a SQL type by `sql.as.*`.
pub struct SqlTyped(pub Value);

macro_rules! methods_from_registry {
    ($t:ty, $key:expr) => {
        impl UserData for $t {
            fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
                f.add_meta_field_with(MetaMethod::Index, |lua| {
                    lua.named_registry_value::<Table>($key)
                });
            }
        }
    };
}

methods_from_registry!(DbUd, "weft.sql_db");
methods_from_registry!(TxUd, "weft.sql_tx");
methods_from_registry!(StmtUd, "weft.sql_stmt");

impl UserData for SqlNull {
    fn add_methods<M: mlua::UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::ToString, |_, _, ()| Ok("sql.NULL"));
    }
}

impl UserData for SqlTyped {}

fn invalid(m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(kind::INVALID, m)
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Value::Int(n as i64)
    } else {
        Value::Float(n)
    }
}

/// One parameter as the world binds it.
fn param(v: &LV) -> Result<Value, ErrorValue> {
    Ok(match v {
        LV::Nil => Value::Nil,
        LV::Boolean(b) => Value::Bool(*b),
        LV::Integer(i) => Value::Int(*i),
        LV::Number(n) => number(*n),
        LV::String(s) => Value::Str(s.as_bytes().to_vec()),
        LV::UserData(ud) if ud.is::<SqlNull>() => Value::Nil,
        LV::UserData(ud) if ud.is::<SqlTyped>() => ud
            .borrow::<SqlTyped>()
            .map(|t| t.0.clone())
            .map_err(|e| invalid(e.to_string()))?,
        other => {
            return Err(invalid(format!(
                "a {} cannot be a SQL parameter",
                other.type_name()
            )))
        }
    })
}

/// `params` must be an array table (or nil); `sql.NULL` stands for NULL inside it.
fn params(v: &LV) -> Result<Vec<Value>, ErrorValue> {
    let t = match v {
        LV::Nil => return Ok(Vec::new()),
        LV::Table(t) => t,
        _ => return Err(invalid("params must be an array table")),
    };
    let n = t.raw_len();
    let mut out = Vec::with_capacity(n);
    for i in 1..=n {
        let item: LV = t.raw_get(i).map_err(|e| invalid(e.to_string()))?;
        out.push(param(&item)?);
    }
    Ok(out)
}

fn owner(lua: &Lua) -> mlua::Result<i64> {
    Ok(current(lua)?.borrow().id as i64)
}

/// The (db, tx) a query target stands for; an error value when it is released or finished.
fn target(ud: &AnyUserData) -> mlua::Result<Result<(String, Option<i64>), ErrorValue>> {
    if let Ok(d) = ud.borrow::<DbUd>() {
        if d.released {
            return Ok(Err(invalid("database handle was released")));
        }
        return Ok(Ok((d.id.clone(), None)));
    }
    if let Ok(t) = ud.borrow::<TxUd>() {
        if t.finished {
            return Ok(Err(invalid("transaction already finished")));
        }
        return Ok(Ok((t.db.clone(), Some(t.tx))));
    }
    Err(mlua::Error::runtime(
        "bad argument #1 (database or transaction expected)",
    ))
}

/// A query (`exec` false) or a statement run for its effect, in `db` or in transaction `tx`.
fn sql_command(
    lua: &Lua,
    exec: bool,
    (db, tx): (String, Option<i64>),
    sql: String,
    params: Vec<Value>,
) -> mlua::Result<(LV, LV)> {
    let owner = owner(lua)?;
    world_call(lua, WorldCommand::sql(exec, db, owner, tx, sql, params))
}

/// SQL text must be UTF-8; anything else is an Invalid error, never a guess.
fn sql_text(sql: &mlua::LuaString) -> Result<String, ErrorValue> {
    std::str::from_utf8(&sql.as_bytes())
        .map(String::from)
        .map_err(|_| invalid("sql must be UTF-8 text"))
}

fn run(
    lua: &Lua,
    exec: bool,
    ud: &AnyUserData,
    sql: mlua::LuaString,
    p: &LV,
) -> mlua::Result<(LV, LV)> {
    let target = match target(ud)? {
        Ok(x) => x,
        Err(e) => return fail(lua, e),
    };
    let (sql, p) = match sql_text(&sql).and_then(|s| params(p).map(|p| (s, p))) {
        Ok(x) => x,
        Err(e) => return fail(lua, e),
    };
    sql_command(lua, exec, target, sql, p)
}

fn resolve(lua: &Lua, id: &str) -> mlua::Result<String> {
    if id.contains(':') {
        return Ok(id.to_string());
    }
    let ns = current(lua)?.borrow().entry.namespace.clone();
    Ok(format!("{ns}:{id}"))
}

/// The entry kind behind an id, if the node knows it.
pub(crate) fn kind_of(lua: &Lua, id: &str) -> Option<EntryKind> {
    let q = crate::command::RegistryQuery::Entry(id.to_string());
    match super::dispatch(lua, crate::command::Command::RegistryRead(q)).ok()? {
        crate::command::Reply::State { state, .. } => state.get(id).map(|e| e.kind.clone()),
        _ => None,
    }
}

pub fn install_raw(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    raw.set(
        "sql_get",
        lua.create_function(|lua, id: LV| {
            let Some(id) = id.as_string().map(|s| s.to_string_lossy()) else {
                return fail(lua, invalid("database id must be a string"));
            };
            if id.is_empty() {
                return fail(lua, invalid("database id must not be empty"));
            }
            let id = resolve(lua, &id)?;
            match kind_of(lua, &id) {
                Some(EntryKind::DbSqlSqlite) => Ok((
                    LV::UserData(lua.create_userdata(DbUd {
                        id,
                        released: false,
                    })?),
                    LV::Nil,
                )),
                Some(k) if k.as_str().starts_with("db.sql.") => fail(
                    lua,
                    ErrorValue::new(kind::UNAVAILABLE, format!("{k} is not supported by weft")),
                ),
                _ => fail(
                    lua,
                    ErrorValue::new(kind::NOT_FOUND, format!("database '{id}' not found")),
                ),
            }
        })?,
    )?;
    raw.set(
        "sql_query",
        lua.create_function(|lua, (ud, sql, p): (AnyUserData, mlua::LuaString, LV)| {
            run(lua, false, &ud, sql, &p)
        })?,
    )?;
    raw.set(
        "sql_execute",
        lua.create_function(|lua, (ud, sql, p): (AnyUserData, mlua::LuaString, LV)| {
            run(lua, true, &ud, sql, &p)
        })?,
    )?;
    raw.set(
        "sql_prepare",
        lua.create_function(|lua, (ud, sql): (AnyUserData, mlua::LuaString)| {
            let (db, tx) = match target(&ud)? {
                Ok(x) => x,
                Err(e) => return fail(lua, e),
            };
            let sql = match sql_text(&sql) {
                Ok(s) => s,
                Err(e) => return fail(lua, e),
            };
            let owner = owner(lua)?;
            world_call(lua, WorldCommand::SqlPrepare { db, owner, tx, sql })
        })?,
    )?;
    raw.set(
        "sql_new_stmt",
        lua.create_function(|lua, (ud, sql): (AnyUserData, String)| {
            let (db, tx) = match target(&ud)? {
                Ok(x) => x,
                Err(e) => return fail(lua, e),
            };
            Ok((
                LV::UserData(lua.create_userdata(StmtUd {
                    db,
                    tx: tx.unwrap_or(0),
                    sql,
                    closed: false,
                })?),
                LV::Nil,
            ))
        })?,
    )?;
    raw.set(
        "sql_stmt_run",
        lua.create_function(|lua, (ud, exec, p): (AnyUserData, bool, LV)| {
            let (db, tx, sql) = {
                let s = ud
                    .borrow::<StmtUd>()
                    .map_err(|_| mlua::Error::runtime("bad argument #1 (statement expected)"))?;
                if s.closed {
                    return fail(lua, invalid("statement is closed"));
                }
                (s.db.clone(), s.tx, s.sql.clone())
            };
            let p = match params(&p) {
                Ok(p) => p,
                Err(e) => return fail(lua, e),
            };
            sql_command(lua, exec, (db, (tx != 0).then_some(tx)), sql, p)
        })?,
    )?;
    raw.set(
        "sql_stmt_close",
        lua.create_function(|lua, ud: AnyUserData| {
            let mut s = ud.borrow_mut::<StmtUd>()?;
            if s.closed {
                drop(s);
                return fail(lua, invalid("statement is already closed"));
            }
            s.closed = true;
            Ok((LV::Boolean(true), LV::Nil))
        })?,
    )?;
    raw.set(
        "sql_begin",
        lua.create_function(|lua, (ud, opts): (AnyUserData, LV)| {
            let db = {
                let d = ud
                    .borrow::<DbUd>()
                    .map_err(|_| mlua::Error::runtime("bad argument #1 (database expected)"))?;
                if d.released {
                    return fail(lua, invalid("database handle was released"));
                }
                d.id.clone()
            };
            let (iso, ro) = match &opts {
                LV::Nil => ("default".to_string(), false),
                LV::Table(t) => {
                    let iso: Option<String> = t.get("isolation")?;
                    let ro: Option<bool> = t.get("read_only")?;
                    (iso.unwrap_or_else(|| "default".into()), ro.unwrap_or(false))
                }
                _ => return fail(lua, invalid("begin options must be a table")),
            };
            let isolation = match Isolation::parse(&iso) {
                Ok(i) => i,
                Err(e) => return fail(lua, e),
            };
            let me = owner(lua)?;
            {
                let st = current(lua)?;
                let mut st = st.borrow_mut();
                let release = WorldCommand::SqlReleaseOwner { owner: me };
                if !st.on_close.contains(&release) {
                    st.on_close.push(release);
                }
            }
            world_call(
                lua,
                WorldCommand::SqlBegin {
                    db,
                    owner: me,
                    isolation,
                    read_only: ro,
                },
            )
        })?,
    )?;
    raw.set(
        "sql_new_tx",
        lua.create_function(|lua, (ud, tx): (AnyUserData, i64)| {
            let db = ud.borrow::<DbUd>()?.id.clone();
            lua.create_userdata(TxUd {
                db,
                tx,
                finished: false,
            })
        })?,
    )?;
    raw.set(
        "sql_tx",
        lua.create_function(|lua, (ud, op, name): (AnyUserData, String, LV)| {
            let (db, tx) = {
                let mut t = ud
                    .borrow_mut::<TxUd>()
                    .map_err(|_| mlua::Error::runtime("bad argument #1 (transaction expected)"))?;
                if t.finished {
                    return fail(lua, invalid("transaction already finished"));
                }
                if op == "commit" || op == "rollback" {
                    t.finished = true;
                }
                (t.db.clone(), t.tx)
            };
            let name = match &name {
                LV::Nil => None,
                LV::String(s) => Some(s.to_string_lossy()),
                _ => return fail(lua, invalid("savepoint name must be a string")),
            };
            let op = match TxOp::parse(&op, name) {
                Ok(op) => op,
                Err(e) => return fail(lua, e),
            };
            let owner = owner(lua)?;
            world_call(lua, WorldCommand::SqlTx { db, owner, tx, op })
        })?,
    )?;
    raw.set(
        "sql_release",
        lua.create_function(|_, ud: AnyUserData| {
            if let Ok(mut d) = ud.borrow_mut::<DbUd>() {
                d.released = true;
            }
            Ok((true, LV::Nil))
        })?,
    )?;
    raw.set(
        "sql_stats",
        lua.create_function(|lua, _: AnyUserData| {
            // SQLite always runs on one connection.
            let t = lua.create_table()?;
            t.set("max_open_connections", 1)?;
            t.set("open_connections", 1)?;
            t.set("in_use", 0)?;
            t.set("idle", 1)?;
            t.set("wait_count", 0)?;
            t.set("wait_duration", 0)?;
            t.set("max_idle_closed", 0)?;
            t.set("max_lifetime_closed", 0)?;
            Ok(t)
        })?,
    )?;
    Ok(())
}

fn typed(lua: &Lua, v: Value) -> mlua::Result<LV> {
    Ok(LV::UserData(lua.create_userdata(SqlTyped(v))?))
}

/// The module table (`get` and the method tables come from storage.lua).
pub fn module(lua: &Lua, glue: &Table) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("get", glue.get::<LV>("sql_get")?)?;
    let null = lua.create_userdata(SqlNull)?;
    t.set("NULL", null.clone())?;
    let builder: Table = lua
        .load(include_str!("sqlbuilder.lua"))
        .set_name("=weft-sql-builder")
        .call(null.clone())?;
    t.set("builder", builder)?;
    let types = lua.create_table()?;
    for (k, v) in [
        ("POSTGRES", "postgres"),
        ("MYSQL", "mysql"),
        ("SQLITE", "sqlite"),
        ("UNKNOWN", "unknown"),
    ] {
        types.set(k, v)?;
    }
    t.set("type", types)?;
    let iso = lua.create_table()?;
    for (k, v) in [
        ("DEFAULT", "default"),
        ("READ_UNCOMMITTED", "read_uncommitted"),
        ("READ_COMMITTED", "read_committed"),
        ("WRITE_COMMITTED", "write_committed"),
        ("REPEATABLE_READ", "repeatable_read"),
        ("SERIALIZABLE", "serializable"),
    ] {
        iso.set(k, v)?;
    }
    t.set("isolation", iso)?;
    let as_ = lua.create_table()?;
    as_.set(
        "int",
        lua.create_function(|lua, v: LV| {
            let n = match &v {
                LV::Integer(i) => Some(*i),
                LV::Number(n) if n.is_finite() => Some(n.trunc() as i64),
                LV::String(s) => s
                    .to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .map(|f| f.trunc() as i64),
                _ => None,
            };
            match n {
                Some(n) => Ok((typed(lua, Value::Int(n))?, LV::Nil)),
                None => fail(lua, invalid("sql.as.int: not a number")),
            }
        })?,
    )?;
    as_.set(
        "float",
        lua.create_function(|lua, v: LV| {
            let n = match &v {
                LV::Integer(i) => Some(*i as f64),
                LV::Number(n) => Some(*n),
                LV::String(s) => s.to_str().ok().and_then(|s| s.trim().parse::<f64>().ok()),
                _ => None,
            };
            match n {
                Some(n) => Ok((typed(lua, Value::Float(n))?, LV::Nil)),
                None => fail(lua, invalid("sql.as.float: not a number")),
            }
        })?,
    )?;
    as_.set(
        "text",
        lua.create_function(|lua, v: LV| {
            let s = match &v {
                LV::String(s) => s.as_bytes().to_vec(),
                LV::Integer(_) | LV::Number(_) | LV::Boolean(_) => {
                    super::errors::display(&v).into_bytes()
                }
                _ => return fail(lua, invalid("sql.as.text: not a string")),
            };
            Ok((typed(lua, Value::Str(s))?, LV::Nil))
        })?,
    )?;
    as_.set(
        "binary",
        lua.create_function(|lua, v: LV| match &v {
            LV::String(s) => {
                let marked = VTable::default().with(BLOB_KEY, Value::Str(s.as_bytes().to_vec()));
                Ok((typed(lua, Value::table(marked))?, LV::Nil))
            }
            _ => fail(lua, invalid("sql.as.binary: not a string")),
        })?,
    )?;
    let n2 = null.clone();
    as_.set("null", lua.create_function(move |_, ()| Ok(n2.clone()))?)?;
    t.set("as", as_)?;
    Ok(t)
}
