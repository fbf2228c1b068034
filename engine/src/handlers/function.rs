//! The function dispatcher (ids 140–149) and exec (150–159): calls run as short-lived processes
//! whose end completes the caller's tag, so every call answers `Reply::Pending`.

use super::mismatch;
use crate::command::{ids, Command, CommandRegistry, RegistryError, Reply};
use crate::node::Core;
use crate::value::{kind, ErrorValue, Table, Value};

pub(super) fn register(r: &mut CommandRegistry) -> Result<(), RegistryError> {
    r.register(ids::FUNCTION_CALL, "funcs", "call", call)?;
    r.register(ids::FUNCTION_CANCEL, "funcs", "cancel", cancel)?;
    r.register(ids::FUNCTION_CONTEXT, "ctx", "get", context)?;
    r.register(ids::EXEC_PROCESS, "process", "exec", call)?;
    Ok(())
}

fn call(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    let r = match cmd {
        Command::Call {
            target,
            args,
            context,
            options,
        } => {
            let ctx = core.child_context(caller, context);
            core.call(caller, &target, args, ctx, options)
        }
        Command::Exec { target, host, args } => core.exec(caller, &target, &host, args, None),
        other => return mismatch(&other),
    };
    match r {
        Ok(tag) => Reply::Pending(tag),
        Err(e) => Reply::err(e),
    }
}

fn cancel(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    let Command::CancelCall { tag } = cmd else {
        return mismatch(&cmd);
    };
    Reply::ok(Value::Bool(core.cancel_call(caller, tag)))
}

fn context(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    let Command::Context = cmd else {
        return mismatch(&cmd);
    };
    let Some(p) = core.proc(caller) else {
        return Reply::err(ErrorValue::new(kind::INTERNAL, "process gone"));
    };
    let mut t = Table::default();
    for (k, v) in p.context.iter() {
        t = t.with(k, v.clone());
    }
    Reply::ok(Value::table(t))
}
