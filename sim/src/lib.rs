//! weft-sim: runs a Weft app on a virtual clock with seeded scheduling and injected faults,
//! checking invariants after every step. Same seed, same trace hash. No OS access in here.

pub mod check;
pub mod exec;
pub mod faults;
pub mod net;

use check::{Checker, Violation};
use exec::{sleep_until, ClockRef, Executor};
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
struct Observed {
    hash: TraceHash,
    /// The trace without timestamps: which schedule (order of events) the seed produced.
    schedule: TraceHash,
    recent: VecDeque<String>,
    all: Option<Vec<String>>,
    checker: Checker,
    faults: BTreeMap<String, u64>,
    /// Services seen running since the liveness window opened.
    came_back: Option<std::collections::BTreeSet<String>>,
}

impl Observed {
    fn see(&mut self, now: u64, ev: &TraceEvent<'_>) {
        let text = ev.line();
        self.schedule.add(&text);
        let line = format!("{now:>12} {text}");
        self.hash.add(&line);
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
            back.insert(service.to_string());
        }
        self.checker.observe(ev);
        if let Some(all) = &mut self.all {
            all.push(line.clone());
        }
        if self.recent.len() == RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
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
}

impl SimDriver<'_> {
    fn unit(&self) -> f64 {
        unit(&mut self.rng.borrow_mut())
    }

    /// Seeded faults and choices before a step.
    fn inject(&mut self, node: &mut Node) {
        let mut ctl = node.sim_control();
        for (kind, detail) in self.pending_faults.drain(..) {
            ctl.trace_fault(kind, &detail);
        }
        if self.faults.kill > 0.0 && self.unit() < self.faults.kill {
            let live: Vec<u64> = ctl
                .live_processes()
                .into_iter()
                .filter(|p| Some(*p) != self.terminal)
                .collect();
            if !live.is_empty() {
                let victim = live[(self.rng.borrow_mut().next_u64() % live.len() as u64) as usize];
                ctl.trace_fault("kill", &victim.to_string());
                ctl.kill(victim, "killed by the simulator");
            }
        }
        if self.faults.noise > 0.0 && self.unit() < self.faults.noise {
            let live = ctl.live_processes();
            if !live.is_empty() {
                let to = live[(self.rng.borrow_mut().next_u64() % live.len() as u64) as usize];
                ctl.trace_fault("noise", &to.to_string());
                ctl.noise(to, "sim.noise");
            }
        }
        // Seeded interleaving: every other step, any ready process may go first (per-sender
        // FIFO is the mailboxes' and holds whatever the order of steps).
        let mut r = self.rng.borrow_mut();
        let ready = ctl.ready_len();
        if ready > 1 && r.next_u64().is_multiple_of(2) {
            ctl.promote((r.next_u64() % ready as u64) as usize);
        }
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
        self.faults = Faults::none();
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
            | Output::PeerDown { .. } => {}
            Output::Exit(code) => self.exit_code = Some(code),
            Output::Execute { pid, tag, cmd } => {
                let now = self.clock.borrow().now;
                let mut delay = self.rng.borrow_mut().next_u64() % (SECOND / 1000);
                if self.faults.late > 0.0 && self.unit() < self.faults.late {
                    delay += self.rng.borrow_mut().next_u64() % (2 * SECOND);
                    self.pending_faults
                        .push(("late", format!("{}/{tag}", pid.uniq)));
                }
                let failed = self.faults.fail > 0.0 && self.unit() < self.faults.fail;
                let terminal = cmd.is_terminal_read();
                let result = if failed {
                    self.pending_faults
                        .push(("fail", format!("{}/{tag}", pid.uniq)));
                    Err(ErrorValue::new(kind::UNAVAILABLE, "injected failure"))
                } else if terminal {
                    match self.script.pop_front() {
                        Some(line) => Ok(Value::from(line)),
                        None => Err(ErrorValue::new(kind::UNKNOWN, "EOF")),
                    }
                } else {
                    // Answered by the world when the task runs, in seeded order.
                    Ok(Value::Nil)
                };
                let to_world = !failed && !terminal;
                let (c, q, w) = (self.clock.clone(), self.inputs.clone(), self.world.clone());
                let at = now + delay;
                self.exec.spawn(async move {
                    sleep_until(&c, at).await;
                    let result = if to_world {
                        w.borrow_mut().handle(cmd)
                    } else {
                        result
                    };
                    q.borrow_mut()
                        .push_back(Input::Completed { pid, tag, result });
                });
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
        self.obs.borrow_mut().checker.after_step(&owners);
        if self.obs.borrow().checker.violation.is_some() || self.exit_code.is_some() {
            return false;
        }
        self.inject(node);
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
        if self.faults.jitter > 0.0 && self.unit() < self.faults.jitter {
            next += self.rng.borrow_mut().next_u64() % (5 * SECOND / 1000);
            node.sim_control().trace_fault("jitter", &next.to_string());
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
    let obs = Rc::new(RefCell::new(Observed {
        all: cfg.keep_trace.then(Vec::new),
        ..Default::default()
    }));
    let world = Rc::new(RefCell::new(World::new(Storage::Memory)));
    world.borrow_mut().configure(entries)?;
    let (o, clk) = (obs.clone(), clock.clone());
    // No OS environment under the simulator (NodeConfig::env_os stays empty): runs depend on
    // the seed only. `.env` files start absent in the in-memory world.
    let env_files = world.borrow().env_files(entries);
    let built = Node::builder(NodeConfig {
        seed: cfg.seed,
        wall_epoch_ns: EPOCH_NS,
        ..Default::default()
    })
    .log_level(Level::Error)
    .buggify(cfg.faults.buggify)
    .planted(cfg.planted)
    .observer(Box::new(move |ev| {
        let now = clk.borrow().now;
        o.borrow_mut().see(now, ev)
    }))
    .env_files(env_files)
    .entries(entries.to_vec())
    .build(Some(&mut *world.borrow_mut()))
    .map_err(|e| e.to_string())?;
    let mut node = built.node;
    node.sim_control().set_delivery_delay(cfg.delivery_delay_ns);
    let mut terminal = None;
    if let Some((host, entry, args)) = &cfg.exec {
        let args = args.iter().map(|a| Value::from(a.as_str())).collect();
        let pid = node
            .spawn(entry, host, args, true)
            .map_err(|e| format!("cannot start {entry} on {host}: {}", e.message))?;
        terminal = Some(pid.uniq);
    }

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
        faults: cfg.faults.clone(),
        deadline: cfg.until_ns,
        in_liveness: false,
        terminal,
        pending_faults: Vec::new(),
    };
    d.inject(&mut node);
    drive(&mut node, &mut d, 1);

    let sim_time_ns = clock.borrow().now;
    let exit_code = d.exit_code;
    if exit_code.is_none() && obs.borrow().checker.violation.is_none() && terminal.is_some() {
        // The terminal process never finished: stuck for good, or still going at the end.
        let waits = node.sim_control().waits();
        let mut lines: Vec<String> = waits
            .iter()
            .filter(|w| w.terminal)
            .chain(waits.iter().filter(|w| !w.terminal))
            .map(|w| w.to_string())
            .collect();
        lines.truncate(8);
        let who = waits
            .iter()
            .find(|w| w.terminal)
            .map(|w| format!("{} ({})", w.pid, w.entry))
            .unwrap_or_else(|| "the terminal process".into());
        let violation = if d.stalled {
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
        };
        drop(obs.borrow_mut().checker.violation.replace(violation));
    }
    if exit_code.is_none() && obs.borrow().checker.violation.is_none() && cfg.liveness_ns > 0 {
        let back = obs.borrow().came_back.clone().unwrap_or_default();
        for s in node.services().iter().filter(|s| s.auto_start) {
            // Live: running now, finished for good, or restarted at least once in the window.
            // A service that gave up (failed with no restart left) stays down: a failure too.
            let settled = matches!(
                s.state,
                ServiceState::Running | ServiceState::Exited | ServiceState::Stopped
            ) || back.contains(&s.id);
            if !settled {
                let detail = if s.state == ServiceState::Failed && !s.restart_pending {
                    format!(
                        "service {} failed for good (no restart left) and stayed down after \
                         faults stopped",
                        s.id
                    )
                } else {
                    format!(
                        "service {} is {} after the liveness window",
                        s.id,
                        s.state.as_str()
                    )
                };
                drop(obs.borrow_mut().checker.violation.replace(Violation {
                    invariant: "services recover after faults stop",
                    detail,
                }));
                break;
            }
        }
    }
    let stats = node.stats();
    let o = obs.borrow();
    Ok(SimReport {
        seed: cfg.seed,
        sim_time_ns,
        steps: d.steps,
        processes: stats.spawned,
        messages: stats.messages_sent,
        restarts: stats.restarts,
        faults: o.faults.clone(),
        trace_hash: o.hash.0,
        schedule_hash: o.schedule.0,
        trace: o.all.clone().unwrap_or_default(),
        recent: o.recent.iter().cloned().collect(),
        stdout: d.stdout,
        stderr: d.stderr,
        exit_code,
        violation: o.checker.violation.clone(),
    })
}
