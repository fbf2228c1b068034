//! Invariants checked after every simulated step, fed by the node's trace events.
//! A violation names the invariant and what broke it; the runner adds the seed and replay line.

use std::collections::{BTreeMap, BTreeSet};
use weft_engine::relay::EventKind;
use weft_engine::trace::TraceEvent;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// Who sent a message, as the checker keys per-sender order: a process of this node (or
/// none), or a process of another node (its PID text and its node's incarnation).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Sender {
    Local(Option<u64>),
    Remote(String, u64),
}

#[derive(Default)]
pub struct Checker {
    alive: BTreeSet<u64>,
    dead: BTreeSet<u64>,
    monitors: BTreeSet<(u64, u64)>,
    exits_seen: BTreeMap<(u64, u64), u32>,
    owed: BTreeSet<(u64, u64)>,
    last_seq: BTreeMap<(Sender, u64), u64>,
    applied: BTreeSet<(u64, u64)>,
    /// Local watchers of processes of other nodes: (watcher, target PID text).
    remote_monitors: BTreeSet<(u64, String)>,
    remote_exits: BTreeMap<(u64, String), u32>,
    /// Remote monitors whose target's node went down this step, each owed one EXIT.
    remote_owed: BTreeSet<(u64, String)>,
    /// The message arriving from another node (its sender, incarnation), until its `Send`.
    arriving: Option<(String, u64)>,
    /// Local sequence numbers of messages from other nodes, to their sender.
    remote_seq: BTreeMap<u64, (String, u64)>,
    /// The last per-peer sequence number delivered from each (node, incarnation).
    peer_seq: BTreeMap<(String, u64), u64>,
    /// The newest incarnation of each other node this node has held up.
    newest: BTreeMap<String, u64>,
    pub violation: Option<Violation>,
}

/// The node a PID's text names: `{n2@host|0x…}` → `n2`.
fn node_of(pid: &str) -> Option<&str> {
    let inner = pid.strip_prefix('{')?;
    let at = inner.find('@')?;
    let bar = inner.find('|')?;
    (at < bar).then(|| &inner[..at])
}

impl Checker {
    fn fail(&mut self, invariant: &'static str, detail: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation { invariant, detail });
        }
    }

    pub fn observe(&mut self, ev: &TraceEvent<'_>) {
        match *ev {
            TraceEvent::Spawn { proc, .. } => {
                self.alive.insert(proc);
            }
            TraceEvent::Send { to, seq, .. } if self.dead.contains(&to) => {
                self.fail(
                    "no delivery to a dead process",
                    format!("message #{seq} delivered to dead process {to}"),
                );
            }
            TraceEvent::Event { to, kind, from } => {
                if self.dead.contains(&to) {
                    self.fail(
                        "no delivery to a dead process",
                        format!("{} event delivered to dead process {to}", kind.as_str()),
                    );
                }
                if kind == EventKind::Exit {
                    let n = {
                        let n = self.exits_seen.entry((to, from)).or_insert(0);
                        *n += 1;
                        *n
                    };
                    if n > 1 {
                        self.fail(
                            "exactly one EXIT per monitor per death",
                            format!("process {to} got {n} EXIT events for the death of {from}"),
                        );
                    }
                    self.owed.remove(&(to, from));
                }
            }
            TraceEvent::Monitor { watcher, target } => {
                self.monitors.insert((watcher, target));
            }
            TraceEvent::Unmonitor { watcher, target } => {
                self.monitors.remove(&(watcher, target));
            }
            TraceEvent::Exit { proc, .. } => {
                if self.dead.contains(&proc) {
                    self.fail(
                        "a process exits once",
                        format!("process {proc} exited twice"),
                    );
                }
                self.alive.remove(&proc);
                self.dead.insert(proc);
                let owed: Vec<(u64, u64)> = self
                    .monitors
                    .iter()
                    .filter(|(_, t)| *t == proc)
                    .copied()
                    .collect();
                for pair in owed {
                    self.monitors.remove(&pair);
                    if !self.dead.contains(&pair.0) {
                        self.owed.insert(pair);
                    }
                }
                self.monitors.retain(|(w, _)| *w != proc);
                self.remote_monitors.retain(|(w, _)| *w != proc);
            }
            TraceEvent::NodeUp {
                node, incarnation, ..
            } => {
                let n = self.newest.entry(node.to_string()).or_insert(0);
                *n = (*n).max(incarnation);
            }
            TraceEvent::NodeDown { node, .. } => {
                let owed: Vec<(u64, String)> = self
                    .remote_monitors
                    .iter()
                    .filter(|(_, t)| node_of(t) == Some(node))
                    .cloned()
                    .collect();
                for pair in owed {
                    self.remote_monitors.remove(&pair);
                    if !self.dead.contains(&pair.0) {
                        self.remote_owed.insert(pair);
                    }
                }
            }
            TraceEvent::RemoteMonitor {
                watcher,
                target,
                on,
            } => {
                let key = (watcher, target.to_string());
                if on {
                    self.remote_monitors.insert(key);
                } else {
                    self.remote_monitors.remove(&key);
                }
            }
            TraceEvent::RemoteExit {
                watcher,
                kind: EventKind::Exit,
                target,
                ..
            } => {
                if self.dead.contains(&watcher) {
                    self.fail(
                        "no delivery to a dead process",
                        format!("EXIT of {target} delivered to dead process {watcher}"),
                    );
                }
                let key = (watcher, target.to_string());
                let n = {
                    let n = self.remote_exits.entry(key.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                if n > 1 {
                    self.fail(
                        "exactly one EXIT per monitor per death",
                        format!("process {watcher} got {n} EXIT events for the death of {target}"),
                    );
                }
                self.remote_monitors.remove(&key);
                self.remote_owed.remove(&key);
            }
            TraceEvent::RemoteDeliver {
                from,
                incarnation,
                to,
                seq,
            } => {
                if self.dead.contains(&to) {
                    self.fail(
                        "no delivery to a dead process",
                        format!("message #{seq} from {from} delivered to dead process {to}"),
                    );
                }
                self.arriving = Some((from.to_string(), incarnation));
                let Some(node) = node_of(from) else {
                    return;
                };
                if self.newest.get(node).is_some_and(|n| *n > incarnation) {
                    self.fail(
                        "no delivery from an old incarnation",
                        format!(
                            "message #{seq} from {from} of {node} incarnation {incarnation} \
                             delivered after incarnation {} was up",
                            self.newest[node]
                        ),
                    );
                }
                let last = self
                    .peer_seq
                    .insert((node.to_string(), incarnation), seq)
                    .unwrap_or(0);
                if seq == last {
                    self.fail(
                        "no duplicate delivery",
                        format!("message #{seq} from {node}/{incarnation} delivered twice"),
                    );
                } else if seq < last {
                    self.fail(
                        "per-sender FIFO per connection epoch",
                        format!("message #{seq} from {node}/{incarnation} delivered after #{last}"),
                    );
                }
            }
            TraceEvent::Send {
                from: None, seq, ..
            } if self.arriving.is_some() => {
                let sender = self.arriving.take().expect("checked");
                self.remote_seq.insert(seq, sender);
            }
            TraceEvent::Take { proc, from, seq } => {
                let who = match self.remote_seq.remove(&seq) {
                    Some((pid, inc)) => Sender::Remote(pid, inc),
                    None => Sender::Local(from),
                };
                let last = self.last_seq.insert((who, proc), seq).unwrap_or(0);
                if seq <= last {
                    self.fail(
                        "per-sender FIFO",
                        format!("process {proc} took message #{seq} from {from:?} after #{last}"),
                    );
                }
            }
            TraceEvent::Completion {
                proc,
                tag,
                applied: true,
            } if !self.applied.insert((proc, tag)) => {
                self.fail(
                    "no completion applied twice",
                    format!("completion {proc}/{tag} applied again"),
                );
            }
            _ => {}
        }
    }

    /// Checks that need the step to be over: every live monitor of a dead process got its EXIT.
    pub fn after_step(&mut self, owners_of_names: &[u64]) {
        let missing: Vec<(u64, u64)> = self
            .owed
            .iter()
            .filter(|(w, _)| !self.dead.contains(w))
            .copied()
            .collect();
        if let Some((w, t)) = missing.first() {
            self.fail(
                "exactly one EXIT per monitor per death",
                format!("process {w} monitored {t} but got no EXIT when it died"),
            );
        }
        self.owed.clear();
        let missing: Vec<(u64, String)> = self
            .remote_owed
            .iter()
            .filter(|(w, _)| !self.dead.contains(w))
            .cloned()
            .collect();
        if let Some((w, t)) = missing.first() {
            self.fail(
                "exactly one EXIT per monitor per death",
                format!(
                    "process {w} monitored {t} but got no EXIT when node {} went down",
                    node_of(t).unwrap_or("?")
                ),
            );
        }
        self.remote_owed.clear();
        for o in owners_of_names {
            if self.dead.contains(o) {
                self.fail(
                    "names released on exit",
                    format!("dead process {o} still owns a name"),
                );
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_exit_and_fifo_breaks_are_caught() {
        let mut c = Checker::default();
        c.observe(&TraceEvent::Monitor {
            watcher: 1,
            target: 2,
        });
        c.observe(&TraceEvent::Exit { proc: 2, ok: true });
        c.observe(&TraceEvent::Event {
            to: 1,
            kind: EventKind::Exit,
            from: 2,
        });
        c.after_step(&[]);
        assert!(c.violation.is_none());
        c.observe(&TraceEvent::Event {
            to: 1,
            kind: EventKind::Exit,
            from: 2,
        });
        assert_eq!(
            c.violation.as_ref().unwrap().invariant,
            "exactly one EXIT per monitor per death"
        );

        let mut c = Checker::default();
        c.observe(&TraceEvent::Take {
            proc: 1,
            from: Some(2),
            seq: 5,
        });
        c.observe(&TraceEvent::Take {
            proc: 1,
            from: Some(2),
            seq: 4,
        });
        assert_eq!(c.violation.as_ref().unwrap().invariant, "per-sender FIFO");
    }

    #[test]
    fn missing_exit_and_leaked_names_are_caught() {
        let mut c = Checker::default();
        c.observe(&TraceEvent::Monitor {
            watcher: 1,
            target: 2,
        });
        c.observe(&TraceEvent::Exit { proc: 2, ok: false });
        c.after_step(&[]);
        assert!(c.violation.as_ref().unwrap().detail.contains("got no EXIT"));

        let mut c = Checker::default();
        c.observe(&TraceEvent::Exit { proc: 3, ok: true });
        c.after_step(&[3]);
        assert_eq!(
            c.violation.as_ref().unwrap().invariant,
            "names released on exit"
        );
    }
}
