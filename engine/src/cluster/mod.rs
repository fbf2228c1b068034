//! The cluster: the relay frames nodes exchange (`frame`), SWIM membership (`membership`), and
//! their wiring into the node (`peers`: who is up, `Hello`, node deaths; `remote`: operations
//! on processes of other nodes and frames from them; `names`: cluster-wide names). Everything
//! is sans-IO: the node's clock and seeded generator drive it and the driver carries its bytes
//! (`Output::Transmit` / `Input::Frame` for relay frames, `Output::Datagram` /
//! `Input::Datagram` for membership).
//!
//! How it plugs into `Node`:
//!
//! - **Identity.** With `NodeConfig::cluster` set, the node's id is `ClusterConfig::node`, so
//!   every PID prints `{node@host|0x…}`, its own included. `Node::hello()` is the encoded
//!   `Frame::Hello` (node, incarnation, HMAC proof of the secret) every connection starts with.
//! - **Incarnations.** A cluster node's PID counter starts at `pid_epoch(incarnation) << 40`
//!   (`peers::EPOCH_SHIFT`): a restarted node's PIDs never repeat an earlier run's, and a frame
//!   naming a PID of this node whose epoch is not this run's is dropped and counted
//!   (`Stats::frames_stale`). Such PIDs print with 16 hex digits.
//! - **Membership.** `Core` holds one `Membership`, joined through `ClusterConfig::join` on the
//!   first run; its deadlines are part of `Node::poll_timeout`, its datagrams go out as
//!   `Output::Datagram`. Its `Up` is `Output::PeerUp` and the bus event `cluster` / `node.up`
//!   (data `{node, incarnation}`); its `Down` is `Output::PeerDown` and the same as
//!   `Input::NodeDown`. A graceful stop (`begin_shutdown`) leaves the membership first.
//! - **Up and down.** A node is up once membership says so or it sent a valid `Hello`
//!   (same incarnation: up again after it was down; a new one: the old one goes down first).
//!   Going down (membership, `Input::NodeDown`, or a new incarnation's `Hello`) happens once:
//!   every monitor and link to its processes fires exactly once (EXIT / LINK_DOWN with the
//!   error "node down: <node> (<reason>)"), spawns waiting on it fail, its cluster-wide names
//!   go, and the bus event `cluster` / `node.down` (data `{node, incarnation, reason}`) is
//!   published; a second report finds it down already.
//! - **Operations** (`remote`): `Route::Remote` becomes a frame; see there.
//! - **Names** (`names`): see there, including the `cluster.name.lost` message a loser gets.
//! - **Trace.** `TraceEvent::{FrameOut, FrameIn, FrameDrop, RemoteDeliver, NodeUp, NodeDown,
//!   RemoteExit}` (documented in `trace.rs`) are what the simulator's cluster invariants read.

pub mod frame;
pub mod membership;
pub mod names;
pub mod peers;
pub mod remote;

pub use peers::Cluster;

#[cfg(test)]
pub(crate) mod tests;
