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
use weft_engine::entries::Entry;
use weft_engine::value::{kind, ErrorValue, Table, Value};
use weft_engine::world::{Isolation, TxOp, WorldCommand};

/// Key under which the Lua side marks a parameter that must be bound as a BLOB.
pub const BLOB_KEY: &str = "__weft_blob";

/// What a command does once its transaction check passed.
enum Work<'a> {
    Query(&'a str, &'a [Value]),
    Execute(&'a str, &'a [Value]),
    Prepare(&'a str),
    Tx(&'a TxOp),
}

struct OpenTx {
    id: i64,
    owner: i64,
    read_only: bool,
}

pub struct Db {
    pub conn: Connection,
    /// Kept in a file (on disk or on the simulated disk), not in memory.
    pub on_disk: bool,
    tx: Option<OpenTx>,
    next_tx: i64,
}

#[derive(Default)]
pub struct Databases {
    pub dbs: BTreeMap<String, Db>,
}

fn err(k: weft_engine::value::ErrorKind, m: impl Into<String>) -> ErrorValue {
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

/// Opens one database for an entry: a file under the project root (WAL mode), in memory, or
/// a file on the simulated disk (rollback journal, full syncs).
pub fn open(storage: &crate::Storage, e: &Entry) -> Result<Connection, String> {
    let root = match storage {
        crate::Storage::Disk { root } => Some(root.as_path()),
        crate::Storage::Memory => None,
        crate::Storage::Sim(disk) => return open_sim(disk, e),
    };
    let file = file_of(e)?;
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

/// The `file:` of a `db.sql.sqlite` entry.
fn file_of(e: &Entry) -> Result<String, String> {
    match e.data.get("file").and_then(|v| v.as_str()) {
        Some(f) if !f.trim().is_empty() => Ok(f.trim().to_string()),
        _ => Err(config_error(
            e,
            "db.sql.sqlite needs `file:` (a path or \":memory:\")",
        )),
    }
}

/// A database on the simulated disk (`:memory:` stays in memory).
fn open_sim(disk: &crate::vfs::SimDisk, e: &Entry) -> Result<Connection, String> {
    let file = file_of(e)?;
    if file == ":memory:" {
        return Connection::open_in_memory()
            .map_err(|x| config_error(e, format!("cannot open database '{file}': {x}")));
    }
    let rel = file.strip_prefix("file:").unwrap_or(&file);
    let conn = crate::vfs::open(disk, rel)
        .map_err(|x| config_error(e, format!("cannot open database '{file}': {x}")))?;
    crate::vfs::durable_pragmas(&conn, disk.planted_nosync())
        .map_err(|x| config_error(e, format!("cannot set up database '{file}': {x}")))?;
    Ok(conn)
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

pub fn bind_all(params: &[Value]) -> Result<Vec<SqlValue>, ErrorValue> {
    params.iter().map(bind).collect()
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
        let on_disk = conn.path().is_some_and(|p| !p.is_empty());
        self.dbs.insert(
            id.to_string(),
            Db {
                conn,
                on_disk,
                tx: None,
                next_tx: 0,
            },
        );
    }

    /// A command of the SQL range (see `WorldCommand`); anything else is refused.
    pub fn handle(&mut self, cmd: WorldCommand) -> Result<Value, ErrorValue> {
        use WorldCommand::*;
        let (id, owner, tx, work) = match &cmd {
            SqlReleaseOwner { owner } => return Ok(self.release_owner(*owner)),
            SqlBegin {
                db,
                owner,
                isolation,
                read_only,
            } => return self.begin(db, *owner, *isolation, *read_only),
            SqlQuery {
                db,
                owner,
                tx,
                sql,
                params,
            } => (db, *owner, *tx, Work::Query(sql, params)),
            SqlExecute {
                db,
                owner,
                tx,
                sql,
                params,
            } => (db, *owner, *tx, Work::Execute(sql, params)),
            SqlPrepare { db, owner, tx, sql } => (db, *owner, *tx, Work::Prepare(sql)),
            SqlTx { db, owner, tx, op } => (db, *owner, Some(*tx), Work::Tx(op)),
            other => {
                return Err(err(
                    kind::UNAVAILABLE,
                    format!("command {} is not a sql command", other.id().0),
                ))
            }
        };
        let db = self.db(id)?;
        match (&db.tx, tx) {
            (Some(t), Some(n)) if n == t.id && t.owner == owner => {}
            (Some(t), None) => return Err(busy(id, t)),
            (_, None) => {}
            (_, Some(_)) => return Err(err(kind::INVALID, "transaction is no longer active")),
        }
        match work {
            Work::Query(sql, params) => query_rows(&db.conn, sql, &bind_all(params)?),
            Work::Execute(sql, params) => execute(&db.conn, sql, &bind_all(params)?),
            Work::Prepare(sql) => {
                db.conn.prepare_cached(sql).map_err(sql_error)?;
                Ok(Value::Bool(true))
            }
            Work::Tx(op) => {
                let named = |verb: &str, name: &str| -> Result<String, ErrorValue> {
                    if valid_name(name) {
                        Ok(format!("{verb} {name}"))
                    } else {
                        Err(err(
                            kind::INVALID,
                            format!("savepoint name '{name}' must be letters, digits or '_'"),
                        ))
                    }
                };
                let sql = match op {
                    TxOp::Commit => "COMMIT".to_string(),
                    TxOp::Rollback => "ROLLBACK".to_string(),
                    TxOp::Savepoint(n) => named("SAVEPOINT", n)?,
                    TxOp::RollbackTo(n) => named("ROLLBACK TO SAVEPOINT", n)?,
                    TxOp::Release(n) => named("RELEASE SAVEPOINT", n)?,
                };
                let r = db.conn.execute_batch(&sql);
                if op.ends() {
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
        }
    }

    /// Rolls back whatever `owner` left open; answers how many transactions that was.
    fn release_owner(&mut self, owner: i64) -> Value {
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
        Value::Int(released)
    }

    fn begin(
        &mut self,
        id: &str,
        owner: i64,
        isolation: Isolation,
        read_only: bool,
    ) -> Result<Value, ErrorValue> {
        let db = self.db(id)?;
        if let Some(t) = &db.tx {
            return Err(busy(id, t));
        }
        // SQLite transactions are serializable whatever level is asked for.
        let begin = if isolation == Isolation::Serializable {
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
        Ok(Value::Int(db.next_tx))
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
