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

use crate::command::ids;
use crate::entries::{Entry, EntryKind};
use crate::node::{Core, Level};
use crate::pid::Pid;
use crate::value::{kind, ErrorValue, Table, Value};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

pub type State = BTreeMap<String, Rc<Entry>>;

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

#[derive(Clone, Debug)]
pub struct Version {
    pub id: u64,
    pub ops: Rc<Vec<Op>>,
    pub state: Rc<State>,
}

/// An apply waiting for its write (or for its turn).
#[derive(Clone, Debug)]
struct Request {
    pid: Pid,
    tag: u64,
    ops: Vec<Op>,
}

#[derive(Debug, Default)]
pub struct Registry {
    versions: Vec<Version>,
    inflight: Option<(Request, u64, State)>,
    queue: VecDeque<Request>,
    /// Lua entries whose compiled code is out of date (the Lua runtime drops them).
    stale: Vec<String>,
    /// The current version when `apply_version` moved away from the newest one; None = newest.
    head: Option<u64>,
}

fn err(k: crate::value::ErrorKind, m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(k, m)
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
pub fn apply_ops(state: &State, ops: &[Op]) -> Result<State, ErrorValue> {
    if ops.is_empty() {
        return Err(err(kind::INVALID, "empty changeset"));
    }
    let mut next = state.clone();
    for op in ops {
        check_id(op.id())?;
        match op {
            Op::Create(e) | Op::Update(e) => {
                if e.kind.as_str().is_empty() {
                    return Err(err(
                        kind::INVALID,
                        format!("entry '{}': kind is required", e.id),
                    ));
                }
                let exists = next.contains_key(&e.id);
                if matches!(op, Op::Create(_)) && exists {
                    return Err(err(
                        kind::ALREADY_EXISTS,
                        format!("entry already exists: {}", e.id),
                    ));
                }
                if matches!(op, Op::Update(_)) && !exists {
                    return Err(err(kind::NOT_FOUND, format!("entry not found: {}", e.id)));
                }
                next.insert(e.id.clone(), Rc::new(e.clone()));
            }
            Op::Delete(id) => {
                if next.remove(id).is_none() {
                    return Err(err(kind::NOT_FOUND, format!("entry not found: {id}")));
                }
            }
        }
    }
    Ok(next)
}

/// Would `next` break an entry? Checks what Weft runs: Lua compiles, services' references.
/// `changed` are the ids the changeset touched (only those are compiled again).
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
    for e in next.values() {
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
    /// Version 1: the entries boot loaded.
    pub fn init(&mut self, entries: &State) {
        let ops = entries
            .values()
            .map(|e| Op::Create((**e).clone()))
            .collect();
        self.versions = vec![Version {
            id: 1,
            ops: Rc::new(ops),
            state: Rc::new(entries.clone()),
        }];
    }

    pub fn current(&self) -> Option<&Version> {
        match self.head {
            Some(h) => self.version(h),
            None => self.versions.last(),
        }
    }

    /// The newest version's id (new versions are numbered after it, wherever the head is).
    pub fn last_id(&self) -> u64 {
        self.versions.last().map(|v| v.id).unwrap_or(0)
    }

    /// Makes `id` current (Wippy's `apply_version`: a pointer move, no new version).
    pub fn set_head(&mut self, id: u64) -> bool {
        if self.version(id).is_none() {
            return false;
        }
        self.head = (id != self.last_id()).then_some(id);
        true
    }

    /// Ops that take the newest version to `state`: what a new version stores, so the history
    /// stays a chain even when it was made from an older head.
    fn chain_ops(&self, ops: &[Op], state: &State) -> Vec<Op> {
        match (self.head, self.versions.last()) {
            (Some(_), Some(last)) => delta(&last.state, state),
            _ => ops.to_vec(),
        }
    }

    pub fn current_id(&self) -> u64 {
        self.current().map(|v| v.id).unwrap_or(0)
    }

    pub fn version(&self, id: u64) -> Option<&Version> {
        let first = self.versions.first()?.id;
        id.checked_sub(first)
            .and_then(|i| self.versions.get(i as usize))
    }

    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    fn current_state(&self) -> Rc<State> {
        self.current().map(|v| v.state.clone()).unwrap_or_default()
    }

    /// Validates `ops` against the current version; the state it would produce.
    pub fn prepare(&self, ops: &[Op]) -> Result<State, ErrorValue> {
        let cur = self.current_state();
        let next = apply_ops(&cur, ops)?;
        let changed: Vec<&str> = ops.iter().map(|o| o.id()).collect();
        check_state(&next, &changed)?;
        Ok(next)
    }

    /// Records a committed version (the world confirmed it).
    pub fn push(&mut self, ops: Vec<Op>, state: State) -> u64 {
        let id = self.last_id() + 1;
        let ops = self.chain_ops(&ops, &state);
        self.head = None;
        self.versions.push(Version {
            id,
            ops: Rc::new(ops),
            state: Rc::new(state),
        });
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
    if core.registry.inflight.is_none() {
        core.registry.prepare(&ops)?;
    }
    let pid = core
        .pid_of(proc)
        .cloned()
        .ok_or_else(|| err(kind::INTERNAL, "process not registered"))?;
    let tag = core
        .proc_mut(proc)
        .map(|p| p.tags.issue(ids::REGISTRY_COMMIT).tag)
        .ok_or_else(|| err(kind::INTERNAL, "process not registered"))?;
    core.registry.queue.push_back(Request { pid, tag, ops });
    dispatch(core);
    Ok(tag)
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
            Ok(next) => {
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
            let id = core.registry.push(req.ops.clone(), next);
            debug_assert_eq!(id, version);
            go_live(core, &req.ops);
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
    if core.registry.version(target).is_none() {
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
    go_live(core, &delta(&old, &new));
}

/// At boot, after `restore`: resumes at the stored head if it names a version we have.
pub(crate) fn restore_head(core: &mut Core, head: u64) {
    if head == core.registry.current_id() || core.registry.version(head).is_none() {
        return;
    }
    switch_head(core, head);
}

/// Makes the current version the live view and carries its effects to the running node:
/// Lua caches dropped, hosts brought up or down, services started or stopped.
pub(crate) fn go_live(core: &mut Core, ops: &[Op]) {
    let old = std::mem::take(&mut core.entries);
    let next = core.registry.current_state();
    core.entries = (*next).clone();
    let changed: Vec<String> = ops.iter().map(|o| o.id().to_string()).collect();
    for id in &changed {
        let before = old.get(id);
        let after = core.entries.get(id).cloned();
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

/// Combines the files' entries (already in `core.entries`, version 1 after boot) with the stored
/// history `(version, ops)` in version order, stored version 1 holding creates of every entry.
///
/// Decision: the files are the source of truth for version 1. If they still equal stored
/// version 1, the stored history is replayed and the node resumes at its latest version (dynamic
/// changes survive restarts). If the files were edited, the files win: the history is kept and a
/// new version (= the files) is appended. A stored history that does not replay (corrupt, or a
/// gap) is cut at the first bad version.
pub(crate) fn restore(core: &mut Core, stored: Vec<(u64, Vec<Op>)>) -> Restored {
    let files = core.entries.clone();
    let mut replay = Registry::default();
    for (id, ops) in stored {
        if id != replay.current_id() + 1 {
            break;
        }
        let base = replay.current_state();
        let Ok(next) = apply_ops(&base, &ops) else {
            break;
        };
        replay.push(ops, next);
    }
    if replay.versions.is_empty() {
        return Restored::Fresh;
    }
    let v1 = replay.versions[0].state.clone();
    let same = v1.len() == files.len()
        && v1
            .iter()
            .zip(files.iter())
            .all(|((a, ea), (b, eb))| a == b && same_entry(ea, eb));
    let last = replay.current_state();
    let boot_state = core.registry.current_state();
    core.registry.versions = replay.versions;
    if same {
        let ops = delta(&boot_state, &last);
        if !ops.is_empty() {
            go_live(core, &ops);
        }
        Restored::Resumed
    } else {
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
