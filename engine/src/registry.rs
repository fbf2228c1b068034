//! The versioned entry registry: version 1 is what boot loaded; every committed changeset makes a
//! new version. Pure state: validation, versions, deltas, the `find` filter. Durability is a world
//! command (`REGISTRY_COMMIT`): a changeset becomes a version only when the world confirmed its
//! write, one write in flight at a time (later applies queue and are validated when their turn
//! comes, against the state they will really land on). `Core::entries` stays the live view.
//!
//! Decisions where the spec is unclear (recorded here):
//! - Create of an existing id → AlreadyExists; update/delete of a missing id → NotFound; a malformed
//!   or breaking changeset → Invalid. Nothing changes on any error.
//! - Kinds: any non-empty kind is accepted (pure data); kinds Weft runs are checked deeper
//!   (Lua compiles, `modules:` known, imports resolve, services name an existing process.lua and
//!   process.host).
//! - Numeric equality in `find`: a Lua integer equals a float of the same value.
//! - Boot with stored history: see `restore`.
//!
//! History is kept as deltas: each version holds its changeset; full states are materialised
//! only for version 1, every `SNAPSHOT_EVERY`-th version, the newest version and the current
//! one. Any other version's state is rebuilt from the nearest snapshot below it (and cached
//! there when it crosses a snapshot slot). Memory and boot time grow with the size of the
//! changes, not with history length × state size.

use crate::command::ids;
use crate::core::err;
use crate::entries::{Entry, EntryKind};
use crate::node::{Core, Level};
use crate::pid::Pid;
use crate::value::{kind, ErrorValue, Table, Value};
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;

mod state;
pub use state::State;

/// Versions between two materialised states, in memory and in the world's snapshot table.
pub const SNAPSHOT_EVERY: u64 = 256;

/// One operation of a changeset.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Create(Entry),
    Update(Entry),
    Delete(String),
}

impl Op {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Create(_) => "entry.create",
            Op::Update(_) => "entry.update",
            Op::Delete(_) => "entry.delete",
        }
    }
    pub fn id(&self) -> &str {
        match self {
            Op::Create(e) | Op::Update(e) => &e.id,
            Op::Delete(id) => id,
        }
    }
}

/// A version as callers see it: its changeset and its (materialised or rebuilt) state.
#[derive(Clone, Debug)]
pub struct Version {
    pub id: u64,
    pub ops: Rc<Vec<Op>>,
    pub state: Rc<State>,
}

/// A version as the registry keeps it: the changeset from the previous version, and its state
/// only when it is a snapshot slot that has been materialised.
#[derive(Clone, Debug)]
pub struct Stored {
    pub id: u64,
    pub ops: Rc<Vec<Op>>,
    snap: OnceCell<Rc<State>>,
}

impl Stored {
    fn new(id: u64, ops: Vec<Op>, state: Option<Rc<State>>) -> Stored {
        let snap = OnceCell::new();
        if let Some(s) = state {
            let _ = snap.set(s);
        }
        Stored {
            id,
            ops: Rc::new(ops),
            snap,
        }
    }

    /// Whether this version's full state is held.
    pub fn is_materialised(&self) -> bool {
        self.snap.get().is_some()
    }
}

/// An apply waiting for its write (or for its turn).
#[derive(Clone, Debug)]
struct Request {
    pid: Pid,
    tag: u64,
    ops: Vec<Op>,
}

#[derive(Debug)]
pub struct Registry {
    versions: Vec<Stored>,
    /// The newest version's state.
    last: Rc<State>,
    /// The current version's state (the newest one's unless `head` moved).
    cur: Rc<State>,
    /// Snapshot slot spacing (`SNAPSHOT_EVERY`; smaller in tests).
    every: u64,
    inflight: Option<(Request, u64, State)>,
    queue: VecDeque<Request>,
    /// Lua entries whose compiled code is out of date (the Lua runtime drops them).
    stale: Vec<String>,
    /// The current version when `apply_version` moved away from the newest one; None = newest.
    head: Option<u64>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            versions: Vec::new(),
            last: Rc::default(),
            cur: Rc::default(),
            every: SNAPSHOT_EVERY,
            inflight: None,
            queue: VecDeque::new(),
            stale: Vec::new(),
            head: None,
        }
    }
}

/// Checks the id form `ns:name` (both parts non-empty).
pub fn check_id(id: &str) -> Result<(), ErrorValue> {
    match id.split_once(':') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok(()),
        _ => Err(err(
            kind::INVALID,
            format!("invalid entry id '{id}': expected namespace:name"),
        )),
    }
}

/// Applies `ops` to `state` in order; errors leave nothing changed (the caller keeps `state`).
/// The clone shares `state`'s structure: this costs O(ops × log n), not O(n).
pub fn apply_ops(state: &State, ops: &[Op]) -> Result<State, ErrorValue> {
    check_ops(state, ops)?;
    let mut next = state.clone();
    apply_checked(&mut next, ops);
    Ok(next)
}

/// `apply_ops` in place (no copy of the state): on error `state` is left unchanged.
pub fn apply_ops_mut(state: &mut State, ops: &[Op]) -> Result<(), ErrorValue> {
    check_ops(state, ops)?;
    apply_checked(state, ops);
    Ok(())
}

/// Would `ops` apply to `state`? The first failing op's error, in op order.
fn check_ops(state: &State, ops: &[Op]) -> Result<(), ErrorValue> {
    if ops.is_empty() {
        return Err(err(kind::INVALID, "empty changeset"));
    }
    // Existence after the ops so far, for ids the changeset touched.
    let mut touched: BTreeMap<&str, bool> = BTreeMap::new();
    for op in ops {
        check_id(op.id())?;
        let exists = touched
            .get(op.id())
            .copied()
            .unwrap_or_else(|| state.contains_key(op.id()));
        match op {
            Op::Create(e) | Op::Update(e) => {
                if e.kind.as_str().is_empty() {
                    return Err(err(
                        kind::INVALID,
                        format!("entry '{}': kind is required", e.id),
                    ));
                }
                if matches!(op, Op::Create(_)) && exists {
                    return Err(err(
                        kind::ALREADY_EXISTS,
                        format!("entry already exists: {}", e.id),
                    ));
                }
                if matches!(op, Op::Update(_)) && !exists {
                    return Err(err(kind::NOT_FOUND, format!("entry not found: {}", e.id)));
                }
                touched.insert(&e.id, true);
            }
            Op::Delete(id) => {
                if !exists {
                    return Err(err(kind::NOT_FOUND, format!("entry not found: {id}")));
                }
                touched.insert(id, false);
            }
        }
    }
    Ok(())
}

/// Applies ops `check_ops` accepted.
fn apply_checked(state: &mut State, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Create(e) | Op::Update(e) => {
                state.insert(e.id.clone(), Rc::new(e.clone()));
            }
            Op::Delete(id) => {
                state.remove(id);
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Entries whose references `check_state` checked (each changed or dependent entry once),
    /// summed over calls: tests assert what a commit costs.
    pub(crate) static VISITED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Would `next` break an entry? Checks what Weft runs: Lua compiles, imports resolve to
/// libraries, services' references. `changed` are the ids the changeset touched: only those are
/// compiled again, and only they and the entries that reference one of them (`State::referrers`)
/// have their references checked, so a commit costs O(changed + dependents), not O(state). The
/// state `next` was made from is taken as valid (every committed version was checked this way).
pub fn check_state(next: &State, changed: &[&str]) -> Result<(), ErrorValue> {
    let bad = |id: &str, m: String| err(kind::INVALID, format!("entry '{id}': {m}"));
    for id in changed {
        let Some(e) = next.get(*id) else { continue };
        if e.kind == EntryKind::NsDependency {
            // Resolving a module dependency needs Wippy's module hub, which Weft does not have:
            // refuse the change the way a failed resolution is refused.
            let component = e
                .data
                .get("component")
                .map(|v| v.to_display())
                .unwrap_or_default();
            let version = e
                .data
                .get("version")
                .map(|v| v.to_display())
                .unwrap_or_default();
            return Err(err(
                kind::CONFLICT,
                format!("entry '{id}': dependency resolution failed: no module hub to resolve {component} {version}"),
            ));
        }
        if e.kind.is_lua() {
            let src = e
                .data
                .get("source")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad(id, "needs `source:` (Lua text)".into()))?;
            crate::lua::compile(src, &format!("@{id}")).map_err(|m| bad(id, m))?;
            for m in crate::lua::modules_of(e) {
                if !crate::lua::MODULES.contains(&m.as_str()) {
                    return Err(bad(id, format!("module '{m}' is not available in weft")));
                }
            }
        }
    }
    // References: the changed entries' own, and those of entries pointing at a changed id (a
    // library deleted or turned into another kind breaks its importers). In id order, so the
    // first error is the one a walk over the whole state would report first.
    let mut todo: BTreeSet<&str> = changed.iter().copied().collect();
    for id in changed {
        todo.extend(next.referrers(id).map(String::as_str));
    }
    for id in todo {
        let Some(e) = next.get(id) else { continue };
        #[cfg(test)]
        VISITED.with(|v| v.set(v.get() + 1));
        check_references(next, e)?;
    }
    Ok(())
}

/// Whether what `e` references resolves in `next` (imports → library.lua; a service's process →
/// process.lua, host → process.host) and a service's lifecycle parses.
fn check_references(next: &State, e: &Entry) -> Result<(), ErrorValue> {
    let bad = |id: &str, m: String| err(kind::INVALID, format!("entry '{id}': {m}"));
    if e.kind.is_lua() {
        for (alias, target) in crate::lua::imports_of(e).map_err(|m| bad(&e.id, m))? {
            match next.get(&target) {
                Some(t) if t.kind == EntryKind::LibraryLua => {}
                _ => {
                    return Err(bad(
                        &e.id,
                        format!("imports: {alias}: '{target}' is not a library.lua entry"),
                    ))
                }
            }
        }
    }
    if e.kind == EntryKind::ProcessService {
        let field = |f: &str| e.data.get(f).and_then(|v| v.as_str()).map(String::from);
        let p = field("process").ok_or_else(|| bad(&e.id, "needs `process:`".into()))?;
        match next.get(&p) {
            Some(t) if t.kind == EntryKind::ProcessLua => {}
            _ => {
                return Err(bad(
                    &e.id,
                    format!("process: '{p}' is not a process.lua entry"),
                ))
            }
        }
        let h = field("host").ok_or_else(|| bad(&e.id, "needs `host:`".into()))?;
        match next.get(&h) {
            Some(t) if t.kind == EntryKind::ProcessHost => {}
            _ => {
                return Err(bad(
                    &e.id,
                    format!("host: '{h}' is not a process.host entry"),
                ))
            }
        }
        crate::supervisor::Lifecycle::from_data(&e.data).map_err(|m| bad(&e.id, m))?;
    }
    Ok(())
}

/// Same content (what the registry stores; file/line are only provenance).
pub fn same_entry(a: &Entry, b: &Entry) -> bool {
    a.id == b.id && a.kind == b.kind && a.meta == b.meta && a.data == b.data
}

/// Ops turning `from` into `to` (deletes, then creates/updates, by id order).
pub fn delta(from: &State, to: &State) -> Vec<Op> {
    let mut ops = Vec::new();
    for id in from.keys() {
        if !to.contains_key(id) {
            ops.push(Op::Delete(id.clone()));
        }
    }
    for (id, e) in to {
        match from.get(id) {
            None => ops.push(Op::Create((**e).clone())),
            Some(old) if !same_entry(old, e) => ops.push(Op::Update((**e).clone())),
            _ => {}
        }
    }
    ops
}

impl Registry {
    /// A registry whose snapshot slots are `every` versions apart (tests use small ones).
    pub fn with_snapshot_every(every: u64) -> Registry {
        Registry {
            every: every.max(1),
            ..Registry::default()
        }
    }

    /// Version 1: the entries boot loaded.
    pub fn init<'a>(&mut self, entries: impl IntoIterator<Item = (&'a String, &'a Rc<Entry>)>) {
        let state: State = entries
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let ops = state.values().map(|e| Op::Create((**e).clone())).collect();
        let state = Rc::new(state);
        self.versions = vec![Stored::new(1, ops, Some(state.clone()))];
        self.last = state.clone();
        self.cur = state;
        self.head = None;
    }

    /// Whether version `id` gets its state kept.
    fn is_slot(&self, id: u64) -> bool {
        id == 1 || id.is_multiple_of(self.every)
    }

    pub fn current(&self) -> Option<Version> {
        let id = self.current_id();
        let ops = self.stored(id)?.ops.clone();
        Some(Version {
            id,
            ops,
            state: self.cur.clone(),
        })
    }

    /// The newest version's id (new versions are numbered after it, wherever the head is).
    pub fn last_id(&self) -> u64 {
        self.versions.last().map(|v| v.id).unwrap_or(0)
    }

    /// Makes `id` current (Wippy's `apply_version`: a pointer move, no new version).
    pub fn set_head(&mut self, id: u64) -> bool {
        let Some(state) = self.state_at(id) else {
            return false;
        };
        self.cur = state;
        self.head = (id != self.last_id()).then_some(id);
        true
    }

    /// Ops that take the newest version to `state`: what a new version stores, so the history
    /// stays a chain even when it was made from an older head.
    fn chain_ops(&self, ops: &[Op], state: &State) -> Vec<Op> {
        match self.head {
            Some(_) if !self.versions.is_empty() => delta(&self.last, state),
            _ => ops.to_vec(),
        }
    }

    pub fn current_id(&self) -> u64 {
        self.head.unwrap_or_else(|| self.last_id())
    }

    fn stored(&self, id: u64) -> Option<&Stored> {
        let first = self.versions.first()?.id;
        id.checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.versions.get(i))
    }

    pub fn has_version(&self, id: u64) -> bool {
        self.stored(id).is_some()
    }

    /// Version `id` with its state (rebuilt from the nearest snapshot when not held).
    pub fn version(&self, id: u64) -> Option<Version> {
        let ops = self.stored(id)?.ops.clone();
        Some(Version {
            id,
            ops,
            state: self.state_at(id)?,
        })
    }

    /// Every version's id and changeset, in order (states are not held: see `version`).
    pub fn versions(&self) -> &[Stored] {
        &self.versions
    }

    /// How many versions hold a full state (memory grows with this, not with history length).
    pub fn materialised(&self) -> usize {
        self.versions.iter().filter(|v| v.is_materialised()).count()
    }

    /// The state of version `id`: held when it is the newest, the current or a materialised
    /// slot; else the nearest materialised version below it plus the changesets after it.
    /// Slots crossed on the way are materialised for later calls.
    fn state_at(&self, id: u64) -> Option<Rc<State>> {
        let first = self.versions.first()?.id;
        let idx = usize::try_from(id.checked_sub(first)?).ok()?;
        let target = self.versions.get(idx)?;
        if id == self.last_id() {
            return Some(self.last.clone());
        }
        if id == self.current_id() {
            return Some(self.cur.clone());
        }
        if let Some(s) = target.snap.get() {
            return Some(s.clone());
        }
        // Version `first` is always materialised (init and restore set it).
        let base = (0..idx)
            .rev()
            .find(|&j| self.versions[j].is_materialised())?;
        let mut state: State = (**self.versions[base].snap.get()?).clone();
        for v in &self.versions[base + 1..=idx] {
            // Stored changesets were valid when committed; one that no longer applies would
            // mean a corrupt history, which restore already cut.
            apply_ops_mut(&mut state, &v.ops).ok()?;
            if self.is_slot(v.id) && v.id != id {
                let _ = v.snap.set(Rc::new(state.clone()));
            }
        }
        let state = Rc::new(state);
        if self.is_slot(id) {
            let _ = target.snap.set(state.clone());
        }
        Some(state)
    }

    fn current_state(&self) -> Rc<State> {
        self.cur.clone()
    }

    /// Validates `ops` against the current version; the state it would produce.
    pub fn prepare(&self, ops: &[Op]) -> Result<State, ErrorValue> {
        let next = apply_ops(&self.cur, ops)?;
        let changed: Vec<&str> = ops.iter().map(|o| o.id()).collect();
        check_state(&next, &changed)?;
        Ok(next)
    }

    /// Records a committed version (the world confirmed it).
    pub fn push(&mut self, ops: Vec<Op>, state: State) -> u64 {
        let id = self.last_id() + 1;
        let ops = self.chain_ops(&ops, &state);
        self.head = None;
        let state = Rc::new(state);
        let snap = self.is_slot(id).then(|| state.clone());
        self.versions.push(Stored::new(id, ops, snap));
        self.last = state.clone();
        self.cur = state;
        id
    }

    pub fn take_stale(&mut self) -> Vec<String> {
        std::mem::take(&mut self.stale)
    }

    fn owns(&self, pid: &Pid, tag: u64) -> bool {
        matches!(&self.inflight, Some((r, _, _)) if r.pid == *pid && r.tag == tag)
    }
}

// ---- storage encoding (pure; the world stores the bytes) ---------------------------------------

/// `[version, ops]` as world-command args: ops as a table array of `{op, entry | id}`.
pub fn ops_to_value(ops: &[Op]) -> Value {
    let mut t = Table::default();
    for op in ops {
        let item = match op {
            Op::Create(e) | Op::Update(e) => Table::default()
                .with("op", Value::from(op.kind_name()))
                .with("entry", entry_to_value(e)),
            Op::Delete(id) => Table::default()
                .with("op", Value::from(op.kind_name()))
                .with("id", Value::from(id.as_str())),
        };
        t.array.push(Value::table(item));
    }
    Value::table(t)
}

pub fn ops_from_value(v: &Value) -> Result<Vec<Op>, String> {
    let Value::Table(t) = v else {
        return Err("ops: expected a table".into());
    };
    let mut out = Vec::new();
    for item in &t.array {
        let Value::Table(it) = item else {
            return Err("op: expected a table".into());
        };
        let op = it.get("op").and_then(|v| v.as_str()).unwrap_or("");
        match op {
            "entry.create" | "entry.update" => {
                let e = entry_from_value(it.get("entry").unwrap_or(&Value::Nil))?;
                out.push(if op == "entry.create" {
                    Op::Create(e)
                } else {
                    Op::Update(e)
                });
            }
            "entry.delete" => out.push(Op::Delete(
                it.get("id")
                    .and_then(|v| v.as_str())
                    .ok_or("delete without id")?
                    .to_string(),
            )),
            other => return Err(format!("unknown op '{other}'")),
        }
    }
    Ok(out)
}

/// A full state as a value: an array of entries in id order (snapshot rows).
pub fn state_to_value(state: &State) -> Value {
    let t = Table {
        array: state.values().map(|e| entry_to_value(e)).collect(),
        map: vec![],
    };
    Value::table(t)
}

pub fn state_from_value(v: &Value) -> Result<State, String> {
    let Value::Table(t) = v else {
        return Err("state: expected a table".into());
    };
    let mut out = State::new();
    for item in &t.array {
        let e = entry_from_value(item)?;
        out.insert(e.id.clone(), Rc::new(e));
    }
    Ok(out)
}

pub fn entry_to_value(e: &Entry) -> Value {
    let mut t = Table::default()
        .with("id", Value::from(e.id.as_str()))
        .with("kind", Value::from(e.kind.as_str()))
        .with("meta", Value::table(e.meta.clone()))
        .with("data", Value::table(e.data.clone()))
        .with("file", Value::from(e.file.as_str()));
    if let Some(l) = e.line {
        t = t.with("line", Value::Int(l as i64));
    }
    if let Some(f) = &e.source_file {
        t = t.with("source_file", Value::from(f.as_str()));
    }
    Value::table(t)
}

pub fn entry_from_value(v: &Value) -> Result<Entry, String> {
    let Value::Table(t) = v else {
        return Err("entry: expected a table".into());
    };
    let s = |k: &str| t.get(k).and_then(|v| v.as_str()).map(String::from);
    let tab = |k: &str| match t.get(k) {
        Some(Value::Table(x)) => (**x).clone(),
        _ => Table::default(),
    };
    let id = s("id").ok_or("entry without id")?;
    let (namespace, name) = crate::entries::parse_id(&id);
    Ok(Entry {
        id,
        namespace,
        name,
        kind: s("kind").ok_or("entry without kind")?.into(),
        meta: tab("meta"),
        data: tab("data"),
        file: s("file").unwrap_or_default(),
        line: match t.get("line") {
            Some(Value::Int(n)) => Some(*n as usize),
            _ => None,
        },
        source_file: s("source_file"),
    })
}

/// Exact byte encoding of a `Value` (the shared codec, `value::codec`).
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    crate::value::codec::encode(v, out)
}

pub fn decode(b: &[u8]) -> Result<Value, String> {
    crate::value::codec::decode(b).map_err(|e| e.to_string())
}

// ---- the live node: applies, completions, effects ------------------------------------------------

/// Starts an apply for process `proc`: validated now when no write is in flight (errors return at
/// once), otherwise queued. Returns the tag the caller waits on; the completion carries the new
/// version id (`Value::Int`).
pub(crate) fn submit(core: &mut Core, proc: u64, ops: Vec<Op>) -> Result<u64, ErrorValue> {
    if ops.is_empty() {
        return Err(err(kind::INVALID, "empty changeset"));
    }
    // Nothing in flight means nothing queued: validate now (errors answer at once) and send
    // the state validated here, instead of validating again when it is dispatched.
    let prepared = match core.registry.inflight {
        None => Some(core.registry.prepare(&ops)?),
        Some(_) => None,
    };
    let pid = core
        .pid_of(proc)
        .cloned()
        .ok_or_else(|| err(kind::INTERNAL, "process not registered"))?;
    let tag = core
        .proc_mut(proc)
        .map(|p| p.tags.issue(ids::REGISTRY_COMMIT).tag)
        .ok_or_else(|| err(kind::INTERNAL, "process not registered"))?;
    let r = Request { pid, tag, ops };
    match prepared {
        Some(next) if core.registry.queue.is_empty() => send(core, r, next),
        _ => {
            core.registry.queue.push_back(r);
            dispatch(core);
        }
    }
    Ok(tag)
}

/// Asks the world to store the version `r` makes (`next`, validated); it is in flight until the
/// world answers.
fn send(core: &mut Core, r: Request, next: State) {
    let version = core.registry.last_id() + 1;
    let stored = core.registry.chain_ops(&r.ops, &next);
    core.emit(crate::node::Output::Execute {
        pid: r.pid.clone(),
        tag: r.tag,
        cmd: crate::world::WorldCommand::RegistryCommit {
            version,
            ops: ops_to_value(&stored),
        },
    });
    core.registry.inflight = Some((r, version, next));
}

/// Sends the next queued request to the world, failing (by completion) those no longer valid.
fn dispatch(core: &mut Core) {
    while core.registry.inflight.is_none() {
        let Some(r) = core.registry.queue.pop_front() else {
            return;
        };
        if !core.is_alive(r.pid.uniq) {
            continue; // its process died while waiting: nothing applied
        }
        match core.registry.prepare(&r.ops) {
            Err(e) => core.complete(&r.pid, r.tag, Err(e)),
            Ok(next) => send(core, r, next),
        }
    }
}

/// Hook in `Core::complete`: a completion of the registry write in flight commits the version
/// (whether or not the process still lives: the world has it) and says what the caller receives.
pub(crate) fn on_completion(
    core: &mut Core,
    pid: &Pid,
    tag: u64,
    result: Result<Value, ErrorValue>,
) -> Result<Value, ErrorValue> {
    if !core.registry.owns(pid, tag) {
        return result;
    }
    // One write in flight at a time: nothing changed the registry since `next` was validated.
    let (req, version, next) = core.registry.inflight.take().expect("owns checked");
    let out = match result {
        Err(e) => Err(e),
        Ok(_) => {
            let prev = core.registry.current_state();
            let id = core.registry.push(req.ops.clone(), next);
            debug_assert_eq!(id, version);
            go_live(core, &prev, &req.ops);
            Ok(Value::Int(id as i64))
        }
    };
    dispatch(core);
    out
}

/// `apply_version(target)`: moves the current version to `target` and makes it live at once.
/// The caller then persists the new head (`REGISTRY_HEAD`) and waits for the write, so a
/// process that ends right after still leaves it stored. Ok(false) = already there.
pub(crate) fn move_head(core: &mut Core, target: u64) -> Result<bool, ErrorValue> {
    if !core.registry.has_version(target) {
        return Err(err(
            kind::NOT_FOUND,
            format!("registry version {target} not found"),
        ));
    }
    if core.registry.inflight.is_some() || !core.registry.queue.is_empty() {
        let mut e = err(
            kind::UNAVAILABLE,
            "registry is applying a change; try again",
        );
        e.retryable = Some(true);
        return Err(e);
    }
    if target == core.registry.current_id() {
        return Ok(false);
    }
    switch_head(core, target);
    Ok(true)
}

/// Makes `head` current and carries the difference to the running node.
fn switch_head(core: &mut Core, head: u64) {
    let old = core.registry.current_state();
    core.registry.set_head(head);
    let new = core.registry.current_state();
    go_live(core, &old, &delta(&old, &new));
}

/// At boot, after `restore`: resumes at the stored head if it names a version we have.
pub(crate) fn restore_head(core: &mut Core, head: u64) {
    if head == core.registry.current_id() || !core.registry.has_version(head) {
        return;
    }
    switch_head(core, head);
}

/// Makes the current version the live view and carries its effects to the running node:
/// Lua caches dropped, hosts brought up or down, services started or stopped. `ops` name every
/// id that differs between `prev` (the version that was current) and the current version.
pub(crate) fn go_live(core: &mut Core, prev: &State, ops: &[Op]) {
    let next = core.registry.current_state();
    let changed: Vec<String> = ops.iter().map(|o| o.id().to_string()).collect();
    let befores: Vec<Option<Rc<Entry>>> = changed
        .iter()
        .map(|id| core.entries.get(id).cloned())
        .collect();
    if core.entries.len() == prev.len() {
        // The live view is `prev`: only the changed ids move (no copy of the whole state).
        for id in &changed {
            match next.get(id) {
                Some(e) => core.entries.insert(id.clone(), e.clone()),
                None => core.entries.remove(id),
            };
        }
    } else {
        core.entries = next.to_btree();
    }
    let mut touched_function = false;
    for (id, before) in changed.iter().zip(&befores) {
        let before = before.as_ref();
        let after = core.entries.get(id).cloned();
        touched_function |= [before.map(|e| &e.kind), after.as_ref().map(|e| &e.kind)]
            .contains(&Some(&EntryKind::FunctionLua));
        if before.is_some_and(|b| b.kind.is_lua()) {
            core.registry.stale.push(id.clone());
        }
        // System topic: registry / entry.{create,update,delete}, path = the entry id.
        let event = match (before.is_some(), after.is_some()) {
            (false, true) => Some("entry.create"),
            (true, true) => Some("entry.update"),
            (true, false) => Some("entry.delete"),
            (false, false) => None,
        };
        if let Some(kind) = event {
            let data = crate::value::Table::default()
                .with("id", crate::value::Value::from(id.as_str()))
                .with(
                    "kind",
                    crate::value::Value::from(
                        after
                            .as_ref()
                            .or(before)
                            .map(|e| e.kind.as_str())
                            .unwrap_or(""),
                    ),
                );
            core.publish("registry", kind, id, crate::value::Value::table(data));
        }
        if let Some(b) = before {
            match b.kind {
                EntryKind::ProcessService => stop_service(core, id),
                EntryKind::ProcessHost
                    if after
                        .as_ref()
                        .is_none_or(|a| a.kind != EntryKind::ProcessHost) =>
                {
                    core.hosts.remove(id);
                }
                _ => {}
            }
        }
        if let Some(a) = after {
            match a.kind {
                EntryKind::ProcessHost => {
                    let auto = crate::supervisor::Lifecycle::from_data(&a.data)
                        .map(|l| l.auto_start)
                        .unwrap_or(false);
                    if auto {
                        core.hosts.insert(id.clone(), a.kind.clone());
                    }
                }
                EntryKind::ProcessService => match core.add_service(&a) {
                    Ok(idx) => {
                        if core.services[idx].lifecycle.auto_start && !core.is_stopping() {
                            core.start_service(idx);
                        }
                    }
                    Err(m) => core.log(
                        Level::Error,
                        "registry: service not started",
                        vec![("service".into(), id.clone()), ("error".into(), m)],
                    ),
                },
                _ => {}
            }
        }
    }
    // Function entries are the collector's methods: peers learn a changed namespace set. The
    // refresh walks every entry, so only a change that touched a function.lua entry runs it.
    if touched_function {
        core.dispatch_refresh();
    }
}

/// Stops the running instance of a service removed (or replaced) by a registry change.
fn stop_service(core: &mut Core, id: &str) {
    let Some(idx) = core.services.iter().rposition(|s| s.id == id) else {
        return;
    };
    if let Some(t) = core.services[idx].timer.take() {
        core.timers.cancel(t);
    }
    // Rename so a later create of the same id gets its own slot and lookups skip this one.
    core.services[idx].id = format!("{id}#removed");
    if let Some(p) = core.services[idx].proc {
        let mut e = err(kind::CANCELED, "service removed from the registry");
        e.retryable = Some(false);
        core.kill(p, e);
    }
}

// ---- boot with stored history -------------------------------------------------------------------

/// What `restore` decided, for the driver.
#[derive(Debug, PartialEq)]
pub enum Restored {
    /// No stored history: version 1 (the files) must be stored.
    Fresh,
    /// The files match the stored version 1: every stored version is back, the live state is
    /// the latest one.
    Resumed,
    /// The files changed since the history began: the stored versions are kept (listable,
    /// rollback targets) and a new version equal to the files was appended; it must be stored.
    Rebased,
}

/// Rebuilds a registry from a stored history `(version, ops)` in version order (stored version 1
/// holds creates of every entry) and, when the store has one, the latest stored snapshot
/// `(version, state)`. Only the changesets after the snapshot are replayed; the earlier ones are
/// kept as deltas (listable, rebuilt on demand). The history is cut at the first gap or, after
/// the snapshot, at the first changeset that does not apply. A snapshot beyond the contiguous
/// history is ignored.
pub fn replay(
    mut stored: Vec<(u64, Vec<Op>)>,
    snapshot: Option<(u64, State)>,
    every: u64,
) -> Registry {
    let mut r = Registry::with_snapshot_every(every);
    let contiguous = stored
        .iter()
        .enumerate()
        .take_while(|(i, (id, _))| *id == *i as u64 + 1)
        .count();
    stored.truncate(contiguous);
    let mut stored = stored.into_iter();
    let Some((_, v1_ops)) = stored.next() else {
        return r;
    };
    let mut state = State::new();
    if apply_ops_mut(&mut state, &v1_ops).is_err() {
        return r;
    }
    let mut state = Rc::new(state);
    r.versions.push(Stored::new(1, v1_ops, Some(state.clone())));
    let snapshot = snapshot.filter(|(id, _)| *id > 1 && *id <= contiguous as u64);
    if let Some((sid, snap)) = snapshot {
        // Versions 2..=sid are trusted: the store wrote the snapshot after replaying them.
        state = Rc::new(snap);
        for (id, ops) in stored.by_ref().take(sid as usize - 1) {
            let at = (id == sid).then(|| state.clone());
            r.versions.push(Stored::new(id, ops, at));
        }
    }
    let mut state = Rc::unwrap_or_clone(state);
    for (id, ops) in stored {
        if apply_ops_mut(&mut state, &ops).is_err() {
            break;
        }
        let at = r.is_slot(id).then(|| Rc::new(state.clone()));
        r.versions.push(Stored::new(id, ops, at));
    }
    let state = Rc::new(state);
    r.last = state.clone();
    r.cur = state;
    r
}

/// Combines the files' entries (already in `core.entries`, version 1 after boot) with the stored
/// history (see `replay`).
///
/// Decision: the files are the source of truth for version 1. If they still equal stored
/// version 1, the stored history is replayed and the node resumes at its latest version (dynamic
/// changes survive restarts). If the files were edited, the files win: the history is kept and a
/// new version (= the files) is appended. A stored history that does not replay (corrupt, or a
/// gap) is cut at the first bad version.
pub(crate) fn restore(
    core: &mut Core,
    stored: Vec<(u64, Vec<Op>)>,
    snapshot: Option<(u64, State)>,
) -> Restored {
    let replay = replay(stored, snapshot, core.registry.every);
    let Some(v1) = replay.versions.first().and_then(|v| v.snap.get()).cloned() else {
        return Restored::Fresh;
    };
    let files = &core.entries;
    let same = v1.len() == files.len()
        && v1
            .iter()
            .zip(files.iter())
            .all(|((a, ea), (b, eb))| a == b && same_entry(ea, eb));
    let last = replay.last.clone();
    let boot_state = core.registry.current_state();
    let r = &mut core.registry;
    r.versions = replay.versions;
    r.last = last.clone();
    r.cur = last.clone();
    r.head = None;
    if same {
        let ops = delta(&boot_state, &last);
        if !ops.is_empty() {
            go_live(core, &boot_state, &ops);
        }
        Restored::Resumed
    } else {
        let files = State::from(&core.entries);
        let ops = delta(&last, &files);
        let ops = if ops.is_empty() {
            files.values().map(|e| Op::Create((**e).clone())).collect()
        } else {
            ops
        };
        core.registry.push(ops, files);
        Restored::Rebased
    }
}

// ---- find ---------------------------------------------------------------------------------------

/// One criterion of a `find` filter.
#[derive(Clone, Debug)]
pub enum Criterion {
    Field(&'static str, String),
    MetaEq(String, Value),
    MetaRegex(String, regex::Regex),
    MetaContains(String, String),
    MetaPrefix(String, String),
    MetaSuffix(String, String),
}

/// Builds criteria from `(key, value)` pairs with Wippy's rules; keys without a leading `.` or a
/// `meta.` prefix are ignored (returned in the second list so the caller can warn).
pub fn parse_filter(
    pairs: &[(String, Value)],
) -> Result<(Vec<Criterion>, Vec<String>), ErrorValue> {
    let mut out = Vec::new();
    let mut ignored = Vec::new();
    for (k, v) in pairs {
        let s = || v.as_str().map(String::from);
        let field = match k.as_str() {
            ".kind" => Some("kind"),
            ".ns" => Some("ns"),
            ".name" => Some("name"),
            ".id" => Some("id"),
            _ => None,
        };
        if let Some(f) = field {
            let Some(p) = s() else {
                return Err(err(kind::INVALID, format!("filter {k}: expected a string")));
            };
            out.push(Criterion::Field(f, p));
            continue;
        }
        let (op, rest) = match k.chars().next() {
            Some(c @ ('~' | '*' | '^' | '$')) => (Some(c), &k[1..]),
            _ => (None, k.as_str()),
        };
        let Some(f) = rest.strip_prefix("meta.").filter(|f| !f.is_empty()) else {
            ignored.push(k.clone());
            continue;
        };
        let f = f.to_string();
        let need = |what: &str| {
            s().ok_or_else(|| err(kind::INVALID, format!("filter {k}: expected a {what}")))
        };
        out.push(match op {
            None => Criterion::MetaEq(f, v.clone()),
            Some('~') => {
                let re = regex::Regex::new(&need("pattern string")?)
                    .map_err(|e| err(kind::INVALID, format!("filter {k}: {e}")))?;
                Criterion::MetaRegex(f, re)
            }
            Some('*') => Criterion::MetaContains(f, need("string")?),
            Some('^') => Criterion::MetaPrefix(f, need("string")?),
            _ => Criterion::MetaSuffix(f, need("string")?),
        });
    }
    Ok((out, ignored))
}

/// Exact, or one `*` glob (`pre*`, `*suf`, `pre*suf`).
pub fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((pre, suf)) => {
            s.len() >= pre.len() + suf.len() && s.starts_with(pre) && s.ends_with(suf)
        }
    }
}

fn num_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        _ => a == b,
    }
}

fn strings_of(v: &Value) -> Vec<&str> {
    match v {
        Value::Str(_) => v.as_str().into_iter().collect(),
        Value::Table(t) => t.array.iter().filter_map(|x| x.as_str()).collect(),
        _ => Vec::new(),
    }
}

pub fn matches(e: &Entry, criteria: &[Criterion]) -> bool {
    criteria.iter().all(|c| match c {
        Criterion::Field(f, p) => {
            let v = match *f {
                "kind" => e.kind.as_str(),
                "ns" => e.namespace.as_str(),
                "name" => e.name.as_str(),
                _ => e.id.as_str(),
            };
            glob(p, v)
        }
        Criterion::MetaEq(f, want) => {
            let Some(have) = e.meta.get(f) else {
                return false;
            };
            match want {
                Value::Table(w) if w.map.is_empty() && !w.array.is_empty() => {
                    let have = strings_of(have);
                    w.array
                        .iter()
                        .all(|x| x.as_str().is_some_and(|x| have.contains(&x)))
                }
                _ => num_eq(have, want),
            }
        }
        Criterion::MetaRegex(f, re) => e
            .meta
            .get(f)
            .and_then(|v| v.as_str())
            .is_some_and(|s| re.is_match(s)),
        Criterion::MetaContains(f, sub) => e
            .meta
            .get(f)
            .is_some_and(|v| strings_of(v).iter().any(|s| s.contains(sub.as_str()))),
        Criterion::MetaPrefix(f, p) => e
            .meta
            .get(f)
            .and_then(|v| v.as_str())
            .is_some_and(|s| s.starts_with(p.as_str())),
        Criterion::MetaSuffix(f, p) => e
            .meta
            .get(f)
            .and_then(|v| v.as_str())
            .is_some_and(|s| s.ends_with(p.as_str())),
    })
}

#[cfg(test)]
mod tests;
