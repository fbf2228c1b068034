//! One runtime instance: `Core` (all node state that commands touch) and `Node` (the driver-facing
//! sans-IO surface: handle / run / poll_output / poll_timeout). No clocks, threads or I/O in here.

use crate::command::{Command, CommandId, CommandRegistry, Reply, Tags};
use crate::entries::Entry;
use crate::pid::Pid;
use crate::process::{Cx, Process, Step};
use crate::relay::{Event, EventKind, ExitResult, Mailbox, Message, NameError, Names, Signal};
use crate::scheduler::{Outcome, Scheduler};
pub use crate::supervisor::ServiceState;
use crate::supervisor::{AfterExit, Lifecycle, Service};
use crate::timers::{Target, Timer, Timers};
use crate::trace::{Observer, TraceEvent};
use crate::value::{kind, ErrorValue, Value};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

/// Weft's monotonic time: nanoseconds since the node started, handed in by the driver.
pub type Instant = u64;

/// Host id of the node's internal processes (supervisors), as in Wippy.
pub const CONTROL_HOST: &str = "node:control";

/// How long services get to stop after the terminal process ended (their stop_timeout still
/// applies on a signal). Wippy's tutorial relay ignores CANCEL; waiting 10 s there helps no one.
pub const TERMINAL_STOP_GRACE_NS: u64 = 1_000_000_000;

/// Host id `funcs.call` runs function.lua entries on. Decision (spec: functions run in a pool, not
/// on an app host): an internal host, so apps need no process.host to call functions.
pub const FUNCTION_HOST: &str = "node:function";

/// Context values (`ctx`) a process carries: inherited down spawn and call chains, read-only.
pub type Context = Rc<BTreeMap<String, Value>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// What the node asks of the world.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Run a command that needs the world; answer with `Input::Completed { pid, tag, .. }`.
    Execute {
        pid: Pid,
        tag: u64,
        cmd: CommandId,
        args: Vec<Value>,
    },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Log {
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    },
    /// The node has stopped; the process should exit with this code.
    Exit(i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalKind {
    Interrupt,
    Terminate,
}

/// What the world tells the node.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    Completed {
        pid: Pid,
        tag: u64,
        result: Result<Value, ErrorValue>,
    },
    Signal(SignalKind),
}

/// Whether `run` left work behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Idle,
    More,
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub seed: u64,
    /// Unix time (ns) at node start, for `time.now()` and event timestamps.
    pub wall_epoch_ns: i64,
    /// Per-step instruction budget for Lua processes.
    pub step_budget: u32,
    /// The OS environment the driver hands in for `env.storage.os` (empty under the simulator).
    pub env_os: Vec<(String, String)>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            seed: 0,
            wall_epoch_ns: 0,
            step_budget: 10_000,
            env_os: Vec::new(),
        }
    }
}

/// Counters a driver, bench or simulator can read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub spawned: u64,
    pub exited: u64,
    pub messages_sent: u64,
    pub completions_dropped: u64,
    pub restarts: u64,
    /// Commands dispatched through the command registry.
    pub commands: u64,
}

#[derive(Debug)]
pub struct ProcInfo {
    pub pid: Pid,
    pub entry: Arc<str>,
    pub mailbox: Mailbox,
    pub tags: Tags,
    pub trap_links: bool,
    pub service: Option<usize>,
    pub terminal: bool,
    pub rng: u64,
    /// Set for a `funcs.call`/`async` callee: (caller, caller's tag) completed with the result.
    pub reply: Option<(Pid, u64)>,
    /// Context values (`ctx.get`), inherited from the parent unless the spawn set its own.
    pub context: Context,
    /// Function calls this process has under way, as (reply tag, callee); canceled when it exits.
    pub calls: Vec<(u64, u64)>,
}

/// A spawn accepted by the core whose process object the node has not built yet.
#[derive(Debug)]
pub struct PendingSpawn {
    pub proc: u64,
    pub entry: Rc<Entry>,
    pub args: Vec<Value>,
}

#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    pub parent: Option<u64>,
    pub monitor: bool,
    pub link: bool,
    pub service: Option<usize>,
    pub terminal: bool,
    /// A function call: when the process ends, complete this tag of `parent` with its result.
    pub reply: Option<u64>,
    /// Context values for the child; None inherits the parent's.
    pub context: Option<Context>,
}

#[derive(Debug, Default, PartialEq)]
enum Shutdown {
    #[default]
    Running,
    /// Stopping services level by level in reverse start order; `waiting` is the level being
    /// stopped (CANCEL sent, each with its own stop_timeout).
    Stopping {
        code: i32,
        queue: Vec<usize>,
        waiting: std::collections::BTreeSet<usize>,
        grace_cap_ns: Option<u64>,
    },
    Done,
}

pub(crate) struct Core {
    now: Instant,
    node: crate::pid::NodeId,
    cfg: NodeConfig,
    rng: ChaCha8Rng,
    next_uniq: u64,
    procs: BTreeMap<u64, ProcInfo>,
    pub names: Names,
    pub topology: crate::topology::Topology,
    pub timers: Timers,
    pub sched: Scheduler,
    pub commands: CommandRegistry,
    outputs: VecDeque<Output>,
    spawns: VecDeque<PendingSpawn>,
    killed: Vec<u64>,
    pub entries: BTreeMap<String, Rc<Entry>>,
    /// Versions of `entries` (which stays the live view of the current one).
    pub registry: crate::registry::Registry,
    /// process.host / terminal.host ids that are running.
    pub hosts: BTreeMap<String, String>,
    pub services: Vec<Service>,
    start_order: Vec<usize>,
    shutdown: Shutdown,
    pub stats: Stats,
    pub log_min: Level,
    observer: Option<Observer>,
    next_msg_seq: u64,
    /// BUGGIFY: seeded decisions that force rare paths; the simulator turns it on.
    pub buggify: bool,
    /// Bugs planted on purpose so tests can show the simulator finds them. Off unless a test sets them.
    pub planted: Planted,
    /// The node's event bus (`events` module and system topics).
    pub bus: crate::eventbus::Bus,
    /// Env storages and variables (`env` module, `${env:NAME}` at boot).
    pub env: crate::env::EnvState,
}

/// Deliberate bugs behind a test-only switch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted {
    /// Some deaths send a monitor its EXIT twice.
    pub double_exit: bool,
}

fn err(k: &str, m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(k, m)
}

impl Core {
    pub(crate) fn new(cfg: NodeConfig) -> Core {
        let mut commands =
            CommandRegistry::with_builtins().expect("built-in command ids are distinct");
        commands.freeze();
        let cfg_env_os = cfg.env_os.iter().cloned().collect();
        Core {
            now: 0,
            node: crate::pid::NodeId::local(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            next_uniq: 0,
            procs: BTreeMap::new(),
            names: Names::default(),
            topology: Default::default(),
            timers: Timers::default(),
            sched: Scheduler::default(),
            commands,
            outputs: VecDeque::new(),
            spawns: VecDeque::new(),
            killed: Vec::new(),
            entries: BTreeMap::new(),
            registry: Default::default(),
            hosts: BTreeMap::new(),
            services: Vec::new(),
            start_order: Vec::new(),
            shutdown: Shutdown::Running,
            stats: Stats::default(),
            log_min: Level::Info,
            observer: None,
            next_msg_seq: 0,
            buggify: false,
            planted: Planted::default(),
            bus: Default::default(),
            env: crate::env::EnvState {
                os: cfg_env_os,
                ..Default::default()
            },
        }
    }

    /// Installs the observer that receives every trace event (the simulator's).
    pub fn set_observer(&mut self, o: Observer) {
        self.observer = Some(o);
    }

    pub fn trace(&mut self, ev: TraceEvent<'_>) {
        if let Some(o) = &mut self.observer {
            o(&ev);
        }
    }

    /// A seeded coin (5%) at a BUGGIFY site; always false unless the simulator enabled it.
    pub fn buggify(&mut self, site: &str) -> bool {
        if !self.buggify {
            return false;
        }
        let fire = self.rng.next_u64().is_multiple_of(20);
        if fire {
            self.trace(TraceEvent::Fault {
                kind: "buggify",
                detail: site,
            });
        }
        fire
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn wall_now_ns(&self) -> i64 {
        self.cfg.wall_epoch_ns.saturating_add(self.now as i64)
    }

    /// The budget for the next step: BUGGIFY sometimes shrinks it to force preemption paths.
    pub fn next_step_budget(&mut self) -> u32 {
        if self.buggify("step.budget") {
            return 16;
        }
        self.cfg.step_budget
    }

    /// Processes alive now, in id order.
    pub fn live_processes(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }

    /// A draw from the node's seeded generator.
    pub fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn proc(&self, id: u64) -> Option<&ProcInfo> {
        self.procs.get(&id)
    }

    pub fn proc_mut(&mut self, id: u64) -> Option<&mut ProcInfo> {
        self.procs.get_mut(&id)
    }

    pub fn is_alive(&self, id: u64) -> bool {
        self.procs.contains_key(&id)
    }

    pub fn process_count(&self) -> usize {
        self.procs.len()
    }

    pub fn is_stopping(&self) -> bool {
        self.shutdown != Shutdown::Running
    }

    // ---- output ------------------------------------------------------------------------------

    pub fn emit(&mut self, o: Output) {
        if self.observer.is_some() {
            if let Output::Stdout(b) | Output::Stderr(b) = &o {
                let stream = if matches!(o, Output::Stdout(_)) {
                    "stdout"
                } else {
                    "stderr"
                };
                let text = String::from_utf8_lossy(b).into_owned();
                self.trace(TraceEvent::Output {
                    stream,
                    text: &text,
                });
            }
        }
        self.outputs.push_back(o);
    }

    pub fn log(&mut self, level: Level, message: impl Into<String>, fields: Vec<(String, String)>) {
        if level >= self.log_min {
            self.outputs.push_back(Output::Log {
                level,
                message: message.into(),
                fields,
            });
        }
    }

    /// Runs `cmd` for process `caller`: the handler registered for its id answers now or
    /// issues a tag of the caller that a later completion answers.
    pub(crate) fn dispatch(&mut self, caller: u64, cmd: Command) -> Reply {
        let id = cmd.id();
        self.stats.commands += 1;
        match self.commands.handler(id) {
            Some(h) => h(self, caller, cmd),
            None => Reply::err(err(
                kind::NOT_FOUND,
                format!(
                    "no handler registered for command {} ({})",
                    id.0,
                    cmd.name()
                ),
            )),
        }
    }

    /// A world command for `caller`: a tag now, the driver's completion later.
    pub(crate) fn world(&mut self, caller: u64, cmd: CommandId, args: Vec<Value>) -> Reply {
        match self.execute(caller, cmd, args) {
            Some(tag) => Reply::Pending(tag),
            None => Reply::err(err(kind::INTERNAL, "process not registered")),
        }
    }

    /// A world command whose answer nobody waits for (a closing process's clean-up): tag 0 is
    /// never issued, so its completion is dropped.
    pub(crate) fn execute_detached(&mut self, caller: u64, cmd: CommandId, args: Vec<Value>) {
        let pid = self
            .pid_of(caller)
            .cloned()
            .unwrap_or_else(|| Pid::new(Arc::from(CONTROL_HOST), caller));
        self.outputs.push_back(Output::Execute {
            pid,
            tag: 0,
            cmd,
            args,
        });
    }

    /// The context for a child of `caller`: the caller's, overlaid with `own` (None inherits).
    pub(crate) fn child_context(
        &self,
        caller: u64,
        own: Option<crate::command::ContextOverlay>,
    ) -> Option<Context> {
        let own = own.filter(|o| !o.is_empty())?;
        let mut m = self
            .procs
            .get(&caller)
            .map(|p| (*p.context).clone())
            .unwrap_or_default();
        m.extend(own);
        Some(Rc::new(m))
    }

    /// Stops the callee of the call `caller` is waiting on with `tag`; false when it already ended.
    pub(crate) fn cancel_call(&mut self, caller: u64, tag: u64) -> bool {
        let callee = self
            .procs
            .get(&caller)
            .and_then(|p| p.calls.iter().find(|(t, _)| *t == tag).map(|(_, c)| *c));
        match callee {
            Some(c) if self.procs.contains_key(&c) => {
                self.kill(c, err(kind::CANCELED, "function call canceled"));
                true
            }
            _ => false,
        }
    }

    /// Issues a tag and asks the driver to run `cmd`; the completion comes back as a Signal.
    pub fn execute(&mut self, proc: u64, cmd: CommandId, args: Vec<Value>) -> Option<u64> {
        debug_assert!(
            self.commands.lookup(cmd).is_some(),
            "unregistered command {cmd:?}"
        );
        let p = self.procs.get_mut(&proc)?;
        let y = p.tags.issue(cmd);
        let pid = p.pid.clone();
        self.outputs.push_back(Output::Execute {
            pid,
            tag: y.tag,
            cmd,
            args,
        });
        Some(y.tag)
    }

    // ---- addressing ----------------------------------------------------------------------------

    /// The node's identity; every PID it makes carries it.
    pub fn node_id(&self) -> &crate::pid::NodeId {
        &self.node
    }

    pub fn pid_of(&self, id: u64) -> Option<&Pid> {
        self.procs.get(&id).map(|p| &p.pid)
    }

    fn wake(&mut self, id: u64) {
        self.sched.wake(id);
    }

    // ---- messaging -----------------------------------------------------------------------------

    /// `send` to a destination as a command carries it.
    pub(crate) fn send_to(
        &mut self,
        from: Option<u64>,
        dest: &crate::command::Dest,
        topic: String,
        payload: Vec<Value>,
    ) -> Result<(), ErrorValue> {
        match dest {
            crate::command::Dest::Text(d) => self.send(from, d, topic, payload),
            crate::command::Dest::Pid(p) => {
                if topic.starts_with('@') {
                    return Err(err(
                        kind::INVALID,
                        format!("topic may not start with '@': {topic}"),
                    ));
                }
                let to = self.resolve_pid(p)?;
                self.deliver(from, to, topic, payload);
                Ok(())
            }
        }
    }

    pub fn send(
        &mut self,
        from: Option<u64>,
        dest: &str,
        topic: String,
        payload: Vec<Value>,
    ) -> Result<(), ErrorValue> {
        if topic.starts_with('@') {
            return Err(err(
                kind::INVALID,
                format!("topic may not start with '@': {topic}"),
            ));
        }
        let to = self.resolve(dest)?;
        self.deliver(from, to, topic, payload);
        Ok(())
    }

    pub fn deliver(
        &mut self,
        from: Option<u64>,
        to: u64,
        topic: String,
        payload: Vec<Value>,
    ) -> bool {
        let from_pid = from.and_then(|f| self.procs.get(&f)).map(|p| p.pid.clone());
        if !self.procs.contains_key(&to) {
            return false;
        }
        self.next_msg_seq += 1;
        let seq = self.next_msg_seq;
        self.trace(TraceEvent::Send {
            from: from_pid.as_ref().map(|p| p.uniq),
            to,
            topic: &topic,
            seq,
        });
        let p = self.procs.get_mut(&to).expect("checked above");
        p.mailbox.messages.push_back(Message {
            from: from_pid,
            topic,
            payload,
            seq,
        });
        self.stats.messages_sent += 1;
        self.wake(to);
        true
    }

    fn push_event(&mut self, to: u64, ev: Event) {
        if self.procs.contains_key(&to) {
            self.trace(TraceEvent::Event {
                to,
                kind: ev.kind,
                from: ev.from.uniq,
            });
        }
        if let Some(p) = self.procs.get_mut(&to) {
            p.mailbox.events.push_back(ev);
            self.wake(to);
        }
    }

    fn push_signal(&mut self, to: u64, s: Signal) -> bool {
        match self.procs.get_mut(&to) {
            Some(p) => {
                p.mailbox.signals.push_back(s);
                self.wake(to);
                true
            }
            None => false,
        }
    }

    pub fn take_mailbox(&mut self, id: u64) -> Mailbox {
        let mut mb = self
            .procs
            .get_mut(&id)
            .map(|p| std::mem::take(&mut p.mailbox))
            .unwrap_or_default();
        if self.observer.is_some() {
            for m in &mb.messages {
                self.trace(TraceEvent::Take {
                    proc: id,
                    from: m.from.as_ref().map(|p| p.uniq),
                    seq: m.seq,
                });
            }
        }
        if !self.bus.is_empty() {
            for (sub, event) in self.bus.take(id) {
                mb.signals.push_back(Signal::Bus { sub, event });
            }
        }
        mb
    }

    // ---- event bus -----------------------------------------------------------------------------

    /// Publishes on the node's event bus and wakes the subscribers that got it. This is the hook
    /// other parts of the node call (system topics; the registry calls it with system
    /// "registry", kind "entry.create|update|delete", path = entry id, data = the entry).
    pub fn publish(&mut self, system: &str, kind: &str, path: &str, data: Value) {
        if self.bus.is_empty() {
            return;
        }
        let owners = self
            .bus
            .publish(crate::eventbus::BusEvent::new(system, kind, path, data));
        for o in owners {
            if self.procs.contains_key(&o) {
                self.wake(o);
            }
        }
    }

    // ---- function calls ------------------------------------------------------------------------

    /// Starts `funcs.call`/`async` of `target` for `caller`: the callee runs as a short-lived
    /// process on FUNCTION_HOST and its end completes the returned tag of the caller (a
    /// `Signal::Completed`, dropped if the caller is gone). Returns (tag, callee id).
    pub fn call(
        &mut self,
        caller: u64,
        target: &str,
        args: Vec<Value>,
        context: Option<Context>,
    ) -> Result<u64, ErrorValue> {
        self.call_on(caller, target, FUNCTION_HOST, args, context, "function.lua")
    }

    /// `process.exec`: runs a process entry on `host` and answers the caller's tag with its result.
    pub fn exec(
        &mut self,
        caller: u64,
        target: &str,
        host: &str,
        args: Vec<Value>,
        context: Option<Context>,
    ) -> Result<u64, ErrorValue> {
        self.call_on(caller, target, host, args, context, "process.lua")
    }

    fn call_on(
        &mut self,
        caller: u64,
        target: &str,
        host: &str,
        args: Vec<Value>,
        context: Option<Context>,
        want_kind: &str,
    ) -> Result<u64, ErrorValue> {
        let valid = match target.split_once(':') {
            Some((ns, name)) => !ns.is_empty() && !name.is_empty(),
            None => false,
        };
        if !valid {
            return Err(err(
                kind::INVALID,
                format!("invalid function id (want namespace:name): '{target}'"),
            ));
        }
        match self.entries.get(target) {
            Some(e) if e.kind == want_kind => {}
            _ => {
                let what = if want_kind == "function.lua" {
                    "function"
                } else {
                    "process"
                };
                return Err(err(kind::NOT_FOUND, format!("{what} not found: {target}")));
            }
        }
        let tag = self
            .procs
            .get_mut(&caller)
            .ok_or_else(|| err(kind::INTERNAL, "caller is not a live process"))?
            .tags
            .issue(crate::command::ids::FUNCTION_CALL)
            .tag;
        let r = self.spawn(
            target,
            host,
            args,
            SpawnOptions {
                parent: Some(caller),
                reply: Some(tag),
                context,
                ..Default::default()
            },
        );
        match r {
            Ok(pid) => {
                if let Some(p) = self.procs.get_mut(&caller) {
                    p.calls.retain(|(_, c)| *c != pid.uniq);
                    p.calls.push((tag, pid.uniq));
                }
                Ok(tag)
            }
            Err(e) => {
                if let Some(p) = self.procs.get_mut(&caller) {
                    p.tags.complete(tag);
                }
                Err(e)
            }
        }
    }

    // ---- spawning ------------------------------------------------------------------------------

    pub fn spawn(
        &mut self,
        entry_id: &str,
        host: &str,
        args: Vec<Value>,
        opts: SpawnOptions,
    ) -> Result<Pid, ErrorValue> {
        let call = opts.reply.is_some() && opts.parent.is_some();
        if self.is_stopping() && !opts.terminal && !call {
            return Err(err(kind::UNAVAILABLE, "node is stopping"));
        }
        let host = self.route_host(host)?;
        let entry = self
            .entries
            .get(entry_id)
            .cloned()
            .ok_or_else(|| err(kind::NOT_FOUND, format!("entry not found: {entry_id}")))?;
        let function_ok = call && entry.kind == "function.lua";
        if !entry.kind.starts_with("process.") && entry.kind != "native" && !function_ok {
            return Err(err(
                kind::INVALID,
                format!("entry {entry_id} is a {}, not a process", entry.kind),
            ));
        }
        let host_ok = self.hosts.contains_key(host) || (call && host == FUNCTION_HOST);
        if !host_ok {
            return Err(err(
                kind::NOT_FOUND,
                format!("host not found or not running: {host}"),
            ));
        }
        self.next_uniq += 1;
        let uniq = self.next_uniq;
        let pid = Pid::on(self.node.clone(), Arc::from(host), uniq);
        let seed = self.cfg.seed ^ uniq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let context = match (&opts.context, opts.parent.and_then(|p| self.procs.get(&p))) {
            (Some(c), _) => c.clone(),
            (None, Some(parent)) => parent.context.clone(),
            (None, None) => Context::default(),
        };
        let reply = match (opts.reply, opts.parent.and_then(|p| self.procs.get(&p))) {
            (Some(tag), Some(parent)) => Some((parent.pid.clone(), tag)),
            _ => None,
        };
        self.procs.insert(
            uniq,
            ProcInfo {
                pid: pid.clone(),
                entry: Arc::from(entry_id),
                mailbox: Mailbox::default(),
                tags: Tags::default(),
                trap_links: false,
                service: opts.service,
                terminal: opts.terminal,
                rng: seed,
                reply,
                context,
                calls: Vec::new(),
            },
        );
        self.trace(TraceEvent::Spawn {
            proc: uniq,
            entry: entry_id,
            host,
            parent: opts.parent,
        });
        if let Some(parent) = opts.parent {
            if opts.monitor {
                self.topology.monitor(parent, uniq);
                self.trace(TraceEvent::Monitor {
                    watcher: parent,
                    target: uniq,
                });
            }
            if opts.link {
                self.topology.link(parent, uniq);
            }
        }
        self.stats.spawned += 1;
        // System topic (decision: system "process", kind "started", path = pid). Function calls
        // are not processes in Wippy, so they publish nothing.
        if !call && !self.bus.is_empty() {
            let parent = opts
                .parent
                .and_then(|p| self.procs.get(&p))
                .map(|p| Value::from(p.pid.to_string().as_str()))
                .unwrap_or(Value::Nil);
            let data = crate::value::Table::default()
                .with("pid", Value::from(pid.to_string().as_str()))
                .with("id", Value::from(entry_id))
                .with("host", Value::from(host))
                .with("parent", parent);
            self.publish("process", "started", &pid.to_string(), Value::table(data));
        }
        self.spawns.push_back(PendingSpawn {
            proc: uniq,
            entry,
            args,
        });
        Ok(pid)
    }

    pub fn take_spawn(&mut self) -> Option<PendingSpawn> {
        self.spawns.pop_front()
    }

    // ---- control -------------------------------------------------------------------------------

    pub fn cancel(&mut self, from: u64, dest: &str, reason: String) -> Result<(), ErrorValue> {
        let to = self.resolve(dest)?;
        let ev = Event {
            kind: EventKind::Cancel,
            from: self
                .pid_of(from)
                .cloned()
                .unwrap_or_else(|| Pid::new(Arc::from(CONTROL_HOST), 0)),
            at_unix_ns: self.wall_now_ns(),
            result: None,
            reason,
        };
        self.push_event(to, ev);
        Ok(())
    }

    pub fn terminate(&mut self, dest: &str) -> Result<(), ErrorValue> {
        let to = self.resolve(dest)?;
        self.kill(to, err(kind::CANCELED, "terminated"));
        Ok(())
    }

    pub fn monitor(&mut self, watcher: u64, dest: &str) -> Result<(), ErrorValue> {
        let t = self.resolve(dest)?;
        self.topology.monitor(watcher, t);
        self.trace(TraceEvent::Monitor { watcher, target: t });
        Ok(())
    }

    pub fn unmonitor(&mut self, watcher: u64, dest: &str) -> Result<(), ErrorValue> {
        let t = self.resolve(dest)?;
        self.topology.unmonitor(watcher, t);
        self.trace(TraceEvent::Unmonitor { watcher, target: t });
        Ok(())
    }

    pub fn link(&mut self, a: u64, dest: &str) -> Result<(), ErrorValue> {
        let b = self.resolve(dest)?;
        self.topology.link(a, b);
        Ok(())
    }

    pub fn unlink(&mut self, a: u64, dest: &str) -> Result<(), ErrorValue> {
        let b = self.resolve(dest)?;
        self.topology.unlink(a, b);
        Ok(())
    }

    pub fn register_name(&mut self, name: &str, proc: u64) -> Result<(), ErrorValue> {
        if name.is_empty() {
            return Err(err(kind::INVALID, "name must not be empty"));
        }
        self.names.register(name, proc).map_err(|NameError::Taken| {
            err(
                kind::ALREADY_EXISTS,
                format!("name already registered: {name}"),
            )
        })
    }

    // ---- timers --------------------------------------------------------------------------------

    pub fn arm_timer(&mut self, proc: u64, id: u64, delay_ns: u64, period_ns: Option<u64>) -> u64 {
        let at = self.now.saturating_add(delay_ns);
        self.timers.arm(
            at,
            Timer {
                target: Target::Process { proc, id },
                period: period_ns,
            },
        )
    }

    pub fn cancel_timer(&mut self, key: u64) -> bool {
        self.timers.cancel(key)
    }

    pub fn reset_timer(&mut self, key: u64, delay_ns: u64) -> bool {
        let at = self.now.saturating_add(delay_ns);
        self.timers.reset(key, at)
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((key, t)) = self.timers.pop_due(now) {
            match t.target {
                Target::Process { proc, id } => {
                    self.trace(TraceEvent::Timer { proc, id });
                    let at = self.wall_now_ns();
                    if !self.push_signal(proc, Signal::Timer { id, at_unix_ns: at })
                        && t.period.is_some()
                    {
                        self.timers.cancel(key);
                    }
                }
                Target::ServiceRestart { service } => {
                    self.services[service].timer = None;
                    if !self.is_stopping() {
                        self.stats.restarts += 1;
                        self.start_service(service);
                    }
                }
                Target::StopDeadline { service } => {
                    if let Some(p) = self.services[service].proc {
                        let id = self.services[service].id.clone();
                        self.log(
                            Level::Warn,
                            "service did not stop in time",
                            vec![("service".into(), id)],
                        );
                        self.kill(p, err(kind::TIMEOUT, "stop timeout"));
                    }
                }
            }
        }
    }

    // ---- exits ---------------------------------------------------------------------------------

    /// Forcefully ends a process that is not mid-step (or is the one stepping: the node drops it after).
    pub fn kill(&mut self, id: u64, e: ErrorValue) {
        if self.procs.contains_key(&id) {
            self.sched.remove(id);
            self.killed.push(id);
            self.finish(id, Err(e));
        }
    }

    /// Records a process's end: names released, monitors told, links cascaded, supervisor and
    /// terminal informed. Idempotent: a second call for the same process does nothing.
    pub fn finish(&mut self, id: u64, result: ExitResult) {
        let mut work = vec![(id, result)];
        while let Some((id, result)) = work.pop() {
            let Some(info) = self.procs.remove(&id) else {
                continue;
            };
            self.stats.exited += 1;
            self.trace(TraceEvent::Exit {
                proc: id,
                ok: result.is_ok(),
            });
            self.names.release_all(id);
            if !self.bus.is_empty() {
                self.bus.remove_owner(id);
            }
            for (_, c) in &info.calls {
                if self.procs.contains_key(c) {
                    self.sched.remove(*c);
                    self.killed.push(*c);
                    work.push((*c, Err(err(kind::CANCELED, "caller exited"))));
                }
            }
            if let Some((caller, tag)) = &info.reply {
                if let Some(p) = self.procs.get_mut(&caller.uniq) {
                    p.calls.retain(|(_, c)| *c != id);
                }
                self.complete(caller, *tag, result.clone());
            } else if !self.bus.is_empty() {
                let mut data = crate::value::Table::default()
                    .with("pid", Value::from(info.pid.to_string().as_str()))
                    .with("id", Value::from(&*info.entry))
                    .with("ok", Value::Bool(result.is_ok()));
                if let Err(e) = &result {
                    data = data.with("error", Value::error(e.clone()));
                }
                self.publish(
                    "process",
                    "stopped",
                    &info.pid.to_string(),
                    Value::table(data),
                );
            }
            let fallout = self.topology.on_exit(id);
            let at = self.wall_now_ns();
            let mut monitors = fallout.monitors;
            if self.planted.double_exit && self.rng.next_u64().is_multiple_of(4) {
                monitors.extend(monitors.clone());
            }
            for w in monitors {
                self.push_event(
                    w,
                    Event {
                        kind: EventKind::Exit,
                        from: info.pid.clone(),
                        at_unix_ns: at,
                        result: Some(result.clone()),
                        reason: String::new(),
                    },
                );
            }
            if result.is_err() {
                for l in fallout.links {
                    let trap = self.procs.get(&l).map(|p| p.trap_links);
                    match trap {
                        Some(true) => self.push_event(
                            l,
                            Event {
                                kind: EventKind::LinkDown,
                                from: info.pid.clone(),
                                at_unix_ns: at,
                                result: Some(result.clone()),
                                reason: String::new(),
                            },
                        ),
                        Some(false) => {
                            self.sched.remove(l);
                            self.killed.push(l);
                            work.push((l, Err(err(kind::CANCELED, "linked process failed"))));
                        }
                        None => {}
                    }
                }
            }
            if let Err(e) = &result {
                // A function call's error is the caller's return value, not a crash to log.
                if info.service.is_none() && !info.terminal && info.reply.is_none() {
                    self.log(
                        Level::Error,
                        "process failed",
                        vec![
                            ("pid".into(), info.pid.to_string()),
                            ("entry".into(), info.entry.to_string()),
                            ("error".into(), e.message.clone()),
                        ],
                    );
                }
            }
            if let Some(s) = info.service {
                self.service_exited(s, &result);
            }
            // A terminal process ended by the node's own stop (a signal) is not an app error.
            if info.terminal && !self.is_stopping() {
                let code = self.exit_code(&result);
                self.begin_shutdown_with(code, Some(TERMINAL_STOP_GRACE_NS));
            }
        }
    }

    fn exit_code(&mut self, r: &ExitResult) -> i32 {
        match r {
            Err(e) => {
                self.emit(Output::Stderr(
                    format!("error: {}\n", e.message).into_bytes(),
                ));
                1
            }
            Ok(Value::Int(n)) => *n as i32,
            Ok(Value::Float(f)) => *f as i32,
            Ok(Value::Bool(b)) => i32::from(!*b),
            Ok(Value::Str(s)) => {
                let mut s = s.clone();
                s.push(b'\n');
                self.emit(Output::Stdout(s));
                0
            }
            Ok(_) => 0,
        }
    }

    pub fn take_killed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.killed)
    }

    // ---- services ------------------------------------------------------------------------------

    pub fn add_service(&mut self, entry: &Entry) -> Result<usize, String> {
        let data = &entry.data;
        let process = data
            .get("process")
            .and_then(|v| v.as_str())
            .ok_or("process.service needs `process:` (a process.lua entry id)")?
            .to_string();
        let host = data
            .get("host")
            .and_then(|v| v.as_str())
            .ok_or("process.service needs `host:` (a process.host entry id)")?
            .to_string();
        if host == CONTROL_HOST {
            return Err("host node:control is reserved for the runtime".into());
        }
        let input = match data.get("input") {
            None | Some(Value::Nil) => vec![],
            Some(Value::Table(t)) if t.map.is_empty() => t.array.clone(),
            Some(v) => vec![v.clone()],
        };
        let lifecycle = Lifecycle::from_data(data)?;
        self.services.push(Service {
            id: entry.id.clone(),
            process,
            host,
            input,
            lifecycle,
            state: ServiceState::Unknown,
            proc: None,
            attempts: 0,
            started_at_ns: 0,
            timer: None,
            supervisor: None,
            level: 0,
        });
        Ok(self.services.len() - 1)
    }

    pub fn start_service(&mut self, idx: usize) {
        if self.services[idx].supervisor.is_none() {
            // Wippy's supervisor is a process on node:control and takes a PID from the shared
            // counter; reserving one keeps PIDs numbered as Wippy numbers them.
            self.next_uniq += 1;
            self.services[idx].supervisor = Some(self.next_uniq);
        }
        let (process, host, input) = {
            let s = &mut self.services[idx];
            s.state = ServiceState::Starting;
            (s.process.clone(), s.host.clone(), s.input.clone())
        };
        let opts = SpawnOptions {
            service: Some(idx),
            ..Default::default()
        };
        match self.spawn(&process, &host, input, opts) {
            Ok(pid) => {
                let now = self.now;
                let s = &mut self.services[idx];
                s.state = ServiceState::Running;
                s.proc = Some(pid.uniq);
                s.started_at_ns = now;
                let sid = s.id.clone();
                self.trace(TraceEvent::Service {
                    service: &sid,
                    state: "running",
                });
                self.publish_service_state(idx);
                if !self.start_order.contains(&idx) {
                    self.start_order.push(idx);
                }
                let id = sid;
                self.log(
                    Level::Debug,
                    "service started",
                    vec![("service".into(), id), ("pid".into(), pid.to_string())],
                );
            }
            Err(e) => {
                let id = self.services[idx].id.clone();
                self.log(
                    Level::Error,
                    "service failed to start",
                    vec![("service".into(), id), ("error".into(), e.message.clone())],
                );
                self.service_exited(idx, &Err(e));
            }
        }
    }

    fn service_exited(&mut self, idx: usize, result: &ExitResult) {
        let stopping = matches!(&self.shutdown, Shutdown::Stopping { .. });
        let unit = self.unit();
        let now = self.now;
        let (failed, retryable) = match result {
            Ok(_) => (false, None),
            Err(e) => (true, e.retryable),
        };
        let after = self.services[idx].on_exit(now, failed, retryable, stopping, unit);
        let id = self.services[idx].id.clone();
        let state = self.services[idx].state.as_str();
        self.trace(TraceEvent::Service {
            service: &id,
            state,
        });
        self.publish_service_state(idx);
        if let Err(e) = result {
            if !stopping {
                self.log(
                    Level::Error,
                    "service failed",
                    vec![
                        ("service".into(), id.clone()),
                        ("error".into(), e.message.clone()),
                    ],
                );
            }
        }
        if let AfterExit::RestartIn(mut delay) = after {
            if self.buggify("restart.delay") {
                delay = delay.saturating_mul(2);
            }
            self.log(
                Level::Info,
                "service restarting",
                vec![
                    ("service".into(), id),
                    ("attempt".into(), self.services[idx].attempts.to_string()),
                    ("delay_ms".into(), (delay / 1_000_000).to_string()),
                ],
            );
            let key = self.timers.arm(
                self.now.saturating_add(delay),
                Timer {
                    target: Target::ServiceRestart { service: idx },
                    period: None,
                },
            );
            self.services[idx].timer = Some(key);
        }
        if let Shutdown::Stopping { waiting, .. } = &mut self.shutdown {
            if waiting.remove(&idx) && waiting.is_empty() {
                self.advance_shutdown();
            }
        }
    }

    /// System topic on a service state change (decision: system "supervisor", kind
    /// "state.<state>", path = service entry id, data = {id, state}).
    fn publish_service_state(&mut self, idx: usize) {
        if self.bus.is_empty() {
            return;
        }
        let id = self.services[idx].id.clone();
        let state = self.services[idx].state.as_str();
        let data = crate::value::Table::default()
            .with("id", Value::from(id.as_str()))
            .with("state", Value::from(state));
        self.publish(
            "supervisor",
            &format!("state.{state}"),
            &id,
            Value::table(data),
        );
    }

    // ---- shutdown ------------------------------------------------------------------------------

    /// Stops services in reverse start order (CANCEL, then wait up to stop_timeout), then exits.
    pub fn begin_shutdown(&mut self, code: i32) {
        self.begin_shutdown_with(code, None)
    }

    /// As `begin_shutdown`, waiting at most `grace_cap_ns` for each service whatever its
    /// stop_timeout (used when the terminal process ended: the user is waiting for the prompt).
    pub fn begin_shutdown_with(&mut self, code: i32, grace_cap_ns: Option<u64>) {
        if self.shutdown != Shutdown::Running {
            return;
        }
        for s in &mut self.services {
            if let Some(t) = s.timer.take() {
                self.timers.cancel(t);
            }
        }
        let queue: Vec<usize> = self.start_order.clone();
        self.shutdown = Shutdown::Stopping {
            code,
            queue,
            waiting: Default::default(),
            grace_cap_ns,
        };
        self.advance_shutdown();
    }

    fn advance_shutdown(&mut self) {
        loop {
            let Shutdown::Stopping {
                code,
                queue,
                waiting,
                grace_cap_ns,
            } = &mut self.shutdown
            else {
                return;
            };
            if !waiting.is_empty() {
                return;
            }
            let code = *code;
            let cap = grace_cap_ns.unwrap_or(u64::MAX);
            // The highest start level still running stops together; lower levels wait for it.
            let Some(level) = queue.iter().map(|i| self.services[*i].level).max() else {
                // Whatever is left (terminal process, plain spawns) ends with the node.
                let rest: Vec<u64> = self.procs.keys().copied().collect();
                for id in rest {
                    self.kill(id, err(kind::CANCELED, "node stopping"));
                }
                self.shutdown = Shutdown::Done;
                self.emit(Output::Exit(code));
                return;
            };
            let (group, rest): (Vec<usize>, Vec<usize>) = queue
                .iter()
                .partition(|i| self.services[**i].level == level);
            *queue = rest;
            let mut stopping = Vec::new();
            for idx in group.into_iter().rev() {
                let Some(proc) = self.services[idx].proc else {
                    continue;
                };
                self.services[idx].state = ServiceState::Stopping;
                self.publish_service_state(idx);
                stopping.push((idx, proc));
            }
            if let Shutdown::Stopping { waiting, .. } = &mut self.shutdown {
                waiting.extend(stopping.iter().map(|(i, _)| *i));
            }
            for (idx, proc) in stopping {
                let pid = self.procs[&proc].pid.to_string();
                let _ = self.cancel(0, &pid, "service stopping".into());
                let deadline = self
                    .now
                    .saturating_add(self.services[idx].lifecycle.stop_timeout_ns.min(cap));
                self.timers.arm(
                    deadline,
                    Timer {
                        target: Target::StopDeadline { service: idx },
                        period: None,
                    },
                );
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.shutdown == Shutdown::Done
    }

    // ---- world input ---------------------------------------------------------------------------

    pub(crate) fn complete(&mut self, pid: &Pid, tag: u64, result: Result<Value, ErrorValue>) {
        let result = crate::registry::on_completion(self, pid, tag, result);
        let ok = self
            .procs
            .get_mut(&pid.uniq)
            .is_some_and(|p| p.pid == *pid && p.tags.complete(tag));
        self.trace(TraceEvent::Completion {
            proc: pid.uniq,
            tag,
            applied: ok,
        });
        if ok {
            self.push_signal(pid.uniq, Signal::Completed { tag, result });
        } else {
            self.stats.completions_dropped += 1;
        }
    }
}

/// A process runtime's way to its node: it dispatches commands (and, for the process stepping
/// now, takes its mailbox) and nothing else; the node's state stays out of reach.
#[derive(Clone)]
pub struct Port {
    pub(crate) core: Rc<RefCell<Core>>,
}

impl Port {
    /// Runs `cmd` for process `caller` through the node's command registry.
    pub fn dispatch(&self, caller: u64, cmd: Command) -> Reply {
        self.core.borrow_mut().dispatch(caller, cmd)
    }

    pub(crate) fn take_mailbox(&self, id: u64) -> Mailbox {
        self.core.borrow_mut().take_mailbox(id)
    }

    pub(crate) fn note_bus_drop(&self, sub: u64) {
        self.core.borrow_mut().bus.note_drop(sub);
    }
}

/// What a factory gets to build one process.
pub struct Spawning<'a> {
    pub pid: &'a Pid,
    pub entry: &'a Rc<Entry>,
    pub args: Vec<Value>,
    /// The process runs on the terminal host (reads stdin, gets the CLI arguments).
    pub terminal: bool,
    /// Entries a registry change replaced or removed since the last spawn (compiled code to drop).
    pub stale: Vec<String>,
    /// The live entries, for resolving imports.
    pub lookup: &'a dyn Fn(&str) -> Option<Rc<Entry>>,
}

/// Builds process objects for entries of one kind (the Lua runtime for `process.lua`).
pub trait Factory {
    fn create(&mut self, sp: Spawning<'_>) -> Result<Box<dyn Process>, ErrorValue>;
}

/// The driver-facing node: `handle`, `run`, `poll_output`, `poll_timeout`. Its state (`Core`)
/// is private to the engine; process runtimes reach it only through a `Port`.
pub struct Node {
    pub(crate) core: Rc<RefCell<Core>>,
    procs: BTreeMap<u64, Box<dyn Process>>,
    pub(crate) factories: BTreeMap<String, Box<dyn Factory>>,
}

impl Node {
    /// Starts building a node: configuration, entries, factories, then `build`.
    pub fn builder(cfg: NodeConfig) -> NodeBuilder {
        NodeBuilder::new(cfg)
    }

    pub(crate) fn bare(cfg: NodeConfig) -> Node {
        Node {
            core: Rc::new(RefCell::new(Core::new(cfg))),
            procs: BTreeMap::new(),
            factories: BTreeMap::new(),
        }
    }

    /// The port process runtimes dispatch their commands through.
    pub(crate) fn port(&self) -> Port {
        Port {
            core: self.core.clone(),
        }
    }

    /// Delivers something from the world.
    pub fn handle(&mut self, now: Instant, input: Input) {
        let mut core = self.core.borrow_mut();
        core.now = core.now.max(now);
        match input {
            Input::Completed { pid, tag, result } => core.complete(&pid, tag, result),
            Input::Signal(_) if core.is_stopping() => {
                // A second signal: stop at once.
                core.shutdown = Shutdown::Done;
                core.emit(Output::Exit(1));
            }
            Input::Signal(_) => core.begin_shutdown(0),
        }
    }

    /// Starts a root process (no parent): `terminal` runs it on the terminal host, and its end
    /// ends the node.
    pub fn spawn(
        &mut self,
        entry: &str,
        host: &str,
        args: Vec<Value>,
        terminal: bool,
    ) -> Result<Pid, ErrorValue> {
        self.core.borrow_mut().spawn(
            entry,
            host,
            args,
            SpawnOptions {
                terminal,
                ..Default::default()
            },
        )
    }

    fn materialize(&mut self) {
        loop {
            let Some(sp) = self.core.borrow_mut().take_spawn() else {
                return;
            };
            let (pid, terminal, stale) = {
                let mut core = self.core.borrow_mut();
                let Some(info) = core.proc(sp.proc) else {
                    continue; // killed before it was built
                };
                let (pid, terminal) = (info.pid.clone(), info.terminal);
                (pid, terminal, core.registry.take_stale())
            };
            // function.lua entries run on the Lua runtime registered for process.lua.
            let fkind = match sp.entry.kind.as_str() {
                "function.lua" if !self.factories.contains_key("function.lua") => "process.lua",
                k => k,
            };
            let made = {
                let core = self.core.borrow();
                let lookup = |id: &str| core.entries.get(id).cloned();
                match self.factories.get_mut(fkind) {
                    Some(f) => f.create(Spawning {
                        pid: &pid,
                        entry: &sp.entry,
                        args: sp.args,
                        terminal,
                        stale,
                        lookup: &lookup,
                    }),
                    None => Err(ErrorValue::new(
                        kind::INVALID,
                        format!(
                            "no runtime for entry kind {} ({})",
                            sp.entry.kind, sp.entry.id
                        ),
                    )),
                }
            };
            match made {
                Ok(p) => {
                    self.procs.insert(sp.proc, p);
                    self.core.borrow_mut().sched.add(sp.proc);
                }
                Err(e) => self.core.borrow_mut().finish(sp.proc, Err(e)),
            }
        }
    }

    fn reap(&mut self) {
        let killed = self.core.borrow_mut().take_killed();
        for id in killed {
            if let Some(mut p) = self.procs.remove(&id) {
                p.close();
            }
        }
    }

    /// Fires due timers and steps up to `budget` ready processes.
    pub fn run(&mut self, now: Instant, budget: usize) -> Work {
        {
            let mut core = self.core.borrow_mut();
            core.now = core.now.max(now);
            core.fire_timers(now);
        }
        self.materialize();
        self.reap();
        let port = self.port();
        for _ in 0..budget {
            let next = self.core.borrow_mut().sched.pick();
            let Some(id) = next else {
                break;
            };
            let (pid, step_budget) = {
                let mut core = self.core.borrow_mut();
                let budget = core.next_step_budget();
                match core.pid_of(id) {
                    Some(p) => (p.clone(), budget),
                    None => continue,
                }
            };
            let Some(proc) = self.procs.get_mut(&id) else {
                self.core.borrow_mut().sched.remove(id);
                continue;
            };
            let mut cx = Cx {
                port: &port,
                pid: &pid,
                budget: step_budget,
            };
            let step = proc.step(&mut cx);
            let alive = self.core.borrow().is_alive(id);
            let outcome = match step {
                _ if !alive => Outcome::Exited,
                Step::Yielded => Outcome::Yielded,
                Step::Waiting => Outcome::Waiting,
                Step::Exited(r) => {
                    self.core.borrow_mut().finish(id, r);
                    Outcome::Exited
                }
            };
            self.core.borrow_mut().sched.finish(id, outcome);
            if outcome == Outcome::Exited {
                if let Some(mut p) = self.procs.remove(&id) {
                    p.close();
                }
            }
            self.materialize();
            self.reap();
        }
        if self.core.borrow().sched.has_ready() {
            Work::More
        } else {
            Work::Idle
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.core.borrow_mut().outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.borrow().timers.next_deadline()
    }

    pub fn is_done(&self) -> bool {
        self.core.borrow().is_done()
    }

    /// Counters since the node started.
    pub fn stats(&self) -> Stats {
        self.core.borrow().stats.clone()
    }

    pub fn process_count(&self) -> usize {
        self.core.borrow().process_count()
    }

    /// Each supervised service: its id, state, whether it starts with the node, and whether a
    /// restart is scheduled.
    pub fn services(&self) -> Vec<ServiceStatus> {
        self.core
            .borrow()
            .services
            .iter()
            .map(|s| ServiceStatus {
                id: s.id.clone(),
                state: s.state,
                auto_start: s.lifecycle.auto_start,
                restart_pending: s.timer.is_some(),
            })
            .collect()
    }

    /// Processes that hold a name, in id order (for invariant checks).
    pub fn name_owners(&self) -> Vec<u64> {
        self.core.borrow().names.owners()
    }

    /// The ids of registered commands with their module and name.
    pub fn commands(&self) -> Vec<(CommandId, String, String)> {
        self.core
            .borrow()
            .commands
            .ids()
            .into_iter()
            .map(|(id, m, n)| (id, m.to_string(), n.to_string()))
            .collect()
    }

    /// The simulator's control surface: faults and seeded choices injected from outside.
    /// Production drivers have no business here.
    pub fn sim_control(&mut self) -> SimControl<'_> {
        SimControl { node: self }
    }
}

/// One supervised service as `Node::services` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    pub id: String,
    pub state: ServiceState,
    pub auto_start: bool,
    pub restart_pending: bool,
}

/// What the simulator may do to a running node, and nothing more (see `Node::sim_control`).
pub struct SimControl<'a> {
    node: &'a mut Node,
}

impl SimControl<'_> {
    /// Processes alive now, in id order.
    pub fn live_processes(&self) -> Vec<u64> {
        self.node.core.borrow().live_processes()
    }

    /// Kills a process as a crash would (monitors and links fire as for any failure).
    pub fn kill(&mut self, proc: u64, reason: &str) {
        self.node
            .core
            .borrow_mut()
            .kill(proc, ErrorValue::new(kind::CANCELED, reason));
    }

    /// Delivers a stray message with no sender.
    pub fn noise(&mut self, to: u64, topic: &str) {
        self.node
            .core
            .borrow_mut()
            .deliver(None, to, topic.to_string(), vec![]);
    }

    /// Lets the process `n` places back in the ready queue run first.
    pub fn rotate(&mut self, n: usize) {
        self.node.core.borrow_mut().sched.rotate(n);
    }

    /// Turns the engine's BUGGIFY sites on or off.
    pub fn set_buggify(&mut self, on: bool) {
        self.node.core.borrow_mut().buggify = on;
    }

    /// Records an injected fault in the trace.
    pub fn trace_fault(&mut self, kind: &str, detail: &str) {
        self.node
            .core
            .borrow_mut()
            .trace(TraceEvent::Fault { kind, detail });
    }
}

/// Restores a registry history into a booting node (the world's SQLite store; nothing in
/// tests). The engine never reads it itself.
pub trait RegistryHistory {
    /// The stored versions and the stored head; None when nothing was ever stored.
    fn load(&mut self) -> Result<Option<StoredHistory>, String>;
    /// After boot: how the history combined with the files, and the current version
    /// `(id, ops)` for the store to keep when it did not already hold it.
    fn booted(
        &mut self,
        restored: crate::registry::Restored,
        current: Option<(u64, Value)>,
    ) -> Result<(), String>;
}

/// A stored registry history: versions in order and the head `apply_version` moved to.
#[derive(Clone, Debug, Default)]
pub struct StoredHistory {
    pub versions: Vec<(u64, Vec<crate::registry::Op>)>,
    pub head: Option<u64>,
    /// The latest stored full state `(version, state)`, when the store keeps snapshots: only
    /// the versions after it are replayed.
    pub snapshot: Option<(u64, crate::registry::State)>,
}

/// Assembles a node: configuration, entries (booted or preloaded), hosts, factories, the Lua
/// runtime, a registry history, an observer and simulator settings. The one place a node is
/// put together, for drivers, the simulator, benches and tests alike.
pub struct NodeBuilder {
    cfg: NodeConfig,
    log_min: Level,
    boot: Option<Vec<Entry>>,
    preload: Vec<Entry>,
    hosts: Vec<(String, String)>,
    env_files: BTreeMap<String, BTreeMap<String, String>>,
    lua: bool,
    factories: Vec<(String, Box<dyn Factory>)>,
    observer: Option<Observer>,
    buggify: bool,
    planted: Planted,
    commands: Vec<(
        CommandId,
        &'static str,
        &'static str,
        crate::command::Handler,
    )>,
}

/// A built node and what its boot reported.
pub struct Built {
    pub node: Node,
    pub report: crate::boot::BootReport,
}

impl NodeBuilder {
    fn new(cfg: NodeConfig) -> NodeBuilder {
        NodeBuilder {
            cfg,
            log_min: Level::Info,
            boot: None,
            preload: Vec::new(),
            hosts: Vec::new(),
            env_files: BTreeMap::new(),
            lua: false,
            factories: Vec::new(),
            observer: None,
            buggify: false,
            planted: Planted::default(),
            commands: Vec::new(),
        }
    }

    /// Log records below this level are not emitted.
    pub fn log_level(mut self, l: Level) -> Self {
        self.log_min = l;
        self
    }

    /// The app's entries, booted: kinds checked, Lua compiled, services started.
    pub fn entries(mut self, entries: Vec<Entry>) -> Self {
        self.boot = Some(entries);
        self
    }

    /// Entries registered as they are, without boot (tests and benches).
    pub fn preload(mut self, entries: Vec<Entry>) -> Self {
        self.preload = entries;
        self
    }

    /// A running host (`process.host` or `terminal.host`) besides those boot starts.
    pub fn host(mut self, id: &str, kind: &str) -> Self {
        self.hosts.push((id.to_string(), kind.to_string()));
        self
    }

    /// Contents of the `.env` files env storages read (path → key → value).
    pub fn env_files(mut self, f: BTreeMap<String, BTreeMap<String, String>>) -> Self {
        self.env_files = f;
        self
    }

    /// Runs `process.lua`, `function.lua` and `library.lua` entries on the Luau runtime.
    pub fn lua(mut self) -> Self {
        self.lua = true;
        self
    }

    /// Builds processes of entries of `kind` (e.g. native Rust processes in tests and benches).
    pub fn factory(mut self, kind: &str, f: Box<dyn Factory>) -> Self {
        self.factories.push((kind.to_string(), f));
        self
    }

    /// Receives every trace event (the simulator's checker and trace hash).
    pub fn observer(mut self, o: Observer) -> Self {
        self.observer = Some(o);
        self
    }

    /// Seeded BUGGIFY sites on (simulation only).
    pub fn buggify(mut self, on: bool) -> Self {
        self.buggify = on;
        self
    }

    /// Bugs planted on purpose, for tests of the simulator itself.
    pub fn planted(mut self, p: Planted) -> Self {
        self.planted = p;
        self
    }

    /// A command of an extra module; a clash with a registered id fails `build` naming both.
    #[allow(dead_code)]
    pub(crate) fn command(
        mut self,
        id: CommandId,
        module: &'static str,
        name: &'static str,
        handler: crate::command::Handler,
    ) -> Self {
        self.commands.push((id, module, name, handler));
        self
    }

    /// Assembles the node; `history` restores a stored registry history after boot.
    pub fn build(
        self,
        history: Option<&mut dyn RegistryHistory>,
    ) -> Result<Built, crate::boot::BootError> {
        let mut node = Node::bare(self.cfg);
        let boot_err = |message: String| crate::boot::BootError {
            file: None,
            line: None,
            entry: None,
            message,
        };
        {
            let mut c = node.core.borrow_mut();
            c.log_min = self.log_min;
            c.buggify = self.buggify;
            c.planted = self.planted;
            c.env.files = self.env_files;
            if let Some(o) = self.observer {
                c.set_observer(o);
            }
            if !self.commands.is_empty() {
                let mut r =
                    CommandRegistry::with_builtins().map_err(|e| boot_err(e.to_string()))?;
                for (id, module, name, h) in self.commands {
                    r.register(id, module, name, h)
                        .map_err(|e| boot_err(e.to_string()))?;
                }
                r.freeze();
                c.commands = r;
            }
            for e in self.preload {
                c.entries.insert(e.id.clone(), Rc::new(e));
            }
            for (id, kind) in self.hosts {
                c.hosts.insert(id, kind);
            }
        }
        let mut lua = if self.lua || self.boot.is_some() {
            let l = crate::lua::LuaRuntime::new(node.port())
                .map_err(|e| boot_err(format!("starting Lua: {e}")))?;
            Some(l)
        } else {
            None
        };
        let mut report = crate::boot::BootReport::default();
        if let Some(entries) = self.boot {
            let lua = lua.as_mut().expect("created above");
            report = crate::boot::boot(&mut node.core.borrow_mut(), lua, entries)?;
        } else if let Some(lua) = lua.as_mut() {
            let c = node.core.borrow();
            for e in c.entries.values() {
                if e.kind.ends_with(".lua") {
                    lua.prepare(e)
                        .map_err(|ce| boot_err(format!("entry '{}': {}", ce.entry, ce.message)))?;
                }
            }
        }
        if let Some(h) = history {
            let stored = h.load().map_err(boot_err)?;
            let mut c = node.core.borrow_mut();
            let (versions, head, snapshot) = match stored {
                Some(s) => (s.versions, s.head, s.snapshot),
                None => (Vec::new(), None, None),
            };
            let restored = crate::registry::restore(&mut c, versions, snapshot);
            if restored == crate::registry::Restored::Resumed {
                if let Some(head) = head {
                    crate::registry::restore_head(&mut c, head);
                }
            }
            let current = c
                .registry
                .current()
                .map(|v| (v.id, crate::registry::ops_to_value(&v.ops)));
            drop(c);
            h.booted(restored, current).map_err(boot_err)?;
        }
        if let Some(lua) = lua {
            node.factories
                .insert("process.lua".to_string(), Box::new(lua));
        }
        for (kind, f) in self.factories {
            node.factories.insert(kind, f);
        }
        Ok(Built { node, report })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Table;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn core() -> Core {
        let mut c = Core::new(NodeConfig::default());
        c.entries.insert(
            "t:p".into(),
            Rc::new(Entry {
                id: "t:p".into(),
                kind: "native".into(),
                data: Table::default(),
                ..Default::default()
            }),
        );
        c.hosts.insert("t:h".into(), "process.host".into());
        c
    }

    fn spawn(c: &mut Core) -> u64 {
        c.spawn("t:p", "t:h", vec![], SpawnOptions::default())
            .unwrap()
            .uniq
    }

    #[test]
    fn send_by_name_and_pid_and_release_on_exit() {
        let mut c = core();
        let a = spawn(&mut c);
        let b = spawn(&mut c);
        c.register_name("relay", b).unwrap();
        c.send(Some(a), "relay", "t".into(), vec![Value::Int(1)])
            .unwrap();
        let pid_b = c.pid_of(b).unwrap().to_string();
        c.send(Some(a), &pid_b, "t".into(), vec![Value::Int(2)])
            .unwrap();
        let mb = c.take_mailbox(b);
        assert_eq!(mb.messages.len(), 2);
        assert_eq!(mb.messages[0].from.as_ref().map(|p| p.uniq), Some(a));
        c.finish(b, Ok(Value::Nil));
        assert_eq!(
            c.send(Some(a), "relay", "t".into(), vec![])
                .unwrap_err()
                .kind,
            kind::NOT_FOUND
        );
        let e = c.send(Some(a), &pid_b, "t".into(), vec![]).unwrap_err();
        assert!(e.message.contains("not found"), "{}", e.message);
        assert_eq!(
            c.send(Some(a), "x", "@sys".into(), vec![])
                .unwrap_err()
                .kind,
            kind::INVALID
        );
    }

    #[test]
    fn link_failure_cascades_unless_trapped() {
        let mut c = core();
        let (a, b, w) = (spawn(&mut c), spawn(&mut c), spawn(&mut c));
        c.topology.link(a, b);
        c.topology.monitor(w, a);
        c.finish(b, Err(ErrorValue::new(kind::INTERNAL, "boom")));
        assert!(!c.is_alive(a), "linked process dies with its peer");
        let ev = &c.take_mailbox(w).events[0];
        assert_eq!(ev.kind, EventKind::Exit);
        assert_eq!(
            ev.result.as_ref().unwrap().as_ref().unwrap_err().message,
            "linked process failed"
        );

        let (a, b) = (spawn(&mut c), spawn(&mut c));
        c.proc_mut(a).unwrap().trap_links = true;
        c.topology.link(a, b);
        c.finish(b, Err(ErrorValue::new(kind::INTERNAL, "boom")));
        assert!(c.is_alive(a));
        assert_eq!(c.take_mailbox(a).events[0].kind, EventKind::LinkDown);

        let (a, b) = (spawn(&mut c), spawn(&mut c));
        c.topology.link(a, b);
        c.finish(b, Ok(Value::Int(0)));
        assert!(c.is_alive(a), "a normal exit sends no LINK_DOWN");
        assert!(c.take_mailbox(a).events.is_empty());
    }

    #[test]
    fn completions_apply_once() {
        let mut c = core();
        let a = spawn(&mut c);
        let tag = c
            .execute(a, crate::command::ids::TERMINAL_READ_LINE, vec![])
            .unwrap();
        let pid = c.pid_of(a).unwrap().clone();
        c.complete(&pid, tag, Ok(Value::from("x")));
        c.complete(&pid, tag, Ok(Value::from("again")));
        c.complete(&pid, 999, Ok(Value::Nil));
        assert_eq!(c.take_mailbox(a).signals.len(), 1);
        assert_eq!(c.stats.completions_dropped, 2);
        c.finish(a, Ok(Value::Nil));
        c.complete(&pid, tag, Ok(Value::Nil));
        assert_eq!(
            c.stats.completions_dropped, 3,
            "completion for a dead process is dropped"
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Spawn,
        Send(u8, u8),
        Kill(u8),
        Monitor(u8, u8),
        Register(u8, u8),
        Take(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => Just(Op::Spawn),
            4 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Send(a, b)),
            1 => any::<u8>().prop_map(Op::Kill),
            2 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Monitor(a, b)),
            1 => (any::<u8>(), 0u8..4).prop_map(|(a, n)| Op::Register(a, n)),
            2 => any::<u8>().prop_map(Op::Take),
        ]
    }

    proptest! {
        /// The relay against a reference model: per-sender FIFO, no delivery to the dead, exactly
        /// one EXIT per monitor per death, names released with their owner.
        #[test]
        fn relay_matches_model(ops in proptest::collection::vec(op(), 1..300)) {
            let mut c = core();
            let mut ids: Vec<u64> = (0..3).map(|_| spawn(&mut c)).collect();
            let mut alive: BTreeSet<u64> = ids.iter().copied().collect();
            let mut seq = 0i64;
            let mut last_seen: BTreeMap<(u64, u64), i64> = BTreeMap::new();
            let mut monitors: BTreeSet<(u64, u64)> = BTreeSet::new();
            let mut exits: BTreeMap<(u64, u64), u32> = BTreeMap::new();
            let mut names: BTreeMap<String, u64> = BTreeMap::new();
            let mut owed: BTreeSet<(u64, u64)> = BTreeSet::new();
            let pick = |ids: &Vec<u64>, i: u8| ids[i as usize % ids.len()];
            for o in ops {
                match o {
                    Op::Spawn => { let id = spawn(&mut c); ids.push(id); alive.insert(id); }
                    Op::Send(a, b) => {
                        let (a, b) = (pick(&ids, a), pick(&ids, b));
                        if !alive.contains(&a) { continue; }
                        seq += 1;
                        let dest = format!("{{t:h|0x{:05x}}}", b);
                        let r = c.send(Some(a), &dest, "m".into(), vec![Value::Int(seq)]);
                        prop_assert_eq!(r.is_ok(), alive.contains(&b), "send to {} alive={}", b, alive.contains(&b));
                    }
                    Op::Kill(a) => {
                        let a = pick(&ids, a);
                        if !alive.contains(&a) { continue; }
                        c.kill(a, ErrorValue::new(kind::CANCELED, "killed"));
                        alive.remove(&a);
                        owed.extend(monitors.iter().filter(|(_, t)| *t == a).copied());
                        for (n, owner) in names.clone() { if owner == a { names.remove(&n); } }
                        monitors.retain(|(w, t)| *w != a && *t != a);
                    }
                    Op::Monitor(w, t) => {
                        let (w, t) = (pick(&ids, w), pick(&ids, t));
                        if !alive.contains(&w) || !alive.contains(&t) || w == t { continue; }
                        let dest = format!("{{t:h|0x{:05x}}}", t);
                        c.monitor(w, &dest).unwrap();
                        monitors.insert((w, t));
                    }
                    Op::Register(a, n) => {
                        let a = pick(&ids, a);
                        if !alive.contains(&a) { continue; }
                        let name = format!("n{n}");
                        let r = c.register_name(&name, a);
                        let want_ok = names.get(&name).is_none_or(|o| *o == a);
                        prop_assert_eq!(r.is_ok(), want_ok);
                        if want_ok { names.insert(name, a); }
                    }
                    Op::Take(a) => {
                        let a = pick(&ids, a);
                        let mb = c.take_mailbox(a);
                        prop_assert!(alive.contains(&a) || mb.is_empty(), "a dead process holds mail");
                        for m in mb.messages {
                            let from = m.from.as_ref().unwrap().uniq;
                            let Value::Int(s) = m.payload[0] else { panic!("payload") };
                            let last = last_seen.entry((from, a)).or_insert(0);
                            prop_assert!(s > *last, "per-sender order broken: {} after {}", s, last);
                            *last = s;
                        }
                        for e in mb.events {
                            if e.kind == EventKind::Exit {
                                *exits.entry((a, e.from.uniq)).or_insert(0) += 1;
                            }
                        }
                    }
                }
                for (n, owner) in &names {
                    prop_assert_eq!(c.names.lookup(n), Some(*owner));
                }
                prop_assert!(c.names.len() == names.len(), "a dead owner's name survived");
            }
            for id in ids.clone() {
                for e in c.take_mailbox(id).events {
                    if e.kind == EventKind::Exit { *exits.entry((id, e.from.uniq)).or_insert(0) += 1; }
                }
            }
            for (pair, n) in &exits {
                prop_assert_eq!(*n, 1, "EXIT count for watcher/target {:?}", pair);
            }
            // Every watcher still alive got its EXIT for every monitored death.
            let got: BTreeSet<(u64, u64)> = exits.keys().filter(|(w, _)| alive.contains(w)).copied().collect();
            let want: BTreeSet<(u64, u64)> = owed.into_iter().filter(|(w, _)| alive.contains(w)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
