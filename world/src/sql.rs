//! SQL command handlers (ids 80–99): one SQLite connection per `db.sql.sqlite` entry, queries,
//! statements, and transactions owned by one process at a time.
//!
//! Transactions. SQLite gets one connection per database (as in Wippy), so an open transaction
//! holds the whole database. The world cannot see process deaths, so the Lua side tells it: a
//! process that began a transaction sends `SQL_RELEASE_OWNER` from its `close()` (normal exit,
//! failure or kill alike), which rolls back whatever that process left open.
//! Decision (spec unclear): while a transaction is open, a command from anything but that
//! transaction (another process, or the owner outside its transaction handle) is answered at once
//! with a retryable `Unavailable` error instead of waiting — the world answers every command
//! synchronously and must never block behind a transaction whose commit sits in the same queue.

use crate::config_error;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, ErrorCode};
use std::collections::BTreeMap;
use weft_engine::command::ids;
use weft_engine::command::CommandId;
use weft_engine::entries::Entry;
use weft_engine::value::{kind, ErrorValue, Table, Value};

/// Key under which the Lua side marks a parameter that must be bound as a BLOB.
pub const BLOB_KEY: &str = "__weft_blob";

struct OpenTx {
    id: i64,
    owner: i64,
    read_only: bool,
}

pub struct Db {
    pub conn: Connection,
    tx: Option<OpenTx>,
    next_tx: i64,
}

#[derive(Default)]
pub struct Databases {
    pub dbs: BTreeMap<String, Db>,
}

fn err(k: &str, m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(k, m)
}

/// A rusqlite error as a Wippy error value: syntax and misuse are Invalid, constraint
/// violations Conflict, a busy database Unavailable (retryable), the rest Internal.
pub fn sql_error(e: rusqlite::Error) -> ErrorValue {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => err(kind::CONFLICT, e.to_string()),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                let mut v = err(kind::UNAVAILABLE, e.to_string());
                v.retryable = Some(true);
                v
            }
            ErrorCode::ReadOnly => err(kind::PERMISSION_DENIED, e.to_string()),
            _ => err(kind::INVALID, e.to_string()),
        },
        rusqlite::Error::SqlInputError { .. }
        | rusqlite::Error::InvalidParameterCount(..)
        | rusqlite::Error::MultipleStatement
        | rusqlite::Error::InvalidQuery => err(kind::INVALID, e.to_string()),
        _ => err(kind::INTERNAL, e.to_string()),
    }
}

/// Opens one database for an entry: a file under the project root (WAL mode), or in memory.
pub fn open(root: Option<&std::path::Path>, e: &Entry) -> Result<Connection, String> {
    let file = match e.data.get("file").and_then(|v| v.as_str()) {
        Some(f) if !f.trim().is_empty() => f.trim().to_string(),
        _ => {
            return Err(config_error(
                e,
                "db.sql.sqlite needs `file:` (a path or \":memory:\")",
            ))
        }
    };
    let conn = match root {
        None => Connection::open_in_memory(),
        Some(_) if file == ":memory:" => Connection::open_in_memory(),
        Some(root) => {
            let rel = file.strip_prefix("file:").unwrap_or(&file);
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|x| {
                    config_error(e, format!("cannot create {}: {x}", parent.display()))
                })?;
            }
            Connection::open(&path)
        }
    }
    .map_err(|x| config_error(e, format!("cannot open database '{file}': {x}")))?;
    if root.is_some() && file != ":memory:" {
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .map_err(|x| config_error(e, format!("cannot enable WAL mode: {x}")))?;
    }
    Ok(conn)
}

fn str_arg(args: &[Value], i: usize, what: &str) -> Result<String, ErrorValue> {
    args.get(i)
        .and_then(|v| v.as_str())
        .map(String::from)
        .ok_or_else(|| err(kind::INVALID, format!("{what} must be a string")))
}

fn int_arg(args: &[Value], i: usize) -> i64 {
    match args.get(i) {
        Some(Value::Int(n)) => *n,
        Some(Value::Float(f)) => *f as i64,
        _ => 0,
    }
}

/// A parameter as SQLite sees it. Tables other than the blob marker cannot be bound.
fn bind(v: &Value) -> Result<SqlValue, ErrorValue> {
    Ok(match v {
        Value::Nil => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(*b as i64),
        Value::Int(i) => SqlValue::Integer(*i),
        Value::Float(f) => SqlValue::Real(*f),
        Value::Str(s) => match std::str::from_utf8(s) {
            Ok(t) => SqlValue::Text(t.to_string()),
            Err(_) => SqlValue::Blob(s.clone()),
        },
        Value::Table(t) => match t.get(BLOB_KEY) {
            Some(Value::Str(b)) => SqlValue::Blob(b.clone()),
            _ => return Err(err(kind::INVALID, "a table cannot be a SQL parameter")),
        },
        Value::Error(_) => return Err(err(kind::INVALID, "an error cannot be a SQL parameter")),
    })
}

pub fn bind_all(params: Option<&Value>) -> Result<Vec<SqlValue>, ErrorValue> {
    match params {
        None | Some(Value::Nil) => Ok(Vec::new()),
        Some(Value::Table(t)) => t.array.iter().map(bind).collect(),
        Some(_) => Err(err(kind::INVALID, "params must be an array table")),
    }
}

/// One result column as a Lua-bound value; NULL gives `None` (the key is left out of the row).
pub fn column(v: ValueRef<'_>) -> Option<Value> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(Value::Int(i)),
        ValueRef::Real(f) => Some(Value::Float(f)),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(Value::Str(t.to_vec())),
    }
}

/// Runs a query and returns its rows as tables keyed by column name, in column order.
pub fn query_rows(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<Value, ErrorValue> {
    let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(sql_error)?;
    let mut out = Table::default();
    while let Some(row) = rows.next().map_err(sql_error)? {
        let mut t = Table::default();
        for (i, name) in names.iter().enumerate() {
            if let Some(v) = column(row.get_ref(i).map_err(sql_error)?) {
                t.map.push((Value::from(name.as_str()), v));
            }
        }
        out.array.push(Value::table(t));
    }
    Ok(Value::table(out))
}

/// Runs a statement for its effect: `{last_insert_id, rows_affected}`. Without parameters,
/// several `;`-separated statements are allowed (migrations do that).
pub fn execute(conn: &Connection, sql: &str, params: &[SqlValue]) -> Result<Value, ErrorValue> {
    let changed = if params.is_empty() {
        let before = conn.total_changes();
        conn.execute_batch(sql).map_err(sql_error)?;
        (conn.total_changes() - before) as i64
    } else {
        let mut stmt = conn.prepare_cached(sql).map_err(sql_error)?;
        stmt.raw_bind_parameters_checked(params)
            .and_then(|_| stmt.raw_execute())
            .map_err(sql_error)? as i64
    };
    Ok(Value::table(
        Table::default()
            .with("last_insert_id", Value::Int(conn.last_insert_rowid()))
            .with("rows_affected", Value::Int(changed)),
    ))
}

trait BindChecked {
    fn raw_bind_parameters_checked(&mut self, params: &[SqlValue]) -> rusqlite::Result<()>;
}

impl BindChecked for rusqlite::CachedStatement<'_> {
    fn raw_bind_parameters_checked(&mut self, params: &[SqlValue]) -> rusqlite::Result<()> {
        let want = self.parameter_count();
        if want != params.len() {
            return Err(rusqlite::Error::InvalidParameterCount(params.len(), want));
        }
        for (i, p) in params.iter().enumerate() {
            self.raw_bind_parameter(i + 1, p)?;
        }
        Ok(())
    }
}

const ISOLATIONS: &[&str] = &[
    "default",
    "read_uncommitted",
    "read_committed",
    "write_committed",
    "repeatable_read",
    "serializable",
];

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Db {
    /// Whether a transaction holds the connection.
    pub fn busy(&self) -> bool {
        self.tx.is_some()
    }
}

impl Databases {
    fn db(&mut self, id: &str) -> Result<&mut Db, ErrorValue> {
        self.dbs
            .get_mut(id)
            .ok_or_else(|| err(kind::NOT_FOUND, format!("database '{id}' not found")))
    }

    pub fn insert(&mut self, id: &str, conn: Connection) {
        self.dbs.insert(
            id.to_string(),
            Db {
                conn,
                tx: None,
                next_tx: 0,
            },
        );
    }

    /// `cmd` in the SQL range. Arguments are documented on each id in `weft_engine::command::ids`.
    pub fn handle(&mut self, cmd: CommandId, args: &[Value]) -> Result<Value, ErrorValue> {
        if cmd == ids::SQL_RELEASE_OWNER {
            let owner = int_arg(args, 0);
            let mut released = 0;
            for db in self.dbs.values_mut() {
                if db.tx.as_ref().is_some_and(|t| t.owner == owner) {
                    let t = db.tx.take().expect("checked");
                    let _ = db.conn.execute_batch("ROLLBACK");
                    if t.read_only {
                        let _ = db.conn.execute_batch("PRAGMA query_only = 0");
                    }
                    released += 1;
                }
            }
            return Ok(Value::Int(released));
        }
        let id = str_arg(args, 0, "database id")?;
        let owner = int_arg(args, 1);
        let db = self.db(&id)?;
        if cmd == ids::SQL_BEGIN {
            let iso = args.get(2).and_then(|v| v.as_str()).unwrap_or("default");
            if !ISOLATIONS.contains(&iso) {
                return Err(err(
                    kind::INVALID,
                    format!("unknown isolation level '{iso}'"),
                ));
            }
            let read_only = matches!(args.get(3), Some(Value::Bool(true)));
            if let Some(t) = &db.tx {
                return Err(busy(&id, t));
            }
            // SQLite transactions are serializable whatever level is asked for.
            let begin = if iso == "serializable" {
                "BEGIN IMMEDIATE"
            } else {
                "BEGIN"
            };
            if read_only {
                db.conn
                    .execute_batch("PRAGMA query_only = 1")
                    .map_err(sql_error)?;
            }
            if let Err(e) = db.conn.execute_batch(begin) {
                if read_only {
                    let _ = db.conn.execute_batch("PRAGMA query_only = 0");
                }
                return Err(sql_error(e));
            }
            db.next_tx += 1;
            db.tx = Some(OpenTx {
                id: db.next_tx,
                owner,
                read_only,
            });
            return Ok(Value::Int(db.next_tx));
        }
        let tx = int_arg(args, 2);
        match (&db.tx, tx) {
            (Some(t), n) if n == t.id && t.owner == owner => {}
            (Some(t), 0) => return Err(busy(&id, t)),
            (_, 0) => {}
            (_, _) => return Err(err(kind::INVALID, "transaction is no longer active")),
        }
        match cmd {
            c if c == ids::SQL_QUERY => {
                let sql = str_arg(args, 3, "sql")?;
                let params = bind_all(args.get(4))?;
                query_rows(&db.conn, &sql, &params)
            }
            c if c == ids::SQL_EXECUTE => {
                let sql = str_arg(args, 3, "sql")?;
                let params = bind_all(args.get(4))?;
                execute(&db.conn, &sql, &params)
            }
            c if c == ids::SQL_PREPARE => {
                let sql = str_arg(args, 3, "sql")?;
                db.conn.prepare_cached(&sql).map_err(sql_error)?;
                Ok(Value::Bool(true))
            }
            c if c == ids::SQL_TX => {
                if tx == 0 {
                    return Err(err(kind::INVALID, "not a transaction"));
                }
                let op = str_arg(args, 3, "operation")?;
                let name = args.get(4).and_then(|v| v.as_str()).unwrap_or("");
                let named = |verb: &str| -> Result<String, ErrorValue> {
                    if valid_name(name) {
                        Ok(format!("{verb} {name}"))
                    } else {
                        Err(err(
                            kind::INVALID,
                            format!("savepoint name '{name}' must be letters, digits or '_'"),
                        ))
                    }
                };
                let (sql, ends) = match op.as_str() {
                    "commit" => ("COMMIT".to_string(), true),
                    "rollback" => ("ROLLBACK".to_string(), true),
                    "savepoint" => (named("SAVEPOINT")?, false),
                    "rollback_to" => (named("ROLLBACK TO SAVEPOINT")?, false),
                    "release" => (named("RELEASE SAVEPOINT")?, false),
                    other => {
                        return Err(err(
                            kind::INVALID,
                            format!("unknown transaction operation '{other}'"),
                        ))
                    }
                };
                let r = db.conn.execute_batch(&sql);
                if ends {
                    let t = db.tx.take();
                    if r.is_err() {
                        // A failed COMMIT leaves SQLite's transaction open: end it.
                        let _ = db.conn.execute_batch("ROLLBACK");
                    }
                    if t.is_some_and(|t| t.read_only) {
                        let _ = db.conn.execute_batch("PRAGMA query_only = 0");
                    }
                }
                r.map_err(sql_error)?;
                Ok(Value::Bool(true))
            }
            other => Err(err(
                kind::UNAVAILABLE,
                format!("sql command {} has no handler", other.0),
            )),
        }
    }
}

fn busy(id: &str, t: &OpenTx) -> ErrorValue {
    let mut e = err(
        kind::UNAVAILABLE,
        format!(
            "database '{id}' is busy: a transaction of process {} is open",
            t.owner
        ),
    );
    e.retryable = Some(true);
    e
}
