//! Location-transparent operations: what `Route::Remote` turns into (a frame for the node the
//! process lives on, through `Output::Transmit`), and what a frame from another node does here.
//!
//! Out: an operation on a node that is not up fails at once with "node down: <node>". `send`
//! numbers its messages per peer (one counter for this run of the node), so the receiver drops
//! duplicates and can check FIFO order. A spawn parks its caller on a tag that the
//! `SpawnReply` (or the node's death) completes.
//!
//! In: a frame that does not decode, or that arrives before a valid `Hello` on its connection,
//! is dropped, logged and counted; so is a message at or below the last sequence number taken
//! from its sender's incarnation, and a frame for a PID of another incarnation of this node or
//! of a process that is not alive. Nothing from the network panics the node.

use super::frame::{Dest, Frame, SendFrame, SpawnReply, SpawnRequest};
use super::peers::{node_down_error, RemoteSpawn};
use crate::command::Reply;
use crate::node::*;
use crate::pid::{NodeId, Pid};
use crate::relay::{EventKind, ExitResult, Message, Route};
use crate::topology::{Fallout, ProcRef};
use crate::trace::TraceEvent;
use crate::value::{kind, ErrorValue, Value};

/// Where an operation on a process goes, with the remote PID in hand.
pub(crate) enum Target {
    Local(u64),
    Remote(Pid),
}

impl Core {
    /// Where `dest` (a PID or a name, as text) is: a live local process or a process of
    /// another node.
    pub(crate) fn target(&self, dest: &str) -> Result<Target, ErrorValue> {
        // A PID, or a cluster-wide name, is resolved to its PID once.
        let pid = if dest.starts_with('{') {
            Pid::parse(dest)
        } else {
            self.cluster_name(dest)
        };
        if let Some(pid) = pid {
            return self.target_pid(&pid);
        }
        // What is left is a local name, or text `route` says why it cannot resolve.
        match self.route(dest)? {
            Route::Local(id) => Ok(Target::Local(id)),
            Route::Remote(_) => Err(ErrorValue::new(
                kind::NOT_FOUND,
                format!("could not resolve: {dest}"),
            )),
        }
    }

    /// As `target`, for a parsed PID.
    pub(crate) fn target_pid(&self, pid: &Pid) -> Result<Target, ErrorValue> {
        match self.route_pid(pid)? {
            Route::Local(id) => Ok(Target::Local(id)),
            r @ Route::Remote(_) if self.cluster.is_none() => {
                crate::relay::local_only(r).map(Target::Local)
            }
            Route::Remote(_) => Ok(Target::Remote(pid.clone())),
        }
    }

    /// Sends `frame` on the connection to `node`, which must be up.
    pub(crate) fn transmit(&mut self, node: &NodeId, frame: &Frame) -> Result<(), ErrorValue> {
        let up = self.cluster.as_ref().is_some_and(|c| c.is_up(node));
        if !up {
            return Err(node_down_error(node));
        }
        let bytes = frame.encode().map_err(|e| {
            ErrorValue::new(kind::INVALID, format!("cannot send to node {node}: {e}"))
        })?;
        let seq = seq_of(frame);
        self.stats.frames_out += 1;
        self.trace(TraceEvent::FrameOut {
            peer: node.as_str(),
            kind: frame.name(),
            seq,
        });
        self.outputs.push_back(Output::Transmit {
            to_node: node.clone(),
            bytes,
        });
        // A peer may be waiting for this frame while nothing here is ready to run: let it go
        // out now rather than after the rest of the sender's step.
        if self.sched.ready_len() == 0 {
            self.flush_soon = true;
        }
        Ok(())
    }

    /// `process.send` to a process of another node.
    pub(crate) fn remote_send(
        &mut self,
        from: Option<u64>,
        to: Pid,
        topic: String,
        payload: Vec<Value>,
    ) -> Result<(), ErrorValue> {
        let node = to.node.clone();
        let seq = match self.cluster.as_mut().and_then(|c| c.peers.get_mut(&node)) {
            Some(p) if p.up => {
                p.sent_seq += 1;
                p.sent_seq
            }
            _ => return Err(node_down_error(&node)),
        };
        let from = from.and_then(|f| self.pid_of(f)).cloned();
        self.stats.messages_sent += 1;
        let f = Frame::Send(SendFrame {
            from,
            to: Dest::Pid(to),
            topic,
            payload,
            seq,
        });
        self.transmit(&node, &f)
    }

    /// The node half of a host written `node@host` naming another node: Some((node, host)).
    pub(crate) fn remote_host(&self, host: &str) -> Option<(NodeId, String)> {
        self.cluster.as_ref()?;
        let (node, h) = host.split_once('@')?;
        (node != self.node_id().as_str() && node != NodeId::LOCAL)
            .then(|| (NodeId::named(node), h.to_string()))
    }

    /// A spawn on another node: the caller waits on a tag that the reply completes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn remote_spawn(
        &mut self,
        caller: u64,
        node: NodeId,
        host: String,
        entry: String,
        args: Vec<Value>,
        monitor: bool,
        link: bool,
        name: Option<String>,
    ) -> Reply {
        if !self.cluster.as_ref().is_some_and(|c| c.is_up(&node)) {
            return Reply::err(node_down_error(&node));
        }
        if self.is_stopping() {
            return Reply::err(ErrorValue::new(kind::UNAVAILABLE, "node is stopping"));
        }
        let Some(p) = self.procs.get_mut(&caller) else {
            return Reply::err(ErrorValue::new(kind::INTERNAL, "process not registered"));
        };
        let tag = p.tags.issue(crate::command::ids::PROCESS_SPAWN).tag;
        let caller_pid = p.pid.clone();
        let f = Frame::SpawnRequest(SpawnRequest {
            caller: caller_pid,
            tag,
            entry,
            host,
            args,
            monitor,
            link,
            name,
        });
        if let Err(e) = self.transmit(&node, &f) {
            if let Some(p) = self.procs.get_mut(&caller) {
                p.tags.complete(tag);
            }
            return Reply::err(e);
        }
        if let Some(c) = self.cluster.as_mut() {
            c.spawns.insert(
                (caller, tag),
                RemoteSpawn {
                    node,
                    monitor,
                    link,
                },
            );
        }
        Reply::Pending(tag)
    }

    fn local_pid(&self, id: u64) -> Pid {
        self.pid_of(id)
            .cloned()
            .unwrap_or_else(|| Pid::on(self.node.clone(), CONTROL_HOST.into(), id))
    }

    pub(crate) fn remote_monitor(
        &mut self,
        watcher: u64,
        target: Pid,
        on: bool,
    ) -> Result<(), ErrorValue> {
        let w = self.local_pid(watcher);
        let node = target.node.clone();
        let f = if on {
            Frame::Monitor {
                watcher: w,
                target: target.clone(),
            }
        } else {
            Frame::Demonitor {
                watcher: w,
                target: target.clone(),
            }
        };
        self.transmit(&node, &f)?;
        self.trace(TraceEvent::RemoteMonitor {
            watcher,
            target: &target.to_string(),
            on,
        });
        if on {
            self.topology
                .monitor(ProcRef::Local(watcher), ProcRef::Remote(target));
        } else {
            self.topology
                .unmonitor(ProcRef::Local(watcher), ProcRef::Remote(target));
        }
        Ok(())
    }

    pub(crate) fn remote_link(&mut self, a: u64, b: Pid, on: bool) -> Result<(), ErrorValue> {
        let from = self.local_pid(a);
        let node = b.node.clone();
        let f = if on {
            Frame::Link {
                from,
                to: b.clone(),
            }
        } else {
            Frame::Unlink {
                from,
                to: b.clone(),
            }
        };
        self.transmit(&node, &f)?;
        if on {
            self.topology.link(ProcRef::Local(a), ProcRef::Remote(b));
        } else {
            self.topology.unlink(ProcRef::Local(a), ProcRef::Remote(b));
        }
        Ok(())
    }

    pub(crate) fn remote_cancel(
        &mut self,
        from: u64,
        to: Pid,
        reason: String,
    ) -> Result<(), ErrorValue> {
        let from = self.local_pid(from);
        let node = to.node.clone();
        self.transmit(&node, &Frame::Cancel { from, to, reason })
    }

    pub(crate) fn remote_terminate(
        &mut self,
        from: Option<u64>,
        to: Pid,
    ) -> Result<(), ErrorValue> {
        let from = self.local_pid(from.unwrap_or(0));
        let node = to.node.clone();
        self.transmit(&node, &Frame::Terminate { from, to })
    }

    /// A local process ended: its watchers and links on other nodes are told, the nodes of
    /// processes it monitored drop its monitors (best effort: a node that is down learns
    /// nothing, its side dropped the relations already), and its cluster-wide names are
    /// released.
    pub(crate) fn remote_fallout(
        &mut self,
        dead: &Pid,
        fallout: &Fallout,
        watched: &[ProcRef],
        result: &ExitResult,
    ) {
        if self.cluster.is_none() {
            return;
        }
        for t in watched {
            if let ProcRef::Remote(t) = t {
                let f = Frame::Demonitor {
                    watcher: dead.clone(),
                    target: t.clone(),
                };
                let _ = self.transmit(&t.node, &f);
            }
        }
        for w in &fallout.monitors {
            if let ProcRef::Remote(w) = w {
                let f = Frame::Exit {
                    from: dead.clone(),
                    to: w.clone(),
                    result: result.clone(),
                };
                let _ = self.transmit(&w.node, &f);
            }
        }
        // A normal end is sent too, so the peer drops the link (it raises no event there).
        for l in &fallout.links {
            if let ProcRef::Remote(l) = l {
                let f = Frame::LinkDown {
                    from: dead.clone(),
                    to: l.clone(),
                    result: result.clone(),
                };
                let _ = self.transmit(&l.node, &f);
            }
        }
        self.release_cluster_names(dead);
    }

    /// Counts, logs and traces a frame from `peer` that is not taken.
    pub(crate) fn frame_dropped(&mut self, peer: &NodeId, why: &'static str, detail: String) {
        self.stats.frames_dropped += 1;
        let s = &mut self.stats;
        *match why {
            "invalid" => &mut s.frames_invalid,
            "unauthenticated" => &mut s.frames_unauthenticated,
            "duplicate" => &mut s.frames_duplicate,
            "stale" => &mut s.frames_stale,
            _ => &mut s.frames_dead,
        } += 1;
        self.trace(TraceEvent::FrameDrop {
            peer: peer.as_str(),
            why,
        });
        let level = if why == "dead" {
            Level::Debug
        } else {
            Level::Warn
        };
        self.log(
            level,
            "frame dropped",
            vec![
                ("from".into(), peer.to_string()),
                ("why".into(), why.into()),
                ("detail".into(), detail),
            ],
        );
    }

    /// A live process of this run of this node for a PID a frame named, or why not (`stale`:
    /// another incarnation; `dead`: not alive).
    fn here(&self, pid: &Pid) -> Result<u64, &'static str> {
        let c = self.cluster.as_ref().ok_or("dead")?;
        if pid.node != self.node || !c.is_current(pid.uniq) {
            return Err("stale");
        }
        match self.proc(pid.uniq) {
            Some(p) if p.pid.host == pid.host => Ok(pid.uniq),
            _ => Err("dead"),
        }
    }

    /// A relay frame from `from` (`Input::Frame`).
    pub(crate) fn cluster_frame(&mut self, from: NodeId, bytes: &[u8]) {
        if self.cluster.is_none() {
            self.stats.frames_dropped += 1;
            self.log(
                Level::Warn,
                "frame dropped: this node is not part of a cluster",
                vec![
                    ("from".into(), from.to_string()),
                    ("bytes".into(), bytes.len().to_string()),
                ],
            );
            return;
        }
        let f = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => return self.frame_dropped(&from, "invalid", e.to_string()),
        };
        if let Frame::Hello(h) = &f {
            let c = self.cluster.as_ref().expect("checked");
            if !h.verify(&c.cfg.secret) {
                return self.frame_dropped(
                    &from,
                    "unauthenticated",
                    "hello with another cluster secret".into(),
                );
            }
            if h.node != from || from == c.cfg.node {
                return self.frame_dropped(
                    &from,
                    "unauthenticated",
                    format!("hello names node {} on a connection of {from}", h.node),
                );
            }
            self.stats.frames_in += 1;
            self.trace(TraceEvent::FrameIn {
                peer: from.as_str(),
                kind: f.name(),
                seq: 0,
            });
            return self.on_hello(&from, h.incarnation);
        }
        let hello = self
            .cluster
            .as_ref()
            .and_then(|c| c.peers.get(&from))
            .is_some_and(|p| p.hello && p.up);
        if !hello {
            return self.frame_dropped(
                &from,
                "unauthenticated",
                format!("{} frame before a hello", f.name()),
            );
        }
        if let Some(origin) = origin(&f).filter(|p| p.node != from) {
            let detail = format!("{} frame from {origin} on a connection of {from}", f.name());
            return self.frame_dropped(&from, "unauthenticated", detail);
        }
        let seq = seq_of(&f);
        self.stats.frames_in += 1;
        self.trace(TraceEvent::FrameIn {
            peer: from.as_str(),
            kind: f.name(),
            seq,
        });
        match f {
            Frame::Hello(_) => {}
            Frame::Send(s) => self.on_send(&from, s),
            Frame::SpawnRequest(r) => self.on_spawn_request(&from, r),
            Frame::SpawnReply(r) => self.on_spawn_reply(&from, r),
            Frame::Monitor { watcher, target } => match self.here(&target) {
                Ok(t) => self
                    .topology
                    .monitor(ProcRef::Remote(watcher), ProcRef::Local(t)),
                Err(_) => {
                    let result = Err(not_found(&target));
                    let f = Frame::Exit {
                        from: target,
                        to: watcher,
                        result,
                    };
                    let _ = self.transmit(&from, &f);
                }
            },
            Frame::Demonitor { watcher, target } => {
                if let Ok(t) = self.here(&target) {
                    self.topology
                        .unmonitor(ProcRef::Remote(watcher), ProcRef::Local(t));
                }
            }
            Frame::Link { from: a, to } => match self.here(&to) {
                Ok(t) => self.topology.link(ProcRef::Remote(a), ProcRef::Local(t)),
                Err(_) => {
                    let result = Err(not_found(&to));
                    let f = Frame::LinkDown {
                        from: to,
                        to: a,
                        result,
                    };
                    let _ = self.transmit(&from, &f);
                }
            },
            Frame::Unlink { from: a, to } => {
                if let Ok(t) = self.here(&to) {
                    self.topology.unlink(ProcRef::Remote(a), ProcRef::Local(t));
                }
            }
            Frame::Exit {
                from: dead,
                to,
                result,
            } => self.on_remote_exit(&from, EventKind::Exit, dead, to, result),
            Frame::LinkDown {
                from: dead,
                to,
                result,
            } => self.on_remote_exit(&from, EventKind::LinkDown, dead, to, result),
            Frame::NameClaim(c) => self.on_name_claim(&from, c),
            Frame::NameRelease { name, owner } => self.on_name_release(&name, &owner),
            Frame::NameSync => self.send_claims_to(&from),
            Frame::Cancel {
                from: by,
                to,
                reason,
            } => match self.here(&to) {
                Ok(t) => {
                    let ev = crate::relay::Event {
                        kind: EventKind::Cancel,
                        from: by,
                        at_unix_ns: self.wall_now_ns(),
                        result: None,
                        reason,
                    };
                    self.push_event(t, ev);
                }
                Err(why) => self.frame_dropped(&from, why, format!("cancel for {to}")),
            },
            Frame::Terminate { to, .. } => match self.here(&to) {
                Ok(t) => self.kill(t, ErrorValue::new(kind::CANCELED, "terminated")),
                Err(why) => self.frame_dropped(&from, why, format!("terminate for {to}")),
            },
            f @ (Frame::DispatchRequest { .. }
            | Frame::DispatchReply { .. }
            | Frame::DispatchNamespaces { .. }
            | Frame::DispatchCancel { .. }) => self.dispatch_frame(&from, f),
        }
    }

    fn on_send(&mut self, from: &NodeId, s: SendFrame) {
        let Some(p) = self.cluster.as_mut().and_then(|c| c.peers.get_mut(from)) else {
            return;
        };
        if s.seq <= p.seen_seq {
            let last = p.seen_seq;
            return self.frame_dropped(
                from,
                "duplicate",
                format!("message #{} after #{last}", s.seq),
            );
        }
        p.seen_seq = s.seq;
        let incarnation = p.incarnation;
        let to = match &s.to {
            Dest::Pid(pid) => self.here(pid),
            Dest::Name(n) => match self.cluster_name(n) {
                Some(owner) => self.here(&owner),
                None => self.names.lookup(n).ok_or("dead"),
            },
        };
        let to = match to {
            Ok(t) => t,
            Err(why) => return self.frame_dropped(from, why, format!("message for {:?}", s.to)),
        };
        // A remote sender cannot be answered: at the mailbox bound the message is dropped and
        // counted, like any frame this node cannot take.
        if self.has_room(to).is_err() {
            return self.frame_dropped(from, "mailbox full", format!("message for {:?}", s.to));
        }
        if self.tracing() {
            let text = s.from.as_ref().map_or("-".to_string(), |p| p.to_string());
            self.trace(TraceEvent::RemoteDeliver {
                from: &text,
                incarnation,
                to,
                seq: s.seq,
            });
        }
        self.next_msg_seq += 1;
        let seq = self.next_msg_seq;
        self.trace(TraceEvent::Send {
            from: None,
            to,
            topic: &s.topic,
            seq,
        });
        let m = Message {
            from: s.from,
            topic: s.topic,
            payload: s.payload,
            seq,
        };
        if let Some(p) = self.procs.get_mut(&to) {
            p.mailbox.messages.push_back(m);
            self.wake(to);
        }
    }

    fn on_spawn_request(&mut self, from: &NodeId, r: SpawnRequest) {
        if let Some(p) = self.cluster.as_mut().and_then(|c| c.peers.get_mut(from)) {
            let last = p.spawn_tags.entry(r.caller.clone()).or_insert(0);
            if r.tag <= *last {
                let detail = format!("spawn request {} of {}", r.tag, r.caller);
                return self.frame_dropped(from, "duplicate", detail);
            }
            *last = r.tag;
        }
        let result = self
            .spawn(&r.entry, &r.host, r.args, SpawnOptions::default())
            .and_then(|pid| {
                if let Some(n) = &r.name {
                    self.register_name(n, pid.uniq)?;
                }
                Ok(pid)
            });
        if let Ok(pid) = &result {
            if r.monitor {
                self.topology
                    .monitor(ProcRef::Remote(r.caller.clone()), ProcRef::Local(pid.uniq));
            }
            if r.link {
                self.topology
                    .link(ProcRef::Remote(r.caller.clone()), ProcRef::Local(pid.uniq));
            }
        }
        let reply = Frame::SpawnReply(SpawnReply {
            caller: r.caller,
            tag: r.tag,
            result,
        });
        let _ = self.transmit(from, &reply);
    }

    fn on_spawn_reply(&mut self, from: &NodeId, r: SpawnReply) {
        let waiting = self
            .cluster
            .as_mut()
            .and_then(|c| c.spawns.remove(&(r.caller.uniq, r.tag)));
        let Some(sp) = waiting.filter(|s| s.node == *from) else {
            return self.frame_dropped(from, "dead", format!("spawn reply for {}", r.caller));
        };
        let alive = self.pid_of(r.caller.uniq) == Some(&r.caller);
        if let Ok(child) = &r.result {
            if !alive {
                // Nobody waits: undo what the child was given.
                if sp.link {
                    let f = Frame::LinkDown {
                        from: r.caller.clone(),
                        to: child.clone(),
                        result: Err(not_found(&r.caller)),
                    };
                    let _ = self.transmit(from, &f);
                } else if sp.monitor {
                    let f = Frame::Demonitor {
                        watcher: r.caller.clone(),
                        target: child.clone(),
                    };
                    let _ = self.transmit(from, &f);
                }
                return;
            }
            if sp.monitor {
                self.trace(TraceEvent::RemoteMonitor {
                    watcher: r.caller.uniq,
                    target: &child.to_string(),
                    on: true,
                });
                self.topology.monitor(
                    ProcRef::Local(r.caller.uniq),
                    ProcRef::Remote(child.clone()),
                );
            }
            if sp.link {
                self.topology.link(
                    ProcRef::Local(r.caller.uniq),
                    ProcRef::Remote(child.clone()),
                );
            }
        }
        let result = r.result.map(|p| Value::from(p.to_string()));
        self.complete(&r.caller, r.tag, result);
    }

    fn on_remote_exit(
        &mut self,
        from: &NodeId,
        k: EventKind,
        dead: Pid,
        to: Pid,
        result: ExitResult,
    ) {
        let w = match self.here(&to) {
            Ok(w) => w,
            Err(why) => return self.frame_dropped(from, why, format!("{} for {to}", k.as_str())),
        };
        let (me, them) = (ProcRef::Local(w), ProcRef::Remote(dead.clone()));
        let owed = match k {
            EventKind::Exit => self.topology.unmonitor(me, them),
            _ => self.topology.unlink(me, them),
        };
        if !owed {
            return self.frame_dropped(from, "dead", format!("{} nobody waits for", k.as_str()));
        }
        if k == EventKind::LinkDown && result.is_ok() {
            return; // a normal end only ends the link
        }
        let target = dead.to_string();
        self.remote_event(w, k, &dead, &target, result);
    }
}

/// The PID on the sending node a frame speaks for, which must be of the connection's node (a
/// peer may not speak for processes of another node). Name claims are passed on for any node.
fn origin(f: &Frame) -> Option<&Pid> {
    match f {
        Frame::Send(s) => s.from.as_ref(),
        Frame::SpawnRequest(r) => Some(&r.caller),
        Frame::Monitor { watcher, .. } | Frame::Demonitor { watcher, .. } => Some(watcher),
        Frame::Link { from, .. }
        | Frame::Unlink { from, .. }
        | Frame::Exit { from, .. }
        | Frame::LinkDown { from, .. }
        | Frame::Cancel { from, .. }
        | Frame::Terminate { from, .. }
        | Frame::NameRelease { owner: from, .. } => Some(from),
        Frame::Hello(_)
        | Frame::SpawnReply(_)
        | Frame::NameClaim(_)
        | Frame::NameSync
        | Frame::DispatchRequest { .. }
        | Frame::DispatchReply { .. }
        | Frame::DispatchNamespaces { .. }
        | Frame::DispatchCancel { .. } => None,
    }
}

/// A message's per-peer sequence number; 0 for the other frames (as the trace shows them).
fn seq_of(f: &Frame) -> u64 {
    match f {
        Frame::Send(s) => s.seq,
        _ => 0,
    }
}

fn not_found(pid: &Pid) -> ErrorValue {
    ErrorValue::new(kind::NOT_FOUND, format!("process not found: {pid}"))
}
