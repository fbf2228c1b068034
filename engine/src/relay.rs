//! Where a message goes: the router that decides, for every send, spawn, monitor and link,
//! whether the process is here or on another node (`Route`), the mailboxes (outside any Lua
//! heap) and the local name registry. A mailbox is one FIFO per process, so order per
//! sender→receiver pair is kept by construction.

use crate::node::Core;
use crate::pid::{NodeId, Pid};
use crate::value::{kind, ErrorValue, Value};
use std::collections::{BTreeMap, VecDeque};

/// Where an operation on a process goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A live process of this node.
    Local(u64),
    /// A process of another node. No transport is connected yet, so such operations fail with
    /// "node not connected"; the cluster plugs in here.
    Remote(NodeId),
}

impl Core {
    /// Routes a destination given as text: a PID (`{host|0x..}` or `{node@host|0x..}`) or a
    /// registered name.
    pub(crate) fn route(&self, dest: &str) -> Result<Route, ErrorValue> {
        if dest.starts_with('{') {
            let Some((node, host, uniq)) = Pid::parse_parts(dest) else {
                return Err(ErrorValue::new(
                    kind::INVALID,
                    format!("invalid pid: {dest}"),
                ));
            };
            // No node (or Wippy's "local") is this node, whatever its name.
            let node = node.unwrap_or(self.node_id().as_str());
            if node != self.node_id().as_str() {
                return Ok(Route::Remote(NodeId::named(node)));
            }
            return match self.proc(uniq) {
                Some(p) if &*p.pid.host == host => Ok(Route::Local(uniq)),
                _ => Err(ErrorValue::new(
                    kind::NOT_FOUND,
                    format!("process not found: {dest}"),
                )),
            };
        }
        if let Some(owner) = self.cluster_name(dest) {
            return self.route_pid(&owner);
        }
        self.names
            .lookup(dest)
            .map(Route::Local)
            .ok_or_else(|| ErrorValue::new(kind::NOT_FOUND, format!("could not resolve: {dest}")))
    }

    /// Routes a parsed PID.
    pub(crate) fn route_pid(&self, pid: &Pid) -> Result<Route, ErrorValue> {
        if pid.node != *self.node_id() && !pid.node.is_local() {
            return Ok(Route::Remote(pid.node.clone()));
        }
        match self.proc(pid.uniq) {
            Some(p) if p.pid.host == pid.host => Ok(Route::Local(pid.uniq)),
            _ => Err(ErrorValue::new(
                kind::NOT_FOUND,
                format!("process not found: {pid}"),
            )),
        }
    }

    /// A destination that must be a live local process: remote routes fail until a transport
    /// is connected.
    pub fn resolve(&self, dest: &str) -> Result<u64, ErrorValue> {
        match self.route(dest)? {
            Route::Remote(node) if self.cluster.is_some() => Err(ErrorValue::new(
                kind::INVALID,
                format!("{dest} is a process of node {node}: only this node's processes here"),
            )),
            r => local_only(r),
        }
    }

    pub(crate) fn resolve_pid(&self, pid: &Pid) -> Result<u64, ErrorValue> {
        self.route_pid(pid).and_then(local_only)
    }

    /// Where a spawn on `host` goes: `node@host` names another node.
    pub(crate) fn route_host<'h>(&self, host: &'h str) -> Result<&'h str, ErrorValue> {
        match host.split_once('@') {
            Some((node, h)) if node == self.node_id().as_str() || node == NodeId::LOCAL => Ok(h),
            Some((node, _)) => Err(not_connected(&NodeId::named(node))),
            None => Ok(host),
        }
    }
}

fn not_connected(node: &NodeId) -> ErrorValue {
    ErrorValue::new(
        kind::UNAVAILABLE,
        format!("node not connected: {node} (this node is not part of a cluster)"),
    )
}

pub(crate) fn local_only(r: Route) -> Result<u64, ErrorValue> {
    match r {
        Route::Local(id) => Ok(id),
        Route::Remote(node) => Err(not_connected(&node)),
    }
}

/// A message as the receiver sees it: sender (None when unknown), topic and zero or more payloads.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub from: Option<Pid>,
    pub topic: String,
    pub payload: Vec<Value>,
    /// Node-wide send order, for tracing and the simulator's FIFO check.
    pub seq: u64,
}

pub type ExitResult = Result<Value, ErrorValue>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exit,
    LinkDown,
    Cancel,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Exit => "pid.exit",
            EventKind::LinkDown => "pid.link.down",
            EventKind::Cancel => "pid.cancel",
        }
    }
}

/// A lifecycle event for `process.events()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub from: Pid,
    /// Unix time in nanoseconds when it happened.
    pub at_unix_ns: i64,
    /// EXIT and LINK_DOWN carry the dead process's result.
    pub result: Option<ExitResult>,
    /// CANCEL carries a reason ("" when none).
    pub reason: String,
}

/// Node-internal deliveries to one process: fired timers and completed commands.
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    Timer {
        id: u64,
        at_unix_ns: i64,
    },
    Completed {
        tag: u64,
        result: Result<Value, ErrorValue>,
    },
    /// An event-bus item for one of the process's subscriptions.
    Bus {
        sub: u64,
        event: crate::eventbus::BusEvent,
    },
}

/// Everything delivered to a process and not yet taken by it.
#[derive(Debug, Default)]
pub struct Mailbox {
    pub messages: VecDeque<Message>,
    pub events: VecDeque<Event>,
    pub signals: VecDeque<Signal>,
}

impl Mailbox {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.events.is_empty() && self.signals.is_empty()
    }
}

/// Local name registry: one owner per name, names released when the owner dies.
#[derive(Debug, Default)]
pub struct Names {
    by_name: BTreeMap<String, u64>,
    by_proc: BTreeMap<u64, Vec<String>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum NameError {
    Taken,
}

impl Names {
    /// Same name to the same process is idempotent; a name held by another process is refused.
    pub fn register(&mut self, name: &str, proc: u64) -> Result<(), NameError> {
        match self.by_name.get(name) {
            Some(&p) if p == proc => Ok(()),
            Some(_) => Err(NameError::Taken),
            None => {
                self.by_name.insert(name.to_string(), proc);
                self.by_proc.entry(proc).or_default().push(name.to_string());
                Ok(())
            }
        }
    }

    pub fn lookup(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    pub fn unregister(&mut self, name: &str) -> bool {
        match self.by_name.remove(name) {
            Some(p) => {
                if let Some(v) = self.by_proc.get_mut(&p) {
                    v.retain(|n| n != name);
                }
                true
            }
            None => false,
        }
    }

    /// Releases every name `proc` holds; returns them.
    pub fn release_all(&mut self, proc: u64) -> Vec<String> {
        let names = self.by_proc.remove(&proc).unwrap_or_default();
        for n in &names {
            self.by_name.remove(n);
        }
        names
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Processes that hold at least one name, in id order.
    pub fn owners(&self) -> Vec<u64> {
        self.by_proc
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| *k)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

// ---- operations on other processes: routing, delivery, control ---------------------
mod on_node {
    use super::*;
    use crate::cluster::remote::Target as To;
    use crate::core::err;
    use crate::node::*;
    use crate::pid::Pid;
    use crate::relay::{Event, EventKind, Mailbox, Message, NameError, Signal};
    use crate::timers::{Target, Timer};
    use crate::topology::ProcRef;
    use crate::trace::TraceEvent;
    use crate::value::{kind, ErrorValue, Value};
    use std::sync::Arc;

    impl Core {
        pub(crate) fn wake(&mut self, id: u64) {
            self.sched.wake(id);
        }

        /// `send` to a destination as a command carries it.
        pub(crate) fn send_to(
            &mut self,
            from: Option<u64>,
            dest: &crate::command::Dest,
            topic: String,
            payload: Vec<Value>,
        ) -> Result<(), ErrorValue> {
            match dest {
                crate::command::Dest::Text(d) => self.send(from, d, topic, payload),
                crate::command::Dest::Pid(p) => {
                    if topic.starts_with('@') {
                        return Err(err(
                            kind::INVALID,
                            format!("topic may not start with '@': {topic}"),
                        ));
                    }
                    let to = match self.target_pid(p)? {
                        To::Local(to) => to,
                        To::Remote(p) => return self.remote_send(from, p, topic, payload),
                    };
                    self.has_room(to)?;
                    self.deliver(from, to, topic, payload);
                    Ok(())
                }
            }
        }

        pub fn send(
            &mut self,
            from: Option<u64>,
            dest: &str,
            topic: String,
            payload: Vec<Value>,
        ) -> Result<(), ErrorValue> {
            if topic.starts_with('@') {
                return Err(err(
                    kind::INVALID,
                    format!("topic may not start with '@': {topic}"),
                ));
            }
            let to = match self.target(dest)? {
                To::Local(to) => to,
                To::Remote(p) => return self.remote_send(from, p, topic, payload),
            };
            self.has_room(to)?;
            self.deliver(from, to, topic, payload);
            Ok(())
        }

        /// A send to a process whose mailbox is at its bound fails: the sender gets the error
        /// (back-pressure) instead of the node's memory filling with messages nobody reads.
        pub(crate) fn has_room(&self, to: u64) -> Result<(), ErrorValue> {
            match self.procs.get(&to) {
                Some(p)
                    if p.mailbox_cap > 0
                        && p.mailbox.messages.len() + p.backlog >= p.mailbox_cap =>
                {
                    Err(err(
                        kind::RATE_LIMITED,
                        format!(
                            "mailbox full: {} has {} messages waiting (its bound; `limits: \
                             {{mailbox: …}}` in its entry or WEFT_MAILBOX sets it)",
                            p.pid, p.mailbox_cap
                        ),
                    ))
                }
                _ => Ok(()),
            }
        }

        pub fn deliver(
            &mut self,
            from: Option<u64>,
            to: u64,
            topic: String,
            payload: Vec<Value>,
        ) -> bool {
            let from_pid = from.and_then(|f| self.procs.get(&f)).map(|p| p.pid.clone());
            if !self.procs.contains_key(&to) {
                return false;
            }
            self.next_msg_seq += 1;
            let seq = self.next_msg_seq;
            self.trace(TraceEvent::Send {
                from: from_pid.as_ref().map(|p| p.uniq),
                to,
                topic: &topic,
                seq,
            });
            let m = Message {
                from: from_pid,
                topic,
                payload,
                seq,
            };
            self.stats.messages_sent += 1;
            if let (Some(f), true) = (from, self.delivery_delay_ns > 0) {
                // Simulation only: a seeded delay, never earlier than the pair's previous
                // message, so per-sender FIFO holds whatever the draw.
                let d = self.random_u64() % self.delivery_delay_ns;
                let last = self.last_delivery.get(&(f, to)).copied().unwrap_or(0);
                let at = self.now.saturating_add(d).max(last);
                self.last_delivery.insert((f, to), at);
                self.next_delayed += 1;
                let key = self.next_delayed;
                self.delayed.insert(key, (to, m));
                self.timers.arm(
                    at,
                    Timer {
                        target: Target::Deliver { key },
                        period: None,
                    },
                );
                return true;
            }
            let p = self.procs.get_mut(&to).expect("checked above");
            p.mailbox.messages.push_back(m);
            self.wake(to);
            true
        }

        pub(crate) fn push_event(&mut self, to: u64, ev: Event) {
            // An event from another node's process is traced as `RemoteExit` (its number
            // is not a local process id and may equal one here).
            if self.procs.contains_key(&to) && ev.from.node == self.node {
                self.trace(TraceEvent::Event {
                    to,
                    kind: ev.kind,
                    from: ev.from.uniq,
                });
            }
            if let Some(p) = self.procs.get_mut(&to) {
                p.mailbox.events.push_back(ev);
                self.wake(to);
            }
        }

        pub(crate) fn push_signal(&mut self, to: u64, s: Signal) -> bool {
            match self.procs.get_mut(&to) {
                Some(p) => {
                    p.mailbox.signals.push_back(s);
                    self.wake(to);
                    true
                }
                None => false,
            }
        }

        pub fn take_mailbox(&mut self, id: u64) -> Mailbox {
            let mut mb = self
                .procs
                .get_mut(&id)
                .map(|p| std::mem::take(&mut p.mailbox))
                .unwrap_or_default();
            if self.observer.is_some() {
                for m in &mb.messages {
                    // A sender on another node is not a local process id (its number may
                    // equal one here): its order is checked on `RemoteDeliver` instead.
                    self.trace(TraceEvent::Take {
                        proc: id,
                        from: m
                            .from
                            .as_ref()
                            .filter(|p| p.node == self.node)
                            .map(|p| p.uniq),
                        seq: m.seq,
                    });
                }
            }
            if !self.bus.is_empty() {
                for (sub, event) in self.bus.take(id) {
                    mb.signals.push_back(Signal::Bus { sub, event });
                }
            }
            mb
        }

        pub fn cancel(&mut self, from: u64, dest: &str, reason: String) -> Result<(), ErrorValue> {
            let to = match self.target(dest)? {
                To::Local(to) => to,
                To::Remote(p) => return self.remote_cancel(from, p, reason),
            };
            let ev = Event {
                kind: EventKind::Cancel,
                from: self
                    .pid_of(from)
                    .cloned()
                    .unwrap_or_else(|| Pid::new(Arc::from(CONTROL_HOST), 0)),
                at_unix_ns: self.wall_now_ns(),
                result: None,
                reason,
            };
            self.push_event(to, ev);
            Ok(())
        }

        pub fn terminate(&mut self, dest: &str) -> Result<(), ErrorValue> {
            let to = match self.target(dest)? {
                To::Local(to) => to,
                To::Remote(p) => return self.remote_terminate(None, p),
            };
            self.kill(to, err(kind::CANCELED, "terminated"));
            Ok(())
        }

        pub fn monitor(&mut self, watcher: u64, dest: &str) -> Result<(), ErrorValue> {
            let t = match self.target(dest)? {
                To::Local(t) => t,
                To::Remote(p) => return self.remote_monitor(watcher, p, true),
            };
            self.topology
                .monitor(ProcRef::Local(watcher), ProcRef::Local(t));
            self.trace(TraceEvent::Monitor { watcher, target: t });
            Ok(())
        }

        pub fn unmonitor(&mut self, watcher: u64, dest: &str) -> Result<(), ErrorValue> {
            let t = match self.target(dest)? {
                To::Local(t) => t,
                To::Remote(p) => return self.remote_monitor(watcher, p, false),
            };
            self.topology
                .unmonitor(ProcRef::Local(watcher), ProcRef::Local(t));
            self.trace(TraceEvent::Unmonitor { watcher, target: t });
            Ok(())
        }

        pub fn link(&mut self, a: u64, dest: &str) -> Result<(), ErrorValue> {
            let b = match self.target(dest)? {
                To::Local(b) => b,
                To::Remote(p) => return self.remote_link(a, p, true),
            };
            self.topology.link(ProcRef::Local(a), ProcRef::Local(b));
            Ok(())
        }

        pub fn unlink(&mut self, a: u64, dest: &str) -> Result<(), ErrorValue> {
            let b = match self.target(dest)? {
                To::Local(b) => b,
                To::Remote(p) => return self.remote_link(a, p, false),
            };
            self.topology.unlink(ProcRef::Local(a), ProcRef::Local(b));
            Ok(())
        }

        pub fn register_name(&mut self, name: &str, proc: u64) -> Result<(), ErrorValue> {
            if name.is_empty() {
                return Err(err(kind::INVALID, "name must not be empty"));
            }
            self.names.register(name, proc).map_err(|NameError::Taken| {
                err(
                    kind::ALREADY_EXISTS,
                    format!("name already registered: {name}"),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exclusive_and_released() {
        let mut n = Names::default();
        n.register("relay", 1).unwrap();
        n.register("relay", 1).unwrap();
        assert_eq!(n.register("relay", 2), Err(NameError::Taken));
        n.register("other", 1).unwrap();
        assert_eq!(n.lookup("relay"), Some(1));
        let mut released = n.release_all(1);
        released.sort();
        assert_eq!(released, vec!["other".to_string(), "relay".to_string()]);
        assert_eq!(n.lookup("relay"), None);
        n.register("relay", 2).unwrap();
        assert!(n.unregister("relay"));
        assert!(!n.unregister("relay"));
    }
}
