//! Several nodes in one simulation: each node of the cluster is a `Node` with its own clock
//! (skewed by a seeded drift and wall offset), stepped one slice at a time in seeded order on
//! one thread and one virtual clock, connected by the simulated network (`net`). Nodes crash
//! (the node object is dropped: volatile state lost) and restart as a new incarnation of the
//! same app. Invariants are checked after every step of every node; after the run, faults stop
//! and a liveness window checks that the cluster heals.

use crate::check::{Checker, Violation};
use crate::exec::{ClockRef, Executor};
use crate::net::{Action, Network, TICK_NS};
use crate::{
    build_node, inject, services_down, start_terminal, unfinished, Ask, Observed, SimConfig,
    SimReport, WorldSide, EPOCH_NS,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use weft_engine::entries::Entry;
use weft_engine::node::ClusterConfig;
use weft_engine::pid::NodeId;
use weft_engine::{Input, Node, NodeConfig, Output, Work};
use weft_world::{Storage, World};

/// The port every simulated node listens on (addresses read `NAME:7000`).
pub const PORT: u16 = 7000;
/// The cluster secret every simulated node shares.
pub const SECRET: &[u8] = b"weft-sim-cluster";
/// Virtual time one step costs while other work is waiting to run.
const BUSY_STEP_NS: u64 = 20_000;

/// One node of a cluster run: its name, its app, and the process it runs on its terminal host.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub entries: Vec<Entry>,
    /// (host, entry, args) of the terminal process; its end ends this node.
    pub exec: Option<(String, String, Vec<String>)>,
}

struct Member {
    name: String,
    addr: String,
    node: Option<Node>,
    incarnation: u64,
    /// Global time this incarnation started at.
    start: u64,
    /// Clock drift of this incarnation, parts per million.
    drift_ppm: i64,
    world: Rc<RefCell<World>>,
    inputs: Rc<RefCell<VecDeque<Input>>>,
    more: bool,
    terminal: Option<u64>,
    /// The node stopped (its terminal process ended) with this code.
    exited: Option<i32>,
    restart_at: Option<u64>,
    /// Peers this node holds up, as its `PeerUp` / `PeerDown` outputs said, with incarnation.
    view: BTreeMap<String, u64>,
    /// The newest incarnation of each peer this node has seen up.
    newest: BTreeMap<String, u64>,
    script: VecDeque<String>,
    pending: Vec<(&'static str, String)>,
    stdout: String,
    stderr: String,
    /// Counters of earlier incarnations (processes, messages, restarts).
    past: (u64, u64, u64),
}

impl Member {
    /// The node's own monotonic time at global time `g`.
    fn local(&self, g: u64) -> u64 {
        let since = u128::from(g.saturating_sub(self.start));
        (since * (1_000_000 + self.drift_ppm) as u128 / 1_000_000) as u64
    }

    /// The first global time at which the node's clock reads `t`.
    fn global(&self, t: u64) -> u64 {
        let rate = (1_000_000 + self.drift_ppm) as u128;
        let g = (u128::from(t) * 1_000_000).div_ceil(rate);
        self.start
            .saturating_add(g.min(u128::from(u64::MAX)) as u64)
    }

    fn runnable(&self, now: u64) -> bool {
        let Some(node) = &self.node else {
            return false;
        };
        if self.exited.is_some() {
            return false;
        }
        self.more
            || !self.inputs.borrow().is_empty()
            || node.poll_timeout().is_some_and(|t| self.global(t) <= now)
    }
}

struct Cluster<'a> {
    cfg: &'a SimConfig,
    specs: &'a [NodeSpec],
    clock: ClockRef,
    exec: Executor,
    rng: ChaCha8Rng,
    net: Network,
    obs: Rc<RefCell<Observed>>,
    members: Vec<Member>,
    faults: crate::faults::Faults,
    steps: u64,
    /// A cluster-level invariant broke (per-node ones are in the checkers).
    broken: Option<Violation>,
    /// Reconnects the transports will try: (when, order) → (node, peer).
    reconnects: BTreeMap<(u64, u64), (usize, usize)>,
    reconnect_seq: u64,
}

/// How long a transport waits before reconnecting to a peer it lost but still holds up.
const RECONNECT_MIN_NS: u64 = 100_000_000;

fn node_seed(seed: u64, i: usize, incarnation: u64) -> u64 {
    seed ^ ((i as u64 + 1) << 48) ^ (incarnation << 32)
}

impl Cluster<'_> {
    fn now(&self) -> u64 {
        self.clock.borrow().now
    }

    fn line(&self, text: &str) {
        let now = self.now();
        self.obs.borrow_mut().line(now, text);
    }

    fn flush_net_log(&mut self) {
        for l in std::mem::take(&mut self.net.log) {
            let now = self.now();
            self.obs.borrow_mut().line(now, &format!("net {l}"));
            if let Some(kind) = l.strip_prefix("fault ").and_then(|r| r.split(' ').next()) {
                *self
                    .obs
                    .borrow_mut()
                    .faults
                    .entry(kind.to_string())
                    .or_insert(0) += 1;
            }
        }
    }

    /// Starts node `i` (again): a new incarnation of its app, with a fresh clock skew draw.
    fn boot(&mut self, i: usize) -> Result<(), String> {
        let now = self.now();
        let (drift, wall) = self.net.draw_skew(i);
        let spec = &self.specs[i];
        let first = self.members[i].incarnation == 0;
        // Every other node's address, the first node first: any one that answers is enough, so a
        // node still finds the cluster when the first node is down or gone.
        let join: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, m)| m.addr.clone())
            .collect();
        let m = &mut self.members[i];
        m.incarnation += 1;
        m.start = now;
        m.drift_ppm = drift;
        m.inputs = Rc::default();
        m.more = true; // a fresh node has its boot work to run
        m.view.clear();
        m.restart_at = None;
        let (o, clk, name) = (self.obs.clone(), self.clock.clone(), m.name.clone());
        self.obs.borrow_mut().checkers[i] = Checker::default();
        let node_cfg = NodeConfig {
            seed: node_seed(self.cfg.seed, i, m.incarnation),
            wall_epoch_ns: EPOCH_NS + now as i64 + wall,
            cluster: Some(ClusterConfig {
                node: NodeId::named(&m.name),
                addr: m.addr.clone(),
                incarnation: m.incarnation,
                secret: SECRET.to_vec(),
                join,
            }),
            ..Default::default()
        };
        let mut node = build_node(
            &spec.entries,
            node_cfg,
            self.cfg,
            Box::new(move |ev| {
                let now = clk.borrow().now;
                o.borrow_mut().see(now, i, &name, ev)
            }),
            &m.world,
        )
        .map_err(|e| format!("node {}: {e}", m.name))?;
        if first {
            m.terminal = start_terminal(&mut node, &spec.exec)
                .map_err(|e| format!("node {}: {e}", m.name))?;
        }
        m.node = Some(node);
        let inc = m.incarnation;
        self.line(&format!("boot {} incarnation {inc}", self.members[i].name));
        Ok(())
    }

    fn crash(&mut self, i: usize, down_ns: u64) {
        let now = self.now();
        let m = &mut self.members[i];
        if let Some(node) = m.node.take() {
            let s = node.stats();
            m.past.0 += s.spawned;
            m.past.1 += s.messages_sent;
            m.past.2 += s.restarts;
        }
        m.more = false;
        m.view.clear();
        m.pending.clear();
        m.inputs = Rc::default(); // completions of the old incarnation go nowhere
        m.restart_at = Some(now + down_ns);
        self.obs.borrow_mut().dispatch.forget(&m.name);
        let d = format!("{} down for {}ms", m.name, down_ns / 1_000_000);
        self.net.crash(now, i);
        self.net.fire("crash", d);
        self.flush_net_log();
    }

    fn restart(&mut self, i: usize) -> Result<(), String> {
        self.net.restart(i);
        let name = self.members[i].name.clone();
        self.net.fire("restart", name);
        self.flush_net_log();
        self.boot(i)
    }

    fn deliver_due(&mut self) {
        let now = self.now();
        while let Some(d) = self.net.poll(now) {
            let to = &self.members[d.to];
            if to.node.is_none() || to.exited.is_some() {
                continue;
            }
            let text = match &d.input {
                Input::Frame { from_node, bytes } => {
                    format!("net frame {from_node} -> {} {}B", to.name, bytes.len())
                }
                Input::Datagram { bytes } => {
                    format!("net datagram -> {} {}B", to.name, bytes.len())
                }
                Input::NodeDown { node, reason } => {
                    format!("net down {node} at {} ({reason})", to.name)
                }
                other => format!("net {other:?}"),
            };
            // A transport that lost the connection to a peer the membership still holds up
            // reconnects after a seeded backoff (a new connection starts with its hello).
            let lost = match &d.input {
                Input::NodeDown { node, .. } if to.view.contains_key(node.as_str()) => {
                    self.net.index_of(node)
                }
                _ => None,
            };
            to.inputs.borrow_mut().push_back(d.input);
            self.line(&text);
            if let Some(peer) = lost {
                let at = now + RECONNECT_MIN_NS + self.rng.next_u64() % (9 * RECONNECT_MIN_NS);
                self.reconnect_seq += 1;
                self.reconnects
                    .insert((at, self.reconnect_seq), (d.to, peer));
            }
        }
        self.flush_net_log();
    }

    /// One slice of node `i`: its inputs, one step, its outputs, the invariants, then faults.
    fn step(&mut self, i: usize) {
        let now = self.now();
        let m = &mut self.members[i];
        let t = m.local(now);
        let node = m.node.as_mut().expect("runnable nodes exist");
        loop {
            let next = m.inputs.borrow_mut().pop_front();
            let Some(input) = next else { break };
            node.handle(t, input);
        }
        let work = node.run(t, 1);
        m.more = work == Work::More;
        let mut outs = Vec::new();
        while let Some(o) = node.poll_output() {
            outs.push(o);
        }
        let hello = node.hello();
        for o in outs {
            match o {
                Output::Stdout(b) => m.stdout.push_str(&String::from_utf8_lossy(&b)),
                Output::Stderr(b) => m.stderr.push_str(&String::from_utf8_lossy(&b)),
                Output::Log { .. } => {}
                Output::Exit(code) => {
                    m.exited = Some(code);
                    self.obs
                        .borrow_mut()
                        .line(now, &format!("{} exit {code}", m.name));
                }
                Output::Execute { pid, tag, cmd } => {
                    let side = WorldSide {
                        clock: self.clock.clone(),
                        exec: self.exec.clone(),
                        world: m.world.clone(),
                        inputs: m.inputs.clone(),
                        durability: None,
                    };
                    let mut ask = Ask {
                        rng: &mut self.rng,
                        faults: &self.faults,
                        script: &mut m.script,
                        pending: &mut m.pending,
                    };
                    side.execute(&mut ask, pid, tag, cmd);
                }
                Output::Transmit { to_node, bytes } => {
                    self.net.transmit(now, i, &to_node, bytes, hello.clone());
                }
                Output::Datagram { addr, bytes } => self.net.datagram(now, i, &addr, bytes),
                Output::PeerUp {
                    node: peer,
                    addr,
                    incarnation,
                } => {
                    let p = peer.to_string();
                    self.obs.borrow_mut().line(
                        now,
                        &format!("{} peer up {p}#{incarnation} at {addr}", m.name),
                    );
                    let newest = m.newest.entry(p.clone()).or_insert(0);
                    if *newest > incarnation && self.broken.is_none() {
                        self.broken = Some(Violation {
                            invariant: "no old incarnation comes back",
                            detail: format!(
                                "{} holds {p} up as incarnation {incarnation} after seeing \
                                 incarnation {}",
                                m.name, *newest
                            ),
                        });
                    }
                    *newest = (*newest).max(incarnation);
                    m.view.insert(p, incarnation);
                }
                Output::PeerDown { node: peer } => {
                    let p = peer.to_string();
                    self.obs
                        .borrow_mut()
                        .line(now, &format!("{} peer down {p}", m.name));
                    m.view.remove(&p);
                }
                // No foreign collectors in a simulation: nothing sends `Input::Dispatch`, and
                // Weft nodes dispatch to each other through relay frames.
                Output::DispatchSend { .. }
                | Output::DispatchRespond { .. }
                | Output::DispatchAbort { .. } => {}
            }
        }
        let owners = node.name_owners();
        self.obs.borrow_mut().checkers[i].after_step(&owners);
        {
            let mut obs = self.obs.borrow_mut();
            if m.exited.is_some() {
                obs.dispatch.forget(&m.name);
            }
            obs.dispatch.check(now);
            if let Some(v) = obs.dispatch.violation() {
                obs.set_violation(v);
            }
        }
        inject(
            node,
            &mut self.rng,
            &self.faults,
            self.cfg.explore.pick,
            m.terminal,
            &mut m.pending,
        );
        if m.exited.is_some() {
            self.net.stop(now, i);
            self.flush_net_log();
        }
    }

    fn violated(&self) -> bool {
        self.broken.is_some() || self.obs.borrow().violation().is_some()
    }

    /// Whether every node that runs a terminal process has stopped (and there is one).
    fn terminals_done(&self) -> bool {
        let mut any = false;
        for m in &self.members {
            if m.terminal.is_some() {
                any = true;
                if m.exited.is_none() {
                    return false;
                }
            }
        }
        any
    }

    /// Faults stop: the network heals, crashed nodes come back, BUGGIFY goes quiet.
    fn begin_liveness(&mut self) -> Result<(), String> {
        self.faults = crate::faults::Faults::none();
        self.net.heal();
        self.flush_net_log();
        self.obs.borrow_mut().came_back = Some(Default::default());
        for i in 0..self.members.len() {
            if self.members[i].restart_at.is_some() {
                self.restart(i)?;
            }
            if let Some(node) = &mut self.members[i].node {
                node.sim_control().set_buggify(false);
            }
        }
        Ok(())
    }

    /// The run's main loop. Returns whether it stalled (nothing could ever happen again).
    fn run(&mut self) -> Result<bool, String> {
        let mut deadline = self.cfg.until_ns;
        let mut in_liveness = false;
        let mut next_tick = TICK_NS;
        let spare: Vec<usize> = (0..self.members.len())
            .filter(|i| self.specs[*i].exec.is_some())
            .collect();
        loop {
            self.deliver_due();
            self.exec.run_ready(&mut self.rng);
            let now = self.now();
            if !in_liveness && !self.net.cfg.faults.is_none() && now >= next_tick {
                next_tick = now - now % TICK_NS + TICK_NS;
                for a in self.net.tick(now, &spare) {
                    match a {
                        Action::Crash { node, down_ns } => self.crash(node, down_ns),
                    }
                }
                self.flush_net_log();
            }
            for i in 0..self.members.len() {
                if self.members[i].restart_at.is_some_and(|t| t <= now) {
                    self.restart(i)?;
                }
            }
            while let Some((&key, &(x, y))) = self.reconnects.iter().next() {
                if key.0 > now {
                    break;
                }
                self.reconnects.remove(&key);
                let m = &self.members[x];
                let still = m.exited.is_none() && m.view.contains_key(&self.members[y].name);
                if let (true, Some(hello)) = (still, m.node.as_ref().and_then(|n| n.hello())) {
                    self.net.connect(now, x, y, hello);
                    self.flush_net_log();
                }
            }
            let runnable: Vec<usize> = (0..self.members.len())
                .filter(|i| self.members[*i].runnable(now))
                .collect();
            if !runnable.is_empty() {
                let i = runnable[(self.rng.next_u64() % runnable.len() as u64) as usize];
                self.step(i);
                self.steps += 1;
                if self.violated() {
                    return Ok(false);
                }
                let phase_over = (!in_liveness && self.terminals_done())
                    || (self.members[i].more && now + BUSY_STEP_NS > deadline);
                if self.members[i].more {
                    // Computing takes time, so a busy node cannot freeze the clock.
                    self.clock.borrow_mut().advance(now + BUSY_STEP_NS);
                }
                if phase_over {
                    if in_liveness || self.cfg.liveness_ns == 0 {
                        return Ok(false);
                    }
                    in_liveness = true;
                    self.begin_liveness()?;
                    deadline = self.now() + self.cfg.liveness_ns;
                }
                continue;
            }
            if self.exec.has_ready() {
                continue;
            }
            let mut next = [self.net.next_at(now), self.clock.borrow().next_deadline()]
                .into_iter()
                .flatten()
                .min();
            let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
            for m in &self.members {
                if let (Some(node), None) = (&m.node, m.exited) {
                    if let Some(t) = node.poll_timeout() {
                        consider(m.global(t));
                    }
                }
                if let Some(t) = m.restart_at {
                    consider(t);
                }
            }
            if let Some((t, _)) = self.reconnects.keys().next() {
                consider(*t);
            }
            if !in_liveness && !self.net.cfg.faults.is_none() {
                consider(next_tick);
            }
            let Some(mut next) = next else {
                return Ok(true); // nothing will ever happen again
            };
            if self.faults.jitter > 0.0 && crate::unit(&mut self.rng) < self.faults.jitter {
                // Wakes come late, as on a loaded machine.
                next += self.rng.next_u64() % 5_000_000;
                let mut o = self.obs.borrow_mut();
                o.line(now, &format!("fault jitter {next}"));
                *o.faults.entry("jitter".into()).or_insert(0) += 1;
            }
            if next > deadline {
                if in_liveness || self.cfg.liveness_ns == 0 {
                    self.clock.borrow_mut().advance(deadline);
                    return Ok(false);
                }
                in_liveness = true;
                self.clock.borrow_mut().advance(deadline);
                self.begin_liveness()?;
                deadline += self.cfg.liveness_ns;
                continue;
            }
            self.clock.borrow_mut().advance(next.max(now));
        }
    }

    /// After healing: every live node holds every other live node up, at its current
    /// incarnation (checked only when the engine takes part in a cluster at all).
    fn membership_converged(&self) -> Option<Violation> {
        let live: Vec<&Member> = self
            .members
            .iter()
            .filter(|m| m.node.is_some() && m.exited.is_none())
            .collect();
        let clustered = live
            .iter()
            .any(|m| m.node.as_ref().is_some_and(|n| n.hello().is_some()));
        if !clustered {
            return None;
        }
        for m in &live {
            let want: BTreeMap<String, u64> = live
                .iter()
                .filter(|o| o.name != m.name)
                .map(|o| (o.name.clone(), o.incarnation))
                .collect();
            if m.view != want {
                let show = |v: &BTreeMap<String, u64>| {
                    v.iter()
                        .map(|(k, i)| format!("{k}#{i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Some(Violation {
                    invariant: "membership converges after faults stop",
                    detail: format!(
                        "{} holds [{}] up, but the live nodes besides it are [{}]",
                        m.name,
                        show(&m.view),
                        show(&want)
                    ),
                });
            }
        }
        None
    }
}

/// `{n2@host|0x1f}` → ("n2", 0x1f).
fn pid_parts(pid: &str) -> Option<(&str, u64)> {
    let inner = pid.strip_prefix('{')?.strip_suffix('}')?;
    let (node, rest) = inner.split_once('@')?;
    let hex = rest.rsplit_once("|0x")?.1;
    Some((node, u64::from_str_radix(hex, 16).ok()?))
}

impl Cluster<'_> {
    /// After healing: every live node knows the same cluster-wide names with the same owners,
    /// and every owner is a live process of a live node.
    fn names_converged(&mut self) -> Option<Violation> {
        let live: Vec<usize> = (0..self.members.len())
            .filter(|i| self.members[*i].node.is_some() && self.members[*i].exited.is_none())
            .collect();
        let names = |m: &Member| {
            m.node
                .as_ref()
                .map(|n| n.cluster_names())
                .unwrap_or_default()
        };
        let first = names(&self.members[*live.first()?]);
        let show = |v: &[(String, String)]| {
            v.iter()
                .map(|(n, o)| format!("{n}={o}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for i in &live[1..] {
            let other = names(&self.members[*i]);
            if other != first {
                return Some(Violation {
                    invariant: "names converge after faults stop",
                    detail: format!(
                        "{} knows [{}] but {} knows [{}]",
                        self.members[live[0]].name,
                        show(&first),
                        self.members[*i].name,
                        show(&other)
                    ),
                });
            }
        }
        for (name, owner) in &first {
            let owner_alive = pid_parts(owner).is_some_and(|(node, uniq)| {
                live.iter().any(|i| {
                    let m = &mut self.members[*i];
                    m.name == node
                        && m.node
                            .as_mut()
                            .is_some_and(|n| n.sim_control().live_processes().contains(&uniq))
                })
            });
            if !owner_alive {
                return Some(Violation {
                    invariant: "names converge after faults stop",
                    detail: format!(
                        "every node resolves '{name}' to {owner}, which is not a live process"
                    ),
                });
            }
        }
        None
    }
}

/// Runs one seed of a cluster: `specs` are the nodes (the first is everyone's join address),
/// `cfg` the run's settings (its faults apply to every node; `cfg.net` is the network's).
pub fn run(specs: &[NodeSpec], cfg: &SimConfig) -> Result<SimReport, String> {
    let net = &cfg.net;
    if specs.is_empty() {
        return Err("a cluster run needs at least one node".into());
    }
    let mut names = BTreeSet::new();
    for s in specs {
        if s.name.is_empty() || s.name == NodeId::LOCAL || !names.insert(s.name.clone()) {
            return Err(format!(
                "node name '{}' is empty, reserved or used twice",
                s.name
            ));
        }
    }
    let clock: ClockRef = Rc::default();
    let obs = Rc::new(RefCell::new(Observed::new(specs.len(), cfg.keep_trace)));
    let mut network = Network::new(cfg.seed, net.clone());
    let mut members = Vec::new();
    for s in specs {
        let addr = format!("{}:{PORT}", s.name);
        network.add(&s.name, &addr);
        let world = Rc::new(RefCell::new(World::new(Storage::Memory)));
        world
            .borrow_mut()
            .configure(&s.entries)
            .map_err(|e| format!("node {}: {e}", s.name))?;
        members.push(Member {
            name: s.name.clone(),
            addr,
            node: None,
            incarnation: 0,
            start: 0,
            drift_ppm: 0,
            world,
            inputs: Rc::default(),
            more: false,
            terminal: None,
            exited: None,
            restart_at: None,
            view: BTreeMap::new(),
            newest: BTreeMap::new(),
            script: if s.exec.is_some() {
                cfg.input.iter().cloned().collect()
            } else {
                VecDeque::new()
            },
            pending: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
            past: (0, 0, 0),
        });
    }
    let mut c = Cluster {
        cfg,
        specs,
        clock: clock.clone(),
        exec: Executor::default(),
        rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5EED_5EED_5EED_5EED),
        net: network,
        obs: obs.clone(),
        members,
        faults: cfg.faults.clone(),
        steps: 0,
        broken: None,
        reconnects: BTreeMap::new(),
        reconnect_seq: 0,
    };
    for i in 0..specs.len() {
        c.boot(i)?;
    }
    c.flush_net_log();
    let stalled = c.run()?;
    let sim_time_ns = c.now();

    if !c.violated() {
        for i in 0..c.members.len() {
            let m = &mut c.members[i];
            if m.terminal.is_some() && m.exited.is_none() {
                if let Some(node) = &mut m.node {
                    let v = unfinished(node, stalled, sim_time_ns, &m.name);
                    c.broken = Some(v);
                    break;
                }
            }
        }
    }
    let liveness_ran = obs.borrow().came_back.is_some();
    if !c.violated() && liveness_ran {
        let back = obs.borrow().came_back.clone().unwrap_or_default();
        for m in &c.members {
            if let (Some(node), None) = (&m.node, m.exited) {
                if let Some(v) = services_down(node, &back, &m.name) {
                    c.broken = Some(v);
                    break;
                }
            }
        }
        if c.broken.is_none() {
            c.broken = c.membership_converged();
        }
        if c.broken.is_none() {
            c.broken = c.names_converged();
        }
    }
    let exit_code = if c.members.iter().any(|m| m.terminal.is_some()) {
        let codes: Vec<i32> = c.members.iter().filter_map(|m| m.exited).collect();
        codes
            .iter()
            .copied()
            .find(|c| *c != 0)
            .or(codes.first().copied())
    } else {
        None
    };
    let (mut processes, mut messages, mut restarts) = (0, 0, 0);
    for m in &c.members {
        let (p, msg, r) = m.past;
        let s = m.node.as_ref().map(|n| n.stats()).unwrap_or_default();
        processes += p + s.spawned;
        messages += msg + s.messages_sent;
        restarts += r + s.restarts;
    }
    let joined = |pick: &dyn Fn(&Member) -> &String| {
        let writers: Vec<&Member> = c.members.iter().filter(|m| !pick(m).is_empty()).collect();
        if writers.len() <= 1 {
            return writers.first().map(|m| pick(m).clone()).unwrap_or_default();
        }
        let mut out = String::new();
        for m in writers {
            for l in pick(m).lines() {
                out.push_str(&format!("{}| {l}\n", m.name));
            }
        }
        out
    };
    let stdout = joined(&|m: &Member| &m.stdout);
    let stderr = joined(&|m: &Member| &m.stderr);
    let violation = c
        .broken
        .clone()
        .or_else(|| obs.borrow().violation().cloned());
    let o = obs.borrow();
    Ok(SimReport {
        seed: cfg.seed,
        sim_time_ns,
        steps: c.steps,
        processes,
        messages,
        restarts,
        faults: o.faults.clone(),
        faults_drawn: 0,
        trace_hash: o.hash.0,
        schedule_hash: o.schedule.0,
        trace: o.all.clone().unwrap_or_default(),
        recent: o.recent.iter().cloned().collect(),
        stdout,
        stderr,
        exit_code,
        violation,
    })
}
