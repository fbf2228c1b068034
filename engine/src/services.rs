//! Supervised services on the node: starting them, what happens when one exits (restart with
//! backoff, or stay down), and their state on the event bus. The policy is `supervisor`'s.

use crate::entries::Entry;
use crate::node::*;
use crate::relay::ExitResult;
use crate::supervisor::{AfterExit, Service, ServiceState};
use crate::timers::{Target, Timer};
use crate::trace::TraceEvent;
use crate::value::Value;

impl Core {
    pub fn add_service(&mut self, entry: &Entry) -> Result<usize, String> {
        self.services.push(Service::from_entry(entry)?);
        Ok(self.services.len() - 1)
    }

    pub fn start_service(&mut self, idx: usize) {
        if self.services[idx].supervisor.is_none() {
            // Wippy's supervisor is a process on node:control and takes a PID from the shared
            // counter; reserving one keeps PIDs numbered as Wippy numbers them.
            self.next_uniq += 1;
            self.services[idx].supervisor = Some(self.next_uniq);
        }
        let (process, host, input) = {
            let s = &mut self.services[idx];
            s.state = ServiceState::Starting;
            (s.process.clone(), s.host.clone(), s.input.clone())
        };
        let opts = SpawnOptions {
            service: Some(idx),
            ..Default::default()
        };
        match self.spawn(&process, &host, input, opts) {
            Ok(pid) => {
                let now = self.now;
                let s = &mut self.services[idx];
                s.state = ServiceState::Running;
                s.proc = Some(pid.uniq);
                s.started_at_ns = now;
                let sid = s.id.clone();
                self.trace(TraceEvent::Service {
                    service: &sid,
                    state: "running",
                });
                self.publish_service_state(idx);
                if !self.start_order.contains(&idx) {
                    self.start_order.push(idx);
                }
                let id = sid;
                self.log(
                    Level::Debug,
                    "service started",
                    vec![("service".into(), id), ("pid".into(), pid.to_string())],
                );
            }
            Err(e) => {
                let id = self.services[idx].id.clone();
                self.log(
                    Level::Error,
                    "service failed to start",
                    vec![("service".into(), id), ("error".into(), e.message.clone())],
                );
                self.service_exited(idx, &Err(e));
            }
        }
    }

    pub(crate) fn service_exited(&mut self, idx: usize, result: &ExitResult) {
        let stopping = matches!(&self.shutdown, Shutdown::Stopping { .. });
        let unit = self.unit();
        let now = self.now;
        let (failed, retryable) = match result {
            Ok(_) => (false, None),
            Err(e) => (true, e.retryable),
        };
        let after = self.services[idx].on_exit(now, failed, retryable, stopping, unit);
        let id = self.services[idx].id.clone();
        let state = self.services[idx].state.as_str();
        self.trace(TraceEvent::Service {
            service: &id,
            state,
        });
        self.publish_service_state(idx);
        if let Err(e) = result {
            if !stopping {
                self.log(
                    Level::Error,
                    "service failed",
                    vec![
                        ("service".into(), id.clone()),
                        ("error".into(), e.message.clone()),
                    ],
                );
            }
        }
        if let AfterExit::RestartIn(mut delay) = after {
            if self.buggify("restart.delay") {
                delay = delay.saturating_mul(2);
            }
            self.log(
                Level::Info,
                "service restarting",
                vec![
                    ("service".into(), id),
                    ("attempt".into(), self.services[idx].attempts.to_string()),
                    ("delay_ms".into(), (delay / 1_000_000).to_string()),
                ],
            );
            let key = self.timers.arm(
                self.now.saturating_add(delay),
                Timer {
                    target: Target::ServiceRestart { service: idx },
                    period: None,
                },
            );
            self.services[idx].timer = Some(key);
        }
        if let Shutdown::Stopping { waiting, .. } = &mut self.shutdown {
            if waiting.remove(&idx) && waiting.is_empty() {
                self.advance_shutdown();
            }
        }
    }

    /// System topic on a service state change (decision: system "supervisor", kind
    /// "state.<state>", path = service entry id, data = {id, state}).
    pub(crate) fn publish_service_state(&mut self, idx: usize) {
        if self.bus.is_empty() {
            return;
        }
        let id = self.services[idx].id.clone();
        let state = self.services[idx].state.as_str();
        let data = crate::value::Table::default()
            .with("id", Value::from(id.as_str()))
            .with("state", Value::from(state));
        self.publish(
            "supervisor",
            &format!("state.{state}"),
            &id,
            Value::table(data),
        );
    }
}
