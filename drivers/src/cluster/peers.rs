//! The relay connections of one node: at most one live gRPC stream per peer, who dials whom,
//! queueing until a stream is up, reconnecting with backoff, and turning a closed stream into
//! `Input::NodeDown`. One task owns this state; sockets and streams report to it by message.
//! It reads no frame: the bytes are the engine's.

use super::net::{self, Channel};
use super::{Log, Stats};
use async_channel::{Receiver, Sender};
use futures_lite::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_engine::node::Level;
use weft_engine::pid::NodeId;
use weft_engine::Input;
use weft_wire::relay::relay_client::RelayClient;
use weft_wire::relay::relay_server::Relay;
use weft_wire::relay::{Ack, Chunk};

/// The largest frame or datagram a node sends or takes (the engine's frame limit).
pub const MAX_FRAME_BYTES: usize = weft_engine::cluster::frame::MAX_FRAME_LEN;
/// Frames held for a peer while its stream opens; past this they are dropped (and counted).
const MAX_QUEUED_BYTES: usize = 64 << 20;
/// Datagrams held for a member while the connection that carries them opens.
const MAX_QUEUED_DATAGRAMS: usize = 64;
/// Reconnect delays: from the first, doubling up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// After a failed connection to a member, datagrams for it are dropped this long.
const GOSSIP_RETRY: Duration = Duration::from_millis(500);
/// How long one datagram may take to deliver.
const GOSSIP_TIMEOUT: Duration = Duration::from_secs(2);

pub const META_NODE: &str = "weft-node";
pub const META_INCARNATION: &str = "weft-incarnation";
pub const META_AUTH: &str = "weft-auth";

/// Proof that the dialer knows the cluster secret, bound to its name and incarnation.
pub fn auth_tag(secret: &[u8], node: &str, incarnation: u64) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(b"weft-relay\0");
    mac.update(node.as_bytes());
    mac.update(b"\0");
    mac.update(&incarnation.to_be_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn auth_ok(secret: &[u8], node: &str, incarnation: u64, tag: &str) -> bool {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(b"weft-relay\0");
    mac.update(node.as_bytes());
    mac.update(b"\0");
    mac.update(&incarnation.to_be_bytes());
    let Some(bytes) = (0..tag.len())
        .step_by(2)
        .map(|i| {
            tag.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    mac.verify_slice(&bytes).is_ok()
}

/// What the rest of the driver and the sockets tell the owner of the connections.
pub enum Cmd {
    Transmit {
        to: NodeId,
        bytes: Vec<u8>,
    },
    Datagram {
        addr: String,
        bytes: Vec<u8>,
    },
    PeerUp {
        node: NodeId,
        addr: String,
        incarnation: u64,
    },
    PeerDown {
        node: NodeId,
    },
    /// A peer opened a stream to us; the answer says whether it stands.
    Inbound {
        node: NodeId,
        incarnation: u64,
        reply: Sender<Result<Accepted, tonic::Status>>,
    },
    /// Our dial `id` got its answer; `accept` says whether it stands.
    Dialed {
        node: NodeId,
        id: u64,
        incarnation: u64,
        out: OutTx,
        alive: Arc<AtomicBool>,
        accept: Sender<bool>,
    },
    DialFailed {
        node: NodeId,
        id: u64,
        reason: String,
    },
    /// Stream `id` ended (its last frame is already with the engine).
    Closed {
        node: NodeId,
        id: u64,
        reason: String,
    },
    Redial {
        node: NodeId,
    },
    GossipReady {
        addr: String,
        client: RelayClient<Channel>,
    },
    GossipFailed {
        addr: String,
        reason: String,
    },
    /// Closes every stream (ending them cleanly) and answers when the datagrams sent so far
    /// have had their chance.
    Shutdown {
        done: Sender<()>,
    },
}

pub struct Accepted {
    id: u64,
    out: OutRx,
    alive: Arc<AtomicBool>,
}

enum Conn {
    None,
    Dialing {
        id: u64,
    },
    Live {
        id: u64,
        out: OutTx,
        alive: Arc<AtomicBool>,
        incarnation: u64,
        dialed: bool,
    },
}

struct Peer {
    addr: Option<String>,
    /// The membership holds it up (PeerUp without a PeerDown since).
    up: bool,
    incarnation: u64,
    conn: Conn,
    queue: VecDeque<Vec<u8>>,
    queued_bytes: usize,
    backoff: Duration,
    redial_pending: bool,
    /// The engine was told this peer is down and has not heard from it since.
    told_down: bool,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            addr: None,
            up: false,
            incarnation: 0,
            conn: Conn::None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            backoff: BACKOFF_FIRST,
            redial_pending: false,
            told_down: false,
        }
    }
}

enum Gossip {
    Connecting(Vec<Vec<u8>>),
    Ready(RelayClient<Channel>),
    Failed { until: Instant },
}

/// Who this node is, for the connections it opens and takes.
#[derive(Clone)]
pub struct Me {
    pub node: NodeId,
    pub incarnation: u64,
    pub secret: Vec<u8>,
    pub hello: Option<Vec<u8>>,
    /// Join addresses: their first failure is a warning naming them.
    pub join: Vec<String>,
}

pub struct Owner {
    me: Me,
    cmds: Sender<Cmd>,
    inputs: crate::inputs::InputTx,
    log: Log,
    stats: Arc<Stats>,
    peers: BTreeMap<NodeId, Peer>,
    gossip: BTreeMap<String, Gossip>,
    /// Join addresses not yet reached or reported.
    join_pending: Vec<String>,
    next_id: u64,
}

impl Owner {
    pub fn new(
        me: Me,
        cmds: Sender<Cmd>,
        inputs: crate::inputs::InputTx,
        log: Log,
        stats: Arc<Stats>,
    ) -> Owner {
        let join_pending = me.join.clone();
        Owner {
            me,
            cmds,
            inputs,
            log,
            stats,
            peers: BTreeMap::new(),
            gossip: BTreeMap::new(),
            join_pending,
            next_id: 1,
        }
    }

    /// Runs until every sender of commands is gone or a shutdown is asked.
    pub async fn run(owner: Arc<std::sync::Mutex<Owner>>, rx: Receiver<Cmd>) {
        {
            let mut o = lock(&owner);
            for addr in o.join_pending.clone() {
                o.gossip_connect(addr);
            }
        }
        while let Ok(cmd) = rx.recv().await {
            if let Cmd::Shutdown { done } = cmd {
                lock(&owner).close_all();
                // Datagrams already handed to their tasks (a graceful leave) get a moment to
                // go out.
                smol::Timer::after(Duration::from_millis(150)).await;
                let _ = done.try_send(());
                return;
            }
            lock(&owner).handle(cmd);
        }
    }

    fn log(&self, level: Level, msg: &str, fields: &[(&str, String)]) {
        (self.log)(
            level,
            msg,
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
    }

    fn input(&self, i: Input) {
        let _ = self.inputs.send(i);
    }

    pub fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Transmit { to, bytes } => self.transmit(to, bytes),
            Cmd::Datagram { addr, bytes } => self.datagram(addr, bytes),
            Cmd::PeerUp {
                node,
                addr,
                incarnation,
            } => {
                let p = self.peers.entry(node.clone()).or_insert_with(Peer::new);
                let newer = incarnation > p.incarnation;
                p.addr = Some(addr);
                p.up = true;
                p.incarnation = p.incarnation.max(incarnation);
                let stale = matches!(&p.conn, Conn::Live { incarnation: i, .. } if newer && *i < incarnation);
                if stale {
                    self.close(&node, false);
                }
                let p = &self.peers[&node];
                // Both ends learn of each other: the smaller name dials at once, the other
                // on its first frame (a race of both is settled in `inbound`).
                if matches!(p.conn, Conn::None)
                    && (self.me.node < node || !p.queue.is_empty())
                    && !p.redial_pending
                {
                    self.dial(&node);
                }
            }
            Cmd::PeerDown { node } => {
                if let Some(p) = self.peers.get_mut(&node) {
                    p.up = false;
                    p.queue.clear();
                    p.queued_bytes = 0;
                    // The engine knows already: no NodeDown from here.
                    p.told_down = true;
                }
                self.close(&node, false);
            }
            Cmd::Inbound {
                node,
                incarnation,
                reply,
            } => {
                let r = self.inbound(&node, incarnation);
                let _ = reply.try_send(r);
            }
            Cmd::Dialed {
                node,
                id,
                incarnation,
                out,
                alive,
                accept,
            } => {
                let p = self.peers.entry(node.clone()).or_insert_with(Peer::new);
                let ok = matches!(p.conn, Conn::Dialing { id: d } if d == id);
                if ok {
                    alive.store(true, Ordering::SeqCst);
                    p.incarnation = p.incarnation.max(incarnation);
                    p.conn = Conn::Live {
                        id,
                        out,
                        alive,
                        incarnation,
                        dialed: true,
                    };
                    self.went_live(&node);
                }
                let _ = accept.try_send(ok);
            }
            Cmd::DialFailed { node, id, reason } => {
                let Some(p) = self.peers.get_mut(&node) else {
                    return;
                };
                if !matches!(p.conn, Conn::Dialing { id: d } if d == id) {
                    return;
                }
                p.conn = Conn::None;
                self.stats.dial_failures.fetch_add(1, Ordering::Relaxed);
                let addr = p.addr.clone().unwrap_or_default();
                let dropped = p.queue.len();
                p.queue.clear();
                p.queued_bytes = 0;
                self.stats
                    .frames_dropped
                    .fetch_add(dropped as u64, Ordering::Relaxed);
                let first = !p.told_down;
                let level = if first { Level::Warn } else { Level::Debug };
                self.log(
                    level,
                    "cannot reach cluster peer",
                    &[
                        ("peer", node.to_string()),
                        ("addr", addr.clone()),
                        ("reason", reason.clone()),
                    ],
                );
                self.tell_down(&node, format!("cannot reach {node} at {addr}: {reason}"));
                self.schedule_redial(&node);
            }
            Cmd::Closed { node, id, reason } => {
                let live = matches!(
                    self.peers.get(&node).map(|p| &p.conn),
                    Some(Conn::Live { id: l, .. }) if *l == id
                );
                if live {
                    self.log(
                        Level::Info,
                        "cluster connection closed",
                        &[("peer", node.to_string()), ("reason", reason.clone())],
                    );
                    self.close(&node, false);
                    self.tell_down(&node, format!("connection to {node} closed: {reason}"));
                    if let Some(p) = self.peers.get_mut(&node) {
                        p.backoff = BACKOFF_FIRST;
                    }
                    self.schedule_redial(&node);
                }
            }
            Cmd::Redial { node } => {
                let Some(p) = self.peers.get_mut(&node) else {
                    return;
                };
                p.redial_pending = false;
                if matches!(p.conn, Conn::None) && (p.up || !p.queue.is_empty()) {
                    self.dial(&node);
                }
            }
            Cmd::GossipReady { addr, client } => {
                if self.join_pending.contains(&addr) {
                    self.join_pending.retain(|a| a != &addr);
                    self.log(
                        Level::Info,
                        "join address answers",
                        &[("addr", addr.clone())],
                    );
                }
                if let Some(Gossip::Connecting(waiting)) = self.gossip.remove(&addr) {
                    for d in waiting {
                        self.gossip_send(&addr, client.clone(), d);
                    }
                }
                self.gossip.insert(addr, Gossip::Ready(client));
            }
            Cmd::GossipFailed { addr, reason } => {
                if let Some(Gossip::Connecting(waiting)) = self.gossip.get(&addr) {
                    self.stats
                        .datagrams_dropped
                        .fetch_add(waiting.len() as u64, Ordering::Relaxed);
                }
                if self.join_pending.contains(&addr) {
                    self.join_pending.retain(|a| a != &addr);
                    self.log(
                        Level::Warn,
                        "join address does not answer; this node runs on its own until a member reaches it",
                        &[("addr", addr.clone()), ("reason", reason.clone())],
                    );
                } else {
                    self.log(
                        Level::Debug,
                        "membership datagram not delivered",
                        &[("addr", addr.clone()), ("reason", reason)],
                    );
                }
                self.gossip.insert(
                    addr,
                    Gossip::Failed {
                        until: Instant::now() + GOSSIP_RETRY,
                    },
                );
            }
            Cmd::Shutdown { .. } => {}
        }
    }

    fn transmit(&mut self, to: NodeId, bytes: Vec<u8>) {
        if bytes.len() > MAX_FRAME_BYTES {
            self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            self.log(
                Level::Error,
                "frame too big to send; dropped",
                &[("peer", to.to_string()), ("bytes", bytes.len().to_string())],
            );
            return;
        }
        let p = self.peers.entry(to.clone()).or_insert_with(Peer::new);
        if let Conn::Live { out, .. } = &p.conn {
            if out.try_send(bytes).is_ok() {
                self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if p.addr.is_none() {
            self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            self.log(
                Level::Warn,
                "frame dropped: no address known for this node (the membership has not seen it up)",
                &[("peer", to.to_string())],
            );
            return;
        }
        if p.queued_bytes + bytes.len() > MAX_QUEUED_BYTES {
            self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        p.queued_bytes += bytes.len();
        p.queue.push_back(bytes);
        if matches!(p.conn, Conn::None) && !p.redial_pending {
            self.dial(&to);
        }
    }

    /// Stream `node` is live: send what waited, forget the backoff.
    fn went_live(&mut self, node: &NodeId) {
        let Some(p) = self.peers.get_mut(node) else {
            return;
        };
        p.backoff = BACKOFF_FIRST;
        p.told_down = false;
        p.queued_bytes = 0;
        if let Conn::Live { out, .. } = &p.conn {
            for data in p.queue.drain(..) {
                if out.try_send(data).is_ok() {
                    self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        self.log(
            Level::Debug,
            "cluster connection up",
            &[("peer", node.to_string())],
        );
    }

    fn tell_down(&mut self, node: &NodeId, reason: String) {
        let Some(p) = self.peers.get_mut(node) else {
            return;
        };
        if !p.told_down {
            p.told_down = true;
            self.input(Input::NodeDown {
                node: node.clone(),
                reason,
            });
        }
    }

    /// Ends the stream to `node`, if any (its frames in flight stop reaching the engine).
    fn close(&mut self, node: &NodeId, _why: bool) {
        if let Some(p) = self.peers.get_mut(node) {
            if let Conn::Live { alive, out, .. } = &p.conn {
                alive.store(false, Ordering::SeqCst);
                out.close();
            }
            p.conn = Conn::None;
        }
    }

    fn schedule_redial(&mut self, node: &NodeId) {
        let Some(p) = self.peers.get_mut(node) else {
            return;
        };
        if !p.up || p.redial_pending {
            return;
        }
        p.redial_pending = true;
        let wait = p.backoff;
        p.backoff = (p.backoff * 2).min(BACKOFF_MAX);
        let (cmds, node) = (self.cmds.clone(), node.clone());
        net::spawn(async move {
            smol::Timer::after(wait).await;
            let _ = cmds.send(Cmd::Redial { node }).await;
        })
        .detach();
    }

    fn inbound(&mut self, node: &NodeId, incarnation: u64) -> Result<Accepted, tonic::Status> {
        let me = self.me.node.clone();
        let p = self.peers.entry(node.clone()).or_insert_with(Peer::new);
        match &p.conn {
            Conn::None => {}
            // Both dialed at once: the stream the smaller name opened stands.
            Conn::Dialing { .. } if me < *node => {
                return Err(tonic::Status::already_exists(format!(
                    "{me} is dialing {node}; the stream from the smaller name stands"
                )))
            }
            Conn::Dialing { .. } => {}
            Conn::Live {
                incarnation: old, ..
            } if incarnation < *old => {
                return Err(tonic::Status::failed_precondition(format!(
                    "{node} incarnation {incarnation} is older than the live one ({old})"
                )))
            }
            Conn::Live {
                incarnation: old,
                dialed: true,
                ..
            } if incarnation == *old && me < *node => {
                return Err(tonic::Status::already_exists(format!(
                    "{me} already has a stream to {node}"
                )))
            }
            // The peer dials again, so it holds the old stream dead: the new one replaces it.
            Conn::Live { .. } => {
                self.close(node, true);
                self.tell_down(node, format!("{node} opened a new connection"));
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let (out, out_rx) = outbox();
        if let Some(h) = &self.me.hello {
            let _ = out.try_send(h.clone());
        }
        let alive = Arc::new(AtomicBool::new(true));
        let p = self.peers.get_mut(node).expect("entry made above");
        p.incarnation = p.incarnation.max(incarnation);
        p.conn = Conn::Live {
            id,
            out,
            alive: alive.clone(),
            incarnation,
            dialed: false,
        };
        self.went_live(node);
        Ok(Accepted {
            id,
            out: out_rx,
            alive,
        })
    }

    fn dial(&mut self, node: &NodeId) {
        let Some(p) = self.peers.get_mut(node) else {
            return;
        };
        let Some(addr) = p.addr.clone() else {
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        p.conn = Conn::Dialing { id };
        let ctx = Dial {
            me: self.me.clone(),
            node: node.clone(),
            addr,
            id,
            cmds: self.cmds.clone(),
            inputs: self.inputs.clone(),
            log: self.log.clone(),
            stats: self.stats.clone(),
        };
        net::spawn(ctx.run()).detach();
    }

    fn datagram(&mut self, addr: String, bytes: Vec<u8>) {
        if bytes.len() > MAX_FRAME_BYTES {
            self.stats.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.gossip.get_mut(&addr) {
            Some(Gossip::Ready(c)) => {
                let c = c.clone();
                self.gossip_send(&addr, c, bytes);
            }
            Some(Gossip::Connecting(waiting)) => {
                if waiting.len() < MAX_QUEUED_DATAGRAMS {
                    waiting.push(bytes);
                } else {
                    self.stats.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Gossip::Failed { until }) if Instant::now() < *until => {
                self.stats.datagrams_dropped.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.gossip_connect(addr.clone());
                if let Some(Gossip::Connecting(w)) = self.gossip.get_mut(&addr) {
                    w.push(bytes);
                }
            }
        }
    }

    fn gossip_connect(&mut self, addr: String) {
        self.gossip
            .insert(addr.clone(), Gossip::Connecting(Vec::new()));
        let cmds = self.cmds.clone();
        net::spawn(async move {
            let r = async {
                let ch = net::connect(&addr).await?;
                Ok::<_, String>(
                    RelayClient::with_origin(ch, net::origin(&addr)?)
                        .max_decoding_message_size(MAX_FRAME_BYTES + 64)
                        .max_encoding_message_size(MAX_FRAME_BYTES + 64),
                )
            }
            .await;
            let cmd = match r {
                Ok(client) => Cmd::GossipReady { addr, client },
                Err(reason) => Cmd::GossipFailed { addr, reason },
            };
            let _ = cmds.send(cmd).await;
        })
        .detach();
    }

    fn gossip_send(&self, addr: &str, mut client: RelayClient<Channel>, data: Vec<u8>) {
        self.stats.datagrams_out.fetch_add(1, Ordering::Relaxed);
        let (cmds, addr) = (self.cmds.clone(), addr.to_string());
        net::spawn(async move {
            let call = async {
                client
                    .gossip(Chunk { data, more: vec![] })
                    .await
                    .map_err(|s| s.message().to_string())
            };
            let timeout = async {
                smol::Timer::after(GOSSIP_TIMEOUT).await;
                Err("timed out".to_string())
            };
            if let Err(reason) = futures_lite::future::or(call, timeout).await {
                let _ = cmds.send(Cmd::GossipFailed { addr, reason }).await;
            }
        })
        .detach();
    }

    fn close_all(&mut self) {
        let nodes: Vec<NodeId> = self.peers.keys().cloned().collect();
        for n in nodes {
            self.close(&n, false);
        }
    }
}

/// The owner's lock. Every holder runs on the node's thread (the cluster executor's), so it is
/// never contended; a holder that panicked left consistent state behind (each command is
/// applied whole or not at all), so a poisoned lock is taken as it is.
pub fn lock(o: &std::sync::Mutex<Owner>) -> std::sync::MutexGuard<'_, Owner> {
    o.lock().unwrap_or_else(|p| p.into_inner())
}

/// The frames waiting to go out on one stream. The owner of the connections pushes; the
/// stream's body (`Batched`) takes them. Lighter than a general channel: one lock, and a wake
/// only for a body that is waiting. (hyper polls the body about four times per frame; with
/// `async_channel` and its listener registrations, a relayed frame cost about 1,000
/// instructions more.)
#[derive(Default)]
struct Outbox {
    state: std::sync::Mutex<OutState>,
    waker: atomic_waker::AtomicWaker,
}

#[derive(Default)]
struct OutState {
    frames: VecDeque<Vec<u8>>,
    closed: bool,
}

impl Outbox {
    fn state(&self) -> std::sync::MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The pushing end; dropping it ends the stream (after the frames already pushed).
pub struct OutTx(Arc<Outbox>);

/// The taking end; once it is dropped, pushes fail.
pub struct OutRx(Arc<Outbox>);

fn outbox() -> (OutTx, OutRx) {
    let o = Arc::new(Outbox::default());
    (OutTx(o.clone()), OutRx(o))
}

impl OutTx {
    /// Queues `frame`; gives it back when the stream is closed or gone.
    fn try_send(&self, frame: Vec<u8>) -> Result<(), Vec<u8>> {
        {
            let mut st = self.0.state();
            if st.closed {
                return Err(frame);
            }
            st.frames.push_back(frame);
        }
        self.0.waker.wake();
        Ok(())
    }

    /// Ends the stream once the frames already queued are out.
    fn close(&self) {
        self.0.state().closed = true;
        self.0.waker.wake();
    }
}

impl Drop for OutTx {
    fn drop(&mut self) {
        self.close();
    }
}

impl Drop for OutRx {
    fn drop(&mut self) {
        self.0.state().closed = true;
    }
}

/// Frames in one message at most (with `MAX_FRAME_BYTES` in all).
const MAX_BATCH: usize = 256;
/// What one frame adds to a message beside its bytes (a protobuf tag and length), at most.
const FRAME_OVERHEAD: usize = 6;

/// A stream's outgoing frames as messages: each takes the frames already waiting behind the
/// first (in order), up to `MAX_BATCH` frames and `MAX_FRAME_BYTES`, so a burst of frames pays
/// the gRPC and HTTP/2 costs of one message.
struct Batched {
    rx: OutRx,
}

impl Batched {
    fn new(rx: OutRx) -> Batched {
        Batched { rx }
    }

    /// The next message from what is queued, if anything is.
    fn take(st: &mut OutState) -> Option<Chunk> {
        let data = st.frames.pop_front()?;
        let mut size = data.len();
        let mut more = Vec::new();
        while more.len() + 1 < MAX_BATCH {
            let Some(next) = st.frames.front() else {
                break;
            };
            let add = next.len() + FRAME_OVERHEAD;
            if size + add > MAX_FRAME_BYTES {
                break;
            }
            size += add;
            more.extend(st.frames.pop_front());
        }
        Some(Chunk { data, more })
    }
}

impl futures_lite::Stream for Batched {
    type Item = Chunk;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Chunk>> {
        let out = &self.rx.0;
        {
            let mut st = out.state();
            if let Some(c) = Batched::take(&mut st) {
                return std::task::Poll::Ready(Some(c));
            }
            if st.closed {
                return std::task::Poll::Ready(None);
            }
        }
        out.waker.register(cx.waker());
        // A frame pushed between the look and the registration woke nobody: look again.
        let mut st = out.state();
        match Batched::take(&mut st) {
            Some(c) => std::task::Poll::Ready(Some(c)),
            None if st.closed => std::task::Poll::Ready(None),
            None => std::task::Poll::Pending,
        }
    }
}

/// One connection attempt to a peer and, once it stands, the reading of its stream.
struct Dial {
    me: Me,
    node: NodeId,
    addr: String,
    id: u64,
    cmds: Sender<Cmd>,
    inputs: crate::inputs::InputTx,
    log: Log,
    stats: Arc<Stats>,
}

impl Dial {
    async fn run(self) {
        let (out, out_rx) = outbox();
        if let Some(h) = &self.me.hello {
            let _ = out.try_send(h.clone());
        }
        let opened = self.open(out_rx).await;
        let (incarnation, stream) = match opened {
            Ok(x) => x,
            Err(reason) => {
                let _ = self
                    .cmds
                    .send(Cmd::DialFailed {
                        node: self.node.clone(),
                        id: self.id,
                        reason,
                    })
                    .await;
                return;
            }
        };
        let alive = Arc::new(AtomicBool::new(false));
        let (accept, accepted) = async_channel::bounded(1);
        let _ = self
            .cmds
            .send(Cmd::Dialed {
                node: self.node.clone(),
                id: self.id,
                incarnation,
                out,
                alive: alive.clone(),
                accept,
            })
            .await;
        if accepted.recv().await != Ok(true) {
            return;
        }
        read_stream(
            stream,
            Reader {
                node: self.node,
                id: self.id,
                alive,
                cmds: self.cmds,
                inputs: self.inputs,
                log: self.log,
                stats: self.stats,
            },
        )
        .await;
    }

    async fn open(&self, out: OutRx) -> Result<(u64, tonic::Streaming<Chunk>), String> {
        let ch = net::connect(&self.addr).await?;
        let mut client = RelayClient::with_origin(ch, net::origin(&self.addr)?)
            .max_decoding_message_size(MAX_FRAME_BYTES + 64)
            .max_encoding_message_size(MAX_FRAME_BYTES + 64);
        let mut req = tonic::Request::new(Batched::new(out));
        let md = req.metadata_mut();
        let meta = |v: String| {
            v.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
                .map_err(|e| e.to_string())
        };
        md.insert(META_NODE, meta(self.me.node.to_string())?);
        md.insert(META_INCARNATION, meta(self.me.incarnation.to_string())?);
        md.insert(
            META_AUTH,
            meta(auth_tag(
                &self.me.secret,
                self.me.node.as_str(),
                self.me.incarnation,
            ))?,
        );
        let call = client.stream(req);
        let timeout = async {
            smol::Timer::after(net::CONNECT_TIMEOUT).await;
            Err(tonic::Status::deadline_exceeded("no answer to the stream"))
        };
        let resp = futures_lite::future::or(call, timeout)
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        let incarnation = resp
            .metadata()
            .get(META_INCARNATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((incarnation, resp.into_inner()))
    }
}

/// Where a stream's frames go and whom to tell when it ends.
struct Reader {
    node: NodeId,
    id: u64,
    alive: Arc<AtomicBool>,
    cmds: Sender<Cmd>,
    inputs: crate::inputs::InputTx,
    log: Log,
    stats: Arc<Stats>,
}

/// Hands every frame of `stream` to the engine in order while the stream stands, then reports
/// its end.
async fn read_stream(
    mut stream: impl futures_lite::Stream<Item = Result<Chunk, tonic::Status>> + Unpin,
    r: Reader,
) {
    let reason = loop {
        match stream.next().await {
            Some(Ok(c)) => {
                if !r.alive.load(Ordering::SeqCst) {
                    break "replaced".to_string();
                }
                r.stats
                    .frames_in
                    .fetch_add(1 + c.more.len() as u64, Ordering::Relaxed);
                for bytes in std::iter::once(c.data).chain(c.more) {
                    let _ = r.inputs.send(Input::Frame {
                        from_node: r.node.clone(),
                        bytes,
                    });
                }
            }
            Some(Err(s)) => {
                let too_big = s.code() == tonic::Code::OutOfRange
                    || s.code() == tonic::Code::ResourceExhausted;
                if too_big {
                    r.stats.frames_too_big.fetch_add(1, Ordering::Relaxed);
                    (r.log)(
                        Level::Warn,
                        "cluster peer sent a frame that is too big; connection dropped",
                        vec![
                            ("peer".into(), r.node.to_string()),
                            ("error".into(), s.message().to_string()),
                        ],
                    );
                }
                break format!("{:?}: {}", s.code(), s.message());
            }
            None => break "stream ended".to_string(),
        }
    };
    r.alive.store(false, Ordering::SeqCst);
    let _ = r
        .cmds
        .send(Cmd::Closed {
            node: r.node,
            id: r.id,
            reason,
        })
        .await;
}

/// The `weft.relay.Relay` service: streams from peers and their datagrams.
pub struct RelayService {
    pub me: Me,
    pub cmds: Sender<Cmd>,
    pub inputs: crate::inputs::InputTx,
    pub log: Log,
    pub stats: Arc<Stats>,
}

impl RelayService {
    fn refuse(
        &self,
        why: &str,
        fields: Vec<(String, String)>,
        status: tonic::Status,
    ) -> tonic::Status {
        self.stats.peers_refused.fetch_add(1, Ordering::Relaxed);
        (self.log)(Level::Warn, why, fields);
        status
    }
}

type ChunkStream =
    std::pin::Pin<Box<dyn futures_lite::Stream<Item = Result<Chunk, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Relay for RelayService {
    type StreamStream = ChunkStream;

    async fn stream(
        &self,
        req: tonic::Request<tonic::Streaming<Chunk>>,
    ) -> Result<tonic::Response<ChunkStream>, tonic::Status> {
        let md = req.metadata();
        let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        let (name, inc, tag) = (get(META_NODE), get(META_INCARNATION), get(META_AUTH));
        let remote = req
            .extensions()
            .get::<net::Remote>()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let field = |k: &str, v: &str| (k.to_string(), v.to_string());
        if super::config::check_name(name, "node").is_err() {
            return Err(self.refuse(
                "cluster stream refused: the peer names no valid node",
                vec![field("claimed", name)],
                tonic::Status::invalid_argument("weft-node: not a node name"),
            ));
        }
        let Ok(incarnation) = inc.parse::<u64>() else {
            return Err(self.refuse(
                "cluster stream refused: no incarnation",
                vec![field("peer", name)],
                tonic::Status::invalid_argument("weft-incarnation: not a number"),
            ));
        };
        if name == self.me.node.as_str() {
            return Err(self.refuse(
                "cluster stream refused: a peer claims this node's own name",
                vec![field("claimed", name), field("remote", &remote)],
                tonic::Status::permission_denied(format!("{name} is this node's own name")),
            ));
        }
        if !auth_ok(&self.me.secret, name, incarnation, tag) {
            return Err(self.refuse(
                "cluster stream refused: the peer does not prove the cluster secret",
                vec![field("claimed", name), field("remote", &remote)],
                tonic::Status::permission_denied("wrong cluster secret"),
            ));
        }
        let node = NodeId::named(name);
        let (reply, answer) = async_channel::bounded(1);
        self.cmds
            .send(Cmd::Inbound {
                node: node.clone(),
                incarnation,
                reply,
            })
            .await
            .map_err(|_| tonic::Status::unavailable("node stopping"))?;
        let acc = answer
            .recv()
            .await
            .map_err(|_| tonic::Status::unavailable("node stopping"))??;
        let reader = Reader {
            node,
            id: acc.id,
            alive: acc.alive,
            cmds: self.cmds.clone(),
            inputs: self.inputs.clone(),
            log: self.log.clone(),
            stats: self.stats.clone(),
        };
        net::spawn(read_stream(req.into_inner(), reader)).detach();
        let out: ChunkStream = Box::pin(Batched::new(acc.out).map(Ok));
        let mut resp = tonic::Response::new(out);
        if let Ok(v) = self.me.incarnation.to_string().parse() {
            resp.metadata_mut().insert(META_INCARNATION, v);
        }
        Ok(resp)
    }

    async fn gossip(
        &self,
        req: tonic::Request<Chunk>,
    ) -> Result<tonic::Response<Ack>, tonic::Status> {
        self.stats.datagrams_in.fetch_add(1, Ordering::Relaxed);
        let _ = self.inputs.send(Input::Datagram {
            bytes: req.into_inner().data,
        });
        Ok(tonic::Response::new(Ack {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(b: &mut Batched) -> Option<Chunk> {
        let w = std::task::Waker::noop();
        match std::pin::Pin::new(b).poll_next(&mut std::task::Context::from_waker(w)) {
            std::task::Poll::Ready(c) => c,
            std::task::Poll::Pending => panic!("pending"),
        }
    }

    /// Frames already waiting go out in one message, in order; a frame that would take the
    /// message past the limit starts the next one; the stream ends when the sender is gone.
    #[test]
    fn waiting_frames_go_out_together_in_order_within_the_size_limit() {
        let (tx, rx) = outbox();
        let mut b = Batched::new(rx);
        for i in 0..5u8 {
            tx.try_send(vec![i]).unwrap();
        }
        let c = next(&mut b).unwrap();
        assert_eq!(c.data, vec![0]);
        assert_eq!(c.more, vec![vec![1], vec![2], vec![3], vec![4]]);
        let big = MAX_FRAME_BYTES - 10;
        tx.try_send(vec![7; 8]).unwrap();
        tx.try_send(vec![8; big]).unwrap();
        tx.try_send(vec![9]).unwrap();
        let c = next(&mut b).unwrap();
        assert_eq!((c.data.len(), c.more.len()), (8, 0), "the big frame waits");
        let c = next(&mut b).unwrap();
        assert_eq!((c.data.len(), c.more), (big, vec![vec![9]]));
        for i in 0..(MAX_BATCH + 3) {
            tx.try_send(vec![i as u8]).unwrap();
        }
        assert_eq!(next(&mut b).unwrap().more.len(), MAX_BATCH - 1);
        assert_eq!(next(&mut b).unwrap().more.len(), 2);
        drop(tx);
        assert!(next(&mut b).is_none());
    }

    /// A body with nothing to send waits and is woken by the next frame; a closed outbox
    /// still hands out what was queued, then ends; once the body is gone, frames are refused.
    #[test]
    fn a_waiting_body_wakes_for_a_frame_and_a_gone_body_refuses_them() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(Default::default()));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let (tx, rx) = outbox();
        let mut b = Batched::new(rx);
        assert!(std::pin::Pin::new(&mut b).poll_next(&mut cx).is_pending());
        tx.try_send(vec![1]).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken by the frame");
        tx.try_send(vec![2]).unwrap();
        tx.close();
        assert!(tx.try_send(vec![3]).is_err(), "closed");
        let c = next(&mut b).unwrap();
        assert_eq!((c.data, c.more), (vec![1], vec![vec![2]]));
        assert!(next(&mut b).is_none(), "ends after the queued frames");
        let (tx, rx) = outbox();
        drop(rx);
        assert_eq!(tx.try_send(vec![9]), Err(vec![9]), "the body is gone");
    }

    #[test]
    fn the_auth_tag_binds_secret_name_and_incarnation() {
        let t = auth_tag(b"k", "n1", 7);
        assert!(auth_ok(b"k", "n1", 7, &t));
        assert!(!auth_ok(b"other", "n1", 7, &t));
        assert!(!auth_ok(b"k", "n2", 7, &t));
        assert!(!auth_ok(b"k", "n1", 8, &t));
        assert!(!auth_ok(b"k", "n1", 7, "zz"));
        assert!(!auth_ok(b"k", "n1", 7, ""));
    }
}
