//! The command registry (ids in Wippy's ranges, frozen after boot) and per-process yield tags.
//! It must not run commands: it only names them and correlates completions with waiting yields.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A command identifier. 0–255 are system commands, 256+ custom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId(pub u16);

/// System command ids, grouped in Wippy's ranges (process 1–9, clock 10–29, …, function 140–149).
pub mod ids {
    use super::CommandId;
    pub const PROCESS_SEND: CommandId = CommandId(1);
    pub const PROCESS_SPAWN: CommandId = CommandId(2);
    pub const PROCESS_MONITOR: CommandId = CommandId(3);
    pub const PROCESS_LINK: CommandId = CommandId(4);
    pub const PROCESS_CANCEL: CommandId = CommandId(5);
    pub const PROCESS_TERMINATE: CommandId = CommandId(6);
    pub const PROCESS_REGISTER: CommandId = CommandId(7);
    pub const CLOCK_TIMER: CommandId = CommandId(10);
    pub const CLOCK_TICKER: CommandId = CommandId(11);
    pub const TERMINAL_READ_LINE: CommandId = CommandId(30);
    pub const TERMINAL_READ: CommandId = CommandId(31);
    // Ranges for world commands (answered by the driver's handlers, weft-world):
    // events 40–49, registry 50–59, store 60–79, sql 80–99, env 100–109, function 140–149.
    /// Store one registry version: args `[version, ops]`.
    pub const REGISTRY_COMMIT: CommandId = CommandId(50);
    /// `[version]`: persist which version is current after `apply_version` moved back or forth.
    pub const REGISTRY_HEAD: CommandId = CommandId(51);
    pub const REGISTRY_RANGE: std::ops::RangeInclusive<u16> = 50..=59;
    pub const STORE_RANGE: std::ops::RangeInclusive<u16> = 60..=79;
    pub const SQL_RANGE: std::ops::RangeInclusive<u16> = 80..=99;
    /// Persist one `KEY=value` in a `.env` file: args path, key, value, auto_create, modes.
    pub const ENV_FILE_SET: CommandId = CommandId(100);
    // Store commands: args `[store id, now (node clock, Unix ns), ...]`.
    /// `[id, now, key]` → value | NotFound.
    pub const STORE_GET: CommandId = CommandId(60);
    /// `[id, now, key, value, ttl_seconds?]` → true.
    pub const STORE_SET: CommandId = CommandId(61);
    /// `[id, now, key]` → bool.
    pub const STORE_HAS: CommandId = CommandId(62);
    /// `[id, now, key]` → bool (deleted).
    pub const STORE_DELETE: CommandId = CommandId(63);
    /// `[id, now, key]` → `{key, value, version}` | NotFound.
    pub const STORE_ENTRY: CommandId = CommandId(64);
    /// `[id, now, key, value, {ttl, only_if_absent, if_version}?]` → entry.
    pub const STORE_PUT: CommandId = CommandId(65);
    /// `[id, now, {prefix, after, limit}?]` → `{items, cursor, has_more}`.
    pub const STORE_LIST: CommandId = CommandId(66);
    /// `[id]` → info table.
    pub const STORE_INFO: CommandId = CommandId(67);
    // SQL commands: args `[db id, owner process id, transaction id (0 = none), ...]`.
    /// `[db, owner, tx, sql, params]` → array of rows.
    pub const SQL_QUERY: CommandId = CommandId(80);
    /// `[db, owner, tx, sql, params]` → `{last_insert_id, rows_affected}`.
    pub const SQL_EXECUTE: CommandId = CommandId(81);
    /// `[db, owner, tx, sql]` → true when the statement compiles.
    pub const SQL_PREPARE: CommandId = CommandId(82);
    /// `[db, owner, isolation, read_only]` → transaction id.
    pub const SQL_BEGIN: CommandId = CommandId(83);
    /// `[db, owner, tx, op, name?]`, op ∈ commit/rollback/savepoint/rollback_to/release → true.
    pub const SQL_TX: CommandId = CommandId(84);
    /// `[owner]`: rolls back every transaction the (closing) process left open.
    pub const SQL_RELEASE_OWNER: CommandId = CommandId(85);
    pub const FUNCTION_CALL: CommandId = CommandId(140);
    pub const CUSTOM_START: u16 = 256;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// A second module tried to claim an id: names both.
    Duplicate {
        id: CommandId,
        first: String,
        second: String,
    },
    Frozen {
        id: CommandId,
        module: String,
    },
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Duplicate { id, first, second } => write!(
                f,
                "command id {} registered twice: by module '{}' and by module '{}'",
                id.0, first, second
            ),
            RegistryError::Frozen { id, module } => write!(
                f,
                "module '{}' tried to register command {} after the registry was frozen",
                module, id.0
            ),
        }
    }
}

impl std::error::Error for RegistryError {}

#[derive(Clone, Debug)]
struct Slot {
    module: String,
    name: String,
}

/// Which module owns which command. System ids sit in a fixed array so a lookup is an index.
pub struct CommandRegistry {
    system: Vec<Option<Slot>>,
    custom: BTreeMap<u16, Slot>,
    frozen: bool,
}

impl Default for CommandRegistry {
    fn default() -> Self {
        CommandRegistry {
            system: vec![None; ids::CUSTOM_START as usize],
            custom: BTreeMap::new(),
            frozen: false,
        }
    }
}

impl CommandRegistry {
    pub fn register(
        &mut self,
        id: CommandId,
        module: &str,
        name: &str,
    ) -> Result<(), RegistryError> {
        if self.frozen {
            return Err(RegistryError::Frozen {
                id,
                module: module.into(),
            });
        }
        let slot = Slot {
            module: module.into(),
            name: name.into(),
        };
        let existing = if id.0 < ids::CUSTOM_START {
            &mut self.system[id.0 as usize]
        } else {
            match self.custom.entry(id.0) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    return Err(RegistryError::Duplicate {
                        id,
                        first: e.get().module.clone(),
                        second: module.into(),
                    })
                }
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(slot);
                    return Ok(());
                }
            }
        };
        if let Some(first) = existing {
            return Err(RegistryError::Duplicate {
                id,
                first: first.module.clone(),
                second: module.into(),
            });
        }
        *existing = Some(slot);
        Ok(())
    }

    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// `(module, command name)` of a registered id.
    pub fn lookup(&self, id: CommandId) -> Option<(&str, &str)> {
        let slot = if id.0 < ids::CUSTOM_START {
            self.system[id.0 as usize].as_ref()
        } else {
            self.custom.get(&id.0)
        };
        slot.map(|s| (s.module.as_str(), s.name.as_str()))
    }

    /// The registry every node starts with: the built-in modules' commands.
    pub fn with_builtins() -> CommandRegistry {
        let mut r = CommandRegistry::default();
        let builtins = [
            (ids::PROCESS_SEND, "process", "send"),
            (ids::PROCESS_SPAWN, "process", "spawn"),
            (ids::PROCESS_MONITOR, "process", "monitor"),
            (ids::PROCESS_LINK, "process", "link"),
            (ids::PROCESS_CANCEL, "process", "cancel"),
            (ids::PROCESS_TERMINATE, "process", "terminate"),
            (ids::PROCESS_REGISTER, "process", "registry.register"),
            (ids::CLOCK_TIMER, "time", "timer"),
            (ids::CLOCK_TICKER, "time", "ticker"),
            (ids::TERMINAL_READ_LINE, "io", "readline"),
            (ids::TERMINAL_READ, "io", "read"),
            (ids::REGISTRY_COMMIT, "registry", "commit"),
            (ids::REGISTRY_HEAD, "registry", "head"),
            (ids::FUNCTION_CALL, "funcs", "call"),
            (ids::ENV_FILE_SET, "env", "file.set"),
            (ids::STORE_GET, "store", "get"),
            (ids::STORE_SET, "store", "set"),
            (ids::STORE_HAS, "store", "has"),
            (ids::STORE_DELETE, "store", "delete"),
            (ids::STORE_ENTRY, "store", "entry"),
            (ids::STORE_PUT, "store", "put"),
            (ids::STORE_LIST, "store", "list"),
            (ids::STORE_INFO, "store", "info"),
            (ids::SQL_QUERY, "sql", "query"),
            (ids::SQL_EXECUTE, "sql", "execute"),
            (ids::SQL_PREPARE, "sql", "prepare"),
            (ids::SQL_BEGIN, "sql", "begin"),
            (ids::SQL_TX, "sql", "transaction"),
            (ids::SQL_RELEASE_OWNER, "sql", "release_owner"),
        ];
        for (id, m, n) in builtins {
            r.register(id, m, n)
                .expect("built-in command ids are distinct");
        }
        r
    }
}

/// A process's request to the world: the command and the tag its completion will carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Yield {
    pub cmd: CommandId,
    pub tag: u64,
}

/// Per-process tag counter and the set of tags still waiting for a completion.
#[derive(Debug, Default)]
pub struct Tags {
    next: u64,
    pending: BTreeSet<u64>,
}

impl Tags {
    pub fn issue(&mut self, cmd: CommandId) -> Yield {
        self.next += 1;
        self.pending.insert(self.next);
        Yield {
            cmd,
            tag: self.next,
        }
    }

    /// True exactly once per issued tag; an unknown or already-completed tag answers false.
    pub fn complete(&mut self, tag: u64) -> bool {
        self.pending.remove(&tag)
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_registration_names_both_modules() {
        let mut r = CommandRegistry::default();
        r.register(CommandId(3), "alpha", "x").unwrap();
        let e = r.register(CommandId(3), "beta", "y").unwrap_err();
        assert_eq!(
            e.to_string(),
            "command id 3 registered twice: by module 'alpha' and by module 'beta'"
        );
        r.register(CommandId(300), "alpha", "c").unwrap();
        assert!(matches!(
            r.register(CommandId(300), "gamma", "c"),
            Err(RegistryError::Duplicate { .. })
        ));
    }

    #[test]
    fn frozen_registry_refuses_and_still_answers() {
        let mut r = CommandRegistry::with_builtins();
        r.freeze();
        assert!(matches!(
            r.register(CommandId(400), "late", "x"),
            Err(RegistryError::Frozen { .. })
        ));
        assert_eq!(r.lookup(ids::PROCESS_SEND), Some(("process", "send")));
        assert_eq!(r.lookup(CommandId(400)), None);
    }

    #[test]
    fn tags_complete_once() {
        let mut t = Tags::default();
        let a = t.issue(ids::TERMINAL_READ_LINE);
        let b = t.issue(ids::TERMINAL_READ_LINE);
        assert_ne!(a.tag, b.tag);
        assert!(t.complete(a.tag));
        assert!(!t.complete(a.tag), "second completion is dropped");
        assert!(!t.complete(999), "unknown tag is dropped");
        assert_eq!(t.pending(), 1);
    }
}
