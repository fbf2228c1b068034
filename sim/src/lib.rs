//! weft-sim: runs a Weft app on a virtual clock with seeded scheduling and injected faults,
//! checking invariants after every step. Same seed, same trace hash. No OS access in here.

pub mod check;
pub mod cluster;
mod dispatch;
pub mod exec;
pub mod explore;
pub mod faults;
pub mod net;
pub mod shrink;
pub mod storage;

use check::{Checker, Violation};
use exec::{sleep_until, ClockRef, Executor};
use explore::Explore;
use faults::Faults;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use weft_engine::entries::Entry;
use weft_engine::node::{Level, NodeConfig, Planted, ServiceState};
use weft_engine::trace::{TraceEvent, TraceHash};
use weft_engine::value::{kind, ErrorValue, Value};
use weft_engine::{drive, Driver, Input, Instant, Node, Output, Wake, Work};
use weft_world::{Storage, World};

/// Simulated wall clock at node start: 2026-01-01T00:00:00Z, so runs never depend on the date.
pub const EPOCH_NS: i64 = 1_767_225_600_000_000_000;
const SECOND: u64 = 1_000_000_000;
const RECENT_LINES: usize = 25;
/// Messages between processes take up to this long by default under the simulator, so seeds
/// explore the orders the runtime allows (`--delay`).
pub const DEFAULT_DELIVERY_DELAY_NS: u64 = 1_000_000;
/// Delivery delays a swarm draws from, per seed.
pub const SWARM_DELAYS_NS: [u64; 4] = [0, 100_000, 1_000_000, 5_000_000];
/// Virtual time one step costs while other work is waiting to run.
const BUSY_STEP_NS: u64 = 20_000;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Stop after this much simulated time.
    pub until_ns: u64,
    /// Process to run on the terminal host: (host, entry, args).
    pub exec: Option<(String, String, Vec<String>)>,
    /// Lines the terminal process reads; end of input after the last.
    pub input: Vec<String>,
    pub faults: Faults,
    /// Keep every trace line (for `--trace`).
    pub keep_trace: bool,
    /// After the run, fault-free simulated time in which supervised services must be back up.
    pub liveness_ns: u64,
    pub planted: Planted,
    /// Messages between processes arrive after a seeded delay below this (0: at once).
    pub delivery_delay_ns: u64,
    /// The simulated network of a cluster run (`cluster::run`); a run alone has none.
    pub net: net::NetConfig,
    /// What seeds may reorder besides delivery: process picks, timer ties, coroutines.
    pub explore: Explore,
    /// Which of the faults drawn may fire, by their index in the run (None: all; `--shrink`
    /// and `--keep-faults` keep a subset). Runs alone only.
    pub keep_faults: Option<std::collections::BTreeSet<u64>>,
    /// A simulated disk with storage faults and crash-restart (off: databases in memory).
    pub storage: storage::StorageFaults,
    /// Wall clock skew and jumps (monotonic time unaffected).
    pub clock: storage::ClockFaults,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            until_ns: 600 * SECOND,
            exec: None,
            input: Vec::new(),
            faults: Faults::none(),
            keep_trace: false,
            liveness_ns: 300 * SECOND,
            planted: Planted::default(),
            delivery_delay_ns: DEFAULT_DELIVERY_DELAY_NS,
            net: net::NetConfig::default(),
            explore: Explore::all(),
            keep_faults: None,
            storage: storage::StorageFaults::none(),
            clock: storage::ClockFaults::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimReport {
    pub seed: u64,
    pub sim_time_ns: u64,
    pub steps: u64,
    pub processes: u64,
    pub messages: u64,
    pub restarts: u64,
    pub faults: BTreeMap<String, u64>,
    /// Faults drawn (fired or held back by `keep_faults`): the length of the fault schedule.
    pub faults_drawn: u64,
    pub trace_hash: u64,
    /// Hash of the trace without timestamps: seeds with equal values ran the same schedule.
    pub schedule_hash: u64,
    pub trace: Vec<String>,
    pub recent: Vec<String>,
    pub stdout: String,
    /// What the app wrote to stderr (the terminal process's error, when it failed).
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub violation: Option<Violation>,
}

#[derive(Default)]
pub(crate) struct Observed {
    hash: TraceHash,
    /// The trace without timestamps: which schedule (order of events) the seed produced.
    schedule: TraceHash,
    recent: VecDeque<String>,
    all: Option<Vec<String>>,
    /// One checker per node (process ids are per node).
    checkers: Vec<Checker>,
    faults: BTreeMap<String, u64>,
    /// Services seen running since the liveness window opened (`node/service` in a cluster).
    came_back: Option<std::collections::BTreeSet<String>>,
    /// Collective dispatch's promises across the cluster's nodes.
    pub(crate) dispatch: dispatch::Calls,
}

impl Observed {
    pub(crate) fn new(nodes: usize, keep_trace: bool) -> Observed {
        Observed {
            all: keep_trace.then(Vec::new),
            checkers: (0..nodes).map(|_| Checker::default()).collect(),
            ..Default::default()
        }
    }

    /// A trace line of the run (hashed, kept for reports).
    pub(crate) fn line(&mut self, now: u64, text: &str) {
        self.schedule.add(text);
        let line = format!("{now:>12} {text}");
        self.hash.add(&line);
        if let Some(all) = &mut self.all {
            all.push(line.clone());
        }
        if self.recent.len() == RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    /// An event of node `who`; `prefix` names the node in a cluster run ("" alone).
    pub(crate) fn see(&mut self, now: u64, who: usize, prefix: &str, ev: &TraceEvent<'_>) {
        let text = ev.line();
        if prefix.is_empty() {
            self.line(now, &text);
        } else {
            self.line(now, &format!("{prefix} {text}"));
        }
        if let TraceEvent::Fault { kind, .. } = ev {
            *self.faults.entry(kind.to_string()).or_insert(0) += 1;
        }
        if let (
            TraceEvent::Service {
                service,
                state: "running",
            },
            Some(back),
        ) = (ev, &mut self.came_back)
        {
            back.insert(if prefix.is_empty() {
                service.to_string()
            } else {
                format!("{prefix}/{service}")
            });
        }
        self.checkers[who].observe(ev);
        if !prefix.is_empty() {
            self.dispatch.see(now, prefix, ev);
            if let Some(v) = self.dispatch.violation() {
                self.set_violation(v);
            }
        }
    }

    /// The first invariant broken on any node.
    pub(crate) fn violation(&self) -> Option<&Violation> {
        self.checkers.iter().find_map(|c| c.violation.as_ref())
    }

    pub(crate) fn set_violation(&mut self, v: Violation) {
        if self.violation().is_none() {
            self.checkers[0].violation = Some(v);
        }
    }
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Where a node's world commands run: tasks on the executor, answered on the virtual clock
/// by the node's world, completions queued for the node.
pub(crate) struct WorldSide {
    pub(crate) clock: ClockRef,
    pub(crate) exec: Executor,
    pub(crate) world: Rc<RefCell<World>>,
    pub(crate) inputs: Rc<RefCell<VecDeque<Input>>>,
    /// Acknowledged writes, recorded as they are answered (runs with `--storage`).
    pub(crate) durability: Option<Rc<RefCell<storage::Durability>>>,
}

/// The seeded choices and faults a world command is subject to.
pub(crate) struct Ask<'a> {
    pub(crate) rng: &'a mut ChaCha8Rng,
    pub(crate) faults: &'a Faults,
    /// Lines the terminal process reads.
    pub(crate) script: &'a mut VecDeque<String>,
    pub(crate) pending: &'a mut Vec<(&'static str, String)>,
}

impl WorldSide {
    /// Runs `cmd` as a task: after a seeded delay (late faults), failed by injection, read from
    /// the script (terminal reads), or answered by the world when the task runs.
    pub(crate) fn execute(
        &self,
        ask: &mut Ask<'_>,
        pid: weft_engine::pid::Pid,
        tag: u64,
        cmd: weft_engine::world::WorldCommand,
    ) {
        let now = self.clock.borrow().now;
        let mut delay = ask.rng.next_u64() % (SECOND / 1000);
        if let Some(fire) = ask.faults.roll("late", ask.faults.late, ask.rng) {
            let late = ask.faults.detail("late", ask.rng) % (2 * SECOND);
            if fire {
                delay += late;
                ask.pending.push(("late", format!("{}/{tag}", pid.uniq)));
            }
        }
        let failed = ask.faults.roll("fail", ask.faults.fail, ask.rng) == Some(true);
        let terminal = cmd.is_terminal_read();
        let result = if failed {
            ask.pending.push(("fail", format!("{}/{tag}", pid.uniq)));
            Err(ErrorValue::new(kind::UNAVAILABLE, "injected failure"))
        } else if terminal {
            match ask.script.pop_front() {
                Some(line) => Ok(Value::from(line)),
                None => Err(ErrorValue::new(kind::UNKNOWN, "EOF")),
            }
        } else {
            // Answered by the world when the task runs, in seeded order.
            Ok(Value::Nil)
        };
        let to_world = !failed && !terminal;
        let (c, q, w) = (self.clock.clone(), self.inputs.clone(), self.world.clone());
        let durability = self.durability.clone();
        let at = now + delay;
        self.exec.spawn(async move {
            sleep_until(&c, at).await;
            let result = if to_world {
                let write = durability.as_ref().and_then(|_| storage::write_of(&cmd));
                let r = w.borrow_mut().handle(cmd);
                if let (Some(d), Some(what)) = (&durability, write) {
                    let at = c.borrow().now;
                    d.borrow_mut()
                        .answered(&mut w.borrow_mut(), what, r.is_ok(), at);
                }
                r
            } else {
                result
            };
            q.borrow_mut()
                .push_back(Input::Completed { pid, tag, result });
        });
    }
}

/// The simulator as a `Driver`: virtual clock, seeded faults between steps, world commands run
/// as executor tasks in seeded order, invariants checked after every step, a liveness phase.
struct SimDriver<'a> {
    cfg: &'a SimConfig,
    clock: ClockRef,
    rng: Rc<RefCell<ChaCha8Rng>>,
    exec: Executor,
    inputs: Rc<RefCell<VecDeque<Input>>>,
    world: Rc<RefCell<World>>,
    obs: Rc<RefCell<Observed>>,
    script: VecDeque<String>,
    stdout: String,
    stderr: String,
    /// The run stopped because nothing could ever happen again.
    stalled: bool,
    exit_code: Option<i32>,
    steps: u64,
    faults: Faults,
    deadline: u64,
    in_liveness: bool,
    terminal: Option<u64>,
    /// Faults recorded while the driver holds no node (world commands), traced next step.
    pending_faults: Vec<(&'static str, String)>,
    /// The simulated disk's acknowledged writes (runs with `--storage`).
    durability: Option<Rc<RefCell<storage::Durability>>>,
    /// The node is to crash now (a storage run): `drive` stops, `run` restarts it.
    crash_now: bool,
    /// The wall clock's offset now (`--clock`).
    wall_offset: i64,
}

impl SimDriver<'_> {
    /// A draw in [0, 1) from the run's main stream (storage crashes and clock jumps).
    fn unit(&self) -> f64 {
        unit(&mut self.rng.borrow_mut())
    }

    /// Seeded faults and choices before a step.
    fn inject(&mut self, node: &mut Node) {
        if let Some(d) = &self.durability {
            self.pending_faults.extend(d.borrow().disk.take_fired());
        }
        let mut rng = self.rng.borrow_mut();
        inject(
            node,
            &mut rng,
            &self.faults,
            self.cfg.explore.pick,
            self.terminal,
            &mut self.pending_faults,
        );
    }
}

/// Seeded faults and choices before a step of `node` (a run alone or one node of a cluster):
/// faults recorded meanwhile, kills (never of the terminal process), noise, and which ready
/// process goes first (one step in `pick`; 0: never).
pub(crate) fn inject(
    node: &mut Node,
    rng: &mut ChaCha8Rng,
    faults: &Faults,
    pick: u64,
    terminal: Option<u64>,
    pending: &mut Vec<(&'static str, String)>,
) {
    let mut ctl = node.sim_control();
    for (kind, detail) in pending.drain(..) {
        ctl.trace_fault(kind, &detail);
    }
    // A fault held back by the schedule draws what it would have (shrinking changes no draw).
    if let Some(fire) = faults.roll("kill", faults.kill, rng) {
        let live: Vec<u64> = ctl
            .live_processes()
            .into_iter()
            .filter(|p| Some(*p) != terminal)
            .collect();
        if !live.is_empty() {
            let victim = live[(faults.detail("kill", rng) % live.len() as u64) as usize];
            if fire {
                ctl.trace_fault("kill", &victim.to_string());
                ctl.kill(victim, "killed by the simulator");
            }
        }
    }
    if let Some(fire) = faults.roll("noise", faults.noise, rng) {
        let live = ctl.live_processes();
        if !live.is_empty() {
            let to = live[(faults.detail("noise", rng) % live.len() as u64) as usize];
            if fire {
                ctl.trace_fault("noise", &to.to_string());
                ctl.noise(to, "sim.noise");
            }
        }
    }
    // Seeded interleaving: one step in `pick`, any ready process may go first (per-sender
    // FIFO is the mailboxes' and holds whatever the order of steps).
    let ready = ctl.ready_len();
    if ready > 1 && pick > 0 && rng.next_u64().is_multiple_of(pick) {
        ctl.promote((rng.next_u64() % ready as u64) as usize);
    }
}

impl SimDriver<'_> {
    /// The run's time is up: after the run, faults stop and a liveness window opens; after the
    /// liveness window, the run ends.
    fn reach_deadline(&mut self, node: &mut Node) -> Wake {
        if self.in_liveness || self.cfg.liveness_ns == 0 {
            let d = self.deadline;
            self.clock.borrow_mut().advance(d);
            return Wake::Stop;
        }
        // Faults stop; services get a bounded window to come back.
        self.in_liveness = true;
        self.obs.borrow_mut().came_back = Some(Default::default());
        self.faults = Faults {
            gate: self.faults.gate.clone(),
            ..Faults::none()
        };
        node.sim_control().set_buggify(false);
        self.deadline = self.deadline.max(self.clock.borrow().now) + self.cfg.liveness_ns;
        Wake::Again
    }
}

impl Driver for SimDriver<'_> {
    fn now(&mut self) -> Instant {
        self.clock.borrow().now
    }

    fn output(&mut self, o: Output) {
        match o {
            Output::Stdout(b) => self.stdout.push_str(&String::from_utf8_lossy(&b)),
            // One node, no network: nothing is transmitted yet (the simulated network of the
            // cluster issue carries these).
            Output::Stderr(b) => self.stderr.push_str(&String::from_utf8_lossy(&b)),
            Output::Log { .. }
            | Output::Transmit { .. }
            | Output::Datagram { .. }
            | Output::PeerUp { .. }
            | Output::PeerDown { .. }
            | Output::DispatchSend { .. }
            | Output::DispatchRespond { .. }
            | Output::DispatchAbort { .. } => {}
            Output::Exit(code) => self.exit_code = Some(code),
            Output::Execute { pid, tag, cmd } => {
                let side = WorldSide {
                    clock: self.clock.clone(),
                    exec: self.exec.clone(),
                    world: self.world.clone(),
                    inputs: self.inputs.clone(),
                    durability: self.durability.clone(),
                };
                let mut rng = self.rng.borrow_mut();
                let mut ask = Ask {
                    rng: &mut rng,
                    faults: &self.faults,
                    script: &mut self.script,
                    pending: &mut self.pending_faults,
                };
                side.execute(&mut ask, pid, tag, cmd);
            }
        }
    }

    fn poll_input(&mut self) -> Option<Input> {
        self.inputs.borrow_mut().pop_front()
    }

    fn between(&mut self, node: &mut Node, work: Work) -> bool {
        self.steps += 1;
        if work == Work::More {
            // Computing takes time: a step that leaves work behind costs virtual time, so a
            // process that never stops cannot freeze the clock (timers and the world still
            // come due).
            let now = self.clock.borrow().now;
            self.clock.borrow_mut().advance(now + BUSY_STEP_NS);
            if now + BUSY_STEP_NS > self.deadline && self.reach_deadline(node) == Wake::Stop {
                return false;
            }
        }
        self.exec.run_ready(&mut self.rng.borrow_mut());
        let owners = node.name_owners();
        self.obs.borrow_mut().checkers[0].after_step(&owners);
        if self.obs.borrow().violation().is_some() || self.exit_code.is_some() {
            return false;
        }
        self.inject(node);
        let jump = self.cfg.clock.jump;
        if jump > 0.0 && !self.in_liveness && self.unit() < jump {
            let span = 2 * storage::JUMP_MAX_NS + 1;
            let by = (self.rng.borrow_mut().next_u64() % span) as i64 - storage::JUMP_MAX_NS as i64;
            self.wall_offset = self.wall_offset.saturating_add(by);
            let mut ctl = node.sim_control();
            ctl.set_wall_offset(self.wall_offset);
            ctl.trace_fault("clockjump", &weft_engine::duration::format(by));
        }
        let crash = self.cfg.storage.crash;
        if crash > 0.0 && !self.in_liveness && self.unit() < crash {
            self.crash_now = true;
            return false;
        }
        true
    }

    fn wait(&mut self, node: &mut Node, node_next: Option<Instant>) -> Wake {
        if self.exec.has_ready() {
            return Wake::Again;
        }
        let world_next = self.clock.borrow().next_deadline();
        let next = match (node_next, world_next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(mut next) = next else {
            self.stalled = true; // nothing will ever happen again
            return Wake::Stop;
        };
        let jitter = self
            .faults
            .roll("jitter", self.faults.jitter, &mut self.rng.borrow_mut());
        if let Some(fire) = jitter {
            let late =
                self.faults.detail("jitter", &mut self.rng.borrow_mut()) % (5 * SECOND / 1000);
            if fire {
                next += late;
                node.sim_control().trace_fault("jitter", &next.to_string());
            }
        }
        if next > self.deadline {
            return self.reach_deadline(node);
        }
        self.clock.borrow_mut().advance(next);
        Wake::Again
    }
}

/// Runs one seed. Boot problems (bad entries, Lua syntax) come back as Err.
pub fn run(entries: &[Entry], cfg: &SimConfig) -> Result<SimReport, String> {
    let clock: ClockRef = Rc::default();
    let obs = Rc::new(RefCell::new(Observed::new(1, cfg.keep_trace)));
    let durability = cfg.storage.on.then(|| {
        Rc::new(RefCell::new(storage::Durability::new(storage::new_disk(
            cfg.seed,
            &cfg.storage,
        ))))
    });
    let (world, mut node) = boot(entries, cfg, &clock, &obs, &durability, 0)?;
    let terminal = start_terminal(&mut node, &cfg.exec)?;

    let mut d = SimDriver {
        cfg,
        clock: clock.clone(),
        rng: Rc::new(RefCell::new(ChaCha8Rng::seed_from_u64(
            cfg.seed ^ 0x5EED_5EED_5EED_5EED,
        ))),
        exec: Executor::default(),
        inputs: Rc::default(),
        world,
        obs: obs.clone(),
        script: cfg.input.iter().cloned().collect(),
        stdout: String::new(),
        stderr: String::new(),
        stalled: false,
        exit_code: None,
        steps: 0,
        faults: Faults {
            gate: shrink::Gate::new(cfg.keep_faults.clone(), cfg.seed),
            ..cfg.faults.clone()
        },
        deadline: cfg.until_ns,
        in_liveness: false,
        terminal,
        pending_faults: Vec::new(),
        durability: durability.clone(),
        crash_now: false,
        wall_offset: cfg.clock.skew(cfg.seed, 0),
    };
    node.sim_control().set_wall_offset(d.wall_offset);
    d.inject(&mut node);
    // Counters of crashed incarnations: processes, messages, restarts.
    let mut past = (0, 0, 0);
    let mut crashes = 0;
    loop {
        drive(&mut node, &mut d, 1);
        if !d.crash_now {
            break;
        }
        d.crash_now = false;
        crashes += 1;
        let s = node.stats();
        past = (
            past.0 + s.spawned,
            past.1 + s.messages_sent,
            past.2 + s.restarts,
        );
        match restart(entries, cfg, &mut d, crashes)? {
            Some(n) => node = n,
            None => break,
        }
    }

    let sim_time_ns = clock.borrow().now;
    let exit_code = d.exit_code;
    if exit_code.is_none() && obs.borrow().violation().is_none() && terminal.is_some() {
        let v = unfinished(&mut node, d.stalled, sim_time_ns, "");
        obs.borrow_mut().set_violation(v);
    }
    if exit_code.is_none() && obs.borrow().violation().is_none() && cfg.liveness_ns > 0 {
        let back = obs.borrow().came_back.clone().unwrap_or_default();
        if let Some(v) = services_down(&node, &back, "") {
            obs.borrow_mut().set_violation(v);
        }
    }
    let stats = node.stats();
    // A storage run ends with one more crash, so every seed checks what it acknowledged.
    if let Some(dur) = &durability {
        if obs.borrow().violation().is_none() {
            drop(node);
            final_check(entries, &mut d, dur, crashes + 1)?;
        }
        let dur = dur.borrow();
        let mut o = obs.borrow_mut();
        o.line(
            sim_time_ns,
            &format!(
                "storage: {} acknowledged writes, {} restarts checked",
                dur.acks, dur.checks
            ),
        );
    }
    let o = obs.borrow();
    Ok(SimReport {
        seed: cfg.seed,
        sim_time_ns,
        steps: d.steps,
        processes: past.0 + stats.spawned,
        messages: past.1 + stats.messages_sent,
        restarts: past.2 + stats.restarts,
        faults: o.faults.clone(),
        faults_drawn: d.faults.gate.drawn(),
        trace_hash: o.hash.0,
        schedule_hash: o.schedule.0,
        trace: o.all.clone().unwrap_or_default(),
        recent: o.recent.iter().cloned().collect(),
        stdout: d.stdout,
        stderr: d.stderr,
        exit_code,
        violation: o.violation().cloned(),
    })
}

/// A world for incarnation `incarnation` of the node (on the simulated disk when storage is
/// on: no faults while it opens) and the node booted on it.
fn boot(
    entries: &[Entry],
    cfg: &SimConfig,
    clock: &ClockRef,
    obs: &Rc<RefCell<Observed>>,
    durability: &Option<Rc<RefCell<storage::Durability>>>,
    incarnation: u64,
) -> Result<(Rc<RefCell<World>>, Node), String> {
    let world = open_world(entries, durability)?;
    let (o, clk) = (obs.clone(), clock.clone());
    let quiet = durability.as_ref().map(|d| d.borrow().disk.set_quiet(true));
    let node = build_node(
        entries,
        NodeConfig {
            seed: cfg.seed ^ (incarnation << 32),
            wall_epoch_ns: EPOCH_NS,
            ..Default::default()
        },
        cfg,
        Box::new(move |ev| {
            let now = clk.borrow().now;
            o.borrow_mut().see(now, 0, "", ev)
        }),
        &world,
    );
    if let Some(d) = durability {
        d.borrow().disk.set_quiet(quiet.unwrap_or(false));
        d.borrow_mut().booted(&mut world.borrow_mut());
    }
    Ok((world, node?))
}

/// The node's world: in memory, or opened from the simulated disk's durable files.
fn open_world(
    entries: &[Entry],
    durability: &Option<Rc<RefCell<storage::Durability>>>,
) -> Result<Rc<RefCell<World>>, String> {
    let storage = match durability {
        Some(d) => Storage::Sim(d.borrow().disk.clone()),
        None => Storage::Memory,
    };
    let quiet = durability.as_ref().map(|d| d.borrow().disk.set_quiet(true));
    let mut w = World::new(storage);
    let r = w.configure(entries);
    if let Some(d) = durability {
        d.borrow().disk.set_quiet(quiet.unwrap_or(false));
    }
    r?;
    Ok(Rc::new(RefCell::new(w)))
}

/// The disk loses what was not durable (tearing per the fault draw); traced and counted.
fn crash_disk(d: &mut SimDriver<'_>, dur: &Rc<RefCell<storage::Durability>>, n: u64) {
    let now = d.clock.borrow().now;
    let torn = dur.borrow().disk.crash();
    let fired = dur.borrow().disk.take_fired();
    let mut o = d.obs.borrow_mut();
    for (kind, detail) in d.pending_faults.drain(..).chain(fired) {
        o.line(now, &format!("fault {kind} {detail}"));
        *o.faults.entry(kind.to_string()).or_insert(0) += 1;
    }
    o.line(
        now,
        &format!("fault crash {n}: node down, durable files kept"),
    );
    *o.faults.entry("crash".into()).or_insert(0) += 1;
    for t in torn {
        o.line(now, &format!("fault torn {t}"));
        *o.faults.entry("torn".into()).or_insert(0) += 1;
    }
}

/// Crash `n` of a storage run: the node, its VM, its world and every command under way are
/// dropped; only the durable files stay. The world reopens from them and the simulator checks
/// that no acknowledged write was lost; then the same app boots again. None: a write was lost
/// (the violation is recorded).
fn restart(
    entries: &[Entry],
    cfg: &SimConfig,
    d: &mut SimDriver<'_>,
    n: u64,
) -> Result<Option<Node>, String> {
    let Some(dur) = d.durability.clone() else {
        return Ok(None);
    };
    crash_disk(d, &dur, n);
    // Commands of the old incarnation sleep on the old executor, which never runs again.
    d.exec = Executor::default();
    d.inputs = Rc::default();
    let Some(world) = reopen(entries, d, n) else {
        return Ok(None);
    };
    let lost = dur.borrow_mut().check(&mut world.borrow_mut(), n);
    if let Some(v) = lost {
        d.obs.borrow_mut().set_violation(v);
        return Ok(None);
    }
    drop(world);
    d.obs.borrow_mut().checkers[0] = Checker::default();
    let (world, mut node) = boot(entries, cfg, &d.clock, &d.obs, &d.durability, n)?;
    d.world = world;
    // A restarted node reads its wall clock afresh: a new skew, monotonic time as before.
    d.wall_offset = cfg.clock.skew(cfg.seed, n);
    node.sim_control().set_wall_offset(d.wall_offset);
    d.terminal = start_terminal(&mut node, &cfg.exec)?;
    d.inject(&mut node);
    Ok(Some(node))
}

/// The crash after the run: what the run acknowledged must be on the disk.
fn final_check(
    entries: &[Entry],
    d: &mut SimDriver<'_>,
    dur: &Rc<RefCell<storage::Durability>>,
    n: u64,
) -> Result<(), String> {
    crash_disk(d, dur, n);
    d.exec = Executor::default();
    let Some(world) = reopen(entries, d, n) else {
        return Ok(());
    };
    let lost = dur.borrow_mut().check(&mut world.borrow_mut(), n);
    if let Some(v) = lost {
        d.obs.borrow_mut().set_violation(v);
    }
    Ok(())
}

/// The world reopened from the disk after crash `n`; None when a database no longer opens (a
/// corrupted file: recorded as a violation, not a boot error, since the crash made it).
fn reopen(entries: &[Entry], d: &mut SimDriver<'_>, n: u64) -> Option<Rc<RefCell<World>>> {
    match open_world(entries, &d.durability) {
        Ok(w) => Some(w),
        Err(e) => {
            d.obs.borrow_mut().set_violation(Violation {
                invariant: "no acknowledged write is lost",
                detail: format!("after crash {n}, the world does not open again: {e}"),
            });
            None
        }
    }
}

/// Boots a node of the app under the simulator's settings, watched by `observer`.
pub(crate) fn build_node(
    entries: &[Entry],
    node_cfg: NodeConfig,
    cfg: &SimConfig,
    observer: weft_engine::trace::Observer,
    world: &Rc<RefCell<World>>,
) -> Result<Node, String> {
    // No OS environment under the simulator (NodeConfig::env_os stays empty): runs depend on
    // the seed only. `.env` files start absent in the in-memory world.
    let env_files = world.borrow().env_files(entries);
    // Lua objects' addresses from the node's own run only: pointer-keyed `pairs()` replays.
    let node_cfg = NodeConfig {
        deterministic_heap: true,
        ..node_cfg
    };
    let built = Node::builder(node_cfg)
        .log_level(Level::Error)
        .buggify(cfg.faults.buggify)
        .planted(cfg.planted)
        .observer(observer)
        .env_files(env_files)
        .entries(entries.to_vec())
        .build(Some(&mut *world.borrow_mut()))
        .map_err(|e| e.to_string())?;
    let mut node = built.node;
    node.sim_control().set_delivery_delay(cfg.delivery_delay_ns);
    node.sim_control()
        .set_explore(cfg.explore.ties, cfg.explore.coroutines);
    Ok(node)
}

/// Starts the terminal process `(host, entry, args)`, if any; returns its id.
pub(crate) fn start_terminal(
    node: &mut Node,
    exec: &Option<(String, String, Vec<String>)>,
) -> Result<Option<u64>, String> {
    let Some((host, entry, args)) = exec else {
        return Ok(None);
    };
    let args = args.iter().map(|a| Value::from(a.as_str())).collect();
    let pid = node
        .spawn(entry, host, args, true)
        .map_err(|e| format!("cannot start {entry} on {host}: {}", e.message))?;
    Ok(Some(pid.uniq))
}

/// The terminal process never finished: stuck for good (`stalled`), or still going at the end.
/// `prefix` names the node in a cluster run.
pub(crate) fn unfinished(
    node: &mut Node,
    stalled: bool,
    sim_time_ns: u64,
    prefix: &str,
) -> Violation {
    let waits = node.sim_control().waits();
    let mut lines: Vec<String> = waits
        .iter()
        .filter(|w| w.terminal)
        .chain(waits.iter().filter(|w| !w.terminal))
        .map(|w| w.to_string())
        .collect();
    lines.truncate(8);
    let mut who = waits
        .iter()
        .find(|w| w.terminal)
        .map(|w| format!("{} ({})", w.pid, w.entry))
        .unwrap_or_else(|| "the terminal process".into());
    if !prefix.is_empty() {
        who = format!("{who} on {prefix}");
    }
    if stalled {
        Violation {
            invariant: "no deadlock",
            detail: format!(
                "{who} waits forever: no process can run, no timer is armed and no world \
                 command is under way; {}",
                lines.join("; ")
            ),
        }
    } else {
        Violation {
            invariant: "the terminal process finishes",
            detail: format!(
                "{who} is still running after {} of simulated time (raise --until if it \
                 needs longer); {}",
                weft_engine::duration::format(sim_time_ns as i64),
                lines.join("; ")
            ),
        }
    }
}

/// Liveness: every auto-started service is running, finished for good, or restarted at least
/// once in the window (`back`). A service that gave up (failed with no restart left) stays
/// down: a failure too. `prefix` names the node in a cluster run.
pub(crate) fn services_down(
    node: &Node,
    back: &std::collections::BTreeSet<String>,
    prefix: &str,
) -> Option<Violation> {
    for s in node.services().iter().filter(|s| s.auto_start) {
        let key = if prefix.is_empty() {
            s.id.clone()
        } else {
            format!("{prefix}/{}", s.id)
        };
        let settled = matches!(
            s.state,
            ServiceState::Running | ServiceState::Exited | ServiceState::Stopped
        ) || back.contains(&key);
        if !settled {
            let at = if prefix.is_empty() {
                String::new()
            } else {
                format!(" on {prefix}")
            };
            let detail = if s.state == ServiceState::Failed && !s.restart_pending {
                format!(
                    "service {}{at} failed for good (no restart left) and stayed down after \
                     faults stopped",
                    s.id
                )
            } else {
                format!(
                    "service {}{at} is {} after the liveness window",
                    s.id,
                    s.state.as_str()
                )
            };
            return Some(Violation {
                invariant: "services recover after faults stop",
                detail,
            });
        }
    }
    None
}
