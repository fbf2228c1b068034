//! The production cluster transport: one port per node serving gRPC over HTTP/2 (hyper on smol,
//! tonic-generated code from `wire/proto/relay.proto`). The engine's outputs (`Transmit`,
//! `Datagram`, `PeerUp`, `PeerDown`) come in through `Transport`; frames, datagrams and
//! `NodeDown` go back as engine inputs. Prost types stay in here.
//!
//! - `config`: `--node/--listen/--join/--cluster-secret` over `.wippy.yaml`'s `cluster` keys.
//! - `net`: sockets, HTTP/2 settings (keep-alive), the router that more services can join.
//! - `peers`: the one owner of the relay connections (who dials, queues, backoff, NodeDown).
//! - `bench`: the cluster figures of `weft bench` (two `weft run` processes on loopback).

pub mod bench;
pub mod config;
pub mod dispatch;
pub mod net;
mod peers;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weft_engine::node::Level;
use weft_engine::pid::NodeId;

pub use peers::Me;

/// Where the transport's log records go (level, message, fields).
pub type Log = Arc<dyn Fn(Level, &str, Vec<(String, String)>) + Send + Sync>;

/// What the transport counted; bad input from the network shows here as well as in the log.
#[derive(Debug, Default)]
pub struct Stats {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    /// Frames dropped on the way out: no address, too big, a queue full, a failed dial.
    pub frames_dropped: AtomicU64,
    /// Frames from a peer over the size limit (the connection is dropped).
    pub frames_too_big: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    /// Relay streams that went live (both directions).
    pub connections: AtomicU64,
    pub dial_failures: AtomicU64,
    /// Connections that were not HTTP/2 gRPC at all (garbage on the port).
    pub not_grpc: AtomicU64,
    /// Streams refused: no valid name, the wrong secret, this node's own name.
    pub peers_refused: AtomicU64,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// The counters as log fields.
    pub fn fields(&self) -> Vec<(String, String)> {
        [
            ("frames_in", &self.frames_in),
            ("frames_out", &self.frames_out),
            ("frames_dropped", &self.frames_dropped),
            ("frames_too_big", &self.frames_too_big),
            ("datagrams_in", &self.datagrams_in),
            ("datagrams_out", &self.datagrams_out),
            ("datagrams_dropped", &self.datagrams_dropped),
            ("connections", &self.connections),
            ("dial_failures", &self.dial_failures),
            ("not_grpc", &self.not_grpc),
            ("peers_refused", &self.peers_refused),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Stats::get(v).to_string()))
        .collect()
    }
}

/// A running transport: the server on the node's port and the owner of its connections.
pub struct Transport {
    /// The node's outputs go to the owner of the connections directly (no hop through a
    /// task), so a frame is in its stream's queue when `transmit` returns.
    owner: Arc<std::sync::Mutex<peers::Owner>>,
    cmds: async_channel::Sender<peers::Cmd>,
    pub stats: Arc<Stats>,
    pub local_addr: std::net::SocketAddr,
    /// The CollectiveDispatcher and health services on this port, and the foreign collectors' clients.
    pub dispatch: Arc<dispatch::Dispatch>,
}

impl Transport {
    /// Binds the node's port now, so a port in use is an error (naming `from`, the flag or key
    /// the address came from) before the node boots.
    pub fn bind(listen: std::net::SocketAddr, from: &str) -> Result<std::net::TcpListener, String> {
        std::net::TcpListener::bind(listen)
            .map_err(|e| format!("{from} {listen}: cannot listen there ({e})"))
    }

    /// Serves `listener` on smol's executor and starts the owner of the node's connections.
    #[cfg(test)]
    pub fn start(
        listener: std::net::TcpListener,
        me: Me,
        inputs: crate::inputs::InputTx,
        log: Log,
    ) -> Result<Transport, String> {
        Transport::start_with(listener, me, inputs, log, std::time::Instant::now())
    }

    /// `start`, for a node whose clock (`Instant` 0) is `epoch`: dispatch deadlines are on it.
    pub fn start_with(
        listener: std::net::TcpListener,
        me: Me,
        inputs: crate::inputs::InputTx,
        log: Log,
        epoch: std::time::Instant,
    ) -> Result<Transport, String> {
        let local_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let listener = smol::net::TcpListener::try_from(listener).map_err(|e| e.to_string())?;
        let stats = Arc::new(Stats::default());
        let (cmds, rx) = async_channel::unbounded();
        let relay = peers::RelayService {
            me: me.clone(),
            cmds: cmds.clone(),
            inputs: inputs.clone(),
            log: log.clone(),
            stats: stats.clone(),
        };
        let router = net::Router::default().add(
            "weft.relay.Relay",
            weft_wire::relay::relay_server::RelayServer::new(relay)
                .max_decoding_message_size(peers::MAX_FRAME_BYTES + 64)
                .max_encoding_message_size(peers::MAX_FRAME_BYTES + 64),
        );
        let dispatch = Arc::new(dispatch::Dispatch::new(epoch, inputs.clone(), log.clone()));
        let router = dispatch.routes(router);
        let owner = peers::Owner::new(me, cmds.clone(), inputs, log.clone(), stats.clone());
        let owner = Arc::new(std::sync::Mutex::new(owner));
        net::spawn(peers::Owner::run(owner.clone(), rx)).detach();
        net::spawn(accept_loop(listener, router, log, stats.clone())).detach();
        Ok(Transport {
            owner,
            cmds,
            stats,
            local_addr,
            dispatch,
        })
    }

    fn send(&self, c: peers::Cmd) {
        peers::lock(&self.owner).handle(c);
    }

    /// A relay frame for `to`, in order after the ones before it.
    pub fn transmit(&self, to: NodeId, bytes: Vec<u8>) {
        self.send(peers::Cmd::Transmit { to, bytes });
    }

    /// A membership datagram for the member at `addr`, best effort.
    pub fn datagram(&self, addr: String, bytes: Vec<u8>) {
        self.send(peers::Cmd::Datagram { addr, bytes });
    }

    pub fn peer_up(&self, node: NodeId, addr: String, incarnation: u64) {
        self.send(peers::Cmd::PeerUp {
            node,
            addr,
            incarnation,
        });
    }

    pub fn peer_down(&self, node: NodeId) {
        self.send(peers::Cmd::PeerDown { node });
    }

    /// Ends every stream cleanly and gives datagrams already sent (a graceful leave) a moment,
    /// waiting at most `within`.
    pub fn shutdown(&self, within: Duration) {
        let (done, wait) = async_channel::bounded(1);
        let _ = self.cmds.try_send(peers::Cmd::Shutdown { done });
        // The node's loop has ended, so this thread runs the cluster's tasks until they are done.
        let finished = async {
            let _ = wait.recv().await;
        };
        let timeout = async {
            smol::Timer::after(within).await;
        };
        smol::block_on(net::executor().run(futures_lite::future::or(finished, timeout)));
    }
}

async fn accept_loop(
    listener: smol::net::TcpListener,
    router: net::Router,
    log: Log,
    stats: Arc<Stats>,
) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                log(
                    Level::Warn,
                    "cluster port: accept failed",
                    vec![("error".into(), e.to_string())],
                );
                smol::Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (router, log, stats) = (router.clone(), log.clone(), stats.clone());
        net::spawn(async move {
            match net::serve(tcp, remote, router).await {
                net::Ended::NotGrpc(e) => {
                    stats.not_grpc.fetch_add(1, Ordering::Relaxed);
                    log(
                        Level::Warn,
                        "cluster port: a connection that does not speak gRPC was dropped",
                        vec![("remote".into(), remote.to_string()), ("error".into(), e)],
                    );
                }
                net::Ended::Closed(Some(e)) => log(
                    Level::Debug,
                    "cluster port: connection ended",
                    vec![("remote".into(), remote.to_string()), ("error".into(), e)],
                ),
                net::Ended::Closed(None) => {}
            }
        })
        .detach();
    }
}

#[cfg(test)]
mod tests;
