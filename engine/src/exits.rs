//! The exit cascade: a process ends (or is killed), its names and subscriptions go, its
//! monitors get EXIT once, failed links cascade or become LINK_DOWN, calls and the supervisor
//! and terminal are told.

use crate::core::err;
use crate::node::*;
use crate::relay::{Event, EventKind, ExitResult};
use crate::topology::ProcRef;
use crate::trace::TraceEvent;
use crate::value::{kind, ErrorValue, Value};
use rand_core::RngCore;

impl Core {
    /// Forcefully ends a process that is not mid-step (or is the one stepping: the node drops it after).
    pub fn kill(&mut self, id: u64, e: ErrorValue) {
        if self.procs.contains_key(&id) {
            self.sched.remove(id);
            self.killed.push(id);
            self.finish(id, Err(e));
        }
    }

    /// Records a process's end: names released, monitors told, links cascaded, supervisor and
    /// terminal informed. Idempotent: a second call for the same process does nothing.
    pub fn finish(&mut self, id: u64, result: ExitResult) {
        let mut work = vec![(id, result)];
        while let Some((id, result)) = work.pop() {
            let Some(info) = self.procs.remove(&id) else {
                continue;
            };
            self.stats.exited += 1;
            self.trace(TraceEvent::Exit {
                proc: id,
                ok: result.is_ok(),
            });
            self.names.release_all(id);
            if !self.bus.is_empty() {
                self.bus.remove_owner(id);
            }
            for (_, c) in &info.calls {
                if self.procs.contains_key(c) {
                    self.sched.remove(*c);
                    self.killed.push(*c);
                    work.push((*c, Err(err(kind::CANCELED, "caller exited"))));
                }
            }
            self.dispatch_caller_exited(id);
            if let Some((caller, tag)) = &info.reply {
                if let Some(p) = self.procs.get_mut(&caller.uniq) {
                    p.calls.retain(|(_, c)| *c != id);
                }
                self.complete(caller, *tag, result.clone());
            } else if !self.bus.is_empty() {
                let mut data = crate::value::Table::default()
                    .with("pid", Value::from(info.pid.to_string().as_str()))
                    .with("id", Value::from(&*info.entry))
                    .with("ok", Value::Bool(result.is_ok()));
                if let Err(e) = &result {
                    data = data.with("error", Value::error(e.clone()));
                }
                self.publish(
                    "process",
                    "stopped",
                    &info.pid.to_string(),
                    Value::table(data),
                );
            }
            let watched = match self.cluster {
                Some(_) => self.topology.watched_by(&ProcRef::Local(id)),
                None => Vec::new(),
            };
            let fallout = self.topology.on_exit(ProcRef::Local(id));
            self.remote_fallout(&info.pid, &fallout, &watched, &result);
            let at = self.wall_now_ns();
            // Watchers and links on other nodes cannot exist until the cluster transport does
            // (remote monitors and links fail with "node not connected"): only local ones here.
            let mut monitors: Vec<u64> =
                fallout.monitors.iter().filter_map(ProcRef::local).collect();
            if self.planted.double_exit && self.rng.next_u64().is_multiple_of(4) {
                monitors.extend(monitors.clone());
            }
            for w in monitors {
                self.push_event(
                    w,
                    Event {
                        kind: EventKind::Exit,
                        from: info.pid.clone(),
                        at_unix_ns: at,
                        result: Some(result.clone()),
                        reason: String::new(),
                    },
                );
            }
            if result.is_err() {
                for l in fallout.links.iter().filter_map(ProcRef::local) {
                    let trap = self.procs.get(&l).map(|p| p.trap_links);
                    match trap {
                        Some(true) => self.push_event(
                            l,
                            Event {
                                kind: EventKind::LinkDown,
                                from: info.pid.clone(),
                                at_unix_ns: at,
                                result: Some(result.clone()),
                                reason: String::new(),
                            },
                        ),
                        Some(false) => {
                            self.sched.remove(l);
                            self.killed.push(l);
                            work.push((l, Err(err(kind::CANCELED, "linked process failed"))));
                        }
                        None => {}
                    }
                }
            }
            if let Err(e) = &result {
                // A function call's error is the caller's return value, not a crash to log.
                if info.service.is_none() && !info.terminal && info.reply.is_none() {
                    self.log(
                        Level::Error,
                        "process failed",
                        vec![
                            ("pid".into(), info.pid.to_string()),
                            ("entry".into(), info.entry.to_string()),
                            ("error".into(), e.message.clone()),
                        ],
                    );
                }
            }
            if let Some(s) = info.service {
                self.service_exited(s, &result);
            }
            // A terminal process ended by the node's own stop (a signal) is not an app error.
            if info.terminal && !self.is_stopping() {
                let code = self.exit_code(&result);
                self.begin_shutdown_with(code, Some(TERMINAL_STOP_GRACE_NS));
            }
        }
    }

    pub(crate) fn exit_code(&mut self, r: &ExitResult) -> i32 {
        match r {
            Err(e) => {
                self.emit(Output::Stderr(
                    format!("error: {}\n", e.message).into_bytes(),
                ));
                1
            }
            Ok(Value::Int(n)) => *n as i32,
            Ok(Value::Float(f)) => *f as i32,
            Ok(Value::Bool(b)) => i32::from(!*b),
            Ok(Value::Str(s)) => {
                let mut s = s.clone();
                s.push(b'\n');
                self.emit(Output::Stdout(s));
                0
            }
            Ok(_) => 0,
        }
    }

    pub fn take_killed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.killed)
    }
}
