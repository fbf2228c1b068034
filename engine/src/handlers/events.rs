//! The event dispatcher (ids 90–99): subscriptions to the node's event bus and publishing.

use super::mismatch;
use crate::command::{ids, Command, CommandRegistry, RegistryError, Reply};
use crate::node::Core;
use crate::value::Value;

pub(super) fn register(r: &mut CommandRegistry) -> Result<(), RegistryError> {
    r.register(ids::EVENT_SUBSCRIBE, "events", "subscribe", events)?;
    r.register(ids::EVENT_SEND, "events", "send", events)?;
    r.register(ids::EVENT_UNSUBSCRIBE, "events", "unsubscribe", events)?;
    Ok(())
}

fn events(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    Reply::ok(match cmd {
        Command::Subscribe { system, kind } => {
            Value::Int(core.bus.subscribe(caller, &system, kind.as_deref()) as i64)
        }
        Command::Unsubscribe { sub } => {
            core.bus.unsubscribe(sub);
            Value::Bool(true)
        }
        Command::Publish {
            system,
            kind,
            path,
            data,
        } => {
            core.publish(&system, &kind, &path, data);
            Value::Bool(true)
        }
        other => return mismatch(&other),
    })
}
