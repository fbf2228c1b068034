//! The registry dispatcher (ids 200–209): reads of entries and versions, changesets and
//! moving the current version. Writes answer when the world has made them durable.

use super::mismatch;
use crate::command::{ids, Command, CommandRegistry, RegistryError, RegistryQuery, Reply};
use crate::node::Core;
use crate::registry::{self as reg, State};
use crate::value::{kind, ErrorValue, Value};
use std::rc::Rc;

pub(super) fn register(r: &mut CommandRegistry) -> Result<(), RegistryError> {
    r.register(ids::REGISTRY_READ, "registry", "read", read)?;
    r.register(ids::REGISTRY_APPLY, "registry", "apply", write)?;
    r.register(ids::REGISTRY_MOVE, "registry", "apply_version", write)?;
    Ok(())
}

fn read(core: &mut Core, _caller: u64, cmd: Command) -> Reply {
    let Command::RegistryRead(q) = cmd else {
        return mismatch(&cmd);
    };
    let version = core.registry.current_id();
    match q {
        RegistryQuery::Entry(id) => match core.entries.get(&id) {
            Some(e) => Reply::State {
                version,
                state: Rc::new(State::from([(id, e.clone())])),
            },
            None => Reply::err(ErrorValue::new(
                kind::NOT_FOUND,
                format!("entry not found: {id}"),
            )),
        },
        RegistryQuery::Live => Reply::State {
            version,
            state: Rc::new(State::from(&core.entries)),
        },
        RegistryQuery::Current => match core.registry.current() {
            Some(v) => Reply::State {
                version: v.id,
                state: v.state.clone(),
            },
            None => Reply::err(ErrorValue::new(kind::UNAVAILABLE, "registry not loaded")),
        },
        RegistryQuery::Version(n) => match core.registry.version(n) {
            Some(v) => Reply::State {
                version: v.id,
                state: v.state.clone(),
            },
            None => Reply::err(ErrorValue::new(
                kind::NOT_FOUND,
                format!("version not found: {n}"),
            )),
        },
        RegistryQuery::Versions => {
            Reply::Versions(core.registry.versions().iter().map(|v| v.id).collect())
        }
        RegistryQuery::CurrentId => Reply::ok(Value::Int(version as i64)),
    }
}

/// An entry written through the registry may grant only modules its writer holds: a process
/// granted `registry` must not mint a `process.lua` with `modules: [sql]` and spawn it, nor put
/// its own source into an entry that holds more than it does (issue 11). What an entry grants
/// is its `modules:` and those of the libraries it imports, transitively; an update also
/// counts what the entry it replaces granted.
fn check_grants(core: &Core, caller: u64, ops: &[reg::Op]) -> Result<(), ErrorValue> {
    let Some(info) = core.proc(caller) else {
        return Ok(()); // submit answers for a caller the node does not know
    };
    let writer = info.entry.to_string();
    let held = core
        .entries
        .get(&writer)
        .map(|e| crate::lua::modules_of(e))
        .unwrap_or_default();
    let missing = |granted: Vec<String>| -> Option<String> {
        let m: Vec<String> = granted.into_iter().filter(|m| !held.contains(m)).collect();
        (!m.is_empty()).then(|| {
            format!(
                "module{} {}",
                if m.len() == 1 { "" } else { "s" },
                m.join(", ")
            )
        })
    };
    let deny = |m: String| {
        ErrorValue::new(
            kind::PERMISSION_DENIED,
            format!(
                "{m} that the writing process's entry '{writer}' does not hold: an entry \
                 written through the registry may only grant modules its writer holds"
            ),
        )
    };
    for op in ops {
        let (reg::Op::Create(e) | reg::Op::Update(e)) = op else {
            continue;
        };
        if let Some(m) = missing(grants(core, ops, e)) {
            return Err(deny(format!("entry '{}' would grant {m}", e.id)));
        }
        if let (reg::Op::Update(_), Some(old)) = (op, core.entries.get(&e.id)) {
            if let Some(m) = missing(grants(core, ops, old)) {
                return Err(deny(format!("entry '{}' holds {m}", e.id)));
            }
        }
    }
    Ok(())
}

/// The modules `e` grants: its own and those of the libraries it imports, transitively (found
/// in the changeset first, then among the live entries).
fn grants(core: &Core, ops: &[reg::Op], e: &crate::entries::Entry) -> Vec<String> {
    let find = |id: &str| {
        ops.iter()
            .find_map(|o| match o {
                reg::Op::Create(x) | reg::Op::Update(x) if x.id == id => Some(Rc::new(x.clone())),
                _ => None,
            })
            .or_else(|| core.entries.get(id).cloned())
    };
    let mut granted = crate::lua::modules_of(e);
    let mut todo: Vec<String> = crate::lua::imports_of(e)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    let mut seen: Vec<String> = Vec::new();
    while let Some(id) = todo.pop() {
        if seen.contains(&id) {
            continue;
        }
        if let Some(lib) = find(&id) {
            granted.extend(crate::lua::modules_of(&lib));
            todo.extend(
                crate::lua::imports_of(&lib)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(_, i)| i),
            );
        }
        seen.push(id);
    }
    granted.sort();
    granted.dedup();
    granted
}

fn write(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    match cmd {
        Command::RegistryApply { ops } => {
            match check_grants(core, caller, &ops).and_then(|()| reg::submit(core, caller, ops)) {
                Ok(tag) => Reply::Pending(tag),
                Err(e) => Reply::err(e),
            }
        }
        Command::RegistryMove { version } => {
            if !core.registry.has_version(version) {
                return Reply::err(ErrorValue::new(
                    kind::NOT_FOUND,
                    format!("version not found: {version}"),
                ));
            }
            match reg::move_head(core, version) {
                Ok(false) => Reply::ok(Value::Bool(true)),
                // Answered once the world has stored the new head.
                Ok(true) => {
                    core.world(caller, crate::world::WorldCommand::RegistryHead { version })
                }
                Err(e) => Reply::err(e),
            }
        }
        other => mismatch(&other),
    }
}
