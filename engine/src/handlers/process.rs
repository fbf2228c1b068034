//! The process dispatcher (ids 1–9): send, spawn, terminate, cancel, monitor, link, names,
//! options and the process's own random generator.

use super::mismatch;
use crate::command::{ids, Command, CommandRegistry, NameOp, RegistryError, Reply};
use crate::node::{Core, SpawnOptions};
use crate::value::{kind, ErrorValue, Table, Value};

pub(super) fn register(r: &mut CommandRegistry) -> Result<(), RegistryError> {
    r.register(ids::PROCESS_SEND, "process", "send", send)?;
    r.register(ids::PROCESS_SPAWN, "process", "spawn", spawn)?;
    r.register(ids::PROCESS_TERMINATE, "process", "terminate", control)?;
    r.register(ids::PROCESS_CANCEL, "process", "cancel", control)?;
    r.register(ids::PROCESS_MONITOR, "process", "monitor", control)?;
    r.register(ids::PROCESS_LINK, "process", "link", control)?;
    r.register(ids::PROCESS_REGISTRY, "process", "registry", names)?;
    r.register(ids::PROCESS_OPTIONS, "process", "options", options)?;
    r.register(ids::PROCESS_RANDOM, "process", "random", random)?;
    Ok(())
}

fn done(r: Result<(), ErrorValue>) -> Reply {
    Reply::Done(r.map(|_| Value::Bool(true)))
}

fn send(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    let Command::Send {
        dest,
        topic,
        payload,
    } = cmd
    else {
        return mismatch(&cmd);
    };
    done(core.send_to(Some(caller), &dest, topic, payload))
}

fn spawn(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    let Command::Spawn {
        entry,
        host,
        args,
        monitor,
        link,
        name,
        context,
    } = cmd
    else {
        return mismatch(&cmd);
    };
    if let Some((node, host)) = core.remote_host(&host) {
        return core.remote_spawn(caller, node, host, entry, args, monitor, link, name);
    }
    let context = core.child_context(caller, context);
    let r = core.spawn(
        &entry,
        &host,
        args,
        SpawnOptions {
            parent: Some(caller),
            monitor,
            link,
            context,
            ..Default::default()
        },
    );
    let r = r.and_then(|pid| match &name {
        Some(n) => core.register_name(n, pid.uniq).map(|_| pid),
        None => Ok(pid),
    });
    Reply::Done(r.map(|pid| Value::from(pid.to_string())))
}

fn control(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    done(match cmd {
        Command::Terminate { dest } => core.terminate(&dest),
        Command::Cancel { dest, reason } => core.cancel(caller, &dest, reason),
        Command::Monitor { dest, on: true } => core.monitor(caller, &dest),
        Command::Monitor { dest, on: false } => core.unmonitor(caller, &dest),
        Command::Link { dest, on: true } => core.link(caller, &dest),
        Command::Link { dest, on: false } => core.unlink(caller, &dest),
        other => return mismatch(&other),
    })
}

fn names(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    let Command::Name(op) = cmd else {
        return mismatch(&cmd);
    };
    match op {
        NameOp::Register { name, pid } => {
            let target = match pid {
                Some(p) => match core.resolve(&p) {
                    Ok(t) => t,
                    Err(e) => return Reply::err(e),
                },
                None => caller,
            };
            done(core.register_name(&name, target))
        }
        NameOp::Lookup { name } => match core.cluster_name(&name).or_else(|| {
            core.names
                .lookup(&name)
                .and_then(|id| core.pid_of(id))
                .cloned()
        }) {
            Some(p) => Reply::ok(Value::from(p.to_string())),
            None => Reply::err(ErrorValue::new(kind::NOT_FOUND, "name not registered")),
        },
        NameOp::Unregister { name } => Reply::ok(Value::Bool(core.names.unregister(&name))),
        NameOp::Claim { name, pid } => {
            let target = match pid {
                Some(p) => match core.resolve(&p) {
                    Ok(t) => t,
                    Err(e) => return Reply::err(e),
                },
                None => caller,
            };
            done(core.claim_name(&name, target))
        }
        NameOp::Release { name } => Reply::ok(Value::Bool(core.release_name(&name))),
    }
}

fn options(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    let Command::Options { trap_links } = cmd else {
        return mismatch(&cmd);
    };
    let Some(p) = core.proc_mut(caller) else {
        return Reply::err(ErrorValue::new(kind::INTERNAL, "process gone"));
    };
    if let Some(b) = trap_links {
        p.trap_links = b;
    }
    let t = Table::default().with("trap_links", Value::Bool(p.trap_links));
    Reply::ok(Value::table(t))
}

/// SplitMix64: small, fast and good enough for `math.random`; one state per process.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    let Command::Random { reseed } = cmd else {
        return mismatch(&cmd);
    };
    let Some(p) = core.proc_mut(caller) else {
        return Reply::err(ErrorValue::new(kind::INTERNAL, "process gone"));
    };
    if let Some(s) = reseed {
        p.rng = s;
        return Reply::ok(Value::Nil);
    }
    Reply::ok(Value::Int(splitmix(&mut p.rng) as i64))
}
