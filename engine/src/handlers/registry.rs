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
            state: Rc::new(core.entries.clone()),
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

fn write(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    match cmd {
        Command::RegistryApply { ops } => match reg::submit(core, caller, ops) {
            Ok(tag) => Reply::Pending(tag),
            Err(e) => Reply::err(e),
        },
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
