//! One runtime instance: `Core` (all node state that commands touch) and `Node` (the driver-facing
//! sans-IO surface: handle / run / poll_output / poll_timeout). No clocks, threads or I/O in here.

use crate::command::{Command, CommandId, CommandRegistry, Reply};
use crate::entries::{Entry, EntryKind};
use crate::pid::Pid;
use crate::process::{Cx, Process, Step};
use crate::relay::Mailbox;
use crate::scheduler::Outcome;
pub use crate::supervisor::ServiceState;
use crate::trace::{Observer, TraceEvent};
use crate::value::{kind, ErrorValue, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

pub(crate) use crate::core::Core;
pub use crate::core::Planted;
pub use crate::proctable::{PendingSpawn, ProcInfo, SpawnOptions};
pub(crate) use crate::shutdown::Shutdown;

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
        cmd: crate::world::WorldCommand,
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
    /// A relay frame for another node of the cluster, sent on this node's connection to it, in
    /// order. With no connection open, the driver opens one to the address of the node's last
    /// `PeerUp` and sends `Node::hello()` first on it (every new connection starts so); frames
    /// for a node it cannot reach are dropped (the membership or `Input::NodeDown` tells the
    /// node). A standalone node sends none.
    Transmit {
        to_node: crate::pid::NodeId,
        bytes: Vec<u8>,
    },
    /// A membership (SWIM) datagram for the member at `addr`: best effort, may be lost.
    Datagram {
        addr: String,
        bytes: Vec<u8>,
    },
    /// The membership holds `node` up at `addr` (this incarnation of it): the driver may open
    /// the relay connection now, or on the first `Transmit`.
    PeerUp {
        node: crate::pid::NodeId,
        addr: String,
        incarnation: u64,
    },
    /// The node is down (or restarted as a new incarnation): close connections to it; a later
    /// `PeerUp` names where it is again.
    PeerDown {
        node: crate::pid::NodeId,
    },
    /// Collective dispatch: send `request` to the foreign collector `peer` at `address` (dial
    /// lazily, one client per address); answer with `Input::DispatchReply { call }`, or let
    /// `deadline` pass (the node times the call out itself). Weft nodes of one cluster reach
    /// each other through relay frames instead; this is for collectors met through `Connect`.
    DispatchSend {
        call: crate::dispatch::collector::CallId,
        peer: String,
        address: String,
        request: crate::dispatch::Request,
        deadline: Instant,
    },
    /// The reply to the inbound dispatch RPC `req` (`Input::Dispatch`); exactly one per request.
    DispatchRespond {
        req: crate::dispatch::collector::ReqId,
        response: crate::dispatch::Response,
    },
    /// Nobody waits for `DispatchSend { call }` any more (its request was cancelled or timed
    /// out): drop the RPC, which resets its stream, so the foreign collector can stop its run.
    /// No `DispatchReply` is expected for it.
    DispatchAbort {
        call: crate::dispatch::collector::CallId,
    },
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
    /// A relay frame another node sent. `from_node` is the node the connection belongs to as
    /// the driver knows it; the engine trusts nothing on a connection before its `Hello` frame
    /// (which proves the cluster secret and names the node and its incarnation).
    Frame {
        from_node: crate::pid::NodeId,
        bytes: Vec<u8>,
    },
    /// The transport lost a node (its connection closed or failed): the node treats it as down
    /// until it is heard from again.
    NodeDown {
        node: crate::pid::NodeId,
        reason: String,
    },
    /// A membership (SWIM) datagram that arrived on this node's address.
    Datagram {
        bytes: Vec<u8>,
    },
    /// An inbound `collector.CollectiveDispatcher` RPC (`Connect`, `Serve` or `Dispatch`) the
    /// driver numbered `req`; `deadline` is its `grpc-timeout` on the node's clock. Answered by
    /// exactly one `Output::DispatchRespond { req }`.
    Dispatch {
        req: crate::dispatch::collector::ReqId,
        deadline: Option<Instant>,
        request: crate::dispatch::Request,
    },
    /// The caller of inbound request `req` went away before its answer (the gRPC client
    /// cancelled or hung up): the request is withdrawn, as a cancelled `funcs.call` is (a local
    /// handler is stopped, a peer's run is cancelled). Its `DispatchRespond` still comes.
    DispatchCancel {
        req: crate::dispatch::collector::ReqId,
    },
    /// The outcome of an `Output::DispatchSend { call }`: the peer's response, or a transport
    /// error (`TransportError::unsent` when nothing was written, `lost` after that).
    DispatchReply {
        call: crate::dispatch::collector::CallId,
        result: Result<crate::dispatch::Response, crate::dispatch::TransportError>,
    },
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
    /// What a step that ran its whole `step_budget` costs of a slice (`Node::run`'s `budget`)
    /// beyond the one every step costs; a shorter step pays its share (rounded down). With a
    /// large slice and a large cost, many short steps (a message in, a message out) run between
    /// two looks at the inputs, while the few long ones that fit keep timers on time.
    pub busy_step_cost: u32,
    /// The OS environment the driver hands in for `env.storage.os` (empty under the simulator).
    pub env_os: Vec<(String, String)>,
    /// Live processes the node allows at once; a spawn past it fails with an error value.
    pub max_processes: usize,
    /// This node's place in a cluster; None for a standalone node.
    pub cluster: Option<ClusterConfig>,
    /// What one process may use: memory, mailbox, time inside calls that cannot yield.
    pub limits: Limits,
    /// Lua objects get addresses that depend only on the node's own run (the simulator sets
    /// it, so `pairs()` over table or function keys replays; `lua/arena.rs`).
    pub deterministic_heap: bool,
}

/// Per-process and node-wide resource limits (README "Limits"); 0 turns a limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Interrupt ticks a step may run past its budget where Luau cannot yield (a `table.sort`
    /// comparator, a `string.gsub` callback, a metamethod, a pattern match) before the
    /// process is killed.
    pub step_ceiling: u32,
    /// Bytes of Lua heap one process may hold.
    pub process_memory: usize,
    /// Bytes of Lua heap the whole node may hold (allocations past it fail with an error).
    pub node_memory: usize,
    /// Messages waiting in one process's mailbox; a send past it fails.
    pub mailbox: usize,
}

/// A size or count as users write it: digits with an optional `K`, `M` or `G` suffix (binary
/// multiples; `KB`, `MiB` … too).
pub fn parse_size(s: &str) -> Option<usize> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let mult: usize = match t[split..].trim().to_ascii_uppercase().as_str() {
        "" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return None,
    };
    t[..split].parse::<usize>().ok()?.checked_mul(mult)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            step_ceiling: 1_000_000,
            process_memory: 256 << 20,
            node_memory: 4 << 30,
            mailbox: 100_000,
        }
    }
}

/// How a node takes part in a cluster (`weft run --node/--listen/--join`, `cluster.*` keys).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's name: PIDs print as `{name@host|0x…}`.
    pub node: crate::pid::NodeId,
    /// The address peers reach this node at (`host:port`; opaque to the engine).
    pub addr: String,
    /// This run of the node; a restart must hand a larger one (the driver uses its start time).
    pub incarnation: u64,
    /// The cluster's secret key: peers with another key never join.
    pub secret: Vec<u8>,
    /// Addresses of members to join through (any one that answers is enough).
    pub join: Vec<String>,
}

/// Live processes per node by default: well below where the Luau VM runs out of room for
/// threads (about 255k), and about 1.3 GB of idle processes.
pub const DEFAULT_MAX_PROCESSES: usize = 200_000;

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            seed: 0,
            wall_epoch_ns: 0,
            step_budget: 10_000,
            busy_step_cost: 1,
            env_os: Vec::new(),
            max_processes: DEFAULT_MAX_PROCESSES,
            cluster: None,
            limits: Limits::default(),
            deterministic_heap: false,
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
    /// Frames from other nodes this node could not take (a standalone node takes none): the
    /// sum of the reasons below.
    pub frames_dropped: u64,
    /// Relay frames sent to and taken from other nodes.
    pub frames_out: u64,
    pub frames_in: u64,
    /// Frames that did not decode (garbage, another version, truncated).
    pub frames_invalid: u64,
    /// Frames before a valid `Hello` on their connection, and `Hello`s with a wrong secret or
    /// node name.
    pub frames_unauthenticated: u64,
    /// Messages whose sequence number was at or below one already taken from their sender.
    pub frames_duplicate: u64,
    /// Frames about a PID of another incarnation of this node.
    pub frames_stale: u64,
    /// Frames for a process that is not alive here (or a name nobody holds), and answers
    /// nobody waits for any more.
    pub frames_dead: u64,
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
            Input::Frame { from_node, bytes } => core.cluster_frame(from_node, &bytes),
            Input::NodeDown { node, reason } => core.cluster_node_down(&node, &reason),
            Input::Datagram { bytes } => core.cluster_datagram(&bytes),
            Input::Dispatch {
                req,
                deadline,
                request,
            } => core.dispatch_request(req, deadline, request),
            Input::DispatchCancel { req } => core.dispatch_driver_cancel(req),
            Input::DispatchReply { call, result } => core.dispatch_reply(call, result),
        }
    }

    /// The frame that starts every relay connection this node opens (its `Hello`: node name,
    /// incarnation, proof of the cluster secret); None for a standalone node.
    pub fn hello(&self) -> Option<Vec<u8>> {
        self.core.borrow().cluster_hello()
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
            core.cluster_tick();
            core.dispatch_tick();
        }
        self.materialize();
        self.reap();
        let port = self.port();
        // Each step costs one, and `busy_step_cost` more per budget's worth it ran (a step killed
        // inside a C call may have run several).
        let busy_cost = u64::from(self.core.borrow().cfg.busy_step_cost);
        let mut left = budget;
        while left > 0 {
            left -= 1;
            let next = self.core.borrow_mut().sched.pick();
            let Some(id) = next else {
                break;
            };
            let (pid, step_budget) = {
                let mut core = self.core.borrow_mut();
                core.flush_soon = false;
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
                spent: 0,
                backlog: 0,
            };
            let step = proc.step(&mut cx);
            if let Some(p) = self.core.borrow_mut().procs.get_mut(&id) {
                p.backlog = cx.backlog;
            }
            let extra = u64::from(cx.spent) * busy_cost / u64::from(step_budget.max(1));
            left = left.saturating_sub(extra as usize);
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
            // The step sent a frame a peer may be waiting for, and nothing else was ready: end
            // the slice so the driver sends it now.
            if std::mem::take(&mut self.core.borrow_mut().flush_soon) {
                break;
            }
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
        let core = self.core.borrow();
        [
            core.timers.next_deadline(),
            core.cluster_poll_timeout(),
            core.dispatch_poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
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

/// What a live process is waiting for, as far as the node can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessWait {
    pub pid: String,
    pub entry: String,
    /// Commands it issued whose completion has not come back.
    pub pending_commands: usize,
    pub terminal: bool,
}

impl std::fmt::Display for ProcessWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}) ", self.pid, self.entry)?;
        match self.pending_commands {
            0 => write!(f, "waits for a message or event that nothing will send"),
            n => write!(
                f,
                "waits for {n} command completion(s) that will never come"
            ),
        }
    }
}

impl SimControl<'_> {
    /// What each live process waits for (deadlock reports).
    pub fn waits(&self) -> Vec<ProcessWait> {
        let c = self.node.core.borrow();
        c.live_processes()
            .into_iter()
            .filter_map(|id| c.proc(id))
            .map(|p| ProcessWait {
                pid: p.pid.to_string(),
                entry: p.entry.to_string(),
                pending_commands: p.tags.pending(),
                terminal: p.terminal,
            })
            .collect()
    }

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

    /// Lets the process `n` places back in the ready queue run first, the others keeping
    /// their order.
    pub fn promote(&mut self, n: usize) {
        self.node.core.borrow_mut().sched.promote(n);
    }

    /// Messages between processes arrive after a seeded delay below `max_ns` (0: at once).
    /// Per-sender FIFO holds; events (EXIT, LINK_DOWN, CANCEL) are not delayed, so a message
    /// may now arrive after an event sent later, as the runtime allows.
    pub fn set_delivery_delay(&mut self, max_ns: u64) {
        self.node.core.borrow_mut().delivery_delay_ns = max_ns;
    }

    /// Seeded exploration inside the node (from its seed): timers due at the same instant
    /// fire in seeded order (`ties`), ready coroutines of a process resume in seeded order
    /// (`coroutines`).
    pub fn set_explore(&mut self, ties: bool, coroutines: bool) {
        let mut c = self.node.core.borrow_mut();
        c.sched.explore = crate::scheduler::Explore::new(c.cfg.seed, ties, coroutines);
    }

    /// How many processes are ready to run.
    pub fn ready_len(&self) -> usize {
        self.node.core.borrow().sched.ready_len()
    }

    /// Sets the wall clock's offset (skew, or a jump forward or back); monotonic time stays.
    pub fn set_wall_offset(&mut self, offset_ns: i64) {
        self.node.core.borrow_mut().wall_offset_ns = offset_ns;
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
                c.hosts.insert(id, EntryKind::from(kind.as_str()));
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
                if e.kind.is_lua() {
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
        node.core.borrow_mut().dispatch_refresh();
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
    use crate::relay::EventKind;
    use crate::topology::ProcRef;
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
    fn the_relay_routes_other_nodes_away_and_a_standalone_node_drops_frames() {
        let mut c = core();
        let a = spawn(&mut c);
        let b = spawn(&mut c);
        let local = c.pid_of(b).unwrap().to_string();
        assert_eq!(c.route(&local).unwrap(), crate::relay::Route::Local(b));
        assert_eq!(
            c.route(&format!("{{local@t:h|0x{b:05x}}}")).unwrap(),
            crate::relay::Route::Local(b),
            "Wippy's 'local' node is this node"
        );
        // Same number, another node: never the local process.
        let remote = format!("{{n2@t:h|0x{b:05x}}}");
        assert_eq!(
            c.route(&remote).unwrap(),
            crate::relay::Route::Remote(crate::pid::NodeId::named("n2"))
        );
        let e = c.send(Some(a), &remote, "t".into(), vec![]).unwrap_err();
        assert_eq!(e.kind, kind::UNAVAILABLE);
        assert!(
            e.message.contains("node not connected: n2"),
            "{}",
            e.message
        );
        assert!(
            c.take_mailbox(b).is_empty(),
            "nothing reached the local process"
        );
        assert!(c.monitor(a, &remote).is_err());
        assert!(c.link(a, &remote).is_err());
        let e = c
            .spawn("t:p", "n3@t:h", vec![], SpawnOptions::default())
            .unwrap_err();
        assert!(
            e.message.contains("node not connected: n3"),
            "{}",
            e.message
        );

        let mut node = Node::bare(NodeConfig::default());
        node.handle(
            0,
            Input::Frame {
                from_node: crate::pid::NodeId::named("n2"),
                bytes: vec![1, 2, 3],
            },
        );
        assert_eq!(node.stats().frames_dropped, 1);
        node.handle(
            0,
            Input::NodeDown {
                node: crate::pid::NodeId::named("n2"),
                reason: "gone".into(),
            },
        );
        assert!(!node.is_done(), "a node going down does not stop this one");
    }

    #[test]
    fn link_failure_cascades_unless_trapped() {
        let mut c = core();
        let (a, b, w) = (spawn(&mut c), spawn(&mut c), spawn(&mut c));
        c.topology.link(ProcRef::Local(a), ProcRef::Local(b));
        c.topology.monitor(ProcRef::Local(w), ProcRef::Local(a));
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
        c.topology.link(ProcRef::Local(a), ProcRef::Local(b));
        c.finish(b, Err(ErrorValue::new(kind::INTERNAL, "boom")));
        assert!(c.is_alive(a));
        assert_eq!(c.take_mailbox(a).events[0].kind, EventKind::LinkDown);

        let (a, b) = (spawn(&mut c), spawn(&mut c));
        c.topology.link(ProcRef::Local(a), ProcRef::Local(b));
        c.finish(b, Ok(Value::Int(0)));
        assert!(c.is_alive(a), "a normal exit sends no LINK_DOWN");
        assert!(c.take_mailbox(a).events.is_empty());
    }

    #[test]
    fn completions_apply_once() {
        let mut c = core();
        let a = spawn(&mut c);
        let tag = c
            .execute(a, crate::world::WorldCommand::TerminalReadLine)
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
