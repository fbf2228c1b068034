//! The node dispatcher (ids 240–255) and terminal writes (52): log records and output for the
//! driver.

use super::mismatch;
use crate::command::{ids, Command, CommandRegistry, RegistryError, Reply};
use crate::node::{Core, Output};
use crate::value::Value;

pub(super) fn register(r: &mut CommandRegistry) -> Result<(), RegistryError> {
    r.register(ids::NODE_LOG, "logger", "log", output)?;
    r.register(ids::TERMINAL_WRITE, "io", "write", output)?;
    Ok(())
}

fn output(core: &mut Core, _caller: u64, cmd: Command) -> Reply {
    match cmd {
        Command::Log {
            level,
            message,
            fields,
        } => core.log(level, message, fields),
        Command::Write {
            stderr: false,
            bytes,
        } => core.emit(Output::Stdout(bytes)),
        Command::Write {
            stderr: true,
            bytes,
        } => core.emit(Output::Stderr(bytes)),
        other => return mismatch(&other),
    }
    Reply::ok(Value::Nil)
}
