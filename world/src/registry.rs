//! Registry history on SQLite: one row per committed version (its changeset, byte-encoded by
//! `weft_engine::registry::encode`), and every `SNAPSHOT_EVERY`-th version a row with the full
//! state it reached, so a boot replays only the changesets after the latest snapshot. On disk at
//! `<project>/.wippy/registry.db` (WAL, synchronous=FULL, so a confirmed version survives a
//! kill -9); in memory for the simulator.

use crate::Storage;
use rusqlite::{params, Connection};
use weft_engine::registry::{self as reg, Op, State, SNAPSHOT_EVERY};
use weft_engine::value::{kind, ErrorValue, Value};

pub struct RegistryStore {
    conn: Connection,
    /// Snapshot spacing (`SNAPSHOT_EVERY`; smaller in tests).
    every: u64,
}

fn sql_err(e: rusqlite::Error) -> String {
    format!("registry store: {e}")
}

/// Where the registry history lives on a simulated disk.
pub const SIM_PATH: &str = ".wippy/registry.db";

/// Where a project's registry history lives.
pub fn db_path(root: &std::path::Path) -> std::path::PathBuf {
    root.join(".wippy").join("registry.db")
}

impl RegistryStore {
    pub fn open(storage: &Storage) -> Result<RegistryStore, String> {
        let conn = match storage {
            Storage::Memory => Connection::open_in_memory().map_err(sql_err)?,
            Storage::Sim(disk) => {
                let c = crate::vfs::open(disk, SIM_PATH).map_err(sql_err)?;
                crate::vfs::durable_pragmas(&c, false).map_err(sql_err)?;
                c
            }
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
             CREATE TABLE IF NOT EXISTS registry_snapshots (
                 version INTEGER PRIMARY KEY,
                 state BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS registry_head (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 version INTEGER NOT NULL
             );",
        )
        .map_err(sql_err)?;
        Ok(RegistryStore {
            conn,
            every: SNAPSHOT_EVERY,
        })
    }

    /// Writes a snapshot every `every` versions instead of `SNAPSHOT_EVERY` (tests).
    pub fn with_snapshot_every(mut self, every: u64) -> RegistryStore {
        self.every = every.max(2);
        self
    }

    /// The connection (the simulator digests its content).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Every stored version, in order.
    pub fn load(&self) -> Result<Vec<(u64, Vec<Op>)>, String> {
        load_versions(&self.conn, 0)
    }

    /// The latest stored snapshot `(version, state)`; None when none was written yet. A
    /// snapshot row that does not decode is skipped for an older one (the changesets are the
    /// record; snapshots only save replay work).
    pub fn snapshot(&self) -> Result<Option<(u64, State)>, String> {
        latest_snapshot(&self.conn, u64::MAX)
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
            "DELETE FROM registry_snapshots WHERE version >= ?1",
            params![version as i64],
        )
        .map_err(internal)?;
        tx.execute(
            "INSERT INTO registry_versions (version, ops) VALUES (?1, ?2)",
            params![version as i64, blob],
        )
        .map_err(internal)?;
        if version.is_multiple_of(self.every) {
            write_snapshot(&tx, version).map_err(internal)?;
        }
        // A new version is current: any moved head is gone.
        tx.execute("DELETE FROM registry_head", [])
            .map_err(internal)?;
        tx.commit().map_err(internal)
    }

    /// Appends a whole history in one transaction (versions after the stored ones, in order),
    /// writing snapshots where `commit` would. For tools, tests and benches that build a long
    /// history without one disk sync per version.
    pub fn import(&mut self, versions: &[(u64, Vec<Op>)]) -> Result<(), ErrorValue> {
        let internal = |e: rusqlite::Error| ErrorValue::new(kind::INTERNAL, sql_err(e));
        let tx = self.conn.transaction().map_err(internal)?;
        let mut last: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM registry_versions",
                [],
                |r| r.get(0),
            )
            .map_err(internal)?;
        for (version, ops) in versions {
            if *version as i64 != last + 1 {
                return Err(ErrorValue::new(
                    kind::INVALID,
                    format!("registry import: version {version} does not follow {last}"),
                ));
            }
            let mut blob = Vec::new();
            reg::encode(&reg::ops_to_value(ops), &mut blob);
            tx.execute(
                "INSERT INTO registry_versions (version, ops) VALUES (?1, ?2)",
                params![*version as i64, blob],
            )
            .map_err(internal)?;
            if version.is_multiple_of(self.every) {
                write_snapshot(&tx, *version).map_err(internal)?;
            }
            last = *version as i64;
        }
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

/// Stored changesets after `after`, in order.
fn load_versions(conn: &Connection, after: u64) -> Result<Vec<(u64, Vec<Op>)>, String> {
    let mut st = conn
        .prepare("SELECT version, ops FROM registry_versions WHERE version > ?1 ORDER BY version")
        .map_err(sql_err)?;
    let rows = st
        .query_map(params![after as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
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

/// The newest decodable snapshot at or below `at`.
fn latest_snapshot(conn: &Connection, at: u64) -> Result<Option<(u64, State)>, String> {
    let at = i64::try_from(at).unwrap_or(i64::MAX);
    let mut st = conn
        .prepare(
            "SELECT version, state FROM registry_snapshots WHERE version <= ?1
             ORDER BY version DESC",
        )
        .map_err(sql_err)?;
    let mut rows = st.query(params![at]).map_err(sql_err)?;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let v = r.get::<_, i64>(0).map_err(sql_err)?;
        let blob = r.get::<_, Vec<u8>>(1).map_err(sql_err)?;
        if let Ok(state) = reg::decode(&blob).and_then(|s| reg::state_from_value(&s)) {
            return Ok(Some((v as u64, state)));
        }
    }
    Ok(None)
}

/// Stores the state `version` reached: the previous snapshot plus the changesets after it (at
/// most `every` of them). A chain that does not apply (a damaged history) writes no snapshot,
/// so boot falls back to replaying the changesets and cuts them where the engine would.
fn write_snapshot(conn: &Connection, version: u64) -> rusqlite::Result<()> {
    let to_sql = |e: String| rusqlite::Error::ToSqlConversionFailure(e.into());
    let (base, mut state) = latest_snapshot(conn, version - 1)
        .map_err(to_sql)?
        .unwrap_or_default();
    for (id, ops) in load_versions(conn, base).map_err(to_sql)? {
        if id > version {
            break;
        }
        if reg::apply_ops_mut(&mut state, &ops).is_err() {
            return Ok(());
        }
    }
    let mut blob = Vec::new();
    reg::encode(&reg::state_to_value(&state), &mut blob);
    conn.execute(
        "INSERT OR REPLACE INTO registry_snapshots (version, state) VALUES (?1, ?2)",
        params![version as i64, blob],
    )?;
    Ok(())
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

    fn upd(id: &str, n: i64) -> Op {
        let Op::Create(mut e) = op(id) else {
            unreachable!()
        };
        e.data = Table::default().with("x", Value::Int(n));
        Op::Update(e)
    }

    /// Version 1 creates `a:base`; version v > 1 creates `a:e<v>` and updates `a:base`.
    fn history(n: u64) -> Vec<(u64, Vec<Op>)> {
        (1..=n)
            .map(|v| match v {
                1 => (v, vec![op("a:base")]),
                _ => (v, vec![op(&format!("a:e{v}")), upd("a:base", v as i64)]),
            })
            .collect()
    }

    fn state_after(versions: &[(u64, Vec<Op>)]) -> State {
        let mut s = State::new();
        for (_, ops) in versions {
            reg::apply_ops_mut(&mut s, ops).unwrap();
        }
        s
    }

    #[test]
    fn snapshots_are_written_every_k_versions_and_dropped_with_rewrites() {
        let h = history(11);
        let mut s = RegistryStore::open(&Storage::Memory)
            .unwrap()
            .with_snapshot_every(4);
        assert_eq!(s.snapshot().unwrap(), None);
        for (v, ops) in &h {
            s.commit(*v, &reg::ops_to_value(ops)).unwrap();
        }
        let (at, state) = s.snapshot().unwrap().expect("snapshots at 4 and 8");
        assert_eq!(at, 8);
        assert_eq!(state, state_after(&h[..8]));
        assert_eq!(state.len(), 8);
        // Rewriting version 6 drops the snapshot at 8 with the versions it covered.
        s.commit(6, &reg::ops_to_value(&[op("a:other")])).unwrap();
        let (at, state) = s.snapshot().unwrap().unwrap();
        assert_eq!((at, state), (4, state_after(&h[..4])));
        // Import writes the same rows as commits do.
        let mut t = RegistryStore::open(&Storage::Memory)
            .unwrap()
            .with_snapshot_every(4);
        t.import(&h[..5]).unwrap();
        t.import(&h[5..]).unwrap();
        assert_eq!(t.load().unwrap(), h);
        assert_eq!(t.snapshot().unwrap().unwrap(), (8, state_after(&h[..8])));
        let e = t.import(&h[..1]).unwrap_err();
        assert!(e.message.contains("does not follow"), "{}", e.message);
    }

    #[test]
    fn a_history_that_does_not_apply_gets_no_snapshot() {
        let mut h = history(9);
        h[2].1 = vec![Op::Delete("a:missing".into())];
        let mut s = RegistryStore::open(&Storage::Memory)
            .unwrap()
            .with_snapshot_every(4);
        s.import(&h).unwrap();
        assert_eq!(s.snapshot().unwrap(), None);
        assert_eq!(s.load().unwrap().len(), 9, "the changesets are all kept");
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
