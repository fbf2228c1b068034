//! Store command handlers (ids 60–79): `store.memory` and `store.sql`.
//!
//! Decisions (spec unclear):
//! - Both kinds live in the world, `store.memory` included: the Lua side passes the node's clock
//!   (`now`, Unix nanoseconds from the driver's clock, virtual under `weft sim`) with every
//!   command, so TTLs follow node time and runs stay deterministic. Expired keys are dropped
//!   lazily when touched or when a full store needs room; `cleanup_interval` is accepted and
//!   not needed.
//! - `store.memory` is versioned: a key's version starts at 1 and grows by one per write.
//!   `store.sql` has no version column, so it reports `versioned = false`, answers version 0 and
//!   refuses `if_version` with Invalid; `only_if_absent` works on both.
//! - `store.sql` keeps values as JSON text (Wippy's JSON rules) in `payload_column_name` and the
//!   expiry as integer Unix seconds (rounded up) in `expire_column_name`, NULL for no expiry.
//! - `list` returns entries `{key, value, version}` sorted by key; `cursor` is the last key
//!   returned (pass it as `after` to continue).

use crate::config_error;
use crate::sql::{column, sql_error, Databases};
use rusqlite::types::Value as SqlValue;
use std::collections::BTreeMap;
use weft_engine::command::{ids, CommandId};
use weft_engine::entries::Entry;
use weft_engine::value::{kind, ErrorValue, Table, Value};

const NS: i64 = 1_000_000_000;
const LIST_DEFAULT: usize = 100;
const LIST_MAX: usize = 1000;

struct Item {
    value: Value,
    version: i64,
    expires_ns: Option<i64>,
}

pub struct MemStore {
    max_size: usize,
    items: BTreeMap<String, Item>,
}

pub struct SqlStore {
    database: String,
    table: String,
    key: String,
    value: String,
    expires: String,
}

pub enum Store {
    Memory(MemStore),
    Sql(SqlStore),
}

fn err(k: &str, m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(k, m)
}

fn ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn str_field(e: &Entry, name: &str) -> Option<String> {
    e.data.get(name).and_then(|v| v.as_str()).map(String::from)
}

/// Builds a store from its entry; `resolve` makes a `database:` reference absolute.
pub fn from_entry(e: &Entry, dbs: &Databases) -> Result<Store, String> {
    match e.kind.as_str() {
        "store.memory" => {
            let max_size = match e.data.get("max_size") {
                None | Some(Value::Nil) => 10_000,
                Some(Value::Int(n)) if *n > 0 => *n as usize,
                Some(_) => return Err(config_error(e, "max_size must be a positive integer")),
            };
            Ok(Store::Memory(MemStore {
                max_size,
                items: BTreeMap::new(),
            }))
        }
        _ => {
            let db = str_field(e, "database").ok_or_else(|| {
                config_error(e, "store.sql needs `database:` (a db.sql.sqlite id)")
            })?;
            let db = if db.contains(':') {
                db
            } else {
                format!("{}:{db}", e.namespace)
            };
            if !dbs.dbs.contains_key(&db) {
                return Err(config_error(
                    e,
                    format!("database: '{db}' is not a db.sql.sqlite entry"),
                ));
            }
            let table = str_field(e, "table_name")
                .ok_or_else(|| config_error(e, "store.sql needs `table_name:`"))?;
            let col = |name: &str, default: &str| -> Result<String, String> {
                let c = str_field(e, name).unwrap_or_else(|| default.to_string());
                if ident(&c) {
                    Ok(c)
                } else {
                    Err(config_error(
                        e,
                        format!("{name}: '{c}' is not a valid column name"),
                    ))
                }
            };
            if !ident(&table) {
                return Err(config_error(
                    e,
                    format!("table_name: '{table}' is not a valid table name"),
                ));
            }
            Ok(Store::Sql(SqlStore {
                database: db,
                key: col("id_column_name", "key")?,
                value: col("payload_column_name", "value")?,
                expires: col("expire_column_name", "expires_at")?,
                table,
            }))
        }
    }
}

fn entry_value(key: &str, value: Value, version: i64) -> Value {
    Value::table(
        Table::default()
            .with("key", Value::from(key))
            .with("value", value)
            .with("version", Value::Int(version)),
    )
}

/// TTL argument in seconds (integer or float); 0 or absent means no expiry.
fn ttl_ns(v: Option<&Value>) -> Result<Option<i64>, ErrorValue> {
    match v {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::Int(0)) => Ok(None),
        Some(Value::Int(n)) if *n > 0 => Ok(Some(n.saturating_mul(NS))),
        Some(Value::Float(f)) if *f == 0.0 => Ok(None),
        Some(Value::Float(f)) if *f > 0.0 && f.is_finite() => Ok(Some((*f * NS as f64) as i64)),
        Some(_) => Err(err(
            kind::INVALID,
            "ttl must be a non-negative number of seconds",
        )),
    }
}

struct PutOpts {
    ttl: Option<i64>,
    only_if_absent: bool,
    if_version: Option<i64>,
}

fn put_opts(v: Option<&Value>) -> Result<PutOpts, ErrorValue> {
    let t = match v {
        None | Some(Value::Nil) => {
            return Ok(PutOpts {
                ttl: None,
                only_if_absent: false,
                if_version: None,
            })
        }
        Some(Value::Table(t)) => t,
        Some(_) => return Err(err(kind::INVALID, "put options must be a table")),
    };
    let if_version = match t.get("if_version") {
        None | Some(Value::Nil) => None,
        Some(Value::Int(n)) => Some(*n),
        Some(_) => return Err(err(kind::INVALID, "if_version must be an integer")),
    };
    Ok(PutOpts {
        ttl: ttl_ns(t.get("ttl"))?,
        only_if_absent: matches!(t.get("only_if_absent"), Some(Value::Bool(true))),
        if_version,
    })
}

struct ListOpts {
    prefix: String,
    after: Option<String>,
    limit: usize,
}

fn list_opts(v: Option<&Value>) -> Result<ListOpts, ErrorValue> {
    let mut o = ListOpts {
        prefix: String::new(),
        after: None,
        limit: LIST_DEFAULT,
    };
    let t = match v {
        None | Some(Value::Nil) => return Ok(o),
        Some(Value::Table(t)) => t,
        Some(_) => return Err(err(kind::INVALID, "list options must be a table")),
    };
    if let Some(p) = t.get("prefix").and_then(|v| v.as_str()) {
        o.prefix = p.to_string();
    }
    o.after = t
        .get("after")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(String::from);
    match t.get("limit") {
        None | Some(Value::Nil) => {}
        Some(Value::Int(n)) if *n > 0 => o.limit = (*n as usize).min(LIST_MAX),
        Some(_) => return Err(err(kind::INVALID, "limit must be a positive integer")),
    }
    Ok(o)
}

fn list_result(items: Vec<Value>, last: Option<String>, has_more: bool) -> Value {
    let mut t = Table::default().with(
        "items",
        Value::table(Table {
            array: items,
            map: vec![],
        }),
    );
    if let Some(c) = last {
        t = t.with("cursor", Value::from(c));
    }
    Value::table(t.with("has_more", Value::Bool(has_more)))
}

fn key_arg(args: &[Value]) -> Result<String, ErrorValue> {
    match args.get(2) {
        Some(Value::Str(s)) => String::from_utf8(s.clone())
            .map_err(|_| err(kind::INVALID, "store key must be UTF-8 text")),
        _ => Err(err(kind::INVALID, "store key must be a string")),
    }
}

fn value_arg(args: &[Value]) -> Result<Value, ErrorValue> {
    match args.get(3) {
        None | Some(Value::Nil) => Err(err(kind::INVALID, "store value must not be nil")),
        Some(v) => Ok(v.clone()),
    }
}

impl MemStore {
    fn live(&self, key: &str, now: i64) -> Option<&Item> {
        self.items
            .get(key)
            .filter(|i| i.expires_ns.is_none_or(|x| x > now))
    }

    fn write(
        &mut self,
        key: &str,
        value: Value,
        ttl: Option<i64>,
        now: i64,
    ) -> Result<i64, ErrorValue> {
        let version = match self.live(key, now) {
            Some(i) => i.version + 1,
            None => {
                if self.items.len() >= self.max_size {
                    self.items
                        .retain(|_, i| i.expires_ns.is_none_or(|x| x > now));
                }
                if self.items.len() >= self.max_size && !self.items.contains_key(key) {
                    return Err(err(
                        kind::RATE_LIMITED,
                        format!("store is full ({} keys)", self.max_size),
                    ));
                }
                1
            }
        };
        self.items.insert(
            key.to_string(),
            Item {
                value,
                version,
                expires_ns: ttl.map(|t| now.saturating_add(t)),
            },
        );
        Ok(version)
    }

    fn handle(&mut self, cmd: CommandId, now: i64, args: &[Value]) -> Result<Value, ErrorValue> {
        match cmd {
            c if c == ids::STORE_GET => {
                let k = key_arg(args)?;
                self.live(&k, now)
                    .map(|i| i.value.clone())
                    .ok_or_else(|| not_found(&k))
            }
            c if c == ids::STORE_ENTRY => {
                let k = key_arg(args)?;
                self.live(&k, now)
                    .map(|i| entry_value(&k, i.value.clone(), i.version))
                    .ok_or_else(|| not_found(&k))
            }
            c if c == ids::STORE_HAS => {
                let k = key_arg(args)?;
                Ok(Value::Bool(self.live(&k, now).is_some()))
            }
            c if c == ids::STORE_DELETE => {
                let k = key_arg(args)?;
                let was = self.live(&k, now).is_some();
                self.items.remove(&k);
                Ok(Value::Bool(was))
            }
            c if c == ids::STORE_SET => {
                let k = key_arg(args)?;
                let v = value_arg(args)?;
                let ttl = ttl_ns(args.get(4))?;
                self.write(&k, v, ttl, now)?;
                Ok(Value::Bool(true))
            }
            c if c == ids::STORE_PUT => {
                let k = key_arg(args)?;
                let v = value_arg(args)?;
                let o = put_opts(args.get(4))?;
                let cur = self.live(&k, now).map(|i| i.version);
                if o.only_if_absent && cur.is_some() {
                    return Err(err(
                        kind::ALREADY_EXISTS,
                        format!("key '{k}' already exists"),
                    ));
                }
                if let Some(want) = o.if_version {
                    if cur != Some(want) {
                        return Err(err(
                            kind::CONFLICT,
                            format!("key '{k}' is at version {}, not {want}", cur.unwrap_or(0)),
                        ));
                    }
                }
                let version = self.write(&k, v.clone(), o.ttl, now)?;
                Ok(entry_value(&k, v, version))
            }
            c if c == ids::STORE_LIST => {
                let o = list_opts(args.get(2))?;
                let start = match &o.after {
                    Some(a) => std::ops::Bound::Excluded(a.clone()),
                    None => std::ops::Bound::Included(o.prefix.clone()),
                };
                let mut items = Vec::new();
                let mut last = None;
                let mut has_more = false;
                for (k, i) in self.items.range((start, std::ops::Bound::Unbounded)) {
                    if !k.starts_with(&o.prefix) {
                        if k.as_str() > o.prefix.as_str() {
                            break;
                        }
                        continue;
                    }
                    if i.expires_ns.is_some_and(|x| x <= now) {
                        continue;
                    }
                    if items.len() == o.limit {
                        has_more = true;
                        break;
                    }
                    items.push(entry_value(k, i.value.clone(), i.version));
                    last = Some(k.clone());
                }
                Ok(list_result(items, last, has_more))
            }
            other => Err(err(
                kind::UNAVAILABLE,
                format!("store command {} has no handler", other.0),
            )),
        }
    }
}

fn not_found(k: &str) -> ErrorValue {
    err(kind::NOT_FOUND, format!("key '{k}' not found"))
}

fn expiry_s(ttl: Option<i64>, now: i64) -> SqlValue {
    match ttl {
        None => SqlValue::Null,
        Some(t) => {
            let at = now.saturating_add(t);
            SqlValue::Integer(at.div_euclid(NS) + i64::from(at.rem_euclid(NS) != 0))
        }
    }
}

impl SqlStore {
    fn handle(
        &self,
        dbs: &mut Databases,
        cmd: CommandId,
        now: i64,
        args: &[Value],
    ) -> Result<Value, ErrorValue> {
        let db = dbs.dbs.get(&self.database).ok_or_else(|| {
            err(
                kind::NOT_FOUND,
                format!("database '{}' not found", self.database),
            )
        })?;
        if db.busy() {
            let mut e = err(
                kind::UNAVAILABLE,
                format!("database '{}' is busy with a transaction", self.database),
            );
            e.retryable = Some(true);
            return Err(e);
        }
        let conn = &db.conn;
        let now_s = now.div_euclid(NS);
        let (t, kc, vc, xc) = (&self.table, &self.key, &self.value, &self.expires);
        let live = format!("({xc} IS NULL OR {xc} > ?2)");
        let read = |k: &str| -> Result<Option<Value>, ErrorValue> {
            let sql = format!("SELECT {vc} FROM {t} WHERE {kc} = ?1 AND {live}");
            let mut st = conn.prepare_cached(&sql).map_err(sql_error)?;
            let mut rows = st.query(rusqlite::params![k, now_s]).map_err(sql_error)?;
            match rows.next().map_err(sql_error)? {
                None => Ok(None),
                Some(r) => {
                    let text = match column(r.get_ref(0).map_err(sql_error)?) {
                        Some(Value::Str(s)) => String::from_utf8_lossy(&s).into_owned(),
                        _ => "null".into(),
                    };
                    weft_engine::json::decode(&text)
                        .map(Some)
                        .map_err(|m| err(kind::INTERNAL, format!("stored value: {m}")))
                }
            }
        };
        let write = |k: &str, v: &Value, ttl: Option<i64>| -> Result<(), ErrorValue> {
            let text = weft_engine::json::encode(v).map_err(|m| err(kind::INVALID, m))?;
            let sql = format!(
                "INSERT INTO {t} ({kc}, {vc}, {xc}) VALUES (?1, ?2, ?3) \
                 ON CONFLICT({kc}) DO UPDATE SET {vc} = excluded.{vc}, {xc} = excluded.{xc}"
            );
            conn.prepare_cached(&sql)
                .and_then(|mut s| s.execute(rusqlite::params![k, text, expiry_s(ttl, now)]))
                .map_err(sql_error)?;
            Ok(())
        };
        match cmd {
            c if c == ids::STORE_GET => {
                let k = key_arg(args)?;
                read(&k)?.ok_or_else(|| not_found(&k))
            }
            c if c == ids::STORE_ENTRY => {
                let k = key_arg(args)?;
                read(&k)?
                    .map(|v| entry_value(&k, v, 0))
                    .ok_or_else(|| not_found(&k))
            }
            c if c == ids::STORE_HAS => Ok(Value::Bool(read(&key_arg(args)?)?.is_some())),
            c if c == ids::STORE_DELETE => {
                let k = key_arg(args)?;
                let sql = format!("DELETE FROM {t} WHERE {kc} = ?1 AND {live}");
                let n = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| s.execute(rusqlite::params![k, now_s]))
                    .map_err(sql_error)?;
                // Expired rows are gone either way.
                let sql = format!("DELETE FROM {t} WHERE {kc} = ?1");
                let _ = conn.execute(&sql, rusqlite::params![k]);
                Ok(Value::Bool(n > 0))
            }
            c if c == ids::STORE_SET => {
                let k = key_arg(args)?;
                let v = value_arg(args)?;
                write(&k, &v, ttl_ns(args.get(4))?)?;
                Ok(Value::Bool(true))
            }
            c if c == ids::STORE_PUT => {
                let k = key_arg(args)?;
                let v = value_arg(args)?;
                let o = put_opts(args.get(4))?;
                if o.if_version.is_some() {
                    return Err(err(
                        kind::INVALID,
                        "store.sql is not versioned: if_version is not supported",
                    ));
                }
                if o.only_if_absent && read(&k)?.is_some() {
                    return Err(err(
                        kind::ALREADY_EXISTS,
                        format!("key '{k}' already exists"),
                    ));
                }
                write(&k, &v, o.ttl)?;
                Ok(entry_value(&k, v, 0))
            }
            c if c == ids::STORE_LIST => {
                let o = list_opts(args.get(2))?;
                let after = o.after.clone().unwrap_or_default();
                let sql = format!(
                    "SELECT {kc}, {vc} FROM {t} WHERE {live} AND {kc} > ?1 \
                     AND substr({kc}, 1, ?3) = ?4 ORDER BY {kc} LIMIT ?5"
                );
                let mut st = conn.prepare_cached(&sql).map_err(sql_error)?;
                let mut rows = st
                    .query(rusqlite::params![
                        after,
                        now_s,
                        o.prefix.chars().count() as i64,
                        o.prefix,
                        o.limit as i64 + 1
                    ])
                    .map_err(sql_error)?;
                let mut items = Vec::new();
                let mut last = None;
                let mut has_more = false;
                while let Some(r) = rows.next().map_err(sql_error)? {
                    if items.len() == o.limit {
                        has_more = true;
                        break;
                    }
                    let k: String = r.get(0).map_err(sql_error)?;
                    let text: String = r.get(1).map_err(sql_error)?;
                    let v = weft_engine::json::decode(&text)
                        .map_err(|m| err(kind::INTERNAL, format!("stored value: {m}")))?;
                    items.push(entry_value(&k, v, 0));
                    last = Some(k);
                }
                Ok(list_result(items, last, has_more))
            }
            other => Err(err(
                kind::UNAVAILABLE,
                format!("store command {} has no handler", other.0),
            )),
        }
    }
}

/// All configured stores, keyed by entry id.
#[derive(Default)]
pub struct Stores {
    pub stores: BTreeMap<String, Store>,
}

impl Stores {
    /// `cmd` in the store range: args are `[store id, now (Unix ns), ...]` (see `ids`).
    pub fn handle(
        &mut self,
        dbs: &mut Databases,
        cmd: CommandId,
        args: &[Value],
    ) -> Result<Value, ErrorValue> {
        let id = args
            .first()
            .and_then(|v| v.as_str())
            .ok_or_else(|| err(kind::INVALID, "store id must be a string"))?;
        let now = match args.get(1) {
            Some(Value::Int(n)) => *n,
            _ => 0,
        };
        let store = self
            .stores
            .get_mut(id)
            .ok_or_else(|| err(kind::NOT_FOUND, format!("store '{id}' not found")))?;
        if cmd == ids::STORE_INFO {
            let (backend, consistency, durable, versioned) = match store {
                Store::Memory(_) => ("memory", "local", false, true),
                Store::Sql(_) => ("sql", "linearizable", true, false),
            };
            return Ok(Value::table(
                Table::default()
                    .with("id", Value::from(id))
                    .with("backend", Value::from(backend))
                    .with("consistency", Value::from(consistency))
                    .with("durable", Value::Bool(durable))
                    .with("list", Value::Bool(true))
                    .with("versioned", Value::Bool(versioned))
                    .with("conditional_put", Value::Bool(true))
                    .with("ttl", Value::Bool(true)),
            ));
        }
        match store {
            Store::Memory(m) => m.handle(cmd, now, args),
            Store::Sql(s) => s.handle(dbs, cmd, now, args),
        }
    }
}
