//! The env dispatcher (ids 210–219): variables from the node's env storages; a write to a
//! `.env` file storage is a world command answered when the file is written.

use super::mismatch;
use crate::command::{ids, Command, CommandRegistry, RegistryError, Reply};
use crate::node::Core;
use crate::value::{Table, Value};
use crate::world::WorldCommand;

pub(super) fn register(r: &mut CommandRegistry) -> Result<(), RegistryError> {
    r.register(ids::ENV_GET, "env", "get", env)?;
    r.register(ids::ENV_SET, "env", "set", env)?;
    r.register(ids::ENV_ALL, "env", "get_all", env)?;
    Ok(())
}

fn env(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    match cmd {
        Command::EnvGet { key } => Reply::Done(core.env.get(&key).map(Value::from)),
        Command::EnvSet { key, value } => match core.env.set(&key, &value) {
            Ok(None) => Reply::ok(Value::Bool(true)),
            Ok(Some(w)) => core.world(
                caller,
                WorldCommand::EnvFileSet {
                    path: w.path,
                    key: w.key,
                    value: w.value,
                    auto_create: w.auto_create,
                    file_mode: (w.file_mode & 0o7777) as u32,
                    dir_mode: (w.dir_mode & 0o7777) as u32,
                },
            ),
            Err(e) => Reply::err(e),
        },
        Command::EnvAll => {
            let mut t = Table::default();
            for (k, v) in core.env.all() {
                t = t.with(&k, Value::from(v));
            }
            Reply::ok(Value::table(t))
        }
        other => mismatch(&other),
    }
}
