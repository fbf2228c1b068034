//! A Lua process: its coroutines, mailbox-backed channels, timers and waits, stepped by the node.
//! One step routes what the core delivered, then resumes runnable coroutines until all are parked.

use super::convert::{to_lua, to_value};
use super::coroutines::{Chan, ChanRef, Completion, Item, Tasks, Wait, WaitKind, UNBOUNDED};
use super::errors::{self, ErrorUd};
use super::{current, is_park};
use crate::command::Command;
use crate::entries::Entry;
use crate::pid::Pid;
use crate::process::{Cx, Process, Step};
use crate::relay::{Event, EventKind, Message, Signal};
use crate::value::{kind, ErrorValue, Value};
use mlua::thread::ThreadStatus;
use mlua::{AnyUserData, Function, Lua, MultiValue, Table, Thread, Value as LV};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

pub struct TimerSlot {
    pub chan: ChanRef,
    pub key: u64,
    pub ticker: bool,
}

pub struct ProcState {
    pub id: u64,
    pub pid: Pid,
    /// The PID as text, made the first time it is asked for (`pid_text`).
    pid_str: std::cell::OnceCell<String>,
    pub entry: Rc<Entry>,
    pub env: Table,
    pub terminal: bool,
    pub tasks: Tasks,
    pub current_task: usize,
    pub main_task: usize,
    pub inbox: Option<(ChanRef, AnyUserData)>,
    pub events: Option<(ChanRef, AnyUserData)>,
    pub listens: BTreeMap<String, (ChanRef, AnyUserData)>,
    pub pending_msgs: VecDeque<Message>,
    pub pending_events: VecDeque<Event>,
    pub timers: BTreeMap<u64, TimerSlot>,
    pub tag_waits: BTreeMap<u64, ChanRef>,
    pub next_local: u64,
    /// Set when a spawned coroutine failed: the whole process fails with it.
    pub failure: Option<ErrorValue>,
    pub args: Vec<Value>,
    /// Whether the process runs imported libraries (`require` then looks at the caller's env).
    pub has_libs: bool,
    /// `funcs.async` futures waiting on a call tag.
    pub futures: BTreeMap<u64, Rc<RefCell<super::funcs::FutureSlot>>>,
    /// Event-bus subscriptions: subscription id → its channel.
    pub bus_subs: BTreeMap<u64, ChanRef>,
    /// World commands to send when the process closes, whatever the reason (e.g. roll back the
    /// SQL transactions it left open); their completions are dropped.
    pub on_close: Vec<crate::world::WorldCommand>,
    /// The Luau memory category its allocations count in (0: shared, not accounted).
    pub memcat: u8,
    /// Its memory limit in bytes (the entry's `limits.memory`, else the node's default).
    pub mem_limit: usize,
}

impl ProcState {
    /// The PID as text (`process.pid()`, log fields).
    pub fn pid_text(&self) -> String {
        self.pid_str.get_or_init(|| self.pid.to_string()).clone()
    }

    pub fn new(pid: Pid, entry: Rc<Entry>, env: Table, terminal: bool) -> ProcState {
        ProcState {
            id: pid.uniq,
            pid_str: std::cell::OnceCell::new(),
            pid,
            entry,
            env,
            terminal,
            tasks: Tasks::default(),
            current_task: 0,
            main_task: 0,
            inbox: None,
            events: None,
            listens: BTreeMap::new(),
            pending_msgs: VecDeque::new(),
            pending_events: VecDeque::new(),
            timers: BTreeMap::new(),
            tag_waits: BTreeMap::new(),
            next_local: 0,
            failure: None,
            args: Vec::new(),
            has_libs: false,
            futures: BTreeMap::new(),
            bus_subs: BTreeMap::new(),
            on_close: Vec::new(),
            memcat: 0,
            mem_limit: 0,
        }
    }

    /// Messages taken from the mailbox and not yet received: those waiting for a subscription
    /// and those buffered in the inbox and `listen` channels.
    pub fn backlog(&self) -> usize {
        let chan = |c: &Option<(ChanRef, AnyUserData)>| {
            c.as_ref().map_or(0, |(c, _)| c.borrow().buf.len())
        };
        self.pending_msgs.len()
            + chan(&self.inbox)
            + self
                .listens
                .values()
                .map(|(c, _)| c.borrow().buf.len())
                .sum::<usize>()
    }

    /// CLI arguments of the terminal process: its string spawn arguments.
    pub fn terminal_args(&self) -> Vec<String> {
        self.args
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_local += 1;
        self.next_local
    }

    /// Registers the current coroutine as parked on `chan` (receive), to be resumed as `kind`.
    pub fn park_on(&mut self, chan: ChanRef, kind: WaitKind) {
        let t = self.current_task;
        if let Some(Some(task)) = self.tasks.slots.get_mut(t) {
            task.wait = Some(Wait {
                kind,
                cases: vec![(LV::Nil, None)],
            });
        }
        let gen = self.tasks.slots[t].as_ref().map(|t| t.gen).unwrap_or(0);
        chan.borrow_mut()
            .recvq
            .push_back(super::coroutines::Waiter {
                task: t,
                gen,
                case: 0,
            });
    }

    fn route_message(&mut self, lua: &Lua, m: Message) -> mlua::Result<()> {
        if let Some((ch, _)) = self.listens.get(&m.topic) {
            let ch = ch.clone();
            let raw = ch.borrow().raw;
            let item = if raw {
                Item::Lua(raw_payload(lua, &m)?)
            } else {
                Item::Msg(m)
            };
            self.tasks.deliver(&ch, item);
        } else if let Some((ch, _)) = &self.inbox {
            let ch = ch.clone();
            self.tasks.deliver(&ch, Item::Msg(m));
        } else {
            self.pending_msgs.push_back(m);
        }
        Ok(())
    }

    /// Re-routes messages that waited for a subscription.
    pub fn flush_pending(&mut self, lua: &Lua) -> mlua::Result<()> {
        let pending = std::mem::take(&mut self.pending_msgs);
        for m in pending {
            self.route_message(lua, m)?;
        }
        if let Some((ch, _)) = &self.events {
            let ch = ch.clone();
            for e in std::mem::take(&mut self.pending_events) {
                self.tasks.deliver(&ch, Item::Ev(e));
            }
        }
        Ok(())
    }

    /// Routes a timer, completion or bus item; returns the id of a bus subscription whose
    /// channel was full (the item was dropped) so the caller can count it.
    fn route_signal(&mut self, s: Signal) -> Option<u64> {
        match s {
            Signal::Timer { id, at_unix_ns } => {
                let slot = self.timers.get(&id)?;
                let ch = slot.chan.clone();
                if !slot.ticker {
                    self.timers.remove(&id);
                }
                // A full ticker buffer drops the tick, as Go's ticker does.
                self.tasks.deliver(&ch, Item::Time(at_unix_ns));
            }
            Signal::Completed { tag, result } => {
                if let Some(f) = self.futures.remove(&tag) {
                    let item = super::funcs::complete_future(&f, result);
                    let ch = f.borrow().chan.clone();
                    self.tasks.deliver(&ch, item);
                } else if let Some(ch) = self.tag_waits.remove(&tag) {
                    self.tasks.deliver(&ch, Item::Done(result));
                }
            }
            Signal::Bus { sub, event } => {
                if let Some(ch) = self.bus_subs.get(&sub) {
                    let ch = ch.clone();
                    if !self.tasks.deliver(&ch, Item::Done(Ok(event.to_value()))) {
                        return Some(sub);
                    }
                }
            }
        }
        None
    }
}

fn raw_payload(lua: &Lua, m: &Message) -> mlua::Result<LV> {
    match m.payload.len() {
        0 => Ok(LV::Nil),
        1 => to_lua(lua, &m.payload[0]),
        _ => {
            let t = lua.create_table()?;
            for (i, v) in m.payload.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, v)?)?;
            }
            Ok(LV::Table(t))
        }
    }
}

/// Turns an in-flight item into the Lua value a receiver gets.
pub fn item_to_lua(lua: &Lua, item: Item) -> mlua::Result<LV> {
    Ok(match item {
        Item::Lua(v) => v,
        Item::Msg(m) => LV::UserData(lua.create_userdata(MessageUd(m))?),
        Item::Ev(e) => LV::Table(event_table(lua, &e)?),
        Item::Time(ns) => LV::UserData(lua.create_userdata(super::time::TimeUd::utc(ns))?),
        Item::Done(Ok(v)) => to_lua(lua, &v)?,
        Item::Done(Err(e)) => LV::UserData(lua.create_userdata(ErrorUd(e))?),
        Item::Payload(v) => LV::UserData(lua.create_userdata(super::payload::Payload::of(v))?),
    })
}

fn event_table(lua: &Lua, e: &Event) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("kind", e.kind.as_str())?;
    t.raw_set("from", e.from.to_string())?;
    t.raw_set("at", e.at_unix_ns as f64 / 1e9)?;
    match e.kind {
        EventKind::Cancel => t.raw_set("reason", e.reason.as_str())?,
        _ => {
            let r = lua.create_table()?;
            match &e.result {
                Some(Ok(v)) => r.raw_set("value", to_lua(lua, v)?)?,
                Some(Err(err)) => r.raw_set("error", lua.create_userdata(ErrorUd(err.clone()))?)?,
                None => {}
            }
            t.raw_set("result", r)?;
        }
    }
    Ok(t)
}

/// `process.Message` userdata.
pub struct MessageUd(pub Message);

impl mlua::UserData for MessageUd {
    fn add_methods<M: mlua::UserDataMethods<Self>>(m: &mut M) {
        m.add_method("topic", |_, s, ()| Ok(s.0.topic.clone()));
        m.add_method("from", |_, s, ()| {
            Ok(s.0.from.as_ref().map(|p| p.to_string()).unwrap_or_default())
        });
        m.add_method("payload", |lua, s, ()| match s.0.payload.len() {
            0 => Ok(LV::Nil),
            1 => Ok(LV::UserData(lua.create_userdata(
                super::payload::Payload::of(s.0.payload[0].clone()),
            )?)),
            _ => {
                let t = lua.create_table()?;
                for (i, v) in s.0.payload.iter().enumerate() {
                    t.raw_set(
                        i + 1,
                        lua.create_userdata(super::payload::Payload::of(v.clone()))?,
                    )?;
                }
                Ok(LV::Table(t))
            }
        });
        m.add_meta_method(mlua::MetaMethod::ToString, |_, s, ()| {
            Ok(format!("process.Message{{topic={}}}", s.0.topic))
        });
    }
}

pub struct LuaProcess {
    lua: Lua,
    host: Rc<super::Bridge>,
    st: Rc<RefCell<ProcState>>,
    /// First resume: the chunk, its method, the imported libraries (`nil` when none), args.
    start: Option<(Function, String, LV, Vec<Value>)>,
    /// It yielded to let a frame out since it last waited (`Bridge::flushed`).
    flushed: bool,
}

impl LuaProcess {
    pub fn new(
        lua: Lua,
        st: ProcState,
        main: Thread,
        chunk: Function,
        method: String,
        libs: LV,
        args: Vec<Value>,
    ) -> LuaProcess {
        let st = Rc::new(RefCell::new(st));
        {
            let mut s = st.borrow_mut();
            if s.terminal {
                s.args = args.clone();
            }
            let id = s.tasks.add(main);
            s.main_task = id;
        }
        let host = super::bridge(&lua);
        LuaProcess {
            lua,
            host,
            st,
            start: Some((chunk, method, libs, args)),
            flushed: false,
        }
    }

    fn take_mailbox(&mut self, cx: &Cx<'_>) -> mlua::Result<()> {
        let mb = cx.take_mailbox();
        if mb.is_empty() {
            return Ok(());
        }
        let mut st = self.st.borrow_mut();
        for m in mb.messages {
            st.route_message(&self.lua, m)?;
        }
        for e in mb.events {
            match &st.events {
                Some((ch, _)) => {
                    let ch = ch.clone();
                    st.tasks.deliver(&ch, Item::Ev(e));
                }
                None => st.pending_events.push_back(e),
            }
        }
        let mut dropped = Vec::new();
        for s in mb.signals {
            if let Some(sub) = st.route_signal(s) {
                dropped.push(sub);
            }
        }
        drop(st);
        for sub in dropped {
            cx.note_bus_drop(sub);
        }
        Ok(())
    }

    /// Resume arguments for a coroutine whose wait completed.
    fn resume_args(&self, wait: Wait, c: Completion) -> mlua::Result<Result<MultiValue, String>> {
        let lua = &self.lua;
        if let Some(msg) = c.raise {
            return Ok(Err(msg));
        }
        let mut mv = MultiValue::new();
        match wait.kind {
            WaitKind::Recv => {
                let v = match c.item {
                    Some(i) => item_to_lua(lua, i)?,
                    None => LV::Nil,
                };
                mv.push_back(v);
                mv.push_back(LV::Boolean(c.ok));
            }
            WaitKind::Send => mv.push_back(LV::Boolean(true)),
            WaitKind::Sleep => {}
            WaitKind::Call => match c.item {
                Some(Item::Done(Err(e))) => {
                    mv.push_back(LV::Nil);
                    mv.push_back(LV::UserData(lua.create_userdata(ErrorUd(e))?));
                }
                Some(i) => mv.push_back(item_to_lua(lua, i)?),
                None => {
                    mv.push_back(LV::Nil);
                    mv.push_back(LV::UserData(lua.create_userdata(ErrorUd(
                        ErrorValue::new(kind::CANCELED, "canceled"),
                    ))?));
                }
            },
            WaitKind::Select => {
                let (ch, sent) = wait
                    .cases
                    .into_iter()
                    .nth(c.case)
                    .unwrap_or((LV::Nil, None));
                let t = lua.create_table()?;
                t.raw_set("channel", ch)?;
                let v = match (c.item, sent) {
                    (Some(i), _) => item_to_lua(lua, i)?,
                    (None, Some(s)) => s,
                    (None, None) => LV::Nil,
                };
                t.raw_set("value", v)?;
                t.raw_set("ok", c.ok)?;
                mv.push_back(LV::Table(t));
            }
        }
        Ok(Ok(mv))
    }

    fn run_tasks(&mut self, budget: u32) -> mlua::Result<Option<Step>> {
        let (memcat, mem_limit) = {
            let st = self.st.borrow();
            (st.memcat, if st.memcat == 0 { 0 } else { st.mem_limit })
        };
        let limits = self.host.limits;
        // Near the node's ceiling, collect before running: the garbage of a process that just
        // died of it must not make the next one to allocate (a neighbour) fail too.
        let ceiling = self.host.heap_ceiling.get();
        if ceiling > 0 && self.lua.used_memory() > ceiling / 10 * 9 {
            self.lua.gc_collect()?;
        }
        // The simulator's VM collects on a schedule of its own (lua/arena.rs).
        super::arena::pace(&self.lua);
        super::interrupt::begin_step(super::interrupt::StepLimits {
            budget,
            ceiling: limits.step_ceiling,
            memcat,
            mem_limit,
        });
        loop {
            let next = {
                let mut st = self.st.borrow_mut();
                let ready = &mut st.tasks.ready;
                // The simulator may resume any ready coroutine first (Wippy promises no order
                // among them); otherwise the one queued first.
                let k = match ready.len() {
                    0 | 1 => 0,
                    n => self.host.port.core.borrow_mut().sched.explore.coroutine(n),
                };
                ready.remove(k)
            };
            let Some(tid) = next else {
                return Ok(None);
            };
            let (thread, done) = {
                let mut st = self.st.borrow_mut();
                let Some(Some(task)) = st.tasks.slots.get_mut(tid) else {
                    continue;
                };
                let thread = task.thread.clone();
                let done = task.done.take();
                st.current_task = tid;
                (thread, done)
            };
            let args: Result<MultiValue, String> =
                if let Some((chunk, method, libs, args)) = self.start.take() {
                    let mut mv = MultiValue::new();
                    mv.push_back(LV::Function(chunk));
                    mv.push_back(LV::String(self.lua.create_string(&method)?));
                    mv.push_back(libs);
                    for a in &args {
                        mv.push_back(to_lua(&self.lua, a)?);
                    }
                    Ok(mv)
                } else {
                    match done {
                        Some((wait, c)) => self.resume_args(wait, c)?,
                        None => Ok(MultiValue::new()),
                    }
                };
            super::interrupt::set_root(thread.to_pointer() as usize);
            let r = match args {
                Ok(a) => thread.resume::<MultiValue>(a),
                Err(msg) => thread.resume_error::<MultiValue>(msg),
            };
            let ended = super::interrupt::end_resume();
            let preempted = ended.preempted;
            if let Some(k) = ended.killed {
                return Ok(Some(Step::Exited(Err(ErrorValue::new(
                    kind::RATE_LIMITED,
                    k.message(),
                )))));
            }
            if mem_limit > 0 && r.is_ok() {
                let over = ended.over_memory
                    || super::interrupt::category_bytes(&thread, memcat) > mem_limit;
                // What the category counts includes garbage: collect before judging.
                if over {
                    self.lua.gc_collect()?;
                    super::arena::pace(&self.lua);
                    if super::interrupt::category_bytes(&thread, memcat) > mem_limit {
                        return Ok(Some(Step::Exited(Err(ErrorValue::new(
                            kind::RATE_LIMITED,
                            super::interrupt::memory_message(mem_limit),
                        )))));
                    }
                }
            }
            let is_main = tid == self.st.borrow().main_task;
            match r {
                Err(e) => {
                    let mut err = lua_error_value(&e);
                    if is_memory_error(&e) {
                        err = ErrorValue::new(
                            kind::RATE_LIMITED,
                            format!(
                                "out of memory: the node's Lua heap is at its ceiling of {} MiB \
                                 (WEFT_NODE_MEMORY sets it)",
                                limits.node_memory >> 20
                            ),
                        );
                    }
                    return Ok(Some(Step::Exited(Err(err))));
                }
                Ok(vals) => {
                    if let Some(f) = self.st.borrow_mut().failure.take() {
                        return Ok(Some(Step::Exited(Err(f))));
                    }
                    if thread.status() == ThreadStatus::Resumable {
                        if vals.front().is_some_and(is_park) {
                            continue;
                        }
                        // Preempted, or a bare coroutine.yield(): runnable again, behind the rest.
                        self.st.borrow_mut().tasks.ready.push_back(tid);
                        if preempted {
                            return Ok(Some(Step::Yielded));
                        }
                        continue;
                    }
                    if is_main {
                        return Ok(Some(Step::Exited(main_result(vals))));
                    }
                    self.st.borrow_mut().tasks.remove(tid);
                }
            }
        }
    }
}

/// First return value is the result; a non-nil second value (string or error) is a failure.
fn main_result(vals: MultiValue) -> Result<Value, ErrorValue> {
    let mut it = vals.into_iter();
    let first = it.next().unwrap_or(LV::Nil);
    let second = it.next().unwrap_or(LV::Nil);
    if let Some(e) = errors::from_lua(&second) {
        if !matches!(second, LV::Boolean(_)) {
            return Err(e);
        }
    }
    to_value(&first)
}

/// Lua errors reach users as Wippy prints them: the message, without Luau's traceback.
fn without_traceback(m: &str) -> String {
    match m.find("\nstack traceback:") {
        Some(i) => m[..i].to_string(),
        None => m.to_string(),
    }
}

/// An allocation failed: the VM is at the node's memory ceiling.
fn is_memory_error(e: &mlua::Error) -> bool {
    match e {
        mlua::Error::MemoryError(_) => true,
        mlua::Error::CallbackError { cause, .. } => is_memory_error(cause),
        _ => false,
    }
}

fn lua_error_value(e: &mlua::Error) -> ErrorValue {
    match e {
        mlua::Error::CallbackError { cause, traceback } => {
            let mut v = lua_error_value(cause);
            if v.message.is_empty() {
                v.message = traceback.clone();
            }
            v
        }
        mlua::Error::RuntimeError(m) => ErrorValue::new(kind::UNKNOWN, without_traceback(m)),
        mlua::Error::ExternalError(x) => ErrorValue::new(kind::UNKNOWN, x.to_string()),
        other => ErrorValue::new(kind::UNKNOWN, other.to_string()),
    }
}

impl Process for LuaProcess {
    fn step(&mut self, cx: &mut Cx<'_>) -> Step {
        *self.host.current.borrow_mut() = Some(self.st.clone());
        self.host.current_id.set(cx.pid.uniq);
        self.host.flushed.set(self.flushed);
        let r = self
            .take_mailbox(cx)
            .and_then(|_| self.run_tasks(cx.budget));
        cx.spent = super::interrupt::used();
        cx.backlog = self.st.borrow().backlog();
        *self.host.current.borrow_mut() = None;
        self.host.current_id.set(0);
        let step = match r {
            Err(e) => Step::Exited(Err(lua_error_value(&e))),
            Ok(Some(s)) => s,
            Ok(None) => {
                if self.st.borrow().tasks.ready.is_empty() {
                    Step::Waiting
                } else {
                    Step::Yielded
                }
            }
        };
        // Waiting ends a wake-up: the next one may yield to let its first frame out again.
        self.flushed = self.host.flushed.get() && !matches!(step, Step::Waiting);
        step
    }

    fn close(&mut self) {
        let memcat = std::mem::take(&mut self.st.borrow_mut().memcat);
        if memcat != 0 {
            // Its objects are garbage now; the category goes to the back of the queue so the
            // collector has time to free them before another process counts in it.
            self.host.memcats.borrow_mut().push_back(memcat);
        }
        // Disarm this process's timers so tickers stop firing for a dead process.
        let st = self.st.borrow();
        let keys: Vec<u64> = st.timers.values().map(|t| t.key).collect();
        let me = st.id;
        drop(st);
        let on_close = std::mem::take(&mut self.st.borrow_mut().on_close);
        let port = &self.host.port;
        for key in keys {
            port.dispatch(me, Command::TimerStop { key });
        }
        // Nobody waits for these: their completions are dropped.
        for cmd in on_close {
            port.dispatch(
                me,
                Command::World {
                    cmd,
                    detached: true,
                },
            );
        }
    }
}

// ---- shared globals that act on the current process ----------------------------------------------

pub fn coroutine_spawn(lua: &Lua, f: Function) -> mlua::Result<LV> {
    let st = current(lua)?;
    let th = lua.create_thread(f)?;
    super::interrupt::set_category(&th, st.borrow().memcat);
    st.borrow_mut().tasks.add(th.clone());
    Ok(LV::Thread(th))
}

/// Each process draws from its own generator, seeded from the node's seed and its pid.
pub fn math_random(lua: &Lua, (m, n): (Option<f64>, Option<f64>)) -> mlua::Result<f64> {
    let r = match super::request(lua, Command::Random { reseed: None })? {
        Ok(Value::Int(r)) => r as u64,
        _ => return Err(mlua::Error::runtime("process gone")),
    };
    let unit = (r >> 11) as f64 / (1u64 << 53) as f64;
    match (m, n) {
        (None, _) => Ok(unit),
        (Some(hi), None) => {
            if hi < 1.0 {
                return Err(mlua::Error::runtime(
                    "bad argument #1 to 'random' (interval is empty)",
                ));
            }
            Ok((unit * hi.floor()).floor() + 1.0)
        }
        (Some(lo), Some(hi)) => {
            let (lo, hi) = (lo.floor(), hi.floor());
            if lo > hi {
                return Err(mlua::Error::runtime(
                    "bad argument #2 to 'random' (interval is empty)",
                ));
            }
            Ok(lo + (unit * (hi - lo + 1.0)).floor())
        }
    }
}

pub fn math_randomseed(lua: &Lua, seed: f64) -> mlua::Result<()> {
    super::request(
        lua,
        Command::Random {
            reseed: Some(seed as i64 as u64),
        },
    )?
    .map_err(|e| mlua::Error::runtime(e.message))?;
    Ok(())
}

/// `require(name)`: a plain lookup in the caller's globals; raises when the module is absent.
/// The caller's globals are its function's environment (a library sees its own `modules:` and
/// `imports:`), else the process's.
/// The lookup behind `require`: the module bound under `name` in the caller's globals, or nil.
/// Called from the prelude's `require`, so the user's function is two levels up.
pub fn require_lookup(lua: &Lua, name: String) -> mlua::Result<(LV, Option<String>)> {
    let st = current(lua)?;
    let (own, has_libs, entry) = {
        let s = st.borrow();
        (s.env.clone(), s.has_libs, s.entry.clone())
    };
    let env = if has_libs {
        lua.inspect_stack(2, |d| d.function())
            .and_then(|f| f.environment())
            .unwrap_or_else(|| own.clone())
    } else {
        own.clone()
    };
    let v: LV = env.get(name.as_str())?;
    // A miss in the process's own globals (not a library's) can name the fix in its entry.
    let hint = (v.is_nil() && env.to_pointer() == own.to_pointer())
        .then(|| missing_module_hint(&entry, &name));
    Ok((v, hint))
}

/// What to change in `e` so that `require(name)` finds something.
fn missing_module_hint(e: &Entry, name: &str) -> String {
    let at = match e.line {
        Some(l) => format!("{}:{l}", e.file),
        None => e.file.clone(),
    };
    if super::MODULES.contains(&name) {
        format!("add `{name}` to the `modules:` of entry '{}' ({at})", e.id)
    } else if super::modules_of(e).iter().any(|m| m == name) {
        format!("weft has no module '{name}' yet (entry '{}', {at})", e.id)
    } else {
        format!(
            "entry '{}' ({at}) has no module or import by that name; a library goes in its `imports:`",
            e.id
        )
    }
}

/// Asks the driver to run `cmd` (SQL, store, terminal, …) and parks the current coroutine until
/// the completion arrives; it then returns `value` or `nil, err`. Lua-side, the function calling
/// this must be wrapped with the prelude's `blocking` so the PARK it returns is yielded.
pub fn world_call(lua: &Lua, cmd: crate::world::WorldCommand) -> mlua::Result<(LV, LV)> {
    let reply = super::dispatch(
        lua,
        Command::World {
            cmd,
            detached: false,
        },
    )?;
    super::answer(lua, reply)
}

/// Parks the current coroutine until the completion of `tag` arrives; it then returns `value`
/// or `nil, err` (the Lua function must be wrapped with the prelude's `blocking`).
pub fn await_tag(lua: &Lua, tag: u64) -> mlua::Result<(LV, LV)> {
    let st = current(lua)?;
    let ch = new_private_chan();
    st.borrow_mut().tag_waits.insert(tag, ch.clone());
    Ok((park_recv(lua, ch, WaitKind::Call)?, LV::Nil))
}

/// Parks the current coroutine until `chan` yields one item, resumed as `kind`.
pub fn park_recv(lua: &Lua, chan: ChanRef, kind: WaitKind) -> mlua::Result<LV> {
    let st = current(lua)?;
    ensure_parkable(lua, &st.borrow())?;
    st.borrow_mut().park_on(chan, kind);
    super::interrupt::parking();
    Ok(super::park_value())
}

/// The process's scheduler can park only the coroutines it runs (the main one and those of
/// `coroutine.spawn`). A coroutine the user made with `coroutine.create`/`wrap` and resumes
/// by hand would carry the park to its resumer instead: a clear error beats a wrong wake-up.
pub fn parkable(lua: &Lua, st: &ProcState) -> bool {
    match st.tasks.slots.get(st.current_task) {
        Some(Some(task)) => task.thread == lua.current_thread(),
        _ => false,
    }
}

pub fn ensure_parkable(lua: &Lua, st: &ProcState) -> mlua::Result<()> {
    if parkable(lua, st) {
        return Ok(());
    }
    Err(mlua::Error::runtime(
        "cannot wait inside a coroutine made by coroutine.create or coroutine.wrap \
         (sleeps, receives, calls and queries park the process's own coroutines): \
         use coroutine.spawn, or wait outside it",
    ))
}

pub fn new_private_chan() -> ChanRef {
    Chan::new(1)
}

pub fn unbounded_chan() -> ChanRef {
    Chan::new(UNBOUNDED)
}
