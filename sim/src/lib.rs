//! weft-sim: runs a Weft app on a virtual clock with seeded scheduling and injected faults,
//! checking invariants after every step. Same seed, same trace hash. No OS access in here.

pub mod check;
pub mod exec;
pub mod faults;

use check::{Checker, Violation};
use exec::{sleep_until, ClockRef, Executor};
use faults::Faults;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use weft_engine::entries::Entry;
use weft_engine::lua::LuaRuntime;
use weft_engine::node::{Level, NodeConfig, Planted, SpawnOptions};
use weft_engine::supervisor::ServiceState;
use weft_engine::trace::{TraceEvent, TraceHash};
use weft_engine::value::{kind, ErrorValue, Value};
use weft_engine::{Input, Node, Output, Work};
use weft_world::{Storage, World};

/// Simulated wall clock at node start: 2026-01-01T00:00:00Z, so runs never depend on the date.
pub const EPOCH_NS: i64 = 1_767_225_600_000_000_000;
const SECOND: u64 = 1_000_000_000;
const RECENT_LINES: usize = 25;

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
    pub trace: Vec<String>,
    pub recent: Vec<String>,
    pub stdout: String,
    pub exit_code: Option<i32>,
    pub violation: Option<Violation>,
}

#[derive(Default)]
struct Observed {
    hash: TraceHash,
    recent: VecDeque<String>,
    all: Option<Vec<String>>,
    checker: Checker,
    faults: BTreeMap<String, u64>,
    /// Services seen running since the liveness window opened.
    came_back: Option<std::collections::BTreeSet<String>>,
}

impl Observed {
    fn see(&mut self, now: u64, ev: &TraceEvent<'_>) {
        let line = format!("{now:>12} {}", ev.line());
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

fn fault(node: &Node, kind: &str, detail: &str) {
    node.core()
        .borrow_mut()
        .trace(TraceEvent::Fault { kind, detail });
}

/// Runs one seed. Boot problems (bad entries, Lua syntax) come back as Err.
pub fn run(entries: &[Entry], cfg: &SimConfig) -> Result<SimReport, String> {
    let mut node = Node::new(NodeConfig {
        seed: cfg.seed,
        wall_epoch_ns: EPOCH_NS,
        ..Default::default()
    });
    let clock: ClockRef = Rc::default();
    let obs = Rc::new(RefCell::new(Observed {
        all: cfg.keep_trace.then(Vec::new),
        ..Default::default()
    }));
    {
        let mut c = node.core().borrow_mut();
        c.log_min = Level::Error;
        c.buggify = cfg.faults.buggify;
        c.planted = cfg.planted;
        let (o, clk) = (obs.clone(), clock.clone());
        c.set_observer(Box::new(move |ev| {
            let now = clk.borrow().now;
            o.borrow_mut().see(now, ev)
        }));
    }
    let world = Rc::new(RefCell::new(World::new(Storage::Memory)));
    world.borrow_mut().configure(entries)?;
    // No OS environment under the simulator (NodeConfig::env_os stays empty): runs depend on
    // the seed only. `.env` files start absent in the in-memory world.
    node.core().borrow_mut().env.files = world.borrow().env_files(entries);
    let mut lua = LuaRuntime::new(node.core().clone()).map_err(|e| e.to_string())?;
    weft_engine::boot::boot(&mut node, &mut lua, entries.to_vec()).map_err(|e| e.to_string())?;
    world
        .borrow_mut()
        .boot_registry(&mut node.core().borrow_mut())?;
    node.add_factory("process.lua", Box::new(lua));
    let mut terminal = None;
    if let Some((host, entry, args)) = &cfg.exec {
        let args = args.iter().map(|a| Value::from(a.as_str())).collect();
        let pid = node
            .core()
            .borrow_mut()
            .spawn(
                entry,
                host,
                args,
                SpawnOptions {
                    terminal: true,
                    ..Default::default()
                },
            )
            .map_err(|e| format!("cannot start {entry} on {host}: {}", e.message))?;
        terminal = Some(pid.uniq);
    }

    let rng = Rc::new(RefCell::new(ChaCha8Rng::seed_from_u64(
        cfg.seed ^ 0x5EED_5EED_5EED_5EED,
    )));
    let exec = Executor::default();
    let inputs: Rc<RefCell<VecDeque<Input>>> = Rc::default();
    let mut script: VecDeque<String> = cfg.input.iter().cloned().collect();
    let mut stdout = String::new();
    let mut exit_code = None;
    let mut steps = 0u64;
    let mut faults = cfg.faults.clone();
    let mut deadline = cfg.until_ns;
    let mut in_liveness = false;

    loop {
        let now = clock.borrow().now;
        {
            let mut r = rng.borrow_mut();
            if faults.kill > 0.0 && unit(&mut r) < faults.kill {
                let live: Vec<u64> = node
                    .core()
                    .borrow()
                    .live_processes()
                    .into_iter()
                    .filter(|p| Some(*p) != terminal)
                    .collect();
                if !live.is_empty() {
                    let victim = live[(r.next_u64() % live.len() as u64) as usize];
                    drop(r);
                    fault(&node, "kill", &victim.to_string());
                    node.core().borrow_mut().kill(
                        victim,
                        ErrorValue::new(kind::CANCELED, "killed by the simulator"),
                    );
                }
            }
        }
        {
            let mut r = rng.borrow_mut();
            if faults.noise > 0.0 && unit(&mut r) < faults.noise {
                let live = node.core().borrow().live_processes();
                if !live.is_empty() {
                    let to = live[(r.next_u64() % live.len() as u64) as usize];
                    drop(r);
                    fault(&node, "noise", &to.to_string());
                    node.core()
                        .borrow_mut()
                        .deliver(None, to, "sim.noise".into(), vec![]);
                }
            }
        }
        {
            // Seeded interleaving: sometimes let a later process go first.
            let mut r = rng.borrow_mut();
            if r.next_u64() % 4 == 0 {
                let n = (r.next_u64() % 3) as usize;
                node.core().borrow_mut().sched.rotate(n);
            }
        }
        let work = node.run(now, 1);
        steps += 1;
        while let Some(o) = node.poll_output() {
            match o {
                Output::Stdout(b) => stdout.push_str(&String::from_utf8_lossy(&b)),
                Output::Stderr(_) | Output::Log { .. } => {}
                Output::Exit(code) => exit_code = Some(code),
                Output::Execute { pid, tag, cmd } => {
                    let mut r = rng.borrow_mut();
                    let mut delay = r.next_u64() % (SECOND / 1000);
                    if faults.late > 0.0 && unit(&mut r) < faults.late {
                        delay += r.next_u64() % (2 * SECOND);
                        drop(r);
                        fault(&node, "late", &format!("{}/{tag}", pid.uniq));
                        r = rng.borrow_mut();
                    }
                    let failed = faults.fail > 0.0 && unit(&mut r) < faults.fail;
                    drop(r);
                    let result = if failed {
                        fault(&node, "fail", &format!("{}/{tag}", pid.uniq));
                        Err(ErrorValue::new(kind::UNAVAILABLE, "injected failure"))
                    } else if cmd.is_terminal_read() {
                        match script.pop_front() {
                            Some(line) => Ok(Value::from(line)),
                            None => Err(ErrorValue::new(kind::UNKNOWN, "EOF")),
                        }
                    } else {
                        // Answered by the world when the task runs, in seeded order.
                        Ok(Value::Nil)
                    };
                    let to_world = !failed && !cmd.is_terminal_read();
                    let (c, q, w) = (clock.clone(), inputs.clone(), world.clone());
                    let at = now + delay;
                    exec.spawn(async move {
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
        exec.run_ready(&mut rng.borrow_mut());
        let pending: Vec<Input> = inputs.borrow_mut().drain(..).collect();
        let had_input = !pending.is_empty();
        for i in pending {
            node.handle(now, i);
        }
        {
            let owners = node.core().borrow().names.owners();
            obs.borrow_mut().checker.after_step(&owners);
        }
        if obs.borrow().checker.violation.is_some() || exit_code.is_some() {
            break;
        }
        if work == Work::Idle && !exec.has_ready() && !had_input {
            let node_next = node.poll_timeout();
            let world_next = clock.borrow().next_deadline();
            let next = match (node_next, world_next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(mut next) = next else {
                break; // nothing will ever happen again
            };
            let mut r = rng.borrow_mut();
            if faults.jitter > 0.0 && unit(&mut r) < faults.jitter {
                next += r.next_u64() % (5 * SECOND / 1000);
                drop(r);
                fault(&node, "jitter", &next.to_string());
            }
            if next > deadline {
                if in_liveness || cfg.liveness_ns == 0 {
                    clock.borrow_mut().advance(deadline);
                    break;
                }
                // Faults stop; services get a bounded window to come back.
                in_liveness = true;
                obs.borrow_mut().came_back = Some(Default::default());
                faults = Faults::none();
                node.core().borrow_mut().buggify = false;
                deadline = deadline.max(clock.borrow().now) + cfg.liveness_ns;
                continue;
            }
            clock.borrow_mut().advance(next);
        }
    }

    let sim_time_ns = clock.borrow().now;
    if exit_code.is_none() && obs.borrow().checker.violation.is_none() && cfg.liveness_ns > 0 {
        let c = node.core().borrow();
        let back = obs.borrow().came_back.clone().unwrap_or_default();
        for s in c.services.iter().filter(|s| s.lifecycle.auto_start) {
            // Live: running now, finished for good, or restarted at least once in the window.
            let settled = matches!(
                s.state,
                ServiceState::Running | ServiceState::Exited | ServiceState::Stopped
            ) || (s.state == ServiceState::Failed && s.timer.is_none())
                || back.contains(&s.id);
            if !settled {
                let detail = format!(
                    "service {} is {} after the liveness window",
                    s.id,
                    s.state.as_str()
                );
                drop(obs.borrow_mut().checker.violation.replace(Violation {
                    invariant: "services recover after faults stop",
                    detail,
                }));
                break;
            }
        }
    }
    let core = node.core().borrow();
    let o = obs.borrow();
    Ok(SimReport {
        seed: cfg.seed,
        sim_time_ns,
        steps,
        processes: core.stats.spawned,
        messages: core.stats.messages_sent,
        restarts: core.stats.restarts,
        faults: o.faults.clone(),
        trace_hash: o.hash.0,
        trace: o.all.clone().unwrap_or_default(),
        recent: o.recent.iter().cloned().collect(),
        stdout,
        exit_code,
        violation: o.checker.violation.clone(),
    })
}
