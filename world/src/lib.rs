//! Command handlers for work that needs the world: one `World` answers `Output::Execute` commands
//! for both drivers (production runs it off the engine thread; the simulator inline, in memory).

pub mod registry;

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
    registry: Option<registry::RegistryStore>,
    /// Version 1 not yet stored: the database is created on the first registry change, so an
    /// app that never changes its registry leaves no file behind.
    registry_base: Option<(u64, Value)>,
}

impl World {
    pub fn new(storage: Storage) -> World {
        World {
            storage,
            registry: None,
            registry_base: None,
        }
    }

    /// The registry history store, opened on first use.
    pub fn registry(&mut self) -> Result<&mut registry::RegistryStore, String> {
        if self.registry.is_none() {
            self.registry = Some(registry::RegistryStore::open(&self.storage)?);
        }
        Ok(self.registry.as_mut().expect("opened above"))
    }

    /// After boot: restores the stored registry history into the node (see `RegistryStore::boot`).
    pub fn boot_registry(
        &mut self,
        core: &mut weft_engine::node::Core,
    ) -> Result<weft_engine::registry::Restored, String> {
        if let Storage::Disk { root } = &self.storage {
            if !registry::db_path(root).exists() {
                let r = weft_engine::registry::restore(core, Vec::new());
                self.registry_base = core
                    .registry
                    .current()
                    .map(|v| (v.id, weft_engine::registry::ops_to_value(&v.ops)));
                return Ok(r);
            }
        }
        self.registry()?.boot(core)
    }

    /// Opens what the app's entries declare (databases, stores). Errors name the entry.
    pub fn configure(&mut self, _entries: &[Entry]) -> Result<(), String> {
        Ok(())
    }

    /// Runs one command to completion.
    pub fn handle(&mut self, cmd: CommandId, args: &[Value]) -> Result<Value, ErrorValue> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_commands_answer_with_an_error_value() {
        let mut w = World::new(Storage::Memory);
        let e = w.handle(CommandId(999), &[]).unwrap_err();
        assert_eq!(e.kind, kind::UNAVAILABLE);
        assert!(e.message.contains("999"));
    }
}
