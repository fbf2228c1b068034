//! Fuzz target bodies, shared by the cargo-fuzz crate in `fuzz/` and the corpus replay test
//! (`engine/tests/fuzz_corpus.rs`). Each takes raw bytes and must return normally on any input;
//! a panic here means an engine invariant broke (or a parser panicked), which is the finding.

use crate::entries::{self, Entry};
use crate::json;
use crate::lua::{self, prepass, LuaRuntime};
use crate::node::{Core, Factory, NodeConfig, SpawnOptions, Spawning};
use crate::pid::Pid;
use crate::process::{Cx, Process, Step};
use crate::relay::{EventKind, Mailbox, Signal};
use crate::scheduler::State;
use crate::value::{kind, ErrorValue, Table, Value};
use crate::{Input, Node, Output, Work};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

// ---- entries -----------------------------------------------------------------------------------

/// The text a resolved `file://` reference reads as.
const RESOLVED_LUA: &str =
    "local function main(): integer\n    return 0\nend\nreturn { main = main }\n";

/// Input: the definition file's path on the first line, its text after. `file://` references
/// resolve to a fixed Lua text (`.lua`), to an empty file (other even-length paths) or fail.
pub fn entries(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let (path, text) = input.split_once('\n').unwrap_or((&input, ""));
    let mut resolve = |p: &str| -> Result<String, String> {
        // The project root is "": whatever `parse_file` hands out must stay inside it.
        assert!(
            !p.starts_with('/') && !p.split('/').any(|seg| seg == ".."),
            "entries: file reference resolved outside the project root: {p:?}"
        );
        if p.ends_with(".lua") {
            Ok(RESOLVED_LUA.to_string())
        } else if p.len().is_multiple_of(2) {
            Ok(String::new())
        } else {
            Err("no such file".to_string())
        }
    };
    match entries::parse_file(path, text, "", &mut resolve) {
        Ok(list) => {
            for e in &list {
                assert_eq!(e.id, format!("{}:{}", e.namespace, e.name), "entries: id");
                assert_eq!(e.file, path, "entries: file");
                assert!(
                    !e.namespace.is_empty() && !e.namespace.contains(':'),
                    "entries: namespace {:?}",
                    e.namespace
                );
                assert!(
                    !e.kind.as_str().trim().is_empty(),
                    "entries: empty kind accepted"
                );
            }
            let _ = entries::check_unique(&list).map_err(|e| e.to_string());
        }
        Err(e) => {
            assert_eq!(e.file, path, "entries: error names another file");
            let _ = e.to_string();
        }
    }
}

// ---- json --------------------------------------------------------------------------------------

/// Equal up to what JSON text cannot carry: an integral float prints like an integer and reads
/// back as one, and -0.0 prints as `-0`, which reads back as the integer 0.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Float(f), Value::Int(i)) | (Value::Int(i), Value::Float(f)) => *f == *i as f64,
        (Value::Table(x), Value::Table(y)) => {
            x.array.len() == y.array.len()
                && x.map.len() == y.map.len()
                && x.array.iter().zip(&y.array).all(|(a, b)| same_json(a, b))
                && x.map
                    .iter()
                    .zip(&y.map)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
        }
        _ => a == b,
    }
}

/// `decode` must not panic; whatever it accepts must encode, and encoding then decoding again
/// must give the same value (modulo integral floats) and, from then on, exactly the same one.
pub fn json(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(v1) = json::decode(&text) else {
        return;
    };
    let t1 = json::encode(&v1)
        .unwrap_or_else(|e| panic!("json: a decoded value does not encode: {e}\n{v1:?}"));
    let v2 = json::decode(&t1)
        .unwrap_or_else(|e| panic!("json: encoder output does not decode: {e}\n{t1}"));
    assert!(
        same_json(&v1, &v2),
        "json: round trip changed the value\n{v1:?}\n{t1}\n{v2:?}"
    );
    let t2 = json::encode(&v2).expect("json: re-encode");
    let v3 = json::decode(&t2).expect("json: re-decode");
    assert_eq!(v2, v3, "json: second round trip is not a fixed point\n{t2}");
}

// ---- lua_source --------------------------------------------------------------------------------

/// Entries prepared per runtime before it is rebuilt (compiled chunks are never dropped).
const LUA_RUNTIME_INPUTS: u32 = 500;
const LUA_MEMORY_LIMIT: usize = 64 << 20;

/// The thread's Lua runtime shared between direct `prepare` calls and the node's factory slot.
struct SharedRuntime(Rc<RefCell<LuaRuntime>>);

impl Factory for SharedRuntime {
    fn create(&mut self, sp: Spawning<'_>) -> Result<Box<dyn Process>, ErrorValue> {
        self.0.borrow_mut().create(sp)
    }
}

struct LuaFuzz {
    node: Node,
    rt: Rc<RefCell<LuaRuntime>>,
    inputs: u32,
    now: u64,
}

impl LuaFuzz {
    fn new() -> LuaFuzz {
        let mut node = Node::bare(NodeConfig {
            seed: 1,
            wall_epoch_ns: 0,
            step_budget: 200,
            ..Default::default()
        });
        {
            let mut c = node.core.borrow_mut();
            c.log_min = crate::node::Level::Error;
            c.hosts.insert("fuzz:host".into(), "process.host".into());
        }
        let rt = LuaRuntime::new(node.port()).expect("lua runtime");
        rt.lua()
            .set_memory_limit(LUA_MEMORY_LIMIT)
            .expect("memory limit");
        let rt = Rc::new(RefCell::new(rt));
        node.factories
            .insert("process.lua".into(), Box::new(SharedRuntime(rt.clone())));
        LuaFuzz {
            node,
            rt,
            inputs: 0,
            now: 0,
        }
    }

    fn drain(&mut self) {
        while self.node.poll_output().is_some() {}
    }

    fn run(&mut self, src: &str) {
        self.inputs += 1;
        let mods = lua::MODULES.iter().map(|m| Value::from(*m)).collect();
        let data = Table::default()
            .with("source", Value::from(src))
            .with("method", Value::from("main"))
            .with(
                "modules",
                Value::table(Table {
                    array: mods,
                    map: vec![],
                }),
            );
        let name = format!("p{}", self.inputs);
        let entry = Entry {
            id: format!("fuzz:{name}"),
            namespace: "fuzz".into(),
            name,
            kind: "process.lua".into(),
            data,
            file: "fuzz.yaml".into(),
            ..Default::default()
        };
        let prepared = self.rt.borrow_mut().prepare(&entry);
        if prepared.is_err() {
            return;
        }
        // Run the chunk (and its `main`) as a process for a few bounded steps.
        let first = {
            let mut c = self.node.core.borrow_mut();
            c.entries.insert(entry.id.clone(), Rc::new(entry.clone()));
            match c.spawn(&entry.id, "fuzz:host", vec![], SpawnOptions::default()) {
                Ok(pid) => pid.uniq,
                Err(_) => return,
            }
        };
        for _ in 0..6 {
            let work = self.node.run(self.now, 8);
            self.drain();
            self.now += 1_000_000;
            if work == Work::Idle {
                match self.node.poll_timeout() {
                    Some(t) if t <= self.now + 10_000_000_000 => self.now = self.now.max(t),
                    _ => break,
                }
            }
        }
        // End whatever it started, reap it, and let its timers fire into the void.
        {
            let mut c = self.node.core.borrow_mut();
            let last = c.stats.spawned;
            for id in first..=last {
                c.kill(id, ErrorValue::new(kind::CANCELED, "fuzz input done"));
            }
            c.entries.remove(&entry.id);
        }
        self.now += 3_600_000_000_000;
        self.node.run(self.now, 0);
        self.drain();
    }
}

thread_local! {
    static LUA_FUZZ: RefCell<Option<LuaFuzz>> = const { RefCell::new(None) };
}

/// The pre-pass must keep the line count (error lines point into the user's file); compiling,
/// loading and running the result through the runtime may fail but must not panic.
pub fn lua_source(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    let out = prepass::to_luau(&src);
    let lines = |s: &str| s.bytes().filter(|b| *b == b'\n').count();
    assert_eq!(
        lines(&src),
        lines(&out),
        "prepass changed the line count\n--- in\n{src}\n--- out\n{out}"
    );
    let _ = lua::compile(&src, "@fuzz.lua");
    LUA_FUZZ.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|f| f.inputs >= LUA_RUNTIME_INPUTS) {
            *slot = None;
            *slot = Some(LuaFuzz::new());
        }
        slot.as_mut().expect("lua fuzz state").run(&src);
    });
}

// ---- engine_ops --------------------------------------------------------------------------------

/// Most processes one input may spawn; keeps every per-op check small.
const MAX_PROCS: usize = 48;
const HOST: &str = "t:h";
const ENTRY: &str = "t:p";

/// Process modes: bit 0 takes its mailbox on each step, bit 1 answers each message to its
/// sender, bits 2-3 say how many times it yields after receiving before it waits.
const MODE_TAKE: u8 = 1;
const MODE_ECHO: u8 = 2;

#[derive(Default)]
struct ProcModel {
    mode: u8,
    yields_left: u8,
    stepped: bool,
    /// The last step ended Waiting with nothing delivered during it: only a wake may run it again.
    needs_wake: bool,
    mail_at_end: usize,
    /// Items taken from its mailbox by the harness since its last step.
    taken_outside: usize,
}

struct TimerModel {
    proc: u64,
    id: u64,
    at: u64,
    period: Option<u64>,
}

#[derive(Default)]
struct Model {
    ids: Vec<u64>,
    pids: BTreeMap<u64, Pid>,
    /// `pids` as text, formatted once.
    pid_text: BTreeMap<u64, String>,
    alive: BTreeSet<u64>,
    unmaterialized: BTreeSet<u64>,
    procs: BTreeMap<u64, ProcModel>,
    trap: BTreeSet<u64>,
    /// (watcher, target)
    monitors: BTreeSet<(u64, u64)>,
    /// (min, max)
    links: BTreeSet<(u64, u64)>,
    names: BTreeMap<String, u64>,
    seq: i64,
    /// (sender or 0 for the outside, receiver) → last sequence number taken.
    last_seen: BTreeMap<(u64, u64), i64>,
    timers: BTreeMap<u64, TimerModel>,
    next_timer_id: u64,
    owed_timer: BTreeMap<(u64, u64), u32>,
    issued: BTreeSet<(u64, u64)>,
    all_tags: Vec<(u64, u64)>,
    pending_tags: BTreeSet<(u64, u64)>,
    owed_completion: BTreeSet<(u64, u64)>,
    expect_exec: VecDeque<(u64, u64)>,
    owed_cancel: BTreeMap<u64, u32>,
    /// (receiver, dead process) EXIT / LINK_DOWN events still to be taken.
    owed_exit: BTreeSet<(u64, u64)>,
    owed_link_down: BTreeSet<(u64, u64)>,
    /// Same, for receivers that died in the same operation (at most one, maybe none).
    allowed_exit: BTreeSet<(u64, u64)>,
    allowed_link_down: BTreeSet<(u64, u64)>,
    death_err: BTreeMap<u64, bool>,
    exit_plan: BTreeMap<u64, bool>,
    // Per operation.
    consumed_events: Vec<(u64, EventKind, u64, Option<bool>)>,
    exited_in_step: BTreeMap<u64, bool>,
    kill_target: Option<u64>,
    shutdown_op: bool,
    stopping: bool,
    exit_outputs: u32,
    /// Set by operations that can change scheduler membership (run, kill, shutdown).
    check_sched: bool,
}

fn norm(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

fn mail_len(core: &Core, id: u64) -> usize {
    core.proc(id).map_or(0, |p| {
        p.mailbox.messages.len() + p.mailbox.events.len() + p.mailbox.signals.len()
    })
}

impl Model {
    fn next_seq(&mut self) -> i64 {
        self.seq += 1;
        self.seq
    }

    /// Checks what a process took from its mailbox; returns the senders of its messages.
    fn consume(&mut self, to: u64, mb: &Mailbox) -> Vec<u64> {
        let mut senders = Vec::new();
        for msg in &mb.messages {
            let from = msg.from.as_ref().map_or(0, |p| p.uniq);
            let Some(Value::Int(s)) = msg.payload.first() else {
                panic!("engine_ops: payload changed in transit: {msg:?}");
            };
            let last = self.last_seen.entry((from, to)).or_insert(0);
            assert!(
                *s > *last,
                "engine_ops: per-sender FIFO broken: {from} -> {to} delivered {s} after {last}"
            );
            *last = *s;
            senders.push(from);
        }
        for ev in &mb.events {
            match ev.kind {
                EventKind::Cancel => {
                    let n = self
                        .owed_cancel
                        .get_mut(&to)
                        .filter(|n| **n > 0)
                        .unwrap_or_else(|| panic!("engine_ops: unexpected CANCEL for {to}"));
                    *n -= 1;
                }
                k => self.consumed_events.push((
                    to,
                    k,
                    ev.from.uniq,
                    ev.result.as_ref().map(|r| r.is_err()),
                )),
            }
        }
        for s in &mb.signals {
            match s {
                Signal::Timer { id, .. } => {
                    let n = self
                        .owed_timer
                        .get_mut(&(to, *id))
                        .filter(|n| **n > 0)
                        .unwrap_or_else(|| {
                            panic!("engine_ops: timer {id} fired for {to} more than armed")
                        });
                    *n -= 1;
                }
                Signal::Completed { tag, .. } => assert!(
                    self.owed_completion.remove(&(to, *tag)),
                    "engine_ops: completion of tag {tag} for {to} applied twice or never issued"
                ),
                // The ops never subscribe to the event bus.
                Signal::Bus { .. } => {
                    panic!("engine_ops: bus event for {to} without a subscription")
                }
            }
        }
        senders
    }

    /// Which timers `run(now)` fires: each due timer once, to a process alive when it fires.
    fn predict_timers(&mut self, now: u64) {
        let due: Vec<u64> = self
            .timers
            .iter()
            .filter(|(_, t)| t.at <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let t = self.timers.get_mut(&key).expect("due timer");
            let alive = self.alive.contains(&t.proc);
            if alive {
                *self.owed_timer.entry((t.proc, t.id)).or_insert(0) += 1;
            }
            match t.period {
                Some(p) if alive => {
                    let mut next = t.at.saturating_add(p.max(1));
                    if next <= now {
                        next = now.saturating_add(p.max(1));
                    }
                    t.at = next;
                }
                _ => {
                    self.timers.remove(&key);
                }
            }
        }
    }

    /// After each operation: account for deaths, reconcile lifecycle events, check the core.
    fn settle(&mut self, core: &Core) {
        // Spawns keep both counts in step, so equal counts mean nobody died.
        let dead: Vec<u64> = if core.process_count() == self.alive.len() {
            Vec::new()
        } else {
            self.alive
                .iter()
                .copied()
                .filter(|id| !core.is_alive(*id))
                .collect()
        };
        for &d in &dead {
            let err = self.exited_in_step.get(&d).copied().unwrap_or(true);
            self.death_err.insert(d, err);
        }
        for &d in &dead {
            let cascaded = !self.trap.contains(&d)
                && dead
                    .iter()
                    .any(|&e| e != d && self.death_err[&e] && self.links.contains(&norm(e, d)));
            assert!(
                self.shutdown_op
                    || self.kill_target == Some(d)
                    || self.exited_in_step.contains_key(&d)
                    || cascaded,
                "engine_ops: process {d} died without a cause"
            );
            assert!(core.proc(d).is_none(), "engine_ops: dead {d} still listed");
            assert_eq!(
                core.sched.state(d),
                None,
                "engine_ops: scheduler still tracks dead {d}"
            );
            self.alive.remove(&d);
        }
        let dead_set: BTreeSet<u64> = dead.iter().copied().collect();
        if !dead.is_empty() {
            for &(w, t) in &self.monitors {
                if !dead_set.contains(&t) {
                    continue;
                }
                if self.alive.contains(&w) {
                    assert!(self.owed_exit.insert((w, t)), "engine_ops: EXIT owed twice");
                } else {
                    self.allowed_exit.insert((w, t));
                }
            }
            for &(a, b) in &self.links {
                for (d, l) in [(a, b), (b, a)] {
                    if !dead_set.contains(&d) || !self.death_err[&d] {
                        continue;
                    }
                    if self.alive.contains(&l) {
                        assert!(
                            self.trap.contains(&l),
                            "engine_ops: {l} survived the failure of linked {d} without trapping links"
                        );
                        self.owed_link_down.insert((l, d));
                    } else {
                        self.allowed_link_down.insert((l, d));
                    }
                }
            }
        }
        for (to, k, from, err) in std::mem::take(&mut self.consumed_events) {
            let (owed, allowed) = match k {
                EventKind::Exit => (&mut self.owed_exit, &mut self.allowed_exit),
                EventKind::LinkDown => (&mut self.owed_link_down, &mut self.allowed_link_down),
                EventKind::Cancel => unreachable!("cancel is checked on take"),
            };
            assert!(
                owed.remove(&(to, from)) || allowed.remove(&(to, from)),
                "engine_ops: unexpected or repeated {k:?} from {from} to {to}"
            );
            let want = self.death_err.get(&from).copied();
            assert_eq!(
                err, want,
                "engine_ops: {k:?} from {from} carries the wrong result"
            );
        }
        self.allowed_exit.clear();
        self.allowed_link_down.clear();
        self.exited_in_step.clear();
        self.kill_target = None;
        self.shutdown_op = false;
        if !dead.is_empty() {
            let gone = |id: &u64| dead_set.contains(id);
            self.monitors.retain(|(w, t)| !gone(w) && !gone(t));
            self.links.retain(|(a, b)| !gone(a) && !gone(b));
            self.names.retain(|_, o| !gone(o));
            self.trap.retain(|id| !gone(id));
            self.exit_plan.retain(|id, _| !gone(id));
            self.owed_exit.retain(|(w, _)| !gone(w));
            self.owed_link_down.retain(|(w, _)| !gone(w));
            self.owed_timer.retain(|(p, _), _| !gone(p));
            self.pending_tags.retain(|(p, _)| !gone(p));
            self.owed_completion.retain(|(p, _)| !gone(p));
            self.owed_cancel.retain(|p, _| !gone(p));
            self.procs.retain(|p, _| !gone(p));
            self.unmaterialized.retain(|p| !gone(p));
        }
        for (n, owner) in &self.names {
            assert_eq!(
                core.names.lookup(n),
                Some(*owner),
                "engine_ops: name {n} lost or moved"
            );
        }
        assert_eq!(
            core.names.len(),
            self.names.len(),
            "engine_ops: a name outlived its owner"
        );
        assert_eq!(
            core.process_count(),
            self.alive.len(),
            "engine_ops: process count"
        );
        assert_eq!(
            core.timers.len(),
            self.timers.len(),
            "engine_ops: timer count"
        );
        if !std::mem::take(&mut self.check_sched) {
            return;
        }
        let mut materialized = 0;
        for id in &self.alive {
            match core.sched.state(*id) {
                None => assert!(
                    self.unmaterialized.contains(id),
                    "engine_ops: live {id} unknown to the scheduler"
                ),
                Some(State::Running) => panic!("engine_ops: {id} left Running between steps"),
                Some(_) => {
                    assert!(!self.unmaterialized.contains(id));
                    materialized += 1;
                }
            }
        }
        assert_eq!(
            core.sched.len(),
            materialized,
            "engine_ops: scheduler tracks processes that are gone"
        );
    }
}

type ModelRef = Rc<RefCell<Model>>;

/// A Rust process whose behaviour is given by its mode (and an exit the harness may plan).
struct FuzzProc {
    model: ModelRef,
}

impl Process for FuzzProc {
    fn step(&mut self, cx: &mut Cx<'_>) -> Step {
        let me = cx.pid.uniq;
        let mut core = cx.port.core.borrow_mut();
        let mut m = self.model.borrow_mut();
        assert!(core.is_alive(me), "engine_ops: dead process {me} stepped");
        let at_start = mail_len(&core, me);
        let pm = m.procs.get_mut(&me).expect("stepped process is modelled");
        if pm.stepped && pm.needs_wake {
            assert!(
                at_start + pm.taken_outside > pm.mail_at_end,
                "engine_ops: {me} stepped again without a wake (queued twice?)"
            );
        }
        pm.stepped = true;
        pm.taken_outside = 0;
        let mode = pm.mode;
        if let Some(err) = m.exit_plan.remove(&me) {
            m.exited_in_step.insert(me, err);
            return Step::Exited(if err {
                Err(ErrorValue::new(kind::INTERNAL, "planned failure"))
            } else {
                Ok(Value::Nil)
            });
        }
        let mut got = false;
        if mode & MODE_TAKE != 0 {
            let mb = core.take_mailbox(me);
            got = !mb.is_empty();
            let senders = m.consume(me, &mb);
            if mode & MODE_ECHO != 0 {
                for from in senders.into_iter().filter(|f| *f != 0) {
                    let dest = m.pid_text[&from].clone();
                    let seq = m.next_seq();
                    // Through the command registry, as any process's send.
                    let r = core
                        .dispatch(
                            me,
                            crate::command::Command::Send {
                                dest: crate::command::Dest::Text(dest),
                                topic: "m".into(),
                                payload: vec![Value::Int(seq)],
                            },
                        )
                        .into_result();
                    assert_eq!(
                        r.is_ok(),
                        m.alive.contains(&from) && core.is_alive(from),
                        "engine_ops: echo to {from}: {r:?}"
                    );
                }
            }
        }
        let after_take = if mode & MODE_TAKE != 0 { 0 } else { at_start };
        let at_end = mail_len(&core, me);
        let pm = m.procs.get_mut(&me).expect("modelled");
        if got {
            pm.yields_left = (mode >> 2) & 3;
        }
        let step = if pm.yields_left > 0 {
            pm.yields_left -= 1;
            Step::Yielded
        } else {
            Step::Waiting
        };
        pm.needs_wake = matches!(step, Step::Waiting) && at_end == after_take;
        pm.mail_at_end = at_end;
        step
    }
}

struct FuzzFactory {
    model: ModelRef,
    core: Option<Rc<RefCell<Core>>>,
}

impl Factory for FuzzFactory {
    fn create(&mut self, sp: Spawning<'_>) -> Result<Box<dyn Process>, ErrorValue> {
        let pid = sp.pid;
        let core = self.core.as_ref().expect("core attached");
        assert!(
            core.borrow().is_alive(pid.uniq),
            "engine_ops: built a dead process"
        );
        assert!(
            self.model.borrow_mut().unmaterialized.remove(&pid.uniq),
            "engine_ops: process {} built twice",
            pid.uniq
        );
        Ok(Box::new(FuzzProc {
            model: self.model.clone(),
        }))
    }
}

struct Bytes<'a> {
    d: &'a [u8],
    i: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        let b = self.d.get(self.i).copied().unwrap_or(0);
        self.i += 1;
        b
    }
}

struct Harness {
    node: Node,
    m: ModelRef,
    now: u64,
}

impl Harness {
    fn new() -> Harness {
        let mut node = Node::bare(NodeConfig::default());
        {
            let mut c = node.core.borrow_mut();
            c.entries.insert(
                ENTRY.into(),
                Rc::new(Entry {
                    id: ENTRY.into(),
                    kind: "native".into(),
                    ..Default::default()
                }),
            );
            c.entries.insert(
                "t:lib".into(),
                Rc::new(Entry {
                    id: "t:lib".into(),
                    kind: "library.lua".into(),
                    ..Default::default()
                }),
            );
            c.hosts.insert(HOST.into(), "process.host".into());
        }
        let m: ModelRef = Rc::default();
        let core = Some(node.core.clone());
        node.factories.insert(
            "native".into(),
            Box::new(FuzzFactory {
                model: m.clone(),
                core,
            }),
        );
        Harness { node, m, now: 0 }
    }

    fn core(&self) -> std::cell::RefMut<'_, Core> {
        self.node.core.borrow_mut()
    }

    fn pick(&self, b: u8) -> Option<u64> {
        let m = self.m.borrow();
        (!m.ids.is_empty()).then(|| m.ids[b as usize % m.ids.len()])
    }

    fn pick_alive(&self, b: u8) -> Option<u64> {
        self.pick(b).filter(|id| self.m.borrow().alive.contains(id))
    }

    /// A destination string and the live process it must resolve to (None: must not resolve).
    fn dest(&self, sel: u8, b: u8) -> (String, Option<u64>) {
        let m = self.m.borrow();
        match sel % 8 {
            0..=4 => match self.pick(b) {
                Some(id) => (m.pid_text[&id].clone(), m.alive.contains(&id).then_some(id)),
                None => ("{t:h|0x00001}".into(), None),
            },
            5 => {
                let n = format!("n{}", b % 4);
                let owner = m.names.get(&n).copied();
                (n, owner)
            }
            6 => match b % 4 {
                0 => ("{t:h|0xfffff}".into(), None),
                1 => ("{t:h|0x}".into(), None),
                2 => ("{broken".into(), None),
                _ => ("nobody".into(), None),
            },
            _ => match self.pick(b) {
                Some(id) => (format!("{{other:h|0x{id:05x}}}"), None),
                None => ("{other:h|0x00001}".into(), None),
            },
        }
    }

    fn spawn(&mut self, parent: Option<u64>, flags: u8, mode: u8) {
        if self.m.borrow().ids.len() >= MAX_PROCS {
            return;
        }
        let (entry, host, ok_entry) = match flags >> 5 {
            0 => ("t:none", HOST, false),
            1 => ("t:lib", HOST, false),
            2 => (ENTRY, "t:nohost", false),
            _ => (ENTRY, HOST, true),
        };
        let opts = SpawnOptions {
            parent,
            monitor: flags & 1 != 0,
            link: flags & 2 != 0,
            ..Default::default()
        };
        let r = self.core().spawn(entry, host, vec![], opts.clone());
        let mut m = self.m.borrow_mut();
        let want_ok = ok_entry && !m.stopping;
        assert_eq!(
            r.is_ok(),
            want_ok,
            "engine_ops: spawn {entry} on {host}: {r:?}"
        );
        let Ok(pid) = r else {
            return;
        };
        let id = pid.uniq;
        assert!(
            m.ids.last().is_none_or(|l| *l < id),
            "engine_ops: pid {id} reused or out of order"
        );
        m.ids.push(id);
        m.pid_text.insert(id, pid.to_string());
        m.pids.insert(id, pid);
        m.alive.insert(id);
        m.unmaterialized.insert(id);
        m.procs.insert(
            id,
            ProcModel {
                mode,
                ..Default::default()
            },
        );
        if let Some(p) = parent {
            if opts.monitor {
                m.monitors.insert((p, id));
            }
            if opts.link {
                m.links.insert(norm(p, id));
            }
        }
    }

    fn run(&mut self, budget: usize) {
        let mut m = self.m.borrow_mut();
        m.predict_timers(self.now);
        m.check_sched = true;
        drop(m);
        self.node.run(self.now, budget);
    }

    fn send(&mut self, from: Option<u64>, dest: &str, to: Option<u64>, bad_topic: bool) {
        let seq = self.m.borrow_mut().next_seq();
        let topic = if bad_topic { "@sys" } else { "m" };
        let r = self
            .core()
            .send(from, dest, topic.into(), vec![Value::Int(seq)]);
        let want = !bad_topic && to.is_some();
        assert_eq!(r.is_ok(), want, "engine_ops: send to {dest}: {r:?}");
        if bad_topic {
            assert_eq!(r.unwrap_err().kind, kind::INVALID);
        }
    }

    fn take(&mut self, id: u64) {
        let mb = self.core().take_mailbox(id);
        let mut m = self.m.borrow_mut();
        if !m.alive.contains(&id) {
            assert!(mb.is_empty(), "engine_ops: dead {id} holds mail");
            return;
        }
        let n = mb.messages.len() + mb.events.len() + mb.signals.len();
        m.consume(id, &mb);
        if let Some(pm) = m.procs.get_mut(&id) {
            pm.taken_outside += n;
        }
    }

    fn drain_outputs(&mut self) {
        while let Some(o) = self.node.poll_output() {
            let mut m = self.m.borrow_mut();
            match o {
                Output::Execute { pid, tag, .. } => {
                    let want = m.expect_exec.pop_front();
                    assert_eq!(
                        want,
                        Some((pid.uniq, tag)),
                        "engine_ops: unexpected Execute output"
                    );
                }
                Output::Exit(code) => {
                    assert!(m.stopping, "engine_ops: exit without a signal");
                    m.exit_outputs += 1;
                    assert_eq!(code, if m.exit_outputs == 1 { 0 } else { 1 });
                }
                Output::Log { .. } => {}
                Output::Stdout(_) | Output::Stderr(_) => {
                    panic!("engine_ops: output from a non-terminal process")
                }
                Output::Transmit { .. }
                | Output::Datagram { .. }
                | Output::PeerUp { .. }
                | Output::PeerDown { .. }
                | Output::DispatchSend { .. }
                | Output::DispatchAbort { .. } => {
                    panic!("engine_ops: a standalone node transmitted")
                }
                Output::DispatchRespond { .. } => panic!("engine_ops: a reply to no request"),
            }
        }
        assert!(self.m.borrow().expect_exec.is_empty());
    }

    fn op(&mut self, b: &mut Bytes<'_>) {
        let op = b.next();
        if op == 0xff {
            // Interrupt: no services, so every process ends and the node exits.
            let first = !self.m.borrow().stopping;
            {
                let mut m = self.m.borrow_mut();
                m.stopping = true;
                m.shutdown_op = true;
                m.check_sched = true;
            }
            self.node
                .handle(self.now, Input::Signal(crate::node::SignalKind::Interrupt));
            assert!(self.node.is_done());
            if first {
                assert_eq!(self.node.core.borrow().process_count(), 0);
            }
            return;
        }
        match op % 20 {
            0 => {
                let (p, flags, mode) = (b.next(), b.next(), b.next());
                let parent = if p & 0x80 != 0 {
                    None
                } else {
                    self.pick_alive(p)
                };
                self.spawn(parent, flags, mode);
            }
            1 => {
                let (f, sel, d, t) = (b.next(), b.next(), b.next(), b.next());
                let from = if f % 8 == 7 {
                    None
                } else {
                    match self.pick_alive(f) {
                        Some(a) => Some(a),
                        None => return,
                    }
                };
                let (dest, to) = self.dest(sel, d);
                self.send(from, &dest, to, t % 16 == 15);
            }
            2..=5 => {
                let (a, sel, d) = (b.next(), b.next(), b.next());
                let Some(a) = self.pick_alive(a) else {
                    return;
                };
                let (dest, to) = self.dest(sel, d);
                let r = match op % 20 {
                    2 => self.core().link(a, &dest),
                    3 => self.core().unlink(a, &dest),
                    4 => self.core().monitor(a, &dest),
                    _ => self.core().unmonitor(a, &dest),
                };
                assert_eq!(
                    r.is_ok(),
                    to.is_some(),
                    "engine_ops: relation to {dest}: {r:?}"
                );
                let Some(t) = to else {
                    return;
                };
                let mut m = self.m.borrow_mut();
                match op % 20 {
                    2 if a != t => {
                        m.links.insert(norm(a, t));
                    }
                    3 => {
                        m.links.remove(&norm(a, t));
                    }
                    4 => {
                        m.monitors.insert((a, t));
                    }
                    5 => {
                        m.monitors.remove(&(a, t));
                    }
                    _ => {}
                }
            }
            6 => {
                let Some(a) = self.pick(b.next()) else {
                    return;
                };
                let mut m = self.m.borrow_mut();
                m.kill_target = Some(a);
                m.check_sched = true;
                drop(m);
                self.core()
                    .kill(a, ErrorValue::new(kind::CANCELED, "killed"));
            }
            7 | 8 => {
                let (a, budget) = (b.next(), b.next());
                let Some(a) = self.pick_alive(a) else {
                    return;
                };
                self.m.borrow_mut().exit_plan.insert(a, op % 20 == 8);
                let dest = self.m.borrow().pid_text[&a].clone();
                self.send(None, &dest, Some(a), false);
                self.run(1 + budget as usize % 8);
            }
            9 => {
                let (a, n) = (b.next(), b.next());
                let Some(a) = self.pick_alive(a) else {
                    return;
                };
                let name = if n % 16 == 15 {
                    String::new()
                } else {
                    format!("n{}", n % 4)
                };
                let r = self.core().register_name(&name, a);
                let mut m = self.m.borrow_mut();
                let want = !name.is_empty() && m.names.get(&name).is_none_or(|o| *o == a);
                assert_eq!(r.is_ok(), want, "engine_ops: register {name:?}: {r:?}");
                if want {
                    m.names.insert(name, a);
                }
            }
            10 => {
                let name = format!("n{}", b.next() % 4);
                let want = self.m.borrow_mut().names.remove(&name).is_some();
                assert_eq!(self.core().names.unregister(&name), want);
            }
            11 => {
                let (a, delay, period) = (b.next(), b.next(), b.next());
                let Some(a) = self.pick_alive(a) else {
                    return;
                };
                let id = {
                    let mut m = self.m.borrow_mut();
                    m.next_timer_id += 1;
                    m.next_timer_id
                };
                let delay = u64::from(delay) * 1000;
                let period = (period & 0x80 != 0).then(|| u64::from(period & 0x7f) * 1000);
                let key = self.core().arm_timer(a, id, delay, period);
                let mut m = self.m.borrow_mut();
                let t = TimerModel {
                    proc: a,
                    id,
                    at: self.now.saturating_add(delay),
                    period,
                };
                assert!(
                    m.timers.insert(key, t).is_none(),
                    "engine_ops: timer key reused"
                );
            }
            12 => {
                let k = b.next();
                let key = {
                    let m = self.m.borrow();
                    if k & 0x80 != 0 || m.timers.is_empty() {
                        u64::from(k)
                    } else {
                        *m.timers
                            .keys()
                            .nth(k as usize % m.timers.len())
                            .expect("key")
                    }
                };
                let want = self.m.borrow_mut().timers.remove(&key).is_some();
                assert_eq!(
                    self.core().cancel_timer(key),
                    want,
                    "engine_ops: cancel timer"
                );
            }
            13 => {
                let (delta, budget) = (b.next(), b.next());
                self.now += (u64::from(delta) + 1) * 1000;
                self.run(budget as usize % 16);
            }
            14 => {
                let a = b.next();
                let id = if a == 0x7f {
                    9999
                } else {
                    match self.pick(a) {
                        Some(id) => id,
                        None => return,
                    }
                };
                self.take(id);
            }
            15 => {
                let Some(a) = self.pick_alive(b.next()) else {
                    return;
                };
                let on = {
                    let mut m = self.m.borrow_mut();
                    if !m.trap.remove(&a) {
                        m.trap.insert(a);
                    }
                    m.trap.contains(&a)
                };
                self.core().proc_mut(a).expect("alive").trap_links = on;
            }
            16 => {
                let (a, c) = (b.next(), b.next());
                let Some(a) = self.pick(a) else {
                    return;
                };
                use crate::world::WorldCommand;
                let cmd = [
                    WorldCommand::TerminalReadLine,
                    WorldCommand::TerminalRead { max_bytes: 1 },
                    WorldCommand::SqlReleaseOwner { owner: 0 },
                ][c as usize % 3]
                    .clone();
                let tag = self.core().execute(a, cmd);
                let mut m = self.m.borrow_mut();
                assert_eq!(tag.is_some(), m.alive.contains(&a), "engine_ops: execute");
                if let Some(tag) = tag {
                    assert!(
                        m.issued.insert((a, tag)),
                        "engine_ops: tag {tag} issued twice"
                    );
                    m.pending_tags.insert((a, tag));
                    m.all_tags.push((a, tag));
                    m.expect_exec.push_back((a, tag));
                }
            }
            17 => {
                let (s, f) = (b.next(), b.next());
                let (id, tag) = {
                    let m = self.m.borrow();
                    if f & 0x80 != 0 || m.all_tags.is_empty() {
                        match self.pick(s) {
                            Some(id) => (id, u64::from(f & 7)),
                            None => return,
                        }
                    } else {
                        m.all_tags[s as usize % m.all_tags.len()]
                    }
                };
                let pid = self.m.borrow().pids[&id].clone();
                let valid = {
                    let m = self.m.borrow();
                    m.alive.contains(&id) && m.pending_tags.contains(&(id, tag))
                };
                let before = self.core().stats.completions_dropped;
                let result = if f & 1 != 0 {
                    Err(ErrorValue::new(kind::TIMEOUT, "late"))
                } else {
                    Ok(Value::Int(i64::from(f)))
                };
                self.node
                    .handle(self.now, Input::Completed { pid, tag, result });
                let after = self.core().stats.completions_dropped;
                assert_eq!(
                    after - before,
                    u64::from(!valid),
                    "engine_ops: completion of {tag} for {id} (valid: {valid})"
                );
                if valid {
                    let mut m = self.m.borrow_mut();
                    m.pending_tags.remove(&(id, tag));
                    m.owed_completion.insert((id, tag));
                }
            }
            18 => {
                let budget = b.next();
                self.run(budget as usize % 16);
            }
            _ => {
                let (a, sel, d) = (b.next(), b.next(), b.next());
                let Some(a) = self.pick_alive(a) else {
                    return;
                };
                let (dest, to) = self.dest(sel, d);
                let r = self.core().cancel(a, &dest, "fuzz".into());
                assert_eq!(r.is_ok(), to.is_some(), "engine_ops: cancel {dest}: {r:?}");
                if let Some(t) = to {
                    *self.m.borrow_mut().owed_cancel.entry(t).or_insert(0) += 1;
                }
            }
        }
    }

    fn settle(&mut self) {
        self.drain_outputs();
        let core = self.node.core.borrow();
        self.m.borrow_mut().settle(&core);
    }
}

/// Interprets the bytes as operations on a node of native processes and checks, after each:
/// per-sender FIFO, no mail for the dead, exactly one EXIT per monitor per death (and one
/// LINK_DOWN per trapped failed link), names released with their owner, each completion
/// applied once, timers firing once per due deadline, and the scheduler never running a
/// process twice for one wake nor keeping a dead one.
pub fn engine_ops(data: &[u8]) {
    let mut h = Harness::new();
    h.spawn(None, 0x60, MODE_TAKE);
    h.spawn(None, 0x60, 0);
    h.settle();
    let mut b = Bytes { d: data, i: 0 };
    while b.i < data.len() {
        h.op(&mut b);
        h.settle();
    }
    // Every live process takes what is left; nothing owed may remain.
    let alive: Vec<u64> = h.m.borrow().alive.iter().copied().collect();
    for id in alive {
        h.take(id);
    }
    h.m.borrow_mut().check_sched = true;
    h.settle();
    let m = h.m.borrow();
    assert!(
        m.owed_exit.is_empty(),
        "engine_ops: EXIT never delivered: {:?}",
        m.owed_exit
    );
    assert!(
        m.owed_link_down.is_empty(),
        "engine_ops: LINK_DOWN never delivered: {:?}",
        m.owed_link_down
    );
    assert!(
        m.owed_timer.values().all(|n| *n == 0),
        "engine_ops: timer signal never delivered"
    );
    assert!(
        m.owed_completion.is_empty(),
        "engine_ops: completion never delivered"
    );
    assert!(
        m.owed_cancel.values().all(|n| *n == 0),
        "engine_ops: CANCEL never delivered"
    );
}

// ---- frame -------------------------------------------------------------------------------------

/// Relay frames from another node: `decode` must not panic on any bytes; whatever it accepts
/// must encode back to exactly the same bytes (one frame, one encoding), and no strict prefix
/// of an accepted frame may decode.
pub fn frame(data: &[u8]) {
    use crate::cluster::frame::Frame;
    let Ok(f) = Frame::decode(data) else {
        return;
    };
    let again = f
        .encode()
        .unwrap_or_else(|e| panic!("decoded {} frame does not encode: {e}", f.name()));
    assert_eq!(again, data, "{} frame re-encodes differently", f.name());
    for cut in [0, data.len() / 2, data.len() - 1] {
        assert!(
            Frame::decode(&data[..cut]).is_err(),
            "a {} frame cut to {cut} bytes decoded",
            f.name()
        );
    }
}

// ---- payload -----------------------------------------------------------------------------------

/// The type names a `payload` input's first byte picks from (the rest are the message bytes).
const PAYLOAD_TYPES: [&str; 14] = [
    "type.googleapis.com/google.protobuf.Value",
    "type.googleapis.com/google.protobuf.Struct",
    "type.googleapis.com/google.protobuf.ListValue",
    "type.googleapis.com/google.protobuf.DoubleValue",
    "type.googleapis.com/google.protobuf.FloatValue",
    "type.googleapis.com/google.protobuf.Int64Value",
    "type.googleapis.com/google.protobuf.UInt64Value",
    "type.googleapis.com/google.protobuf.Int32Value",
    "type.googleapis.com/google.protobuf.UInt32Value",
    "type.googleapis.com/google.protobuf.BoolValue",
    "type.googleapis.com/google.protobuf.StringValue",
    "type.googleapis.com/google.protobuf.BytesValue",
    "type.googleapis.com/acme.Order",
    "google.protobuf.Value",
];

/// Equal, with floats compared bit for bit (a NaN equals itself) and map entries in any order.
fn same_payload(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Table(x), Value::Table(y)) => {
            let sorted = |t: &Table| {
                // Keys are byte strings (not always UTF-8): sort on the bytes.
                let mut m: Vec<(Vec<u8>, Value)> = t
                    .map
                    .iter()
                    .map(|(k, v)| match k {
                        Value::Str(b) => (b.clone(), v.clone()),
                        _ => (Vec::new(), v.clone()),
                    })
                    .collect();
                m.sort_by(|p, q| p.0.cmp(&q.0));
                m
            };
            let (mx, my) = (sorted(x), sorted(y));
            x.array.len() == y.array.len()
                && x.array
                    .iter()
                    .zip(&y.array)
                    .all(|(a, b)| same_payload(a, b))
                && mx.len() == my.len()
                && mx
                    .iter()
                    .zip(&my)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_payload(va, vb))
        }
        _ => a == b,
    }
}

/// What `encode_result` must accept: UTF-8 strings (values and keys) and integers a double
/// holds exactly; a decoded value has no error values nor mixed tables.
fn payload_encodable(v: &Value) -> bool {
    const EXACT: i64 = 1 << 53;
    match v {
        Value::Int(i) => (-EXACT..=EXACT).contains(i),
        Value::Str(s) => std::str::from_utf8(s).is_ok(),
        Value::Table(t) => {
            t.array.iter().all(payload_encodable)
                && t.map
                    .iter()
                    .all(|(k, v)| k.as_str().is_some() && payload_encodable(v))
        }
        Value::Error(_) => false,
        _ => true,
    }
}

/// What a value becomes after a trip through Lua, where every number is a double; `None` when
/// the trip is lossy by nature (a nil inside a sequence ends Lua's border).
fn through_lua(v: &Value) -> Option<Value> {
    const EXACT: i64 = 1 << 53;
    Some(match v {
        Value::Int(i) if !(-EXACT..=EXACT).contains(i) => Value::Float(*i as f64),
        Value::Table(t) => {
            if t.array.iter().any(Value::is_nil) {
                return None;
            }
            Value::table(Table {
                array: t.array.iter().map(through_lua).collect::<Option<_>>()?,
                map: t
                    .map
                    .iter()
                    .map(|(k, v)| Some((k.clone(), through_lua(v)?)))
                    .collect::<Option<_>>()?,
            })
        }
        v => v.clone(),
    })
}

thread_local! {
    static PAYLOAD_LUA: mlua::Lua = mlua::Lua::new();
}

/// Dispatch payloads: the first byte picks a type URL, the rest is the `Any`'s value. Decoding
/// must not panic; a decoded value must encode exactly when it is encodable (UTF-8 strings,
/// integers within ±2^53), a value-shaped result must decode back to the same value and
/// re-encode to the same bytes, a `{type_url, value}` result passes through unchanged, and the
/// value must survive the copy into Lua and back (up to doubles and nil holes).
pub fn payload(data: &[u8]) {
    use crate::dispatch::payload::{decode_input, encode_result, VALUE_URL};
    use crate::dispatch::types::Any;
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let url = PAYLOAD_TYPES[sel as usize % PAYLOAD_TYPES.len()];
    let any = Any {
        type_url: url.to_string(),
        value: bytes.to_vec(),
    };
    let Ok(v1) = decode_input(Some(&any)) else {
        return;
    };
    let raw = match &v1 {
        Value::Table(t) if t.array.is_empty() && t.map.len() == 2 => {
            match (t.get("type_url"), t.get("value")) {
                (Some(Value::Str(u)), Some(Value::Str(b))) => std::str::from_utf8(u)
                    .ok()
                    .map(|u| (u.to_string(), b.clone())),
                _ => None,
            }
        }
        _ => None,
    };
    let encoded = encode_result(&v1);
    if let Some((u, b)) = raw {
        let a = encoded.unwrap_or_else(|e| panic!("payload: {{type_url, value}} refused: {e}"));
        assert_eq!(
            (a.type_url.as_str(), &a.value),
            (u.as_str(), &b),
            "payload: raw Any"
        );
        let again = decode_input(Some(&a));
        if url.ends_with("acme.Order") && u == url {
            assert_eq!(again.as_ref(), Ok(&v1), "payload: raw Any round trip");
        }
    } else {
        assert_eq!(
            encoded.is_ok(),
            payload_encodable(&v1),
            "payload: encodable {v1:?}: {encoded:?}"
        );
        if let Ok(a) = encoded {
            assert_eq!(a.type_url, VALUE_URL, "payload: result type");
            let v2 = decode_input(Some(&a))
                .unwrap_or_else(|e| panic!("payload: encoder output does not decode: {e}"));
            assert!(
                same_payload(&v1, &v2),
                "payload: round trip changed the value\n{v1:?}\n{v2:?}"
            );
            let a2 = encode_result(&v2).expect("payload: re-encode");
            assert_eq!(a2, a, "payload: second encoding differs");
        }
    }
    PAYLOAD_LUA.with(|lua| {
        let lv = crate::lua::convert::to_lua(lua, &v1).expect("payload: to Lua");
        let back = crate::lua::convert::to_value(&lv).expect("payload: from Lua");
        if let Some(want) = through_lua(&v1) {
            assert!(
                same_payload(&back, &want),
                "payload: Lua copy changed the value\n{want:?}\n{back:?}"
            );
        }
    });
}
