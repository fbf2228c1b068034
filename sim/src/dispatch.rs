//! Collective dispatch's promises across the simulated cluster, read from the nodes' traces
//! (`TraceEvent::Dispatch*`) into one `weft_engine::dispatch::invariants::Checker` on the
//! global clock: no call answered twice, every call answered by its deadline, no call that is
//! not idempotent run twice. A call is known as `<node>/<request id>` (its `weft-call`
//! identity; request ids start at each incarnation's PID base, so they never repeat).

use crate::check::Violation;
use weft_engine::dispatch::invariants::Checker;
use weft_engine::trace::TraceEvent;

/// How late past its deadline (node time turned global) an answer may come: clock drift over a
/// request's timeout, and a node being run a little after its timer is due.
pub const SLACK_NS: u64 = 200_000_000;
/// Unanswered calls are looked at this often (global time), not after every step.
const CHECK_EVERY_NS: u64 = 100_000_000;

#[derive(Default)]
pub(crate) struct Calls {
    checker: Checker,
    next_check: u64,
    reported: usize,
}

impl Calls {
    /// A trace event of node `node` at global time `now`.
    pub(crate) fn see(&mut self, now: u64, node: &str, ev: &TraceEvent<'_>) {
        match *ev {
            TraceEvent::DispatchAsked {
                req,
                timeout_ns,
                idempotent,
            } => {
                let deadline = now.saturating_add(timeout_ns).saturating_add(SLACK_NS);
                self.checker.asked(node, req, deadline, idempotent);
            }
            TraceEvent::DispatchAnswered { req } => self.checker.answered(node, req, now),
            TraceEvent::DispatchInvoked { call } => {
                let context = [(
                    weft_engine::dispatch::collector::hint::CALL.to_string(),
                    call.to_string(),
                )];
                self.checker.invoked(&context.into_iter().collect());
            }
            _ => {}
        }
    }

    /// `node` crashed or stopped: the calls it took die with it.
    pub(crate) fn forget(&mut self, node: &str) {
        self.checker.forget(node);
    }

    /// At `now` (after a step): calls past their deadline must have been answered.
    pub(crate) fn check(&mut self, now: u64) {
        if now >= self.next_check {
            self.next_check = now.saturating_add(CHECK_EVERY_NS);
            self.checker.check(now);
        }
    }

    /// The first promise broken, once.
    pub(crate) fn violation(&mut self) -> Option<Violation> {
        let v = self.checker.violations();
        if v.len() <= self.reported {
            return None;
        }
        self.reported = v.len();
        Some(Violation {
            invariant: "dispatch: every call answered once by its deadline, run at most once",
            detail: v[0].clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_answered_twice_or_late_or_run_twice_is_a_violation() {
        let mut c = Calls::default();
        let asked = |req| TraceEvent::DispatchAsked {
            req,
            timeout_ns: 1_000,
            idempotent: false,
        };
        c.see(0, "n1", &asked(1));
        c.see(0, "n1", &asked(2));
        c.see(5, "n2", &TraceEvent::DispatchInvoked { call: "n1/1" });
        c.see(10, "n1", &TraceEvent::DispatchAnswered { req: 1 });
        c.check(20);
        assert!(c.violation().is_none());
        c.forget("n1");
        c.check(SLACK_NS + 10_000);
        assert!(
            c.violation().is_none(),
            "a crashed node's calls are not owed"
        );

        c.see(0, "n2", &asked(1));
        c.see(1, "n3", &TraceEvent::DispatchInvoked { call: "n2/1" });
        c.see(2, "n1", &TraceEvent::DispatchInvoked { call: "n2/1" });
        let v = c.violation().expect("ran twice");
        assert!(v.detail.contains("ran 2 times"), "{v:?}");
        c.see(3, "n2", &TraceEvent::DispatchAnswered { req: 1 });
        c.see(4, "n2", &TraceEvent::DispatchAnswered { req: 1 });
        assert!(c.violation().is_some(), "answered twice");
        c.see(0, "n3", &asked(7));
        c.check(SLACK_NS + 2_000_000_000);
        assert!(c.violation().is_some(), "unanswered past its deadline");
    }
}
