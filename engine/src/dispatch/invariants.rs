//! Dispatch's end-to-end promises as a checker that a simulator or a test feeds with what the
//! collectors did: no call answered twice, every call answered by its deadline, no call that is
//! not idempotent executed twice. It only watches; it never changes a collector.

use super::collector::{hint, ReqId};
use super::Instant;
use std::collections::BTreeMap;

struct Call {
    deadline: Instant,
    idempotent: bool,
    answers: u32,
    runs: u32,
}

/// Watches calls by their `weft-call` identity (`<collector>/<request id>`).
#[derive(Default)]
pub struct Checker {
    calls: BTreeMap<String, Call>,
    violations: Vec<String>,
}

impl Checker {
    /// A call entered the cluster at `collector` as request `req` (from a client or the node's
    /// own `funcs.call`).
    pub fn asked(&mut self, collector: &str, req: ReqId, deadline: Instant, idempotent: bool) {
        self.calls.insert(
            format!("{collector}/{req}"),
            Call {
                deadline,
                idempotent,
                answers: 0,
                runs: 0,
            },
        );
    }

    /// `collector` answered request `req` at `now` (requests that are not watched calls, such
    /// as the hops of a forwarded one, are ignored).
    pub fn answered(&mut self, collector: &str, req: ReqId, now: Instant) {
        let id = format!("{collector}/{req}");
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.answers += 1;
        if c.answers > 1 {
            self.violations
                .push(format!("call {id} answered {} times", c.answers));
        }
        if now > c.deadline {
            self.violations.push(format!(
                "call {id} answered at {now}, after its deadline {}",
                c.deadline
            ));
        }
    }

    /// A collector ran a handler with this context (`Output::Invoke`).
    pub fn invoked(&mut self, context: &BTreeMap<String, String>) {
        let Some(id) = context.get(hint::CALL) else {
            return;
        };
        let Some(c) = self.calls.get_mut(id) else {
            return;
        };
        c.runs += 1;
        if c.runs > 1 && !c.idempotent {
            self.violations.push(format!(
                "call {id} is not idempotent and ran {} times",
                c.runs
            ));
        }
    }

    /// At `now`: every call whose deadline has passed must have been answered.
    pub fn check(&mut self, now: Instant) {
        for (id, c) in &self.calls {
            if c.answers == 0 && now > c.deadline {
                let v = format!("call {id} unanswered past its deadline {}", c.deadline);
                if !self.violations.contains(&v) {
                    self.violations.push(v);
                }
            }
        }
    }

    /// `collector` is gone (crashed or stopped): its calls have no one left to answer them.
    pub fn forget(&mut self, collector: &str) {
        let prefix = format!("{collector}/");
        self.calls.retain(|id, _| !id.starts_with(&prefix));
    }

    /// Calls watched now.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// Calls that ran more than once (idempotent ones may).
    pub fn retried(&self) -> usize {
        self.calls.values().filter(|c| c.runs > 1).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(call: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(hint::CALL.to_string(), call.to_string())])
    }

    #[test]
    fn each_promise_broken_is_reported() {
        let mut c = Checker::default();
        c.asked("A", 1, 100, false);
        c.asked("A", 2, 100, true);
        c.asked("B", 1, 50, false);
        c.invoked(&ctx("A/1"));
        c.invoked(&ctx("A/2"));
        c.invoked(&ctx("A/2"));
        c.invoked(&ctx("X/9"));
        c.answered("A", 1, 10);
        c.answered("A", 2, 20);
        c.answered("Z", 7, 20);
        c.check(50);
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        assert_eq!(c.retried(), 1);

        c.invoked(&ctx("A/1"));
        c.answered("A", 1, 30);
        c.check(51);
        c.answered("B", 1, 60);
        c.asked("C", 1, 10, false);
        c.forget("C");
        c.check(100);
        assert_eq!(c.len(), 3, "C's call went with C");
        assert_eq!(
            c.violations(),
            [
                "call A/1 is not idempotent and ran 2 times",
                "call A/1 answered 2 times",
                "call B/1 unanswered past its deadline 50",
                "call B/1 answered at 60, after its deadline 50",
            ]
        );
    }
}
