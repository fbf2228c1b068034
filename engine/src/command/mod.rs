//! Commands: what a process asks of its node. A process yields a typed `Command`; the node looks
//! its handler up in the frozen `CommandRegistry` by `CommandId` (an array for 0–255, a map
//! above) and the handler answers now (`Reply::Done`) or later, by completing the tag it issued
//! (`Reply::Pending`). This file names commands and correlates tags; handlers live in
//! `crate::handlers`, grouped by module as the seed's dispatchers are.

mod op;

pub use op::{CallOptions, Command, ContextOverlay, Dest, NameOp, RegistryQuery, Reply};

use crate::node::Core;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A command identifier. 0–255 are system commands, 256+ custom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId(pub u16);

/// System command ids in the seed's ranges: process 1–9, clock 10–29, stream 50–59, event
/// 90–99, sql 100–119, store 120–129, function 140–149, exec 150–159. Ranges the seed leaves to
/// later tiers (http, websocket, security, …) stay free; Weft's own node services sit in 200–255
/// (registry 200–209, env 210–219, node 240–255); 256+ is custom.
pub mod ids {
    use super::CommandId;
    pub const PROCESS_SEND: CommandId = CommandId(1);
    pub const PROCESS_SPAWN: CommandId = CommandId(2);
    pub const PROCESS_TERMINATE: CommandId = CommandId(3);
    pub const PROCESS_CANCEL: CommandId = CommandId(4);
    /// Monitor and unmonitor.
    pub const PROCESS_MONITOR: CommandId = CommandId(5);
    /// Link and unlink.
    pub const PROCESS_LINK: CommandId = CommandId(6);
    /// Register, look up and unregister names.
    pub const PROCESS_REGISTRY: CommandId = CommandId(7);
    /// Read and set process options (`trap_links`).
    pub const PROCESS_OPTIONS: CommandId = CommandId(8);
    /// Draws from the process's own seeded generator (`math.random`).
    pub const PROCESS_RANDOM: CommandId = CommandId(9);
    /// Arm a one-shot timer or a ticker.
    pub const CLOCK_TIMER: CommandId = CommandId(10);
    pub const CLOCK_STOP: CommandId = CommandId(11);
    pub const CLOCK_RESET: CommandId = CommandId(12);
    /// Read the node clock (monotonic or wall).
    pub const CLOCK_NOW: CommandId = CommandId(13);
    /// Draws from the node's seeded generator (uuid).
    pub const CLOCK_RANDOM: CommandId = CommandId(14);
    /// Terminal line read (world).
    pub const TERMINAL_READ_LINE: CommandId = CommandId(50);
    /// Terminal read of up to n bytes (world).
    pub const TERMINAL_READ: CommandId = CommandId(51);
    /// Terminal write (stdout / stderr).
    pub const TERMINAL_WRITE: CommandId = CommandId(52);
    pub const EVENT_SUBSCRIBE: CommandId = CommandId(90);
    pub const EVENT_SEND: CommandId = CommandId(91);
    pub const EVENT_UNSUBSCRIBE: CommandId = CommandId(92);
    // SQL commands (world): args `[db id, owner process id, transaction id (0 = none), ...]`.
    /// `[db, owner, tx, sql, params]` → array of rows.
    pub const SQL_QUERY: CommandId = CommandId(100);
    /// `[db, owner, tx, sql, params]` → `{last_insert_id, rows_affected}`.
    pub const SQL_EXECUTE: CommandId = CommandId(101);
    /// `[db, owner, tx, sql]` → true when the statement compiles.
    pub const SQL_PREPARE: CommandId = CommandId(102);
    /// `[db, owner, isolation, read_only]` → transaction id.
    pub const SQL_BEGIN: CommandId = CommandId(103);
    /// `[db, owner, tx, op, name?]`, op ∈ commit/rollback/savepoint/rollback_to/release → true.
    pub const SQL_TX: CommandId = CommandId(104);
    /// `[owner]`: rolls back every transaction the (closing) process left open.
    pub const SQL_RELEASE_OWNER: CommandId = CommandId(105);
    pub const SQL_RANGE: std::ops::RangeInclusive<u16> = 100..=119;
    // Store commands (world): args `[store id, now (node clock, Unix ns), ...]`.
    /// `[id, now, key]` → value | NotFound.
    pub const STORE_GET: CommandId = CommandId(120);
    /// `[id, now, key, value, ttl_seconds?]` → true.
    pub const STORE_SET: CommandId = CommandId(121);
    /// `[id, now, key]` → bool.
    pub const STORE_HAS: CommandId = CommandId(122);
    /// `[id, now, key]` → bool (deleted).
    pub const STORE_DELETE: CommandId = CommandId(123);
    /// `[id, now, key]` → `{key, value, version}` | NotFound.
    pub const STORE_ENTRY: CommandId = CommandId(124);
    /// `[id, now, key, value, {ttl, only_if_absent, if_version}?]` → entry.
    pub const STORE_PUT: CommandId = CommandId(125);
    /// `[id, now, {prefix, after, limit}?]` → `{items, cursor, has_more}`.
    pub const STORE_LIST: CommandId = CommandId(126);
    /// `[id]` → info table.
    pub const STORE_INFO: CommandId = CommandId(127);
    pub const STORE_RANGE: std::ops::RangeInclusive<u16> = 120..=129;
    /// `funcs.call` / `funcs.async`: run a function.lua entry; the caller's tag completes with it.
    pub const FUNCTION_CALL: CommandId = CommandId(140);
    /// Cancel a call under way (`future:cancel()`).
    pub const FUNCTION_CANCEL: CommandId = CommandId(141);
    /// Read the caller's context values (`ctx`).
    pub const FUNCTION_CONTEXT: CommandId = CommandId(142);
    /// `process.exec`: run a process entry and answer with its result.
    pub const EXEC_PROCESS: CommandId = CommandId(150);
    /// Store one registry version (world): args `[version, ops]`.
    pub const REGISTRY_COMMIT: CommandId = CommandId(200);
    /// `[version]`: persist which version is current after `apply_version` moved (world).
    pub const REGISTRY_HEAD: CommandId = CommandId(201);
    /// Read the registry (entries, versions).
    pub const REGISTRY_READ: CommandId = CommandId(202);
    /// Submit a changeset; answered when the version is durable.
    pub const REGISTRY_APPLY: CommandId = CommandId(203);
    /// Move the current version (`apply_version`); answered when the head is durable.
    pub const REGISTRY_MOVE: CommandId = CommandId(204);
    pub const REGISTRY_RANGE: std::ops::RangeInclusive<u16> = 200..=209;
    /// Persist one `KEY=value` in a `.env` file (world): args path, key, value, auto_create, modes.
    pub const ENV_FILE_SET: CommandId = CommandId(210);
    pub const ENV_GET: CommandId = CommandId(211);
    pub const ENV_SET: CommandId = CommandId(212);
    pub const ENV_ALL: CommandId = CommandId(213);
    /// A log record from `logger` / `print` to the driver.
    pub const NODE_LOG: CommandId = CommandId(240);
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

/// A command handler: runs `cmd` for process `caller` on the node. It answers at once or
/// issues a tag of the caller and completes it later.
pub(crate) type Handler = fn(&mut Core, u64, Command) -> Reply;

#[derive(Clone)]
struct Slot {
    module: &'static str,
    name: &'static str,
    handler: Handler,
}

/// Which module owns which command, and its handler. System ids sit in a fixed array so a
/// lookup is an index; after `freeze` nothing can be added.
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
    pub(crate) fn register(
        &mut self,
        id: CommandId,
        module: &'static str,
        name: &'static str,
        handler: Handler,
    ) -> Result<(), RegistryError> {
        if self.frozen {
            return Err(RegistryError::Frozen {
                id,
                module: module.into(),
            });
        }
        let slot = Slot {
            module,
            name,
            handler,
        };
        let existing = if id.0 < ids::CUSTOM_START {
            &mut self.system[id.0 as usize]
        } else {
            match self.custom.entry(id.0) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    return Err(RegistryError::Duplicate {
                        id,
                        first: e.get().module.into(),
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
                first: first.module.into(),
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

    fn slot(&self, id: CommandId) -> Option<&Slot> {
        if id.0 < ids::CUSTOM_START {
            self.system[id.0 as usize].as_ref()
        } else {
            self.custom.get(&id.0)
        }
    }

    /// `(module, command name)` of a registered id.
    pub fn lookup(&self, id: CommandId) -> Option<(&str, &str)> {
        self.slot(id).map(|s| (s.module, s.name))
    }

    pub(crate) fn handler(&self, id: CommandId) -> Option<Handler> {
        self.slot(id).map(|s| s.handler)
    }

    /// Registered ids in order, with their module and name (for `weft` diagnostics and tests).
    pub fn ids(&self) -> Vec<(CommandId, &str, &str)> {
        let sys = self
            .system
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (CommandId(i as u16), s.module, s.name)));
        let custom = self
            .custom
            .iter()
            .map(|(i, s)| (CommandId(*i), s.module, s.name));
        sys.chain(custom).collect()
    }

    /// The registry every node starts with: each built-in module's dispatcher registers its ids.
    pub(crate) fn with_builtins() -> Result<CommandRegistry, RegistryError> {
        let mut r = CommandRegistry::default();
        crate::handlers::register_all(&mut r)?;
        Ok(r)
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

    fn nothing(_: &mut Core, _: u64, _: Command) -> Reply {
        Reply::Done(Ok(crate::value::Value::Nil))
    }

    #[test]
    fn duplicate_registration_names_both_modules() {
        let mut r = CommandRegistry::default();
        r.register(CommandId(3), "alpha", "x", nothing).unwrap();
        let e = r.register(CommandId(3), "beta", "y", nothing).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command id 3 registered twice: by module 'alpha' and by module 'beta'"
        );
        r.register(CommandId(300), "alpha", "c", nothing).unwrap();
        assert!(matches!(
            r.register(CommandId(300), "gamma", "c", nothing),
            Err(RegistryError::Duplicate { .. })
        ));
    }

    #[test]
    fn frozen_registry_refuses_and_still_answers() {
        let mut r = CommandRegistry::with_builtins().unwrap();
        r.freeze();
        assert!(matches!(
            r.register(CommandId(400), "late", "x", nothing),
            Err(RegistryError::Frozen { .. })
        ));
        assert_eq!(r.lookup(ids::PROCESS_SEND), Some(("process", "send")));
        assert!(r.handler(ids::PROCESS_SEND).is_some());
        assert_eq!(r.lookup(CommandId(400)), None);
    }

    #[test]
    fn every_command_variant_has_a_registered_handler() {
        let r = CommandRegistry::with_builtins().unwrap();
        for (id, module, name) in r.ids() {
            assert!(!module.is_empty() && !name.is_empty(), "{id:?}");
        }
        for c in Command::samples() {
            assert!(
                r.handler(c.id()).is_some(),
                "no handler for {:?} ({:?})",
                c.id(),
                c.name()
            );
        }
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

/// The seed's flow end to end, on a node of plain Rust processes: a process yields a command,
/// the registry finds the handler by id, the handler completes the tag later, the process
/// resumes with the result; late, repeated and orphaned completions are dropped and counted.
#[cfg(test)]
mod flow {
    use super::*;
    use crate::entries::Entry;
    use crate::node::{Factory, NodeConfig, Spawning};
    use crate::process::{Cx, Process, Step};
    use crate::relay::Signal;
    use crate::value::Value;
    use crate::{Input, Node, Output};
    use std::cell::RefCell;
    use std::rc::Rc;

    const LATER: CommandId = CommandId(300);

    /// A custom module's handler: answers later, through the driver, like a world command.
    fn later(core: &mut Core, caller: u64, cmd: Command) -> Reply {
        let Command::Custom { id, arg } = cmd else {
            return Reply::err(crate::value::ErrorValue::new(
                crate::value::kind::INTERNAL,
                "wrong command",
            ));
        };
        core.world(caller, crate::world::WorldCommand::Custom { id, arg })
    }

    type Seen = Rc<RefCell<Vec<(u64, Result<Value, crate::value::ErrorValue>)>>>;

    /// Asks once, then waits for its answer and exits with it.
    struct Asker {
        tag: Option<u64>,
        seen: Seen,
    }

    impl Process for Asker {
        fn step(&mut self, cx: &mut Cx<'_>) -> Step {
            if self.tag.is_none() {
                match cx.dispatch(Command::Custom {
                    id: LATER,
                    arg: Value::Int(21),
                }) {
                    Reply::Pending(tag) => self.tag = Some(tag),
                    other => panic!("expected a pending reply, got {other:?}"),
                }
                return Step::Waiting;
            }
            for s in cx.take_mailbox().signals {
                if let Signal::Completed { tag, result } = s {
                    self.seen.borrow_mut().push((tag, result.clone()));
                    return Step::Exited(result);
                }
            }
            Step::Waiting
        }
    }

    struct Askers(Seen);

    impl Factory for Askers {
        fn create(
            &mut self,
            _: Spawning<'_>,
        ) -> Result<Box<dyn Process>, crate::value::ErrorValue> {
            Ok(Box::new(Asker {
                tag: None,
                seen: self.0.clone(),
            }))
        }
    }

    fn asker_entry() -> Entry {
        Entry {
            id: "t:ask".into(),
            kind: "native".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_yielded_command_is_answered_through_its_tag() {
        let seen: Seen = Rc::default();
        let mut node = Node::builder(NodeConfig::default())
            .preload(vec![asker_entry()])
            .host("t:term", "terminal.host")
            .factory("native", Box::new(Askers(seen.clone())))
            .command(LATER, "later", "double", later)
            .build(None)
            .expect("node builds")
            .node;
        let pid = node.spawn("t:ask", "t:term", vec![], true).unwrap();
        node.run(0, 10);
        // The handler issued a tag and handed the work to the driver.
        let mut asked = None;
        while let Some(o) = node.poll_output() {
            if let Output::Execute { pid: p, tag, cmd } = o {
                assert_eq!(
                    cmd,
                    crate::world::WorldCommand::Custom {
                        id: LATER,
                        arg: Value::Int(21)
                    }
                );
                assert_eq!(p, pid);
                asked = Some(tag);
            }
        }
        let tag = asked.expect("the custom command reached the driver");
        assert!(seen.borrow().is_empty(), "nothing answered yet");
        let dropped = node.stats().completions_dropped;
        node.handle(
            1,
            Input::Completed {
                pid: pid.clone(),
                tag,
                result: Ok(Value::Int(42)),
            },
        );
        // The same tag again, and a tag never issued: both dropped and counted.
        node.handle(
            1,
            Input::Completed {
                pid: pid.clone(),
                tag,
                result: Ok(Value::Int(0)),
            },
        );
        node.handle(
            1,
            Input::Completed {
                pid: pid.clone(),
                tag: tag + 100,
                result: Ok(Value::Int(0)),
            },
        );
        assert_eq!(node.stats().completions_dropped, dropped + 2);
        node.run(2, 10);
        assert_eq!(*seen.borrow(), vec![(tag, Ok(Value::Int(42)))]);
        assert!(node.stats().commands >= 1);
        // The process is gone: a completion for it is dropped and counted.
        assert_eq!(node.process_count(), 0);
        node.handle(
            3,
            Input::Completed {
                pid,
                tag,
                result: Ok(Value::Int(1)),
            },
        );
        assert_eq!(node.stats().completions_dropped, dropped + 3);
    }

    #[test]
    fn registering_an_id_twice_fails_boot_naming_both_modules() {
        let e = Node::builder(NodeConfig::default())
            .command(ids::PROCESS_SEND, "mymod", "send", later)
            .build(None)
            .err()
            .expect("a clash fails the build");
        assert!(
            e.message.contains("'process'") && e.message.contains("'mymod'"),
            "{e}"
        );
        let e = Node::builder(NodeConfig::default())
            .command(LATER, "first", "a", later)
            .command(LATER, "second", "b", later)
            .build(None)
            .err()
            .expect("a clash fails the build");
        assert!(
            e.message.contains("'first'") && e.message.contains("'second'"),
            "{e}"
        );
    }

    #[test]
    fn an_unregistered_id_is_an_error_reply() {
        let mut core = Core::new(NodeConfig::default());
        let r = core.dispatch(
            1,
            Command::Custom {
                id: CommandId(999),
                arg: Value::Nil,
            },
        );
        match r {
            Reply::Done(Err(e)) => assert!(e.message.contains("999"), "{}", e.message),
            other => panic!("{other:?}"),
        }
    }
}
