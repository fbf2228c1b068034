//! Command handlers for work that needs the world: one `World` answers `Output::Execute` commands
//! for both drivers (production runs it off the engine thread; the simulator inline, in memory).

// Handlers answer with engine error values (data that travel back to Lua); see weft-engine.
#![allow(clippy::result_large_err)]

pub mod env;
pub mod registry;
pub mod sql;
pub mod store;
pub mod vfs;

use weft_engine::entries::{Entry, EntryKind};
use weft_engine::value::{kind, ErrorValue, Value};
use weft_engine::world::WorldCommand;

/// Where durable state lives: on disk under a project folder, only in memory (simulation), or
/// on a simulated disk with durable and written images (simulation with storage faults and
/// crash-restart; see `vfs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    Disk { root: std::path::PathBuf },
    Memory,
    Sim(vfs::SimDisk),
}

/// State behind world commands. Handlers for each command range live in their own module.
pub struct World {
    pub storage: Storage,
    /// Files written under `Storage::Memory` (path → text), e.g. `.env` files.
    pub mem_files: std::collections::BTreeMap<String, String>,
    pub dbs: sql::Databases,
    pub stores: store::Stores,
    registry: Option<registry::RegistryStore>,
    /// Version 1 not yet stored: the database is created on the first registry change, so an
    /// app that never changes its registry leaves no file behind.
    registry_base: Option<(u64, Value)>,
    /// The project had no registry database at boot (see `registry_base`).
    registry_lazy: bool,
}

impl World {
    pub fn new(storage: Storage) -> World {
        World {
            storage,
            mem_files: Default::default(),
            dbs: sql::Databases::default(),
            stores: store::Stores::default(),
            registry: None,
            registry_base: None,
            registry_lazy: false,
        }
    }

    /// The registry history store, opened on first use.
    pub fn registry(&mut self) -> Result<&mut registry::RegistryStore, String> {
        if self.registry.is_none() {
            self.registry = Some(registry::RegistryStore::open(&self.storage)?);
        }
        Ok(self.registry.as_mut().expect("opened above"))
    }

    /// Opens what the app's entries declare (databases, stores). Errors name the entry.
    /// Databases first (stores refer to them); under `Storage::Memory` every database is an
    /// in-memory SQLite so simulated runs touch no file and stay deterministic.
    pub fn configure(&mut self, entries: &[Entry]) -> Result<(), String> {
        for e in entries.iter().filter(|e| e.kind == EntryKind::DbSqlSqlite) {
            let conn = sql::open(&self.storage, e)?;
            self.dbs.insert(&e.id, conn);
        }
        for e in entries.iter().filter(|e| e.kind.is_store()) {
            let s = store::from_entry(e, &self.dbs)?;
            self.stores.stores.insert(e.id.clone(), s);
        }
        Ok(())
    }

    /// Runs one command to completion.
    pub fn handle(&mut self, cmd: WorldCommand) -> Result<Value, ErrorValue> {
        use WorldCommand::*;
        match cmd {
            EnvFileSet {
                path,
                key,
                value,
                auto_create,
                file_mode,
                dir_mode,
            } => self.env_file_set(&path, &key, &value, auto_create, file_mode, dir_mode),
            StoreGet { .. }
            | StoreSet { .. }
            | StoreHas { .. }
            | StoreDelete { .. }
            | StoreEntry { .. }
            | StorePut { .. }
            | StoreList { .. }
            | StoreInfo { .. } => self.stores.handle(&mut self.dbs, cmd),
            SqlQuery { .. }
            | SqlExecute { .. }
            | SqlPrepare { .. }
            | SqlBegin { .. }
            | SqlTx { .. }
            | SqlReleaseOwner { .. } => self.dbs.handle(cmd),
            RegistryHead { version } => {
                if version == 0 {
                    return Err(ErrorValue::new(
                        kind::INVALID,
                        "registry head: version 0 does not exist",
                    ));
                }
                let store = self
                    .registry()
                    .map_err(|m| ErrorValue::new(kind::INTERNAL, m))?;
                store.set_head(version)?;
                Ok(Value::Int(version as i64))
            }
            RegistryCommit { version, ops } => self.registry_commit(version, &ops),
            Custom { id, .. } => Err(ErrorValue::new(
                kind::UNAVAILABLE,
                format!("command {} has no handler in this runtime", id.0),
            )),
            TerminalReadLine | TerminalRead { .. } => Err(ErrorValue::new(
                kind::UNAVAILABLE,
                format!(
                    "command {} (a terminal read) is answered by the driver, not the world",
                    cmd.id().0
                ),
            )),
        }
    }

    fn registry_commit(&mut self, version: u64, ops: &Value) -> Result<Value, ErrorValue> {
        if version == 0 {
            return Err(ErrorValue::new(
                kind::INVALID,
                "registry commit: versions start at 1",
            ));
        }
        let base = self.registry_base.take();
        let store = match self.registry() {
            Ok(s) => s,
            Err(m) => {
                self.registry_base = base;
                return Err(ErrorValue::new(kind::INTERNAL, m));
            }
        };
        if let Some((v1, b)) = &base {
            if *v1 < version {
                if let Err(e) = store.commit(*v1, b) {
                    self.registry_base = base;
                    return Err(e);
                }
            }
        }
        store.commit(version, ops)?;
        Ok(Value::Int(version as i64))
    }
}

impl World {
    /// Digests of the content of every database kept on a simulated disk (SQL databases by
    /// entry id, the registry history as `registry`), skipping databases inside a transaction
    /// (`None`): what the simulator compares before and after a crash.
    pub fn durable_digests(&mut self) -> Vec<(String, Option<u64>)> {
        let Storage::Sim(disk) = self.storage.clone() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (id, db) in &self.dbs.dbs {
            if !db.on_disk {
                continue;
            }
            let d = if db.busy() || !db.conn.is_autocommit() {
                None
            } else {
                vfs::digest(&db.conn).ok()
            };
            out.push((id.clone(), d));
        }
        if disk.exists(registry::SIM_PATH) {
            let d = self
                .registry()
                .ok()
                .and_then(|r| vfs::digest(r.conn()).ok());
            out.push(("registry".to_string(), d));
        }
        out
    }
}

/// The world keeps the registry history: a booting node restores it through this.
impl weft_engine::node::RegistryHistory for World {
    fn load(&mut self) -> Result<Option<weft_engine::node::StoredHistory>, String> {
        let stored = match &self.storage {
            Storage::Disk { root } => registry::db_path(root).exists(),
            Storage::Sim(disk) => disk.exists(registry::SIM_PATH),
            Storage::Memory => true,
        };
        if !stored {
            // Nothing stored yet: the database is made on the first registry change.
            self.registry_lazy = true;
            return Ok(None);
        }
        let store = self.registry()?;
        Ok(Some(weft_engine::node::StoredHistory {
            versions: store.load()?,
            head: store.head()?,
            snapshot: store.snapshot()?,
        }))
    }

    fn booted(
        &mut self,
        restored: weft_engine::registry::Restored,
        current: Option<(u64, Value)>,
    ) -> Result<(), String> {
        if self.registry_lazy {
            self.registry_base = current;
            return Ok(());
        }
        if restored != weft_engine::registry::Restored::Resumed {
            if let Some((id, ops)) = current {
                self.registry()?.commit(id, &ops).map_err(|e| e.message)?;
            }
        }
        Ok(())
    }
}

/// A configuration error naming the entry's file, line and id, like boot errors do.
pub fn config_error(e: &Entry, msg: impl std::fmt::Display) -> String {
    match e.line {
        Some(l) => format!("{}:{l}: entry '{}': {msg}", e.file, e.id),
        None => format!("{}: entry '{}': {msg}", e.file, e.id),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod commands {
    use super::*;

    #[test]
    fn terminal_reads_are_not_answered_by_the_world() {
        let mut w = World::new(Storage::Memory);
        let e = w.handle(WorldCommand::TerminalReadLine).unwrap_err();
        assert_eq!(e.kind, kind::UNAVAILABLE);
        let id = weft_engine::command::ids::TERMINAL_READ_LINE.0.to_string();
        assert!(e.message.contains(&id), "{}", e.message);
    }

    #[test]
    fn version_zero_is_refused_not_stored() {
        let mut w = World::new(Storage::Memory);
        let head = w.handle(WorldCommand::RegistryHead { version: 0 });
        assert_eq!(head.unwrap_err().kind, kind::INVALID);
        let commit = w.handle(WorldCommand::RegistryCommit {
            version: 0,
            ops: Value::Nil,
        });
        assert_eq!(commit.unwrap_err().kind, kind::INVALID);
    }
}
