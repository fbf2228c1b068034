//! What a node reports about itself as it runs: every externally visible step as a `TraceEvent`.
//! The simulator hashes and checks them; production installs no observer and pays one branch.

use crate::relay::EventKind;

/// One externally visible step. Process ids are the PID's unique number.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceEvent<'a> {
    Spawn {
        proc: u64,
        entry: &'a str,
        host: &'a str,
        parent: Option<u64>,
    },
    /// A message entered `to`'s mailbox; `seq` is node-wide and increases with every send.
    Send {
        from: Option<u64>,
        to: u64,
        topic: &'a str,
        seq: u64,
    },
    /// A process took a message out of its mailbox.
    Take {
        proc: u64,
        from: Option<u64>,
        seq: u64,
    },
    /// A lifecycle event was queued for `to`.
    Event {
        to: u64,
        kind: EventKind,
        from: u64,
    },
    Monitor {
        watcher: u64,
        target: u64,
    },
    Unmonitor {
        watcher: u64,
        target: u64,
    },
    Exit {
        proc: u64,
        ok: bool,
    },
    Timer {
        proc: u64,
        id: u64,
    },
    /// A world command completed; `applied` is false when it was dropped (dead or unknown tag).
    Completion {
        proc: u64,
        tag: u64,
        applied: bool,
    },
    Output {
        stream: &'a str,
        text: &'a str,
    },
    Service {
        service: &'a str,
        state: &'a str,
    },
    Fault {
        kind: &'a str,
        detail: &'a str,
    },
    // ---- cluster (a standalone node emits none of these) ----
    /// A relay frame of `kind` (`Frame::name`) went to node `peer`; `seq` is the message's
    /// per-peer sequence number for `send` frames, 0 for the others.
    FrameOut {
        peer: &'a str,
        kind: &'a str,
        seq: u64,
    },
    /// A relay frame from node `peer` was taken (it decoded and its connection had a valid
    /// `Hello`, or it is that `Hello`); `seq` as in `FrameOut`.
    FrameIn {
        peer: &'a str,
        kind: &'a str,
        seq: u64,
    },
    /// A frame from `peer` was dropped; `why` is one of `invalid`, `unauthenticated`,
    /// `duplicate`, `stale` (a PID of another incarnation of this node), `dead` (no such live
    /// process or name, or an answer nobody waits for).
    FrameDrop {
        peer: &'a str,
        why: &'a str,
    },
    /// A message from another node entered `to`'s mailbox: `from` is the sender's PID as text
    /// ("-" when none), `incarnation` the sender node's incarnation (its connection epoch) and
    /// `seq` the sender node's per-peer sequence number, increasing per sender node and
    /// incarnation (so per sender process too).
    RemoteDeliver {
        from: &'a str,
        incarnation: u64,
        to: u64,
        seq: u64,
    },
    /// This node now holds `node` (this incarnation of it) up, through `via` (`membership` or
    /// `hello`).
    NodeUp {
        node: &'a str,
        incarnation: u64,
        via: &'a str,
    },
    /// This node now holds `node` down: every monitor and link to its processes fires now.
    NodeDown {
        node: &'a str,
        incarnation: u64,
        reason: &'a str,
    },
    /// Local `watcher` now monitors (`on`) or no longer monitors process `target` of another
    /// node: from then on one EXIT is owed for its end or its node's death.
    RemoteMonitor {
        watcher: u64,
        target: &'a str,
        on: bool,
    },
    /// Local `watcher` got an EXIT (or a LINK_DOWN) for process `target` of another node,
    /// because it ended (`reason` is its error, or `ok`) or its node went down (`reason` names
    /// the node). Exactly one per monitor (link) per death.
    RemoteExit {
        watcher: u64,
        kind: EventKind,
        target: &'a str,
        reason: &'a str,
    },
    // ---- collective dispatch (cluster nodes only) ----
    /// A call entered the cluster at this node's collector as request `req` (from the driver
    /// or a local `funcs.call`), to be answered within `timeout_ns` from now.
    DispatchAsked {
        req: u64,
        timeout_ns: u64,
        idempotent: bool,
    },
    /// The collector answered its request `req` (any origin: hops of other nodes' calls too).
    DispatchAnswered {
        req: u64,
    },
    /// A handler ran for the call `call` (its `weft-call` identity, `<node>/<req>`).
    DispatchInvoked {
        call: &'a str,
    },
}

impl TraceEvent<'_> {
    /// The canonical one-line text that the trace hash is computed over.
    pub fn line(&self) -> String {
        match self {
            TraceEvent::Spawn {
                proc,
                entry,
                host,
                parent,
            } => {
                format!("spawn {proc} {entry} on {host} parent {}", opt(parent))
            }
            TraceEvent::Send {
                from,
                to,
                topic,
                seq,
            } => format!("send #{seq} {} -> {to} {topic}", opt(from)),
            TraceEvent::Take { proc, from, seq } => {
                format!("take #{seq} by {proc} from {}", opt(from))
            }
            TraceEvent::Event { to, kind, from } => {
                format!("event {} {from} -> {to}", kind.as_str())
            }
            TraceEvent::Monitor { watcher, target } => format!("monitor {watcher} -> {target}"),
            TraceEvent::Unmonitor { watcher, target } => format!("unmonitor {watcher} -> {target}"),
            TraceEvent::Exit { proc, ok } => {
                format!("exit {proc} {}", if *ok { "ok" } else { "error" })
            }
            TraceEvent::Timer { proc, id } => format!("timer {proc}/{id}"),
            TraceEvent::Completion { proc, tag, applied } => {
                format!(
                    "complete {proc}/{tag} {}",
                    if *applied { "applied" } else { "dropped" }
                )
            }
            TraceEvent::Output { stream, text } => format!("{stream} {text:?}"),
            TraceEvent::Service { service, state } => format!("service {service} {state}"),
            TraceEvent::Fault { kind, detail } => format!("fault {kind} {detail}"),
            TraceEvent::FrameOut { peer, kind, seq } => {
                format!("frame out {kind} #{seq} -> {peer}")
            }
            TraceEvent::FrameIn { peer, kind, seq } => format!("frame in {kind} #{seq} <- {peer}"),
            TraceEvent::FrameDrop { peer, why } => format!("frame drop {why} <- {peer}"),
            TraceEvent::RemoteDeliver {
                from,
                incarnation,
                to,
                seq,
            } => format!("remote deliver #{seq} {from}/{incarnation} -> {to}"),
            TraceEvent::NodeUp {
                node,
                incarnation,
                via,
            } => format!("node up {node}/{incarnation} via {via}"),
            TraceEvent::NodeDown {
                node,
                incarnation,
                reason,
            } => format!("node down {node}/{incarnation}: {reason}"),
            TraceEvent::RemoteMonitor {
                watcher,
                target,
                on,
            } => format!(
                "remote {} {watcher} -> {target}",
                if *on { "monitor" } else { "unmonitor" }
            ),
            TraceEvent::RemoteExit {
                watcher,
                kind,
                target,
                reason,
            } => format!("remote {} {target} -> {watcher}: {reason}", kind.as_str()),
            TraceEvent::DispatchAsked {
                req,
                timeout_ns,
                idempotent,
            } => format!("dispatch asked {req} within {timeout_ns} idempotent {idempotent}"),
            TraceEvent::DispatchAnswered { req } => format!("dispatch answered {req}"),
            TraceEvent::DispatchInvoked { call } => format!("dispatch invoked {call}"),
        }
    }
}

fn opt(v: &Option<u64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

/// Receives every trace event of a node.
pub type Observer = Box<dyn FnMut(&TraceEvent<'_>)>;

/// FNV-1a over trace lines: stable across platforms and runs, unlike std's hasher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash(pub u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    pub fn add(&mut self, line: &str) {
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_order_and_content() {
        let mut a = TraceHash::default();
        a.add("x");
        a.add("y");
        let mut b = TraceHash::default();
        b.add("y");
        b.add("x");
        assert_ne!(a, b);
        let mut c = TraceHash::default();
        c.add("x");
        c.add("y");
        assert_eq!(a, c);
        assert_eq!(TraceHash::default().0, 0xcbf2_9ce4_8422_2325);
    }
}
