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
use weft_engine::entries::Entry;
use weft_engine::value::{kind, ErrorValue, Table, Value};
use weft_engine::world::{ListOptions, PutOptions, WorldCommand};

const NS: i64 = 1_000_000_000;

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

fn err(k: weft_engine::value::ErrorKind, m: impl Into<String>) -> ErrorValue {
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
    match e.kind {
        weft_engine::entries::EntryKind::StoreMemory => {
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

    fn handle(&mut self, op: Op, now: i64) -> Result<Value, ErrorValue> {
        match op {
            Op::Get(k) => self
                .live(&k, now)
                .map(|i| i.value.clone())
                .ok_or_else(|| not_found(&k)),
            Op::Entry(k) => self
                .live(&k, now)
                .map(|i| entry_value(&k, i.value.clone(), i.version))
                .ok_or_else(|| not_found(&k)),
            Op::Has(k) => Ok(Value::Bool(self.live(&k, now).is_some())),
            Op::Delete(k) => {
                let was = self.live(&k, now).is_some();
                self.items.remove(&k);
                Ok(Value::Bool(was))
            }
            Op::Set(k, v, ttl) => {
                self.write(&k, v, ttl, now)?;
                Ok(Value::Bool(true))
            }
            Op::Put(k, v, o) => {
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
                let version = self.write(&k, v.clone(), o.ttl_ns, now)?;
                Ok(entry_value(&k, v, version))
            }
            Op::List(o) => {
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
    fn handle(&self, dbs: &mut Databases, op: Op, now: i64) -> Result<Value, ErrorValue> {
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
        match op {
            Op::Get(k) => read(&k)?.ok_or_else(|| not_found(&k)),
            Op::Entry(k) => read(&k)?
                .map(|v| entry_value(&k, v, 0))
                .ok_or_else(|| not_found(&k)),
            Op::Has(k) => Ok(Value::Bool(read(&k)?.is_some())),
            Op::Delete(k) => {
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
            Op::Set(k, v, ttl) => {
                write(&k, &v, ttl)?;
                Ok(Value::Bool(true))
            }
            Op::Put(k, v, o) => {
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
                write(&k, &v, o.ttl_ns)?;
                Ok(entry_value(&k, v, 0))
            }
            Op::List(o) => {
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
        }
    }
}

/// All configured stores, keyed by entry id.
#[derive(Default)]
pub struct Stores {
    pub stores: BTreeMap<String, Store>,
}

/// A store command with its store id and clock taken out (see `Stores::handle`).
enum Op {
    Get(String),
    Entry(String),
    Has(String),
    Delete(String),
    Set(String, Value, Option<i64>),
    Put(String, Value, PutOptions),
    List(ListOptions),
}

/// A stored value is never nil (the Lua side refuses it first; this keeps the world honest).
fn non_nil(v: Value) -> Result<Value, ErrorValue> {
    match v {
        Value::Nil => Err(err(kind::INVALID, "store value must not be nil")),
        v => Ok(v),
    }
}

impl Stores {
    /// A command of the store range (see `WorldCommand`); anything else is refused.
    pub fn handle(&mut self, dbs: &mut Databases, cmd: WorldCommand) -> Result<Value, ErrorValue> {
        use WorldCommand::*;
        let (id, now, op) = match cmd {
            StoreInfo { store } => return self.info(&store),
            StoreGet { store, now_ns, key } => (store, now_ns, Op::Get(key)),
            StoreEntry { store, now_ns, key } => (store, now_ns, Op::Entry(key)),
            StoreHas { store, now_ns, key } => (store, now_ns, Op::Has(key)),
            StoreDelete { store, now_ns, key } => (store, now_ns, Op::Delete(key)),
            StoreSet {
                store,
                now_ns,
                key,
                value,
                ttl_ns,
            } => (store, now_ns, Op::Set(key, non_nil(value)?, ttl_ns)),
            StorePut {
                store,
                now_ns,
                key,
                value,
                options,
            } => (store, now_ns, Op::Put(key, non_nil(value)?, options)),
            StoreList {
                store,
                now_ns,
                options,
            } => (store, now_ns, Op::List(options)),
            other => {
                return Err(err(
                    kind::UNAVAILABLE,
                    format!("command {} is not a store command", other.id().0),
                ))
            }
        };
        match self.store(&id)? {
            Store::Memory(m) => m.handle(op, now),
            Store::Sql(s) => s.handle(dbs, op, now),
        }
    }

    fn store(&mut self, id: &str) -> Result<&mut Store, ErrorValue> {
        self.stores
            .get_mut(id)
            .ok_or_else(|| err(kind::NOT_FOUND, format!("store '{id}' not found")))
    }

    fn info(&mut self, id: &str) -> Result<Value, ErrorValue> {
        let (backend, consistency, durable, versioned) = match self.store(id)? {
            Store::Memory(_) => ("memory", "local", false, true),
            Store::Sql(_) => ("sql", "linearizable", true, false),
        };
        Ok(Value::table(
            Table::default()
                .with("id", Value::from(id))
                .with("backend", Value::from(backend))
                .with("consistency", Value::from(consistency))
                .with("durable", Value::Bool(durable))
                .with("list", Value::Bool(true))
                .with("versioned", Value::Bool(versioned))
                .with("conditional_put", Value::Bool(true))
                .with("ttl", Value::Bool(true)),
        ))
    }
}
