//! The cluster's sans-IO parts, not wired into the node yet: the relay frames nodes exchange
//! (`frame`) and SWIM membership (`membership`). Both are pure state and bytes; the node's
//! clock and seeded generator drive them and the driver carries their bytes.
//!
//! How they plug into `Node` (the next step; nothing here is called by `Core` today):
//!
//! - **Out: `Route::Remote(node)` → a frame → `Output::Transmit`.** Where the relay now fails
//!   with "node not connected", it builds the frame for the operation (`Send` for
//!   `process.send` with the peer connection's next sequence number; `SpawnRequest` with the
//!   caller's tag, the caller getting `Reply::Pending`; `Monitor`, `Link`, `Demonitor`,
//!   `Unlink`, `Cancel`, `Terminate`; `NameClaim` / `NameRelease` to every node up), encodes it and pushes
//!   `Output::Transmit { to_node, bytes }`. An operation on a node that membership does not
//!   hold as up fails at once ("node down: n3"), so a spawn on a dead node fails fast.
//! - **In: `Input::Frame { from_node, bytes }` → `Frame::decode` → deliver.** A frame that
//!   does not decode is logged with its `FrameError` and the peer, counted, and dropped (the
//!   driver drops the connection). The first frame of a connection must be a `Hello` whose
//!   `verify(secret)` holds and whose node is `from_node`; it sets the peer's incarnation and
//!   starts a new connection epoch (sequence numbers restart). Then: `Send` resolves its `Dest`
//!   locally (a PID of this node and incarnation, or a cluster-wide name) and goes to the
//!   mailbox with its sender, a sequence number at or below the last one taken being a
//!   duplicate (dropped, counted); `SpawnRequest` spawns here and answers `SpawnReply`, which
//!   completes the caller's tag; `Monitor` / `Link` register the remote watcher in the topology
//!   under its PID (the topology already keys on PIDs that name other nodes), and the target's
//!   end sends `Exit` / `LinkDown` back (at once, with "process not found", if the target is
//!   already gone); `Exit` / `LinkDown` become the local watcher's `pid.exit` /
//!   `pid.link.down` event; `NameClaim` keeps, per name, the claim that `wins_over` the others,
//!   and tells the losing owner.
//! - **Membership.** `Core` holds one `Membership`; its datagrams need their own pair of
//!   input/output variants (or ride the relay stream; the driver decides the carrier),
//!   `poll_timeout` is the minimum with `Membership::poll_timeout`, and each run calls
//!   `handle_timeout(now)`. `Event::Up` publishes `cluster.node.up` and lets the driver open
//!   the connection (which starts with `Hello`). `Event::Down` has the meaning of
//!   `Input::NodeDown` (which the transport sends when a connection closes): every monitor and
//!   link to a process of that node (of that incarnation) fires exactly once with an error
//!   naming the node and the reason, pending spawns on it fail, its names are dropped,
//!   `cluster.node.down` is published, and both ways of learning it are idempotent (the second
//!   finds the node already down).
//! - **Incarnations.** PIDs do not carry the incarnation, and a restarted node's counter
//!   starts again, so an old PID could name a new process. Before wiring, either the PID counter
//!   of a cluster node starts from a value derived from its incarnation, or frames carry the
//!   incarnation of each PID's node and a receiver drops those of an older one (counted).

pub mod frame;
pub mod membership;
