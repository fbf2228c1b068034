//! Command handlers, one file per range of the seed's table. Each module's dispatcher registers
//! its ids at boot (`register`); a second claim of an id fails boot naming both modules.
//! Handlers run on the node (`Core`) and never touch Lua: they see only typed commands.

mod clock;
mod env;
mod events;
mod function;
mod node;
mod process;
mod registry;
mod world;

use crate::command::{CommandRegistry, RegistryError};

/// Registers every built-in dispatcher.
pub(crate) fn register_all(r: &mut CommandRegistry) -> Result<(), RegistryError> {
    process::register(r)?;
    clock::register(r)?;
    events::register(r)?;
    function::register(r)?;
    registry::register(r)?;
    env::register(r)?;
    node::register(r)?;
    world::register(r)?;
    Ok(())
}

/// Handler arms for a command of another kind than the id it was registered for: a bug in a
/// dispatcher, reported as an internal error rather than a panic.
fn mismatch(cmd: &crate::command::Command) -> crate::command::Reply {
    crate::command::Reply::err(crate::value::ErrorValue::new(
        crate::value::kind::INTERNAL,
        format!("command '{}' reached the wrong handler", cmd.name()),
    ))
}
