//! The world dispatcher: commands only the driver can carry out (terminal reads, SQL, stores,
//! registry and env writes). Each becomes `Output::Execute` with a fresh tag of the caller; the
//! driver's `Input::Completed` answers it.

use super::mismatch;
use crate::command::{ids, Command, CommandId, CommandRegistry, RegistryError, Reply};
use crate::node::Core;

pub(super) fn register(r: &mut CommandRegistry) -> Result<(), RegistryError> {
    let table: [(CommandId, &'static str, &'static str); 19] = [
        (ids::TERMINAL_READ_LINE, "io", "readline"),
        (ids::TERMINAL_READ, "io", "read"),
        (ids::SQL_QUERY, "sql", "query"),
        (ids::SQL_EXECUTE, "sql", "execute"),
        (ids::SQL_PREPARE, "sql", "prepare"),
        (ids::SQL_BEGIN, "sql", "begin"),
        (ids::SQL_TX, "sql", "transaction"),
        (ids::SQL_RELEASE_OWNER, "sql", "release_owner"),
        (ids::STORE_GET, "store", "get"),
        (ids::STORE_SET, "store", "set"),
        (ids::STORE_HAS, "store", "has"),
        (ids::STORE_DELETE, "store", "delete"),
        (ids::STORE_ENTRY, "store", "entry"),
        (ids::STORE_PUT, "store", "put"),
        (ids::STORE_LIST, "store", "list"),
        (ids::STORE_INFO, "store", "info"),
        (ids::REGISTRY_COMMIT, "registry", "commit"),
        (ids::REGISTRY_HEAD, "registry", "head"),
        (ids::ENV_FILE_SET, "env", "file.set"),
    ];
    for (id, module, name) in table {
        r.register(id, module, name, world)?;
    }
    Ok(())
}

fn world(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    let Command::World { cmd, detached } = cmd else {
        return mismatch(&cmd);
    };
    if detached {
        core.execute_detached(caller, cmd);
        return Reply::ok(crate::value::Value::Nil);
    }
    core.world(caller, cmd)
}
