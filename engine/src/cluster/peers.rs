//! The node's side of the cluster: who the peers are and whether each is up, the membership
//! driven on the node's clock, the `Hello` that starts every connection, and what a node's
//! death means here (every monitor and link to its processes fires once, pending spawns fail,
//! its names go).

use super::frame::{Frame, Hello, NameClaim};
use super::membership::{self, Membership, MembershipConfig};
use crate::node::*;
use crate::pid::{NodeId, Pid};
use crate::relay::{Event, EventKind};
use crate::topology::ProcRef;
use crate::trace::TraceEvent;
use crate::value::{kind, ErrorValue, Table, Value};
use std::collections::BTreeMap;

/// Where a cluster node's PID counter starts: bits 40.. hold the node's *PID epoch*, derived
/// from its incarnation, so a PID of an earlier run of this node (whose counter restarted) is
/// never mistaken for a process of this run, and the node can tell the two apart.
pub const EPOCH_SHIFT: u32 = 40;

/// How often a node announces itself again to each join address whose member it does not hold
/// up (a lost join datagram, or both sides of a long partition having forgotten each other,
/// would otherwise split the cluster for good).
pub const REJOIN_NS: u64 = 2_000_000_000;

/// The PID epoch of an incarnation: 1..=0xF_FFFF (never 0, so a cluster PID is never a
/// standalone node's).
pub fn pid_epoch(incarnation: u64) -> u64 {
    1 + incarnation % 0xF_FFFF
}

/// What this node knows of one other node.
#[derive(Debug, Default)]
pub(crate) struct Peer {
    /// Held up now (membership said so, or it sent a valid `Hello`).
    pub up: bool,
    /// Its incarnation as last heard (0: never heard).
    pub incarnation: u64,
    /// Its current connection began with a valid `Hello`: its frames are taken.
    pub hello: bool,
    /// The sequence number of our last message to it (one counter per peer for this run).
    pub sent_seq: u64,
    /// The highest sequence number taken from its current incarnation.
    pub seen_seq: u64,
    /// Per remote caller, the highest spawn tag taken (a repeated request is a duplicate).
    pub spawn_tags: BTreeMap<Pid, u64>,
}

/// A spawn this node asked another to make, waiting for its `SpawnReply`.
#[derive(Debug)]
pub(crate) struct RemoteSpawn {
    pub node: NodeId,
    pub monitor: bool,
    pub link: bool,
}

/// The cluster layer's state inside `Core`.
pub struct Cluster {
    pub(crate) cfg: ClusterConfig,
    pub(crate) membership: Option<Membership>,
    membership_error: Option<String>,
    joined: bool,
    /// When the join addresses whose member is not up are announced to again.
    rejoin_at: Instant,
    pub(crate) peers: BTreeMap<NodeId, Peer>,
    /// Remote spawns under way, by (caller, caller's tag).
    pub(crate) spawns: BTreeMap<(u64, u64), RemoteSpawn>,
    /// Cluster-wide names: the winning claim of each, as this node knows it.
    pub(crate) names: BTreeMap<String, NameClaim>,
    /// This node's logical clock for name claims.
    pub(crate) lamport: u64,
    /// `Planted::forget_remote_exit` already forgot its one EXIT.
    pub(crate) forgot: bool,
}

impl Cluster {
    pub(crate) fn new(cfg: &ClusterConfig, seed: u64) -> Cluster {
        let mcfg = MembershipConfig::new(
            cfg.node.clone(),
            cfg.addr.clone(),
            cfg.incarnation,
            &cfg.secret,
            seed ^ 0x5357_494d_5357_494d,
        );
        let (membership, membership_error) = match Membership::new(mcfg) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Cluster {
            cfg: cfg.clone(),
            membership,
            membership_error,
            joined: false,
            rejoin_at: 0,
            peers: BTreeMap::new(),
            spawns: BTreeMap::new(),
            names: BTreeMap::new(),
            lamport: 0,
            forgot: false,
        }
    }

    /// The first PID counter value of this run (see `EPOCH_SHIFT`).
    pub(crate) fn pid_base(&self) -> u64 {
        pid_epoch(self.cfg.incarnation) << EPOCH_SHIFT
    }

    /// Whether a PID number of this node belongs to this run.
    pub(crate) fn is_current(&self, uniq: u64) -> bool {
        uniq >> EPOCH_SHIFT == pid_epoch(self.cfg.incarnation)
    }

    pub(crate) fn is_up(&self, node: &NodeId) -> bool {
        self.peers.get(node).is_some_and(|p| p.up)
    }
}

/// The error an operation on a node that is not up fails with.
pub(crate) fn node_down_error(node: &NodeId) -> ErrorValue {
    ErrorValue::new(kind::UNAVAILABLE, format!("node down: {node}"))
}

impl Core {
    /// The `Hello` this node starts its connections with; None standalone.
    pub(crate) fn cluster_hello(&self) -> Option<Vec<u8>> {
        let c = self.cluster.as_ref()?;
        let h = Hello::new(&c.cfg.secret, c.cfg.node.clone(), c.cfg.incarnation);
        Frame::Hello(h).encode().ok()
    }

    /// Each run: join once (through every configured address but our own), fire membership
    /// timers, and act on what the membership said.
    pub(crate) fn cluster_tick(&mut self) {
        let now = self.now;
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if !c.joined {
            c.joined = true;
            if let Some(e) = c.membership_error.take() {
                self.log(
                    Level::Error,
                    "cluster membership not started",
                    vec![("error".into(), e)],
                );
                return;
            }
        }
        let stopping = self.is_stopping();
        let c = self.cluster.as_mut().expect("checked");
        let mut failed = Vec::new();
        if now >= c.rejoin_at && !stopping {
            c.rejoin_at = now.saturating_add(REJOIN_NS);
            if let Some(m) = c.membership.as_mut() {
                let up: Vec<String> = m.members_up().map(|id| id.addr.clone()).collect();
                for addr in c
                    .cfg
                    .join
                    .iter()
                    .filter(|a| **a != c.cfg.addr && !up.contains(a))
                {
                    if let Err(e) = m.join(now, addr) {
                        failed.push((addr.clone(), e.to_string()));
                    }
                }
            }
        }
        for (addr, e) in failed {
            self.log(
                Level::Warn,
                "cluster join failed",
                vec![("addr".into(), addr), ("error".into(), e)],
            );
        }
        if let Some(m) = self.cluster.as_mut().and_then(|c| c.membership.as_mut()) {
            m.handle_timeout(now);
        }
        self.drain_membership();
    }

    pub(crate) fn cluster_poll_timeout(&self) -> Option<Instant> {
        let c = self.cluster.as_ref()?;
        if !c.joined {
            return Some(self.now);
        }
        let m = c.membership.as_ref()?.poll_timeout();
        let rejoin = (!c.cfg.join.is_empty() && !self.is_stopping()).then_some(c.rejoin_at);
        match (m, rejoin) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A membership datagram from the network.
    pub(crate) fn cluster_datagram(&mut self, bytes: &[u8]) {
        let now = self.now;
        let Some(m) = self.cluster.as_mut().and_then(|c| c.membership.as_mut()) else {
            self.stats.frames_dropped += 1;
            self.log(
                Level::Warn,
                "membership datagram dropped: this node is not part of a cluster",
                vec![("bytes".into(), bytes.len().to_string())],
            );
            return;
        };
        match m.handle_datagram(now, bytes) {
            Err(e) => self.log(
                Level::Warn,
                "membership datagram refused",
                vec![
                    ("error".into(), e.to_string()),
                    ("bytes".into(), bytes.len().to_string()),
                ],
            ),
            Ok(()) => {
                if let Some((node, incarnation)) = membership::datagram_sender(bytes) {
                    self.heard_from(&node, incarnation);
                }
            }
        }
        self.drain_membership();
    }

    /// A member this node holds down after its transport lost it (`Input::NodeDown`) but that
    /// the membership still holds up sent a datagram: it is alive, so it is up again (and the
    /// driver is told where, to reconnect).
    fn heard_from(&mut self, node: &NodeId, incarnation: u64) {
        let Some(c) = self.cluster.as_ref() else {
            return;
        };
        let down = c
            .peers
            .get(node)
            .is_some_and(|p| !p.up && p.incarnation == incarnation);
        let member = c.membership.as_ref().and_then(|m| {
            m.members_up()
                .find(|id| id.node == *node && id.incarnation == incarnation)
                .map(|id| id.addr.clone())
        });
        if let (true, Some(addr)) = (down, member) {
            self.outputs.push_back(Output::PeerUp {
                node: node.clone(),
                addr,
                incarnation,
            });
            self.peer_up(node, incarnation, "membership");
        }
    }

    /// Leaves the membership (graceful shutdown): peers see this node down at once.
    pub(crate) fn cluster_leave(&mut self) {
        let now = self.now;
        let Some(m) = self.cluster.as_mut().and_then(|c| c.membership.as_mut()) else {
            return;
        };
        if let Err(e) = m.leave(now) {
            self.log(
                Level::Warn,
                "leaving the cluster failed",
                vec![("error".into(), e.to_string())],
            );
        }
        self.drain_membership();
    }

    fn drain_membership(&mut self) {
        loop {
            let Some(o) = self
                .cluster
                .as_mut()
                .and_then(|c| c.membership.as_mut())
                .and_then(|m| m.poll_output())
            else {
                return;
            };
            match o {
                membership::Output::Datagram { addr, bytes, .. } => {
                    self.outputs.push_back(Output::Datagram { addr, bytes })
                }
                membership::Output::Event(membership::Event::Up {
                    node,
                    addr,
                    incarnation,
                }) => {
                    self.outputs.push_back(Output::PeerUp {
                        node: node.clone(),
                        addr,
                        incarnation,
                    });
                    self.peer_up(&node, incarnation, "membership");
                }
                membership::Output::Event(membership::Event::Down {
                    node,
                    incarnation,
                    reason,
                }) => {
                    let current = self
                        .cluster
                        .as_ref()
                        .and_then(|c| c.peers.get(&node))
                        .is_some_and(|p| p.incarnation <= incarnation);
                    if current {
                        self.outputs
                            .push_back(Output::PeerDown { node: node.clone() });
                        self.peer_down(&node, &reason.to_string());
                    }
                }
            }
        }
    }

    /// The transport lost `node` (`Input::NodeDown`).
    pub(crate) fn cluster_node_down(&mut self, node: &NodeId, reason: &str) {
        if self.cluster.is_none() {
            self.log(
                Level::Info,
                "node down",
                vec![
                    ("node".into(), node.to_string()),
                    ("reason".into(), reason.into()),
                ],
            );
            return;
        }
        // The connection is gone: what arrives next must start with a new `Hello`. (A down the
        // membership confirmed leaves an open connection authenticated: when the node is up
        // again its frames on it are taken, as its side never saw a reason to say hello again.)
        if let Some(p) = self.cluster.as_mut().and_then(|c| c.peers.get_mut(node)) {
            p.hello = false;
        }
        self.peer_down(node, reason);
    }

    /// A valid `Hello` from `node`: its connection's frames are taken from now on. A new
    /// incarnation means the old one is down first.
    pub(crate) fn on_hello(&mut self, node: &NodeId, incarnation: u64) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let old = c.peers.get(node).map(|p| (p.up, p.incarnation));
        match old {
            Some((_, inc)) if inc > incarnation => {
                // A Hello of a run older than one we already heard from: refuse it.
                self.frame_dropped(node, "stale", "hello from an older incarnation".into());
                return;
            }
            Some((true, inc)) if inc != incarnation => {
                self.peer_down(node, &format!("restarted as incarnation {incarnation}"));
            }
            _ => {}
        }
        self.peer_up(node, incarnation, "hello");
        if let Some(p) = self.cluster.as_mut().and_then(|c| c.peers.get_mut(node)) {
            p.hello = true;
        }
    }

    /// `node` is up (this incarnation of it). Idempotent; a newly up node gets our names.
    pub(crate) fn peer_up(&mut self, node: &NodeId, incarnation: u64, via: &str) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        if *node == c.cfg.node {
            return;
        }
        let p = c.peers.entry(node.clone()).or_default();
        if p.incarnation != incarnation {
            if p.up {
                // Membership saw a restart before the old incarnation went down here.
                self.peer_down(node, &format!("restarted as incarnation {incarnation}"));
            }
            let c = self.cluster.as_mut().expect("checked");
            let p = c.peers.entry(node.clone()).or_default();
            p.incarnation = incarnation;
            p.seen_seq = 0;
            p.spawn_tags.clear();
            p.hello = false;
        }
        let c = self.cluster.as_mut().expect("checked");
        let p = c.peers.get_mut(node).expect("inserted");
        if p.up {
            return;
        }
        p.up = true;
        self.trace(TraceEvent::NodeUp {
            node: node.as_str(),
            incarnation,
            via,
        });
        self.log(
            Level::Info,
            "node up",
            vec![
                ("node".into(), node.to_string()),
                ("incarnation".into(), incarnation.to_string()),
            ],
        );
        let data = Table::default()
            .with("node", Value::from(node.as_str()))
            .with("incarnation", Value::Int(incarnation as i64));
        self.publish("cluster", "node.up", node.as_str(), Value::table(data));
        // Names go both ways on every up: ours to it, and its to us (we dropped them when we
        // saw it down, which it may never have seen: a one-sided down).
        self.send_claims_to(node);
        let _ = self.transmit(node, &Frame::NameSync);
        self.dispatch_peer_up(node);
    }

    /// `node` is down: monitors and links to its processes fire once each, spawns waiting on it
    /// fail, its names go. Idempotent: a node already down owes nothing.
    pub(crate) fn peer_down(&mut self, node: &NodeId, reason: &str) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(p) = c.peers.get_mut(node) else {
            return;
        };
        if !p.up {
            return;
        }
        p.up = false;
        let incarnation = p.incarnation;
        let failed: Vec<(u64, u64)> = c
            .spawns
            .iter()
            .filter(|(_, s)| s.node == *node)
            .map(|(k, _)| *k)
            .collect();
        for k in &failed {
            c.spawns.remove(k);
        }
        let lost: Vec<String> = c
            .names
            .iter()
            .filter(|(_, cl)| cl.owner.node == *node)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &lost {
            c.names.remove(n);
        }
        self.trace(TraceEvent::NodeDown {
            node: node.as_str(),
            incarnation,
            reason,
        });
        self.log(
            Level::Warn,
            "node down",
            vec![
                ("node".into(), node.to_string()),
                ("reason".into(), reason.into()),
            ],
        );
        let why = format!("node down: {node} ({reason})");
        for (caller, tag) in failed {
            if let Some(pid) = self.pid_of(caller).cloned() {
                self.complete(
                    &pid,
                    tag,
                    Err(ErrorValue::new(kind::UNAVAILABLE, why.clone())),
                );
            }
        }
        for (dead, fallout) in self.topology.on_node_down(node) {
            let target = dead.to_string();
            let err = ErrorValue::new(kind::UNAVAILABLE, why.clone());
            for w in fallout.monitors.iter().filter_map(ProcRef::local) {
                if self.planted.forget_remote_exit {
                    let c = self.cluster.as_mut().expect("checked");
                    if !c.forgot {
                        c.forgot = true;
                        continue;
                    }
                }
                self.remote_event(w, EventKind::Exit, &dead, &target, Err(err.clone()));
            }
            for l in fallout.links.iter().filter_map(ProcRef::local) {
                self.remote_event(l, EventKind::LinkDown, &dead, &target, Err(err.clone()));
            }
        }
        let data = Table::default()
            .with("node", Value::from(node.as_str()))
            .with("incarnation", Value::Int(incarnation as i64))
            .with("reason", Value::from(reason));
        self.publish("cluster", "node.down", node.as_str(), Value::table(data));
        self.dispatch_peer_down(node);
    }

    /// An EXIT or LINK_DOWN for local `watcher` about `dead` of another node: an EXIT becomes
    /// the watcher's `pid.exit` event; a LINK_DOWN a `pid.link.down` event when it traps links,
    /// otherwise (a failure) it fails the watcher with "linked process failed".
    pub(crate) fn remote_event(
        &mut self,
        watcher: u64,
        k: EventKind,
        dead: &Pid,
        target: &str,
        result: crate::relay::ExitResult,
    ) {
        if !self.is_alive(watcher) {
            return;
        }
        let reason = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => e.message.clone(),
        };
        self.trace(TraceEvent::RemoteExit {
            watcher,
            kind: k,
            target,
            reason: &reason,
        });
        if k == EventKind::LinkDown && !self.proc(watcher).is_some_and(|p| p.trap_links) {
            if result.is_err() {
                self.kill(
                    watcher,
                    ErrorValue::new(kind::CANCELED, "linked process failed"),
                );
            }
            return;
        }
        let ev = Event {
            kind: k,
            from: dead.clone(),
            at_unix_ns: self.wall_now_ns(),
            result: Some(result),
            reason: String::new(),
        };
        // Not `push_event`: its trace names processes by number, which is per node; this
        // event's trace is the `RemoteExit` above.
        if let Some(p) = self.procs.get_mut(&watcher) {
            p.mailbox.events.push_back(ev);
            self.wake(watcher);
        }
    }
}

/// One other node as `Node::cluster_peers` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub node: NodeId,
    /// Held up now.
    pub up: bool,
    /// Its incarnation as last heard.
    pub incarnation: u64,
}

impl Node {
    /// The other nodes this node has heard of, by name (empty on a standalone node): for
    /// drivers' status lines and the simulator's convergence checks.
    pub fn cluster_peers(&self) -> Vec<PeerStatus> {
        let core = self.core.borrow();
        let Some(c) = core.cluster.as_ref() else {
            return Vec::new();
        };
        c.peers
            .iter()
            .map(|(n, p)| PeerStatus {
                node: n.clone(),
                up: p.up,
                incarnation: p.incarnation,
            })
            .collect()
    }

    /// The cluster-wide names this node knows, with their owner's PID, by name (the
    /// simulator checks that they converge).
    pub fn cluster_names(&self) -> Vec<(String, String)> {
        let core = self.core.borrow();
        let Some(c) = core.cluster.as_ref() else {
            return Vec::new();
        };
        c.names
            .iter()
            .map(|(n, cl)| (n.clone(), cl.owner.to_string()))
            .collect()
    }
}
