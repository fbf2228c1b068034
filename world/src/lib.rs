//! Command handlers for work that needs the world: one `World` answers `Output::Execute` commands
//! for both drivers (production runs it off the engine thread; the simulator inline, in memory).

pub mod env;

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
}

impl World {
    pub fn new(storage: Storage) -> World {
        World {
            storage,
            mem_files: Default::default(),
        }
    }

    /// Opens what the app's entries declare (databases, stores). Errors name the entry.
    pub fn configure(&mut self, _entries: &[Entry]) -> Result<(), String> {
        Ok(())
    }

    /// Runs one command to completion.
    pub fn handle(&mut self, cmd: CommandId, args: &[Value]) -> Result<Value, ErrorValue> {
        if cmd == ids::ENV_FILE_SET {
            return self.env_file_set(args);
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
