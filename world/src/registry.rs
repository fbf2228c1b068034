//! Registry history on SQLite: one row per committed version (its changeset, byte-encoded by
//! `weft_engine::registry::encode`). On disk at `<project>/.wippy/registry.db` (WAL,
//! synchronous=FULL, so a confirmed version survives a kill -9); in memory for the simulator.

use crate::Storage;
use rusqlite::{params, Connection};
use weft_engine::registry::{self as reg, Op};
use weft_engine::value::{kind, ErrorValue, Value};

pub struct RegistryStore {
    conn: Connection,
}

fn sql_err(e: rusqlite::Error) -> String {
    format!("registry store: {e}")
}

/// Where a project's registry history lives.
pub fn db_path(root: &std::path::Path) -> std::path::PathBuf {
    root.join(".wippy").join("registry.db")
}

impl RegistryStore {
    pub fn open(storage: &Storage) -> Result<RegistryStore, String> {
        let conn = match storage {
            Storage::Memory => Connection::open_in_memory().map_err(sql_err)?,
            Storage::Disk { root } => {
                let dir = root.join(".wippy");
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("registry store: {}: {e}", dir.display()))?;
                let c = Connection::open(db_path(root)).map_err(sql_err)?;
                c.pragma_update(None, "journal_mode", "WAL")
                    .map_err(sql_err)?;
                c.pragma_update(None, "synchronous", "FULL")
                    .map_err(sql_err)?;
                c
            }
        };
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS registry_versions (
                 version INTEGER PRIMARY KEY,
                 ops BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS registry_head (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 version INTEGER NOT NULL
             );",
        )
        .map_err(sql_err)?;
        Ok(RegistryStore { conn })
    }

    /// Every stored version, in order.
    pub fn load(&self) -> Result<Vec<(u64, Vec<Op>)>, String> {
        let mut st = self
            .conn
            .prepare("SELECT version, ops FROM registry_versions ORDER BY version")
            .map_err(sql_err)?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(sql_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (v, blob) = row.map_err(sql_err)?;
            let ops = reg::decode(&blob)
                .and_then(|v| reg::ops_from_value(&v))
                .map_err(|e| format!("registry store: version {v}: {e}"))?;
            out.push((v as u64, ops));
        }
        Ok(out)
    }

    /// Stores `version` (replacing it and dropping later ones: the engine only ever writes the
    /// version after its current one, so anything above is a leftover of an unconfirmed write).
    pub fn commit(&mut self, version: u64, ops: &Value) -> Result<(), ErrorValue> {
        let mut blob = Vec::new();
        reg::encode(ops, &mut blob);
        let internal = |e: rusqlite::Error| ErrorValue::new(kind::INTERNAL, sql_err(e));
        let tx = self.conn.transaction().map_err(internal)?;
        tx.execute(
            "DELETE FROM registry_versions WHERE version >= ?1",
            params![version as i64],
        )
        .map_err(internal)?;
        tx.execute(
            "INSERT INTO registry_versions (version, ops) VALUES (?1, ?2)",
            params![version as i64, blob],
        )
        .map_err(internal)?;
        // A new version is current: any moved head is gone.
        tx.execute("DELETE FROM registry_head", [])
            .map_err(internal)?;
        tx.commit().map_err(internal)
    }

    /// Records which version `apply_version` made current.
    pub fn set_head(&mut self, version: u64) -> Result<(), ErrorValue> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO registry_head (id, version) VALUES (1, ?1)",
                params![version as i64],
            )
            .map(|_| ())
            .map_err(|e| ErrorValue::new(kind::INTERNAL, sql_err(e)))
    }

    pub fn head(&self) -> Result<Option<u64>, String> {
        let mut st = self
            .conn
            .prepare("SELECT version FROM registry_head WHERE id = 1")
            .map_err(sql_err)?;
        let mut rows = st.query([]).map_err(sql_err)?;
        match rows.next().map_err(sql_err)? {
            Some(r) => Ok(Some(r.get::<_, i64>(0).map_err(sql_err)? as u64)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_engine::entries::Entry;
    use weft_engine::value::Table;

    fn op(id: &str) -> Op {
        let (namespace, name) = weft_engine::entries::parse_id(id);
        Op::Create(Entry {
            id: id.into(),
            namespace,
            name,
            kind: "registry.entry".into(),
            data: Table::default().with("x", Value::Int(1)),
            ..Default::default()
        })
    }

    #[test]
    fn versions_round_trip_and_rewrites_drop_later_ones() {
        let mut s = RegistryStore::open(&Storage::Memory).unwrap();
        for v in 1..=3 {
            s.commit(v, &reg::ops_to_value(&[op(&format!("a:e{v}"))]))
                .unwrap();
        }
        s.commit(2, &reg::ops_to_value(&[op("a:other")])).unwrap();
        let got = s.load().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], (2, vec![op("a:other")]));
    }

    #[test]
    fn a_moved_head_is_stored_until_the_next_version() {
        let mut s = RegistryStore::open(&Storage::Memory).unwrap();
        for v in 1..=3 {
            s.commit(v, &reg::ops_to_value(&[op(&format!("a:e{v}"))]))
                .unwrap();
        }
        assert_eq!(s.head().unwrap(), None);
        s.set_head(2).unwrap();
        s.set_head(1).unwrap();
        assert_eq!(s.head().unwrap(), Some(1));
        s.commit(4, &reg::ops_to_value(&[op("a:e4")])).unwrap();
        assert_eq!(s.head().unwrap(), None, "a new version is current again");
    }
}
