//! The node's state (`Core`) and what every part of it uses: the clock it was handed, its
//! seeded generator, outputs, logs, traces, and command dispatch through the registry.
//! Its methods are spread over the files named for what they do (relay, proctable, exits, …).

use crate::command::{Command, CommandRegistry, Reply};
use crate::entries::{Entry, EntryKind};
use crate::node::*;
use crate::pid::Pid;
use crate::relay::{Names, Signal};
use crate::scheduler::Scheduler;
use crate::supervisor::Service;
use crate::timers::Timers;
use crate::trace::{Observer, TraceEvent};
use crate::value::{kind, ErrorValue, Value};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

pub(crate) struct Core {
    pub(crate) now: Instant,
    pub(crate) node: crate::pid::NodeId,
    pub(crate) cfg: NodeConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) next_uniq: u64,
    pub(crate) procs: BTreeMap<u64, ProcInfo>,
    pub(crate) names: Names,
    pub(crate) topology: crate::topology::Topology,
    pub(crate) timers: Timers,
    pub(crate) sched: Scheduler,
    pub(crate) commands: CommandRegistry,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) spawns: VecDeque<PendingSpawn>,
    pub(crate) killed: Vec<u64>,
    pub(crate) entries: BTreeMap<String, Rc<Entry>>,
    /// Versions of `entries` (which stays the live view of the current one).
    pub(crate) registry: crate::registry::Registry,
    /// process.host / terminal.host ids that are running.
    pub(crate) hosts: BTreeMap<String, EntryKind>,
    pub(crate) services: Vec<Service>,
    pub(crate) start_order: Vec<usize>,
    pub(crate) shutdown: Shutdown,
    pub(crate) stats: Stats,
    pub(crate) log_min: Level,
    pub(crate) observer: Option<Observer>,
    pub(crate) next_msg_seq: u64,
    /// BUGGIFY: seeded decisions that force rare paths; the simulator turns it on.
    pub(crate) buggify: bool,
    /// Bugs planted on purpose so tests can show the simulator finds them. Off unless a test sets them.
    pub(crate) planted: Planted,
    /// The node's event bus (`events` module and system topics).
    pub(crate) bus: crate::eventbus::Bus,
    /// Env storages and variables (`env` module, `${env:NAME}` at boot).
    pub(crate) env: crate::env::EnvState,
    /// Simulation only: messages between processes arrive after a seeded delay below this
    /// (0: at once, as in production).
    pub(crate) delivery_delay_ns: u64,
    /// Simulation only: the wall clock's offset from epoch + monotonic time (clock skew and
    /// jumps); the monotonic clock never moves with it.
    pub(crate) wall_offset_ns: i64,
    /// Per (sender, receiver): when its last delayed message arrives (FIFO floor).
    pub(crate) last_delivery: BTreeMap<(u64, u64), Instant>,
    /// Messages held back by the delivery delay, by timer key.
    pub(crate) delayed: BTreeMap<u64, (u64, crate::relay::Message)>,
    pub(crate) next_delayed: u64,
    /// The cluster layer (peers, remote operations, cluster-wide names, membership); None on a
    /// standalone node.
    pub(crate) cluster: Option<Box<crate::cluster::Cluster>>,
    /// Collective dispatch (`dispatch::node`): the node's collector; None on a standalone node.
    pub(crate) dispatch: Option<Box<crate::dispatch::node::NodeDispatch>>,
    /// The step running now queued a frame for a peer while no other process was ready: the
    /// process yields at its next preemption point and the slice ends, so the frame reaches the
    /// driver (and the wire) before the rest of the step runs (`Node::run`).
    pub(crate) flush_soon: bool,
}

/// Deliberate bugs behind a test-only switch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Planted {
    /// Some deaths send a monitor its EXIT twice.
    pub double_exit: bool,
    /// A node death forgets one EXIT of one monitor of one of its processes.
    pub forget_remote_exit: bool,
}

impl Core {
    pub(crate) fn new(cfg: NodeConfig) -> Core {
        let mut commands =
            CommandRegistry::with_builtins().expect("built-in command ids are distinct");
        commands.freeze();
        let cfg_env_os = cfg.env_os.iter().cloned().collect();
        let cluster = cfg
            .cluster
            .as_ref()
            .map(|c| Box::new(crate::cluster::Cluster::new(c, cfg.seed)));
        let dispatch = cfg
            .cluster
            .as_ref()
            .map(|c| Box::new(crate::dispatch::node::NodeDispatch::new(c, cfg.seed)));
        Core {
            now: 0,
            node: cluster
                .as_ref()
                .map(|c| c.cfg.node.clone())
                .unwrap_or_else(crate::pid::NodeId::local),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            next_uniq: cluster.as_ref().map_or(0, |c| c.pid_base()),
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
            delivery_delay_ns: 0,
            wall_offset_ns: 0,
            last_delivery: BTreeMap::new(),
            delayed: BTreeMap::new(),
            next_delayed: 0,
            cluster,
            dispatch,
            flush_soon: false,
        }
    }

    /// Installs the observer that receives every trace event (the simulator's).
    pub fn set_observer(&mut self, o: Observer) {
        self.observer = Some(o);
    }

    /// Whether anyone watches the trace (text made only for it can be skipped otherwise).
    pub(crate) fn tracing(&self) -> bool {
        self.observer.is_some()
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
        self.cfg
            .wall_epoch_ns
            .saturating_add(self.now as i64)
            .saturating_add(self.wall_offset_ns)
    }

    /// The budget for the next step: BUGGIFY sometimes shrinks it to force preemption paths.
    pub fn next_step_budget(&mut self) -> u32 {
        if self.buggify("step.budget") {
            return 16;
        }
        self.cfg.step_budget
    }

    /// A draw from the node's seeded generator.
    pub fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    pub(crate) fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

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
    pub(crate) fn world(&mut self, caller: u64, cmd: crate::world::WorldCommand) -> Reply {
        match self.execute(caller, cmd) {
            Some(tag) => Reply::Pending(tag),
            None => Reply::err(err(kind::INTERNAL, "process not registered")),
        }
    }

    /// A world command whose answer nobody waits for (a closing process's clean-up): tag 0 is
    /// never issued, so its completion is dropped.
    pub(crate) fn execute_detached(&mut self, caller: u64, cmd: crate::world::WorldCommand) {
        let pid = self
            .pid_of(caller)
            .cloned()
            .unwrap_or_else(|| Pid::new(Arc::from(CONTROL_HOST), caller));
        self.outputs.push_back(Output::Execute { pid, tag: 0, cmd });
    }

    /// Issues a tag and asks the driver to run `cmd`; the completion comes back as a Signal.
    pub fn execute(&mut self, proc: u64, cmd: crate::world::WorldCommand) -> Option<u64> {
        debug_assert!(
            self.commands.lookup(cmd.id()).is_some(),
            "unregistered command {cmd:?}"
        );
        let p = self.procs.get_mut(&proc)?;
        let y = p.tags.issue(cmd.id());
        let pid = p.pid.clone();
        self.outputs.push_back(Output::Execute {
            pid,
            tag: y.tag,
            cmd,
        });
        Some(y.tag)
    }

    /// The node's identity; every PID it makes carries it.
    pub fn node_id(&self) -> &crate::pid::NodeId {
        &self.node
    }

    pub(crate) fn complete(&mut self, pid: &Pid, tag: u64, result: Result<Value, ErrorValue>) {
        let Some(result) = self.dispatch_completion(pid, tag, result) else {
            return;
        };
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

/// An error value of kind `k` (the node's handlers build many).
pub(crate) fn err(k: crate::value::ErrorKind, m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(k, m)
}
