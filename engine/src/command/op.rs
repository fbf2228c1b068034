//! The typed commands a process yields and the replies it resumes with. A command says what is
//! asked, never how: the handler registered for its id decides (locally, on another shard or,
//! later, on another node).

use super::{ids, CommandId};
use crate::node::Level;
use crate::registry::{Op, State};
use crate::value::{ErrorValue, Value};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Where a message goes: a PID or name as text (what Lua code holds), or a PID already parsed
/// (what Rust processes hold: no formatting and parsing per send).
#[derive(Clone, Debug, PartialEq)]
pub enum Dest {
    Text(String),
    Pid(crate::pid::Pid),
}

/// Context values a spawn or call adds over the caller's own (`process.with_context`).
pub type ContextOverlay = BTreeMap<String, Value>;

/// What `funcs.new():with_options{...}` asks of a call (`timeout`, `idempotent`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// The call fails with kind Timeout when it has not ended this long after it started.
    pub timeout_ns: Option<u64>,
    /// A call served by another node may run again elsewhere when its outcome is unknown.
    pub idempotent: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NameOp {
    /// Register `name` for `pid` (a PID string) or, when None, for the caller.
    Register {
        name: String,
        pid: Option<String>,
    },
    Lookup {
        name: String,
    },
    Unregister {
        name: String,
    },
    /// Claim `name` cluster-wide (`process.registry.EVENTUAL`) for `pid` or the caller.
    Claim {
        name: String,
        pid: Option<String>,
    },
    /// Release a cluster-wide name this node's process holds.
    Release {
        name: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryQuery {
    /// One live entry (NotFound when absent).
    Entry(String),
    /// Every live entry.
    Live,
    /// The current version's state (Unavailable before the registry is loaded).
    Current,
    /// A stored version's state (NotFound when absent).
    Version(u64),
    /// The ids of every stored version, oldest first.
    Versions,
    /// The id of the current version (0 before the registry is loaded).
    CurrentId,
}

/// What a process asks of its node.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    // ---- process (1–9) ----
    Send {
        dest: Dest,
        topic: String,
        payload: Vec<Value>,
    },
    Spawn {
        entry: String,
        host: String,
        args: Vec<Value>,
        monitor: bool,
        link: bool,
        /// Register the child under this name once it exists.
        name: Option<String>,
        context: Option<ContextOverlay>,
    },
    Terminate {
        dest: String,
    },
    Cancel {
        dest: String,
        reason: String,
    },
    Monitor {
        dest: String,
        on: bool,
    },
    Link {
        dest: String,
        on: bool,
    },
    Name(NameOp),
    /// Reads the options (`None`) or sets `trap_links`; answers `{trap_links = bool}`.
    Options {
        trap_links: Option<bool>,
    },
    /// A draw from the caller's own generator (`reseed` sets its state first).
    Random {
        reseed: Option<u64>,
    },

    // ---- clock (10–29) ----
    /// Arms a timer that delivers `local` to the caller; answers the timer's key.
    Timer {
        local: u64,
        delay_ns: u64,
        period_ns: Option<u64>,
    },
    TimerStop {
        key: u64,
    },
    TimerReset {
        key: u64,
        delay_ns: u64,
    },
    /// The node clock: wall (Unix ns) or monotonic (ns since node start).
    Now {
        wall: bool,
    },
    /// A draw from the node's seeded generator.
    NodeRandom,

    // ---- terminal (50–59) ----
    Write {
        stderr: bool,
        bytes: Vec<u8>,
    },

    // ---- events (90–99) ----
    Subscribe {
        system: String,
        kind: Option<String>,
    },
    Unsubscribe {
        sub: u64,
    },
    Publish {
        system: String,
        kind: String,
        path: String,
        data: Value,
    },

    // ---- function (140–149), exec (150–159) ----
    Call {
        target: String,
        args: Vec<Value>,
        context: Option<ContextOverlay>,
        options: CallOptions,
    },
    /// Cancels the call whose reply would complete `tag`.
    CancelCall {
        tag: u64,
    },
    /// The caller's context values.
    Context,
    Exec {
        target: String,
        host: String,
        args: Vec<Value>,
    },

    // ---- registry (200–209) ----
    RegistryRead(RegistryQuery),
    RegistryApply {
        ops: Vec<Op>,
    },
    RegistryMove {
        version: u64,
    },

    // ---- env (210–219) ----
    EnvGet {
        key: String,
    },
    EnvSet {
        key: String,
        value: String,
    },
    EnvAll,

    // ---- node (240–255) ----
    Log {
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    },

    /// Work the world does (SQL, stores, terminal reads, registry and env writes): the handler
    /// hands it to the driver as `Output::Execute` and the driver's completion answers the tag.
    /// `detached`: sent by a closing process; no tag is issued and the completion is dropped.
    World {
        cmd: crate::world::WorldCommand,
        detached: bool,
    },
    /// A command of a custom module (256+), its argument as a value.
    Custom {
        id: CommandId,
        arg: Value,
    },
}

/// How a command was answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// Answered now.
    Done(Result<Value, ErrorValue>),
    /// Answered later: a completion of this tag of the caller comes back through its mailbox.
    Pending(u64),
    /// Registry state (entries are shared, not copied) and the version it belongs to.
    State { version: u64, state: Rc<State> },
    /// Version ids.
    Versions(Vec<u64>),
}

impl Reply {
    pub fn ok(v: Value) -> Reply {
        Reply::Done(Ok(v))
    }

    pub fn err(e: ErrorValue) -> Reply {
        Reply::Done(Err(e))
    }

    /// A reply that is a plain result; Pending and state replies become an internal error
    /// (a handler answered in a shape the caller does not expect).
    pub fn into_result(self) -> Result<Value, ErrorValue> {
        match self {
            Reply::Done(r) => r,
            other => Err(ErrorValue::new(
                crate::value::kind::INTERNAL,
                format!("unexpected reply: {other:?}"),
            )),
        }
    }
}

impl Command {
    /// The id the registry dispatches this command by.
    pub fn id(&self) -> CommandId {
        match self {
            Command::Send { .. } => ids::PROCESS_SEND,
            Command::Spawn { .. } => ids::PROCESS_SPAWN,
            Command::Terminate { .. } => ids::PROCESS_TERMINATE,
            Command::Cancel { .. } => ids::PROCESS_CANCEL,
            Command::Monitor { .. } => ids::PROCESS_MONITOR,
            Command::Link { .. } => ids::PROCESS_LINK,
            Command::Name(_) => ids::PROCESS_REGISTRY,
            Command::Options { .. } => ids::PROCESS_OPTIONS,
            Command::Random { .. } => ids::PROCESS_RANDOM,
            Command::Timer { .. } => ids::CLOCK_TIMER,
            Command::TimerStop { .. } => ids::CLOCK_STOP,
            Command::TimerReset { .. } => ids::CLOCK_RESET,
            Command::Now { .. } => ids::CLOCK_NOW,
            Command::NodeRandom => ids::CLOCK_RANDOM,
            Command::Write { .. } => ids::TERMINAL_WRITE,
            Command::Subscribe { .. } => ids::EVENT_SUBSCRIBE,
            Command::Unsubscribe { .. } => ids::EVENT_UNSUBSCRIBE,
            Command::Publish { .. } => ids::EVENT_SEND,
            Command::Call { .. } => ids::FUNCTION_CALL,
            Command::CancelCall { .. } => ids::FUNCTION_CANCEL,
            Command::Context => ids::FUNCTION_CONTEXT,
            Command::Exec { .. } => ids::EXEC_PROCESS,
            Command::RegistryRead(_) => ids::REGISTRY_READ,
            Command::RegistryApply { .. } => ids::REGISTRY_APPLY,
            Command::RegistryMove { .. } => ids::REGISTRY_MOVE,
            Command::EnvGet { .. } => ids::ENV_GET,
            Command::EnvSet { .. } => ids::ENV_SET,
            Command::EnvAll => ids::ENV_ALL,
            Command::Log { .. } => ids::NODE_LOG,
            Command::World { cmd, .. } => cmd.id(),
            Command::Custom { id, .. } => *id,
        }
    }

    /// A short name for traces and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Send { .. } => "send",
            Command::Spawn { .. } => "spawn",
            Command::Terminate { .. } => "terminate",
            Command::Cancel { .. } => "cancel",
            Command::Monitor { .. } => "monitor",
            Command::Link { .. } => "link",
            Command::Name(_) => "registry",
            Command::Options { .. } => "options",
            Command::Random { .. } => "random",
            Command::Timer { .. } => "timer",
            Command::TimerStop { .. } => "timer.stop",
            Command::TimerReset { .. } => "timer.reset",
            Command::Now { .. } => "now",
            Command::NodeRandom => "node.random",
            Command::Write { .. } => "write",
            Command::Subscribe { .. } => "subscribe",
            Command::Unsubscribe { .. } => "unsubscribe",
            Command::Publish { .. } => "publish",
            Command::Call { .. } => "call",
            Command::CancelCall { .. } => "call.cancel",
            Command::Context => "context",
            Command::Exec { .. } => "exec",
            Command::RegistryRead(_) => "registry.read",
            Command::RegistryApply { .. } => "registry.apply",
            Command::RegistryMove { .. } => "registry.move",
            Command::EnvGet { .. } => "env.get",
            Command::EnvSet { .. } => "env.set",
            Command::EnvAll => "env.all",
            Command::Log { .. } => "log",
            Command::World { .. } => "world",
            Command::Custom { .. } => "custom",
        }
    }

    /// One command of every built-in kind (tests check each has a handler).
    #[cfg(test)]
    pub(crate) fn samples() -> Vec<Command> {
        let s = String::new;
        let mut v = vec![
            Command::Send {
                dest: Dest::Text(s()),
                topic: s(),
                payload: vec![],
            },
            Command::Spawn {
                entry: s(),
                host: s(),
                args: vec![],
                monitor: false,
                link: false,
                name: None,
                context: None,
            },
            Command::Terminate { dest: s() },
            Command::Cancel {
                dest: s(),
                reason: s(),
            },
            Command::Monitor {
                dest: s(),
                on: true,
            },
            Command::Link {
                dest: s(),
                on: true,
            },
            Command::Name(NameOp::Lookup { name: s() }),
            Command::Options { trap_links: None },
            Command::Random { reseed: None },
            Command::Timer {
                local: 0,
                delay_ns: 0,
                period_ns: None,
            },
            Command::TimerStop { key: 0 },
            Command::TimerReset {
                key: 0,
                delay_ns: 0,
            },
            Command::Now { wall: true },
            Command::NodeRandom,
            Command::Write {
                stderr: false,
                bytes: vec![],
            },
            Command::Subscribe {
                system: s(),
                kind: None,
            },
            Command::Unsubscribe { sub: 0 },
            Command::Publish {
                system: s(),
                kind: s(),
                path: s(),
                data: Value::Nil,
            },
            Command::Call {
                target: s(),
                args: vec![],
                context: None,
                options: CallOptions::default(),
            },
            Command::CancelCall { tag: 0 },
            Command::Context,
            Command::Exec {
                target: s(),
                host: s(),
                args: vec![],
            },
            Command::RegistryRead(RegistryQuery::Live),
            Command::RegistryApply { ops: vec![] },
            Command::RegistryMove { version: 1 },
            Command::EnvGet { key: s() },
            Command::EnvSet {
                key: s(),
                value: s(),
            },
            Command::EnvAll,
            Command::Log {
                level: Level::Info,
                message: s(),
                fields: vec![],
            },
        ];
        use crate::world::{TxOp, WorldCommand as W};
        let store = || s();
        for cmd in [
            W::TerminalReadLine,
            W::TerminalRead { max_bytes: 1 },
            W::sql(false, s(), 1, None, s(), vec![]),
            W::sql(true, s(), 1, None, s(), vec![]),
            W::SqlReleaseOwner { owner: 1 },
            W::SqlTx {
                db: s(),
                owner: 1,
                tx: 1,
                op: TxOp::Commit,
            },
            W::StoreInfo { store: store() },
            W::RegistryHead { version: 1 },
        ] {
            v.push(Command::World {
                cmd,
                detached: false,
            });
        }
        v
    }
}
