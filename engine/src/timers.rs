//! Timers as node state: an ordered queue of deadlines that `poll_timeout` exposes to the driver.
//! It never reads a clock; the node hands in `now` and pops what is due.

use std::collections::BTreeMap;

/// What a firing timer is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A process-owned timer (sleep, after, timer, ticker) with the process's own id for it.
    Process { proc: u64, id: u64 },
    /// A message held back by the simulator's seeded delivery delay (key into the node's
    /// delayed messages).
    Deliver { key: u64 },
    /// The supervisor's restart delay for a service.
    ServiceRestart { service: usize },
    /// A service did not stop within its stop_timeout.
    StopDeadline { service: usize },
    /// The `timeout` option of a function call served on this node ran out: if the caller still
    /// waits on `tag` for `callee`, the callee is stopped and the call fails with kind Timeout.
    CallTimeout {
        caller: u64,
        tag: u64,
        callee: u64,
        after_ns: u64,
    },
}

#[derive(Clone, Debug)]
pub struct Timer {
    pub target: Target,
    /// Re-armed this many nanoseconds later after each firing (tickers).
    pub period: Option<u64>,
}

/// A tie-break chooses among at most this many timers due at one instant (bounded work per pop).
const MAX_TIES: usize = 16;

#[derive(Debug, Default)]
pub struct Timers {
    queue: BTreeMap<(u64, u64), Timer>,
    due_of: BTreeMap<u64, u64>,
    next_seq: u64,
}

impl Timers {
    /// Arms a timer at absolute time `at` (ns); returns its key for `cancel`.
    pub fn arm(&mut self, at: u64, timer: Timer) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.queue.insert((at, seq), timer);
        self.due_of.insert(seq, at);
        seq
    }

    pub fn cancel(&mut self, key: u64) -> bool {
        match self.due_of.remove(&key) {
            Some(at) => self.queue.remove(&(at, key)).is_some(),
            None => false,
        }
    }

    /// Moves an armed timer to a new deadline, keeping its key.
    pub fn reset(&mut self, key: u64, at: u64) -> bool {
        let Some(old) = self.due_of.get(&key).copied() else {
            return false;
        };
        let t = self.queue.remove(&(old, key)).expect("timer index in sync");
        self.queue.insert((at, key), t);
        self.due_of.insert(key, at);
        true
    }

    pub fn next_deadline(&self) -> Option<u64> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// Pops one timer due at or before `now`; periodic ones are re-armed at their next period.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, Timer)> {
        self.pop_due_choosing(now, |_| 0)
    }

    /// As `pop_due`, but when several timers are due at the earliest instant, `choose(n)`
    /// picks which of the first `n` of them fires (the simulator's seeded tie-break). Held-back
    /// messages (`Target::Deliver`) keep their arming order among themselves, so per-sender
    /// FIFO holds whatever is chosen.
    pub fn pop_due_choosing(
        &mut self,
        now: u64,
        mut choose: impl FnMut(usize) -> usize,
    ) -> Option<(u64, Timer)> {
        let (&(at, first), _) = self.queue.iter().next()?;
        if at > now {
            return None;
        }
        let mut seq = first;
        let mut tied: Vec<u64> = Vec::new();
        let mut deliver_seen = false;
        for (&(_, s), t) in self.queue.range((at, 0)..=(at, u64::MAX)) {
            if tied.len() == MAX_TIES {
                break;
            }
            if matches!(t.target, Target::Deliver { .. }) {
                if deliver_seen {
                    continue;
                }
                deliver_seen = true;
            }
            tied.push(s);
        }
        if tied.len() > 1 {
            seq = tied[choose(tied.len()).min(tied.len() - 1)];
        }
        let t = self.queue.remove(&(at, seq)).expect("present");
        match t.period {
            Some(p) => {
                // Missed periods are not replayed: the next tick is one period after now.
                let mut next = at.saturating_add(p.max(1));
                if next <= now {
                    next = now.saturating_add(p.max(1));
                }
                self.queue.insert((next, seq), t.clone());
                self.due_of.insert(seq, next);
            }
            None => {
                self.due_of.remove(&seq);
            }
        }
        Some((seq, t))
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

// ---- process timers on the node ----------------------------------------------------
mod on_node {
    use crate::core::err;
    use crate::node::*;
    use crate::relay::Signal;
    use crate::timers::{Target, Timer};
    use crate::trace::TraceEvent;
    use crate::value::kind;

    impl Core {
        pub fn arm_timer(
            &mut self,
            proc: u64,
            id: u64,
            delay_ns: u64,
            period_ns: Option<u64>,
        ) -> u64 {
            let at = self.now.saturating_add(delay_ns);
            self.timers.arm(
                at,
                Timer {
                    target: Target::Process { proc, id },
                    period: period_ns,
                },
            )
        }

        pub fn cancel_timer(&mut self, key: u64) -> bool {
            self.timers.cancel(key)
        }

        pub fn reset_timer(&mut self, key: u64, delay_ns: u64) -> bool {
            let at = self.now.saturating_add(delay_ns);
            self.timers.reset(key, at)
        }

        pub(crate) fn fire_timers(&mut self, now: Instant) {
            loop {
                let explore = &mut self.sched.explore;
                let Some((key, t)) = self.timers.pop_due_choosing(now, |n| explore.tie(n)) else {
                    break;
                };
                match t.target {
                    Target::Process { proc, id } => {
                        self.trace(TraceEvent::Timer { proc, id });
                        let at = self.wall_now_ns();
                        if !self.push_signal(proc, Signal::Timer { id, at_unix_ns: at })
                            && t.period.is_some()
                        {
                            self.timers.cancel(key);
                        }
                    }
                    Target::Deliver { key } => {
                        if let Some((to, m)) = self.delayed.remove(&key) {
                            // The receiver may have died meanwhile: then the message is lost,
                            // as a message sent to a dead process is.
                            if let Some(p) = self.procs.get_mut(&to) {
                                p.mailbox.messages.push_back(m);
                                self.wake(to);
                            }
                        }
                    }
                    Target::ServiceRestart { service } => {
                        self.services[service].timer = None;
                        if !self.is_stopping() {
                            self.stats.restarts += 1;
                            self.start_service(service);
                        }
                    }
                    Target::StopDeadline { service } => {
                        if let Some(p) = self.services[service].proc {
                            let id = self.services[service].id.clone();
                            self.log(
                                Level::Warn,
                                "service did not stop in time",
                                vec![("service".into(), id)],
                            );
                            self.kill(p, err(kind::TIMEOUT, "stop timeout"));
                        }
                    }
                    Target::CallTimeout {
                        caller,
                        tag,
                        callee,
                        after_ns,
                    } => {
                        let waiting = self
                            .procs
                            .get(&caller)
                            .is_some_and(|p| p.calls.contains(&(tag, callee)));
                        if waiting && self.procs.contains_key(&callee) {
                            let ms = after_ns as f64 / 1e6;
                            self.kill(
                                callee,
                                err(
                                    kind::TIMEOUT,
                                    format!("function call timed out after {ms} ms"),
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: u64) -> Timer {
        Timer {
            target: Target::Process { proc: 1, id },
            period: None,
        }
    }

    #[test]
    fn fires_in_deadline_then_arming_order() {
        let mut ts = Timers::default();
        let a = ts.arm(20, t(1));
        let b = ts.arm(10, t(2));
        let c = ts.arm(10, t(3));
        assert_eq!(ts.next_deadline(), Some(10));
        assert_eq!(ts.pop_due(5).map(|x| x.0), None);
        assert_eq!(ts.pop_due(30).map(|x| x.0), Some(b));
        assert_eq!(ts.pop_due(30).map(|x| x.0), Some(c));
        assert_eq!(ts.pop_due(30).map(|x| x.0), Some(a));
        assert!(ts.is_empty());
    }

    #[test]
    fn ties_fire_in_the_chosen_order_and_held_messages_keep_theirs() {
        let deliver = |key| Timer {
            target: Target::Deliver { key },
            period: None,
        };
        let mut ts = Timers::default();
        let a = ts.arm(10, t(1));
        let d1 = ts.arm(10, deliver(1));
        let b = ts.arm(10, t(2));
        let d2 = ts.arm(10, deliver(2));
        let late = ts.arm(20, t(3));
        // Always the last candidate: only the oldest held message is ever one, so d1 goes
        // before d2 whatever is chosen.
        let mut order = Vec::new();
        while let Some((k, _)) = ts.pop_due_choosing(10, |n| n - 1) {
            order.push(k);
        }
        assert_eq!(order, vec![b, d1, d2, a]);
        assert_eq!(ts.next_deadline(), Some(20));
        assert_eq!(ts.pop_due_choosing(20, |n| n - 1).map(|x| x.0), Some(late));
    }

    #[test]
    fn cancel_and_reset() {
        let mut ts = Timers::default();
        let a = ts.arm(10, t(1));
        assert!(ts.reset(a, 50));
        assert!(ts.pop_due(20).is_none());
        assert!(ts.cancel(a));
        assert!(!ts.cancel(a));
        assert_eq!(ts.next_deadline(), None);
    }

    #[test]
    fn ticker_rearms_without_replaying_missed_ticks() {
        let mut ts = Timers::default();
        let k = ts.arm(
            10,
            Timer {
                target: Target::Process { proc: 1, id: 1 },
                period: Some(10),
            },
        );
        assert_eq!(ts.pop_due(55).map(|x| x.0), Some(k));
        assert_eq!(ts.next_deadline(), Some(65));
        assert!(ts.cancel(k));
        assert!(ts.is_empty());
    }
}
