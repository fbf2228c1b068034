//! The env dispatcher (ids 210–219): variables from the node's env storages; a write to a
//! `.env` file storage is a world command answered when the file is written.

use super::mismatch;
use crate::command::{ids, Command, CommandRegistry, RegistryError, Reply};
use crate::node::Core;
use crate::value::{Table, Value};

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
                ids::ENV_FILE_SET,
                vec![
                    Value::from(w.path),
                    Value::from(w.key),
                    Value::from(w.value),
                    Value::Bool(w.auto_create),
                    Value::Int(w.file_mode),
                    Value::Int(w.dir_mode),
                ],
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
