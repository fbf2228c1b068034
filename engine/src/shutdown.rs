//! Stopping the node: services stop level by level in reverse start order, each with its
//! stop_timeout, then whatever is left, then the node exits.

use crate::core::err;
use crate::node::*;
use crate::supervisor::ServiceState;
use crate::timers::{Target, Timer};
use crate::value::kind;

#[derive(Debug, Default, PartialEq)]
pub(crate) enum Shutdown {
    #[default]
    Running,
    /// Stopping services level by level in reverse start order; `waiting` is the level being
    /// stopped (CANCEL sent, each with its own stop_timeout).
    Stopping {
        code: i32,
        queue: Vec<usize>,
        waiting: std::collections::BTreeSet<usize>,
        grace_cap_ns: Option<u64>,
    },
    Done,
}

impl Core {
    pub fn is_stopping(&self) -> bool {
        self.shutdown != Shutdown::Running
    }

    /// Stops services in reverse start order (CANCEL, then wait up to stop_timeout), then exits.
    pub fn begin_shutdown(&mut self, code: i32) {
        self.begin_shutdown_with(code, None)
    }

    /// As `begin_shutdown`, waiting at most `grace_cap_ns` for each service whatever its
    /// stop_timeout (used when the terminal process ended: the user is waiting for the prompt).
    pub fn begin_shutdown_with(&mut self, code: i32, grace_cap_ns: Option<u64>) {
        if self.shutdown != Shutdown::Running {
            return;
        }
        self.cluster_leave();
        for s in &mut self.services {
            if let Some(t) = s.timer.take() {
                self.timers.cancel(t);
            }
        }
        let queue: Vec<usize> = self.start_order.clone();
        self.shutdown = Shutdown::Stopping {
            code,
            queue,
            waiting: Default::default(),
            grace_cap_ns,
        };
        self.advance_shutdown();
    }

    pub(crate) fn advance_shutdown(&mut self) {
        loop {
            let Shutdown::Stopping {
                code,
                queue,
                waiting,
                grace_cap_ns,
            } = &mut self.shutdown
            else {
                return;
            };
            if !waiting.is_empty() {
                return;
            }
            let code = *code;
            let cap = grace_cap_ns.unwrap_or(u64::MAX);
            // The highest start level still running stops together; lower levels wait for it.
            let Some(level) = queue.iter().map(|i| self.services[*i].level).max() else {
                // Whatever is left (terminal process, plain spawns) ends with the node.
                let rest: Vec<u64> = self.procs.keys().copied().collect();
                for id in rest {
                    self.kill(id, err(kind::CANCELED, "node stopping"));
                }
                self.shutdown = Shutdown::Done;
                self.emit(Output::Exit(code));
                return;
            };
            let (group, rest): (Vec<usize>, Vec<usize>) = queue
                .iter()
                .partition(|i| self.services[**i].level == level);
            *queue = rest;
            let mut stopping = Vec::new();
            for idx in group.into_iter().rev() {
                let Some(proc) = self.services[idx].proc else {
                    continue;
                };
                self.services[idx].state = ServiceState::Stopping;
                self.publish_service_state(idx);
                stopping.push((idx, proc));
            }
            if let Shutdown::Stopping { waiting, .. } = &mut self.shutdown {
                waiting.extend(stopping.iter().map(|(i, _)| *i));
            }
            for (idx, proc) in stopping {
                let pid = self.procs[&proc].pid.to_string();
                let _ = self.cancel(0, &pid, "service stopping".into());
                let deadline = self
                    .now
                    .saturating_add(self.services[idx].lifecycle.stop_timeout_ns.min(cap));
                self.timers.arm(
                    deadline,
                    Timer {
                        target: Target::StopDeadline { service: idx },
                        period: None,
                    },
                );
            }
        }
    }

    pub fn is_done(&self) -> bool {
        self.shutdown == Shutdown::Done
    }
}
