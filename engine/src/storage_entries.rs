//! Boot-time checks of the storage entry kinds (`db.sql.sqlite`, `store.memory`, `store.sql`):
//! the fields the world needs to open them. Opening happens in the driver's world (weft-world).

use crate::entries::{Entry, EntryKind};
use crate::value::Value;
use std::collections::BTreeMap;
use std::rc::Rc;

fn text<'a>(e: &'a Entry, name: &str) -> Option<&'a str> {
    e.data
        .get(name)
        .and_then(|v| v.as_str())
        .filter(|s| !s.trim().is_empty())
}

/// A message for the entry's configuration error, or Ok.
pub fn check(e: &Entry, entries: &BTreeMap<String, Rc<Entry>>) -> Result<(), String> {
    match e.kind {
        EntryKind::DbSqlSqlite => {
            text(e, "file").ok_or("db.sql.sqlite needs `file:` (a path or \":memory:\")")?;
        }
        EntryKind::StoreMemory => match e.data.get("max_size") {
            None | Some(Value::Nil) => {}
            Some(Value::Int(n)) if *n > 0 => {}
            Some(_) => return Err("max_size must be a positive integer".into()),
        },
        EntryKind::StoreSql => {
            let db =
                text(e, "database").ok_or("store.sql needs `database:` (a db.sql.sqlite id)")?;
            let db = if db.contains(':') {
                db.to_string()
            } else {
                format!("{}:{db}", e.namespace)
            };
            match entries.get(&db) {
                Some(d) if d.kind == EntryKind::DbSqlSqlite => {}
                Some(d) => {
                    return Err(format!(
                        "database: '{db}' is a {}, not a db.sql.sqlite",
                        d.kind
                    ))
                }
                None => return Err(format!("database: entry '{db}' not found")),
            }
            text(e, "table_name").ok_or("store.sql needs `table_name:`")?;
        }
        _ => {}
    }
    Ok(())
}
