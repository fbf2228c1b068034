//! The simulated network between the nodes of a cluster run: relay connections per ordered node
//! pair (frames in order within a connection, each after a seeded latency), membership
//! datagrams (independent latency, loss, duplication, reordering), and the network's faults —
//! clogged links, symmetric and one-way partitions, an isolated node, connection resets — drawn
//! on a virtual-time tick. Everything is seeded; nothing here reads a clock or touches the OS.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use weft_engine::pid::NodeId;
use weft_engine::Input;

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000_000_000;
/// The network's faults are drawn once per this much virtual time.
pub const TICK_NS: u64 = SECOND;
/// A connection whose link stays blocked this long breaks (HTTP/2 keep-alive gives up).
pub const KEEPALIVE_NS: u64 = 3 * SECOND;
/// Mean one-way latency by default (`--latency`).
pub const DEFAULT_LATENCY_NS: u64 = MS;
/// Mean latencies a swarm draws from, per seed.
pub const SWARM_LATENCIES_NS: [u64; 4] = [50_000, 500_000, 2 * MS, 10 * MS];

/// Every network fault type, in report order. `restart` follows every `crash`; `skew` is drawn
/// per node at the start.
pub const NET_KINDS: &[&str] = &[
    "loss",
    "dup",
    "reorder",
    "stale",
    "reset",
    "clog",
    "partition",
    "oneway",
    "isolate",
    "crash",
    "restart",
    "skew",
];

/// Network fault rates: per datagram (loss, dup, reorder), per broken connection (stale), per
/// tick (reset, clog, partition, oneway, isolate, crash), per node at start (skew).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NetFaults {
    pub loss: f64,
    pub dup: f64,
    pub reorder: f64,
    pub stale: f64,
    pub reset: f64,
    pub clog: f64,
    pub partition: f64,
    pub oneway: f64,
    pub isolate: f64,
    pub crash: f64,
    pub skew: f64,
}

impl NetFaults {
    pub fn none() -> NetFaults {
        NetFaults::default()
    }

    fn fields(&self) -> [(&'static str, f64); 11] {
        [
            ("loss", self.loss),
            ("dup", self.dup),
            ("reorder", self.reorder),
            ("stale", self.stale),
            ("reset", self.reset),
            ("clog", self.clog),
            ("partition", self.partition),
            ("oneway", self.oneway),
            ("isolate", self.isolate),
            ("crash", self.crash),
            ("skew", self.skew),
        ]
    }

    fn field(&mut self, k: &str) -> Option<&mut f64> {
        Some(match k {
            "loss" => &mut self.loss,
            "dup" => &mut self.dup,
            "reorder" => &mut self.reorder,
            "stale" => &mut self.stale,
            "reset" => &mut self.reset,
            "clog" => &mut self.clog,
            "partition" => &mut self.partition,
            "oneway" => &mut self.oneway,
            "isolate" => &mut self.isolate,
            "crash" => &mut self.crash,
            "skew" => &mut self.skew,
            _ => return None,
        })
    }

    /// `none`, `all`, or a list like `loss=0.01,partition=0.05,crash`.
    pub fn parse(spec: &str) -> Result<NetFaults, String> {
        let mut f = NetFaults::none();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "none" => continue,
                "all" => {
                    f = NetFaults {
                        loss: 0.02,
                        dup: 0.02,
                        reorder: 0.05,
                        stale: 0.5,
                        reset: 0.02,
                        clog: 0.05,
                        partition: 0.02,
                        oneway: 0.02,
                        isolate: 0.02,
                        crash: 0.01,
                        skew: 0.5,
                    };
                    continue;
                }
                _ => {}
            }
            let (k, v) = part.split_once('=').unwrap_or((part, "0.05"));
            let rate: f64 = v
                .parse()
                .map_err(|_| format!("--net: '{v}' is not a rate between 0 and 1"))?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("--net: {k}={v} is outside 0..1"));
            }
            match f.field(k) {
                Some(slot) => *slot = rate,
                None => {
                    return Err(format!(
                        "--net: unknown network fault '{k}' (known: {})",
                        NET_KINDS
                            .iter()
                            .filter(|k| **k != "restart")
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
        }
        Ok(f)
    }

    /// Swarm testing: each seed gets its own mix, about half the fault types off.
    pub fn draw(rng: &mut ChaCha8Rng) -> NetFaults {
        let mut pick = |max: f64| {
            let on = rng.next_u64().is_multiple_of(2);
            let u = unit(rng);
            if on {
                u * max
            } else {
                0.0
            }
        };
        NetFaults {
            loss: pick(0.1),
            dup: pick(0.05),
            reorder: pick(0.2),
            stale: pick(1.0),
            reset: pick(0.05),
            clog: pick(0.1),
            partition: pick(0.05),
            oneway: pick(0.05),
            isolate: pick(0.05),
            crash: pick(0.03),
            skew: pick(1.0),
        }
    }

    pub fn is_none(&self) -> bool {
        *self == NetFaults::none()
    }

    /// The exact text `parse` reads back (shortest f64 text that round-trips).
    pub fn describe(&self) -> String {
        if self.is_none() {
            return "none".into();
        }
        self.fields()
            .iter()
            .filter(|(_, v)| *v > 0.0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        rng.next_u64() % n
    }
}

/// The network's settings for a run.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// Mean one-way latency; each frame and datagram draws its own (with a tail).
    pub latency_ns: u64,
    pub faults: NetFaults,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_ns: DEFAULT_LATENCY_NS,
            faults: NetFaults::none(),
        }
    }
}

/// Something the network hands to a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub to: usize,
    pub input: Input,
}

/// What a tick asks of the cluster runner (node objects are the runner's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Crash this node now; restart it after `down_ns`.
    Crash { node: usize, down_ns: u64 },
}

/// One direction of a relay connection: frames in flight in send order.
#[derive(Default)]
struct Stream {
    /// 0: closed; else the connection's epoch (every connection gets a new one).
    epoch: u64,
    queue: VecDeque<(u64, Vec<u8>)>,
    last_at: u64,
}

#[allow(clippy::large_enum_variant)] // inputs in flight are moved, not copied
enum Scheduled {
    Deliver(Delivery),
    /// Break the connection between the two nodes if its link is still blocked then.
    Keepalive(usize, usize),
}

struct Member {
    name: String,
    node_id: NodeId,
    addr: String,
    up: bool,
}

pub struct Network {
    rng: ChaCha8Rng,
    pub cfg: NetConfig,
    members: Vec<Member>,
    streams: BTreeMap<(usize, usize), Stream>,
    scheduled: BTreeMap<(u64, u64), Scheduled>,
    /// Directed links that drop everything until the given time (partitions).
    blocked: BTreeMap<(usize, usize), u64>,
    /// Directed links that hold everything until the given time.
    clogged: BTreeMap<(usize, usize), u64>,
    /// A failed connect reported to the sender already (cleared when the peer comes back).
    refused: BTreeSet<(usize, usize)>,
    /// When `to` hears that its connection with `from` closed: a new connection from `from`
    /// delivers nothing before (a transport reports a close before what follows it).
    closed_notice: BTreeMap<(usize, usize), u64>,
    seq: u64,
    epochs: u64,
    /// Faults fired, by kind.
    pub fired: BTreeMap<&'static str, u64>,
    /// What happened, for the run's trace (drained by the runner).
    pub log: Vec<String>,
    /// Frames and datagrams delivered.
    pub delivered: u64,
}

impl Network {
    pub fn new(seed: u64, cfg: NetConfig) -> Network {
        Network {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x4E37_4E37_4E37_4E37),
            cfg,
            members: Vec::new(),
            streams: BTreeMap::new(),
            scheduled: BTreeMap::new(),
            blocked: BTreeMap::new(),
            clogged: BTreeMap::new(),
            refused: BTreeSet::new(),
            closed_notice: BTreeMap::new(),
            seq: 0,
            epochs: 0,
            fired: BTreeMap::new(),
            log: Vec::new(),
            delivered: 0,
        }
    }

    /// Adds a node (up) reachable at `addr`; returns its index.
    pub fn add(&mut self, name: &str, addr: &str) -> usize {
        self.members.push(Member {
            name: name.to_string(),
            node_id: NodeId::named(name),
            addr: addr.to_string(),
            up: true,
        });
        self.members.len() - 1
    }

    pub fn index_of(&self, node: &NodeId) -> Option<usize> {
        self.members.iter().position(|m| &m.node_id == node)
    }

    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.members[i].up
    }

    pub fn fire(&mut self, kind: &'static str, detail: String) {
        *self.fired.entry(kind).or_insert(0) += 1;
        self.log.push(format!("fault {kind} {detail}"));
    }

    fn chance(&mut self, rate: f64) -> bool {
        rate > 0.0 && unit(&mut self.rng) < rate
    }

    /// One draw of latency: mostly around the mean, sometimes a long tail (up to 20x).
    fn latency(&mut self) -> u64 {
        let mean = self.cfg.latency_ns.max(1);
        if below(&mut self.rng, 10) == 0 {
            mean + below(&mut self.rng, 19 * mean)
        } else {
            mean / 2 + below(&mut self.rng, mean)
        }
    }

    fn schedule(&mut self, at: u64, s: Scheduled) {
        self.seq += 1;
        self.scheduled.insert((at, self.seq), s);
    }

    fn is_blocked(&self, from: usize, to: usize, now: u64) -> bool {
        self.blocked.get(&(from, to)).is_some_and(|u| *u > now)
    }

    fn clog_until(&self, from: usize, to: usize, now: u64) -> Option<u64> {
        self.clogged.get(&(from, to)).copied().filter(|u| *u > now)
    }

    /// A relay frame from `from` to node `to`: on the open connection, or on a new one that
    /// starts with `hello` (the sender's `Node::hello()`).
    pub fn transmit(
        &mut self,
        now: u64,
        from: usize,
        to: &NodeId,
        bytes: Vec<u8>,
        hello: Option<Vec<u8>>,
    ) {
        self.transmit_inner(now, from, to, Some(bytes), hello);
    }

    fn transmit_inner(
        &mut self,
        now: u64,
        from: usize,
        to: &NodeId,
        bytes: Option<Vec<u8>>,
        hello: Option<Vec<u8>>,
    ) {
        let Some(to) = self.index_of(to) else {
            return; // no such node: nothing to connect to
        };
        if to == from || !self.members[from].up {
            return;
        }
        if !self.members[to].up {
            // Connection refused: the sender hears of it once until the node is back.
            if self.refused.insert((from, to)) {
                let at = now + self.latency();
                let node = self.members[to].node_id.clone();
                self.schedule(
                    at,
                    Scheduled::Deliver(Delivery {
                        to: from,
                        input: Input::NodeDown {
                            node,
                            reason: "connection refused".into(),
                        },
                    }),
                );
            }
            return;
        }
        let mut opened = None;
        if self.streams.get(&(from, to)).is_none_or(|s| s.epoch == 0) {
            self.epochs += 1;
            opened = Some(self.epochs);
        }
        let lat = self.latency();
        let hello_lat = self.latency();
        let notice = self.closed_notice.get(&(from, to)).copied().unwrap_or(0);
        let s = self.streams.entry((from, to)).or_default();
        if let Some(epoch) = opened {
            s.epoch = epoch;
            s.queue.clear();
            s.last_at = s.last_at.max(notice);
            if let Some(h) = hello {
                let at = (now + hello_lat).max(s.last_at);
                s.last_at = at;
                s.queue.push_back((at, h));
            }
        }
        if let Some(bytes) = bytes {
            let at = (now + lat).max(s.last_at);
            s.last_at = at;
            s.queue.push_back((at, bytes));
        }
        if let Some(epoch) = opened {
            let (a, b) = (self.name(from).to_string(), self.name(to).to_string());
            self.log.push(format!("connect {a} -> {b} epoch {epoch}"));
            if self.is_blocked(from, to, now) || self.is_blocked(to, from, now) {
                self.schedule(now + KEEPALIVE_NS, Scheduled::Keepalive(from, to));
            }
        }
    }

    /// Opens a connection from `from` to node `to` that carries only `hello` (a transport
    /// reconnecting to a peer it still holds up), unless one is open already.
    pub fn connect(&mut self, now: u64, from: usize, to: usize, hello: Vec<u8>) {
        if self.streams.get(&(from, to)).is_some_and(|s| s.epoch != 0) {
            return;
        }
        let to_id = self.members[to].node_id.clone();
        self.transmit_inner(now, from, &to_id, None, Some(hello));
    }

    /// A membership datagram from `from` to whoever listens at `addr`: best effort.
    pub fn datagram(&mut self, now: u64, from: usize, addr: &str, bytes: Vec<u8>) {
        let Some(to) = self.members.iter().position(|m| m.addr == addr) else {
            return;
        };
        if !self.members[to].up || self.is_blocked(from, to, now) {
            return;
        }
        if self.chance(self.cfg.faults.loss) {
            let d = format!("{} -> {}", self.name(from), self.name(to));
            self.fire("loss", d);
            return;
        }
        let copies = if self.chance(self.cfg.faults.dup) {
            let d = format!("{} -> {}", self.name(from), self.name(to));
            self.fire("dup", d);
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = now + self.latency();
            if let Some(u) = self.clog_until(from, to, now) {
                at = at.max(u);
            }
            if self.chance(self.cfg.faults.reorder) {
                // Held back long enough for later datagrams to overtake it.
                at += below(&mut self.rng, 20 * self.cfg.latency_ns.max(1));
                let d = format!("{} -> {}", self.name(from), self.name(to));
                self.fire("reorder", d);
            }
            self.schedule(
                at,
                Scheduled::Deliver(Delivery {
                    to,
                    input: Input::Datagram {
                        bytes: bytes.clone(),
                    },
                }),
            );
        }
    }

    /// Closes the connection between `a` and `b` (both directions): frames in flight are lost,
    /// or with the `stale` fault still arrive, late, possibly after the next connection's first
    /// frames; each end that is up learns of the close as `Input::NodeDown`.
    pub fn break_connection(&mut self, now: u64, a: usize, b: usize, reason: &str) {
        let mut was_open = false;
        let mut stale = Vec::new();
        for (x, y) in [(a, b), (b, a)] {
            let Some(s) = self.streams.get_mut(&(x, y)) else {
                continue;
            };
            if s.epoch == 0 {
                continue;
            }
            was_open = true;
            s.epoch = 0;
            let q: Vec<(u64, Vec<u8>)> = s.queue.drain(..).collect();
            // Only bytes between two live ends can still arrive: a crashed end's socket is gone.
            if self.members[x].up && self.members[y].up && !q.is_empty() {
                stale.push((x, y, q));
            }
        }
        if !was_open {
            return;
        }
        for (x, y, q) in stale {
            if !self.chance(self.cfg.faults.stale) {
                continue;
            }
            let d = format!("{} -> {} {} frame(s)", self.name(x), self.name(y), q.len());
            self.fire("stale", d);
            let from_node = self.members[x].node_id.clone();
            for (at, bytes) in q {
                let late = at.max(now) + below(&mut self.rng, 50 * MS);
                self.schedule(
                    late,
                    Scheduled::Deliver(Delivery {
                        to: y,
                        input: Input::Frame {
                            from_node: from_node.clone(),
                            bytes,
                        },
                    }),
                );
            }
        }
        let (na, nb) = (self.name(a).to_string(), self.name(b).to_string());
        self.log.push(format!("close {na} <-> {nb} ({reason})"));
        for (x, y) in [(a, b), (b, a)] {
            if self.members[x].up {
                let at = now + self.latency();
                self.closed_notice.insert((y, x), at);
                let node = self.members[y].node_id.clone();
                self.schedule(
                    at,
                    Scheduled::Deliver(Delivery {
                        to: x,
                        input: Input::NodeDown {
                            node,
                            reason: reason.to_string(),
                        },
                    }),
                );
            }
        }
    }

    /// The node crashed: its connections close (peers hear of it) and nothing reaches it.
    pub fn crash(&mut self, now: u64, i: usize) {
        self.members[i].up = false;
        for j in 0..self.members.len() {
            if j != i {
                self.break_connection(now, i, j, "connection closed: peer crashed");
            }
        }
        self.scheduled
            .retain(|_, s| !matches!(s, Scheduled::Deliver(d) if d.to == i));
    }

    /// The node runs again (a new incarnation): connections to it may be opened again.
    pub fn restart(&mut self, i: usize) {
        self.members[i].up = true;
        self.refused.retain(|(_, to)| *to != i);
    }

    /// The node stopped for good (its process exited): as a crash, without a restart.
    pub fn stop(&mut self, now: u64, i: usize) {
        self.crash(now, i);
    }

    /// Faults stop: partitions and clogs heal; nothing is lost, duplicated or reordered.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.clogged.clear();
        self.cfg.faults = NetFaults::none();
        self.log.push("heal: network faults stop".into());
    }

    fn block(&mut self, now: u64, from: usize, to: usize, until: u64) {
        let u = self.blocked.entry((from, to)).or_insert(0);
        *u = (*u).max(until);
        let open = |s: Option<&Stream>| s.is_some_and(|s| s.epoch != 0);
        if open(self.streams.get(&(from, to))) || open(self.streams.get(&(to, from))) {
            self.schedule(now + KEEPALIVE_NS, Scheduled::Keepalive(from, to));
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].up)
            .collect()
    }

    /// One tick of the network's faults; returns what the runner must do (crashes). `spare`
    /// lists nodes that must not crash (they run the terminal process).
    pub fn tick(&mut self, now: u64, spare: &[usize]) -> Vec<Action> {
        let f = self.cfg.faults.clone();
        let live = self.live();
        let n = live.len() as u64;
        let mut actions = Vec::new();
        if n < 2 {
            return actions;
        }
        let pick = |rng: &mut ChaCha8Rng, v: &[usize]| v[below(rng, v.len() as u64) as usize];
        if self.chance(f.clog) {
            let a = pick(&mut self.rng, &live);
            let others: Vec<usize> = live.iter().copied().filter(|x| *x != a).collect();
            let b = pick(&mut self.rng, &others);
            let until = now + 10 * MS + below(&mut self.rng, 2 * SECOND);
            let u = self.clogged.entry((a, b)).or_insert(0);
            *u = (*u).max(until);
            let d = format!(
                "{} -> {} for {}ms",
                self.name(a),
                self.name(b),
                (until - now) / MS
            );
            self.fire("clog", d);
        }
        if self.chance(f.partition) {
            // Two non-empty sides, cut both ways.
            let mut side: Vec<bool> = live.iter().map(|_| self.rng.next_u64() & 1 == 1).collect();
            if side.iter().all(|s| *s) || side.iter().all(|s| !*s) {
                let k = below(&mut self.rng, n) as usize;
                side[k] = !side[k];
            }
            let until = now + SECOND + below(&mut self.rng, 20 * SECOND);
            for (x, sx) in live.iter().zip(&side) {
                for (y, sy) in live.iter().zip(&side) {
                    if sx != sy {
                        self.block(now, *x, *y, until);
                    }
                }
            }
            let names = |want: bool| {
                live.iter()
                    .zip(&side)
                    .filter(|(_, s)| **s == want)
                    .map(|(i, _)| self.name(*i))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let d = format!(
                "{} | {} for {}s",
                names(true),
                names(false),
                (until - now) / SECOND
            );
            self.fire("partition", d);
        }
        if self.chance(f.oneway) {
            let a = pick(&mut self.rng, &live);
            let others: Vec<usize> = live.iter().copied().filter(|x| *x != a).collect();
            let b = pick(&mut self.rng, &others);
            let until = now + SECOND + below(&mut self.rng, 20 * SECOND);
            self.block(now, a, b, until);
            let d = format!(
                "{} -/-> {} for {}s",
                self.name(a),
                self.name(b),
                (until - now) / SECOND
            );
            self.fire("oneway", d);
        }
        if self.chance(f.isolate) {
            let a = pick(&mut self.rng, &live);
            let until = now + SECOND + below(&mut self.rng, 20 * SECOND);
            for b in live.clone() {
                if b != a {
                    self.block(now, a, b, until);
                    self.block(now, b, a, until);
                }
            }
            let d = format!("{} for {}s", self.name(a), (until - now) / SECOND);
            self.fire("isolate", d);
        }
        if self.chance(f.reset) {
            let open: Vec<(usize, usize)> = self
                .streams
                .iter()
                .filter(|(_, s)| s.epoch != 0)
                .map(|(k, _)| *k)
                .collect();
            if !open.is_empty() {
                let (a, b) = open[below(&mut self.rng, open.len() as u64) as usize];
                let d = format!("{} <-> {}", self.name(a), self.name(b));
                self.fire("reset", d);
                self.break_connection(now, a, b, "connection reset");
            }
        }
        if self.chance(f.crash) {
            let can: Vec<usize> = live
                .iter()
                .copied()
                .filter(|i| !spare.contains(i))
                .collect();
            if !can.is_empty() {
                let node = pick(&mut self.rng, &can);
                let down_ns = SECOND / 2 + below(&mut self.rng, 10 * SECOND);
                actions.push(Action::Crash { node, down_ns });
            }
        }
        actions
    }

    /// A clock skew for a node starting now: (drift in parts per million, wall-clock offset in
    /// ns), zero unless the `skew` fault fires.
    pub fn draw_skew(&mut self, i: usize) -> (i64, i64) {
        if !self.chance(self.cfg.faults.skew) {
            return (0, 0);
        }
        let drift = below(&mut self.rng, 100_001) as i64 - 50_000;
        let offset = below(&mut self.rng, 20 * SECOND + 1) as i64 - 10 * SECOND as i64;
        let d = format!(
            "{} drift {drift}ppm wall {}ms",
            self.name(i),
            offset / MS as i64
        );
        self.fire("skew", d);
        (drift, offset)
    }

    /// The next instant something is due (a delivery, a keep-alive check, a clog ending with
    /// frames waiting).
    pub fn next_at(&self, now: u64) -> Option<u64> {
        let mut next = self.scheduled.keys().next().map(|(at, _)| *at);
        for ((from, to), s) in &self.streams {
            let Some((at, _)) = s.queue.front() else {
                continue;
            };
            let mut at = *at;
            if let Some(u) = self.clog_until(*from, *to, now) {
                at = at.max(u);
            }
            if let Some(u) = self.blocked.get(&(*from, *to)).filter(|u| **u > now) {
                at = at.max(*u);
            }
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        next
    }

    /// The next delivery due by `now`, earliest first; None when nothing is due.
    pub fn poll(&mut self, now: u64) -> Option<Delivery> {
        loop {
            // The earliest due head of a stream whose link lets it through.
            let mut best: Option<(u64, (usize, usize))> = None;
            for ((from, to), s) in &self.streams {
                let Some((at, _)) = s.queue.front() else {
                    continue;
                };
                if *at > now
                    || self.is_blocked(*from, *to, now)
                    || self.clog_until(*from, *to, now).is_some()
                {
                    continue;
                }
                if best.is_none_or(|(b, _)| *at < b) {
                    best = Some((*at, (*from, *to)));
                }
            }
            let sched = self
                .scheduled
                .keys()
                .next()
                .copied()
                .filter(|(at, _)| *at <= now);
            match (best, sched) {
                (Some((at, key)), s) if s.is_none_or(|(sat, _)| at < sat) => {
                    let (from, to) = key;
                    let s = self.streams.get_mut(&key).expect("chosen above");
                    let (_, bytes) = s.queue.pop_front().expect("non-empty");
                    self.delivered += 1;
                    return Some(Delivery {
                        to,
                        input: Input::Frame {
                            from_node: self.members[from].node_id.clone(),
                            bytes,
                        },
                    });
                }
                (_, Some(key)) => match self.scheduled.remove(&key).expect("present") {
                    Scheduled::Deliver(d) => {
                        if self.members[d.to].up {
                            if matches!(d.input, Input::Frame { .. } | Input::Datagram { .. }) {
                                self.delivered += 1;
                            }
                            return Some(d);
                        }
                    }
                    Scheduled::Keepalive(a, b) => {
                        if self.is_blocked(a, b, now) || self.is_blocked(b, a, now) {
                            self.break_connection(now, a, b, "connection lost: keep-alive timeout");
                        }
                    }
                },
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(f: NetFaults) -> Network {
        let mut n = Network::new(
            7,
            NetConfig {
                latency_ns: MS,
                faults: f,
            },
        );
        n.add("n1", "n1:7000");
        n.add("n2", "n2:7000");
        n.add("n3", "n3:7000");
        n
    }

    fn id(s: &str) -> NodeId {
        NodeId::named(s)
    }

    /// Runs the network to quiescence, returning (time, delivery) in order.
    fn drain(n: &mut Network, mut now: u64) -> Vec<(u64, Delivery)> {
        let mut out = Vec::new();
        loop {
            while let Some(d) = n.poll(now) {
                out.push((now, d));
            }
            match n.next_at(now) {
                Some(t) if t > now => now = t,
                Some(_) => now += 1,
                None => return out,
            }
        }
    }

    fn frames(out: &[(u64, Delivery)], to: usize) -> Vec<Vec<u8>> {
        out.iter()
            .filter(|(_, d)| d.to == to)
            .filter_map(|(_, d)| match &d.input {
                Input::Frame { bytes, .. } => Some(bytes.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn frames_arrive_in_order_after_the_hello_with_latency() {
        let mut n = net(NetFaults::none());
        for i in 0..50u8 {
            n.transmit(
                u64::from(i) * 1000,
                0,
                &id("n2"),
                vec![i],
                Some(b"H1".to_vec()),
            );
        }
        let out = drain(&mut n, 0);
        let got = frames(&out, 1);
        assert_eq!(
            got[0],
            b"H1".to_vec(),
            "a new connection starts with the hello"
        );
        let rest: Vec<u8> = got[1..].iter().map(|b| b[0]).collect();
        assert_eq!(rest, (0..50).collect::<Vec<u8>>(), "frames in order");
        assert!(
            out.iter().all(|(t, _)| *t >= MS / 2),
            "each frame takes time"
        );
        assert_eq!(got.len(), 51, "one hello per connection");
    }

    #[test]
    fn datagrams_are_lost_duplicated_and_reordered_when_those_faults_are_on() {
        let mut n = net(NetFaults::parse("loss=0.2,dup=0.2,reorder=0.3").unwrap());
        for i in 0..200u8 {
            n.datagram(u64::from(i) * 10_000, 0, "n3:7000", vec![i]);
        }
        let out = drain(&mut n, 0);
        let got: Vec<u8> = out
            .iter()
            .filter_map(|(_, d)| match &d.input {
                Input::Datagram { bytes } => Some(bytes[0]),
                _ => None,
            })
            .collect();
        let distinct: BTreeSet<u8> = got.iter().copied().collect();
        assert!(distinct.len() < 200, "some were lost");
        assert!(got.len() > distinct.len(), "some were duplicated");
        assert!(got.windows(2).any(|w| w[0] > w[1]), "some were reordered");
        for k in ["loss", "dup", "reorder"] {
            assert!(n.fired[k] > 0, "{k} counted");
        }
        let mut clean = net(NetFaults::none());
        for i in 0..200u8 {
            clean.datagram(u64::from(i) * 10_000_000, 0, "n3:7000", vec![i]);
        }
        assert_eq!(drain(&mut clean, 0).len(), 200, "no faults, no loss");
    }

    #[test]
    fn a_partition_holds_frames_then_breaks_the_connection_and_both_ends_hear_of_it() {
        let mut n = net(NetFaults::none());
        n.transmit(0, 0, &id("n2"), vec![1], Some(b"H".to_vec()));
        let first = drain(&mut n, 0);
        assert_eq!(frames(&first, 1).len(), 2);
        let now = 10 * MS;
        n.block(now, 0, 1, now + 10 * SECOND);
        n.transmit(now, 0, &id("n2"), vec![2], None);
        n.datagram(now, 0, "n2:7000", vec![9]);
        let out = drain(&mut n, now);
        assert!(frames(&out, 1).is_empty(), "nothing crosses the partition");
        let downs: Vec<(usize, String)> = out
            .iter()
            .filter_map(|(_, d)| match &d.input {
                Input::NodeDown { node, .. } => Some((d.to, node.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(downs.len(), 2, "{downs:?}");
        assert!(downs.contains(&(0, "n2".into())) && downs.contains(&(1, "n1".into())));
        let at = out.iter().find(|(_, d)| d.to == 0).unwrap().0;
        assert!(
            at >= now + KEEPALIVE_NS,
            "the break waits for the keep-alive"
        );
        // After the partition heals, a new connection starts with a new hello.
        n.heal();
        n.transmit(
            now + 20 * SECOND,
            0,
            &id("n2"),
            vec![3],
            Some(b"H2".to_vec()),
        );
        let got = frames(&drain(&mut n, now + 20 * SECOND), 1);
        assert_eq!(got, vec![b"H2".to_vec(), vec![3]]);
    }

    #[test]
    fn a_crash_closes_connections_and_refuses_new_ones_until_restart() {
        let mut n = net(NetFaults::none());
        n.transmit(0, 0, &id("n2"), vec![1], Some(b"H".to_vec()));
        n.transmit(0, 2, &id("n2"), vec![1], Some(b"H".to_vec()));
        n.crash(1, 1);
        let out = drain(&mut n, 1);
        assert!(
            out.iter().all(|(_, d)| d.to != 1),
            "nothing reaches a crashed node"
        );
        let downs = out
            .iter()
            .filter(
                |(_, d)| matches!(&d.input, Input::NodeDown { node, .. } if node.as_str() == "n2"),
            )
            .count();
        assert_eq!(downs, 2, "both peers hear the close");
        n.transmit(SECOND, 0, &id("n2"), vec![2], None);
        n.transmit(SECOND, 0, &id("n2"), vec![3], None);
        let out = drain(&mut n, SECOND);
        assert_eq!(out.len(), 1, "one refusal, reported once: {out:?}");
        n.restart(1);
        n.transmit(2 * SECOND, 0, &id("n2"), vec![4], Some(b"H".to_vec()));
        assert_eq!(
            frames(&drain(&mut n, 2 * SECOND), 1),
            vec![b"H".to_vec(), vec![4]]
        );
    }

    #[test]
    fn stale_frames_of_a_reset_connection_may_arrive_after_the_next_connection_starts() {
        let mut n = net(NetFaults::parse("stale=1").unwrap());
        n.transmit(0, 0, &id("n2"), vec![1], Some(b"A".to_vec()));
        n.break_connection(10, 0, 1, "connection reset");
        n.transmit(20, 0, &id("n2"), vec![2], Some(b"B".to_vec()));
        let got = frames(&drain(&mut n, 20), 1);
        assert_eq!(got.len(), 4, "old frames still arrive with the stale fault");
        assert!(n.fired["stale"] == 1);
        let mut without = net(NetFaults::none());
        without.transmit(0, 0, &id("n2"), vec![1], Some(b"A".to_vec()));
        without.break_connection(10, 0, 1, "connection reset");
        without.transmit(20, 0, &id("n2"), vec![2], Some(b"B".to_vec()));
        let got = frames(&drain(&mut without, 20), 1);
        assert_eq!(
            got,
            vec![b"B".to_vec(), vec![2]],
            "the old epoch's frames are lost"
        );
    }

    #[test]
    fn a_new_connection_delivers_nothing_before_the_close_of_the_old_one_is_reported() {
        for seed in 0..50 {
            let mut n = Network::new(
                seed,
                NetConfig {
                    latency_ns: MS,
                    faults: NetFaults::none(),
                },
            );
            n.add("n1", "a");
            n.add("n2", "b");
            n.transmit(0, 0, &id("n2"), vec![1], Some(b"H1".to_vec()));
            n.break_connection(10, 0, 1, "connection reset");
            n.transmit(11, 0, &id("n2"), vec![2], Some(b"H2".to_vec()));
            let out = drain(&mut n, 11);
            let at_n2: Vec<&Input> = out
                .iter()
                .filter(|(_, d)| d.to == 1)
                .map(|(_, d)| &d.input)
                .collect();
            let down = at_n2
                .iter()
                .position(|i| matches!(i, Input::NodeDown { .. }))
                .unwrap();
            let hello = at_n2
                .iter()
                .position(|i| matches!(i, Input::Frame { bytes, .. } if bytes == b"H2"))
                .unwrap();
            assert!(down < hello, "seed {seed}: {at_n2:?}");
        }
    }

    #[test]
    fn ticks_fire_every_enabled_fault_kind_and_are_seeded() {
        let run = |seed: u64| {
            let mut n = Network::new(
                seed,
                NetConfig {
                    latency_ns: MS,
                    faults: NetFaults::parse(
                        "reset=0.3,clog=0.3,partition=0.3,oneway=0.3,isolate=0.3,crash=0.3",
                    )
                    .unwrap(),
                },
            );
            for s in ["n1", "n2", "n3"] {
                n.add(s, &format!("{s}:1"));
            }
            let mut crashes = 0;
            for t in 0..100u64 {
                let now = t * TICK_NS;
                n.transmit(now, 0, &id("n2"), vec![0], None);
                n.transmit(now, 1, &id("n3"), vec![0], None);
                while n.poll(now).is_some() {}
                crashes += n.tick(now, &[0]).len();
            }
            (n.fired.clone(), crashes, n.log.clone())
        };
        let (fired, crashes, log) = run(3);
        for k in ["reset", "clog", "partition", "oneway", "isolate"] {
            assert!(
                fired.get(k).copied().unwrap_or(0) > 0,
                "{k} never fired: {fired:?}"
            );
        }
        assert!(crashes > 0);
        assert_eq!(run(3).2, log, "same seed, same faults");
        assert_ne!(run(4).2, log);
    }

    #[test]
    fn net_faults_parse_and_round_trip() {
        for seed in 0..300 {
            let f = NetFaults::draw(&mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(NetFaults::parse(&f.describe()).unwrap(), f, "seed {seed}");
        }
        assert!(NetFaults::parse("all").unwrap().partition > 0.0);
        assert!(NetFaults::parse("flood=1")
            .unwrap_err()
            .contains("unknown network fault"));
        assert!(NetFaults::parse("loss=3").is_err());
        assert!(NetFaults::parse("none").unwrap().is_none());
    }
}
