//! Command handlers for work that needs the world: one `World` answers `Output::Execute` commands
//! for both drivers (production runs it off the engine thread; the simulator inline, in memory).

// Handlers answer with engine error values (data that travel back to Lua); see weft-engine.
#![allow(clippy::result_large_err)]

pub mod env;
pub mod registry;
pub mod sql;
pub mod store;

use weft_engine::command::{ids, CommandId};
use weft_engine::entries::Entry;
use weft_engine::value::{kind, ErrorValue, Value};

/// Where durable state lives: on disk under a project folder, or only in memory (simulation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    Disk { root: std::path::PathBuf },
    Memory,
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
        let root = match &self.storage {
            Storage::Disk { root } => Some(root.as_path()),
            Storage::Memory => None,
        };
        for e in entries.iter().filter(|e| e.kind == "db.sql.sqlite") {
            let conn = sql::open(root, e)?;
            self.dbs.insert(&e.id, conn);
        }
        for e in entries
            .iter()
            .filter(|e| e.kind == "store.memory" || e.kind == "store.sql")
        {
            let s = store::from_entry(e, &self.dbs)?;
            self.stores.stores.insert(e.id.clone(), s);
        }
        Ok(())
    }

    /// Runs one command to completion.
    pub fn handle(&mut self, cmd: CommandId, args: &[Value]) -> Result<Value, ErrorValue> {
        if cmd == ids::ENV_FILE_SET {
            return self.env_file_set(args);
        }
        if ids::SQL_RANGE.contains(&cmd.0) {
            return self.dbs.handle(cmd, args);
        }
        if ids::STORE_RANGE.contains(&cmd.0) {
            return self.stores.handle(&mut self.dbs, cmd, args);
        }
        if cmd == ids::REGISTRY_HEAD {
            let v = match args.first() {
                Some(Value::Int(v)) if *v > 0 => *v as u64,
                _ => {
                    return Err(ErrorValue::new(
                        kind::INVALID,
                        "registry head: version expected",
                    ))
                }
            };
            let store = self
                .registry()
                .map_err(|m| ErrorValue::new(kind::INTERNAL, m))?;
            store.set_head(v)?;
            return Ok(Value::Int(v as i64));
        }
        if cmd == ids::REGISTRY_COMMIT {
            let (version, ops) = registry::commit_args(args)?;
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
            return Ok(Value::Int(version as i64));
        }
        Err(ErrorValue::new(
            kind::UNAVAILABLE,
            format!("command {} has no handler in this runtime", cmd.0),
        ))
    }
}

/// The world keeps the registry history: a booting node restores it through this.
impl weft_engine::node::RegistryHistory for World {
    fn load(&mut self) -> Result<Option<weft_engine::node::StoredHistory>, String> {
        if let Storage::Disk { root } = &self.storage {
            if !registry::db_path(root).exists() {
                // Nothing stored yet: the database is made on the first registry change.
                self.registry_lazy = true;
                return Ok(None);
            }
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
mod unknown {
    use super::*;

    #[test]
    fn unknown_commands_answer_with_an_error_value() {
        let mut w = World::new(Storage::Memory);
        let e = w.handle(CommandId(999), &[]).unwrap_err();
        assert_eq!(e.kind, kind::UNAVAILABLE);
        assert!(e.message.contains("999"));
    }
}
