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
}

impl World {
    pub fn new(storage: Storage) -> World {
        World {
            storage,
            registry: None,
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
            let store = self
                .registry()
                .map_err(|m| ErrorValue::new(kind::INTERNAL, m))?;
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
