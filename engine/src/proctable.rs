//! The process table: what the node knows of each live process, spawning (checks, PIDs,
//! context, the spawn event) and lookups. Ending a process is `exits`' business.

use crate::command::Tags;
use crate::core::err;
use crate::entries::{Entry, EntryKind};
use crate::node::*;
use crate::pid::Pid;
use crate::relay::Mailbox;
use crate::topology::ProcRef;
use crate::trace::TraceEvent;
use crate::value::{kind, ErrorValue, Value};
use std::rc::Rc;
use std::sync::Arc;

#[derive(Debug)]
pub struct ProcInfo {
    pub pid: Pid,
    pub entry: Arc<str>,
    pub mailbox: Mailbox,
    pub tags: Tags,
    pub trap_links: bool,
    pub service: Option<usize>,
    pub terminal: bool,
    pub rng: u64,
    /// Set for a `funcs.call`/`async` callee: (caller, caller's tag) completed with the result.
    pub reply: Option<(Pid, u64)>,
    /// Context values (`ctx.get`), inherited from the parent unless the spawn set its own.
    pub context: Context,
    /// Function calls this process has under way, as (reply tag, callee); canceled when it exits.
    pub calls: Vec<(u64, u64)>,
    /// Messages it may have waiting (its entry's `limits.mailbox`, else the node's; 0: no bound).
    pub mailbox_cap: usize,
    /// Messages its runtime took from the mailbox but the process has not received yet, as of
    /// its last step.
    pub backlog: usize,
}

/// A spawn accepted by the core whose process object the node has not built yet.
#[derive(Debug)]
pub struct PendingSpawn {
    pub proc: u64,
    pub entry: Rc<Entry>,
    pub args: Vec<Value>,
}

#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    pub parent: Option<u64>,
    pub monitor: bool,
    pub link: bool,
    pub service: Option<usize>,
    pub terminal: bool,
    /// A function call: when the process ends, complete this tag of `parent` with its result.
    pub reply: Option<u64>,
    /// Context values for the child; None inherits the parent's.
    pub context: Option<Context>,
    /// A handler run of the node's collector (no parent): `reply` is its job.
    pub dispatch: bool,
}

impl Core {
    /// Processes alive now, in id order.
    pub fn live_processes(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }

    pub fn proc(&self, id: u64) -> Option<&ProcInfo> {
        self.procs.get(&id)
    }

    pub fn proc_mut(&mut self, id: u64) -> Option<&mut ProcInfo> {
        self.procs.get_mut(&id)
    }

    pub fn is_alive(&self, id: u64) -> bool {
        self.procs.contains_key(&id)
    }

    pub fn process_count(&self) -> usize {
        self.procs.len()
    }

    pub fn pid_of(&self, id: u64) -> Option<&Pid> {
        self.procs.get(&id).map(|p| &p.pid)
    }

    pub fn spawn(
        &mut self,
        entry_id: &str,
        host: &str,
        args: Vec<Value>,
        opts: SpawnOptions,
    ) -> Result<Pid, ErrorValue> {
        let call = opts.reply.is_some() && (opts.parent.is_some() || opts.dispatch);
        if self.is_stopping() && !opts.terminal && !call {
            return Err(err(kind::UNAVAILABLE, "node is stopping"));
        }
        let host = self.route_host(host)?;
        if self.procs.len() >= self.cfg.max_processes {
            return Err(err(
                kind::UNAVAILABLE,
                format!(
                    "process limit reached: {} live processes (WEFT_MAX_PROCESSES changes it)",
                    self.cfg.max_processes
                ),
            ));
        }
        let entry = self
            .entries
            .get(entry_id)
            .cloned()
            .ok_or_else(|| err(kind::NOT_FOUND, format!("entry not found: {entry_id}")))?;
        let function_ok = call && entry.kind == EntryKind::FunctionLua;
        if !entry.kind.is_process() && entry.kind != EntryKind::Native && !function_ok {
            return Err(err(
                kind::INVALID,
                format!("entry {entry_id} is a {}, not a process", entry.kind),
            ));
        }
        let host_ok = self.hosts.contains_key(host) || (call && host == FUNCTION_HOST);
        if !host_ok {
            return Err(err(
                kind::NOT_FOUND,
                format!("host not found or not running: {host}"),
            ));
        }
        self.next_uniq += 1;
        let uniq = self.next_uniq;
        let pid = Pid::on(self.node.clone(), Arc::from(host), uniq);
        let seed = self.cfg.seed ^ uniq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let context = match (&opts.context, opts.parent.and_then(|p| self.procs.get(&p))) {
            (Some(c), _) => c.clone(),
            (None, Some(parent)) => parent.context.clone(),
            (None, None) => Context::default(),
        };
        let reply = match (opts.reply, opts.parent.and_then(|p| self.procs.get(&p))) {
            (Some(tag), Some(parent)) => Some((parent.pid.clone(), tag)),
            (Some(job), None) if opts.dispatch => {
                Some((crate::dispatch::node::caller_pid(&self.node), job))
            }
            _ => None,
        };
        self.procs.insert(
            uniq,
            ProcInfo {
                pid: pid.clone(),
                entry: Arc::from(entry_id),
                mailbox: Mailbox::default(),
                tags: Tags::default(),
                trap_links: false,
                service: opts.service,
                terminal: opts.terminal,
                rng: seed,
                reply,
                context,
                calls: Vec::new(),
                mailbox_cap: crate::lua::entry_limit(&entry, "mailbox")
                    .unwrap_or(self.cfg.limits.mailbox),
                backlog: 0,
            },
        );
        self.trace(TraceEvent::Spawn {
            proc: uniq,
            entry: entry_id,
            host,
            parent: opts.parent,
        });
        if let Some(parent) = opts.parent {
            if opts.monitor {
                self.topology
                    .monitor(ProcRef::Local(parent), ProcRef::Local(uniq));
                self.trace(TraceEvent::Monitor {
                    watcher: parent,
                    target: uniq,
                });
            }
            if opts.link {
                self.topology
                    .link(ProcRef::Local(parent), ProcRef::Local(uniq));
            }
        }
        self.stats.spawned += 1;
        // System topic (decision: system "process", kind "started", path = pid). Function calls
        // are not processes in Wippy, so they publish nothing.
        if !call && !self.bus.is_empty() {
            let parent = opts
                .parent
                .and_then(|p| self.procs.get(&p))
                .map(|p| Value::from(p.pid.to_string().as_str()))
                .unwrap_or(Value::Nil);
            let data = crate::value::Table::default()
                .with("pid", Value::from(pid.to_string().as_str()))
                .with("id", Value::from(entry_id))
                .with("host", Value::from(host))
                .with("parent", parent);
            self.publish("process", "started", &pid.to_string(), Value::table(data));
        }
        self.spawns.push_back(PendingSpawn {
            proc: uniq,
            entry,
            args,
        });
        Ok(pid)
    }

    pub fn take_spawn(&mut self) -> Option<PendingSpawn> {
        self.spawns.pop_front()
    }
}
