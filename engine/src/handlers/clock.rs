//! The clock dispatcher (ids 10–29): timers and tickers, the node clock, the node's generator.

use super::mismatch;
use crate::command::{ids, Command, CommandRegistry, RegistryError, Reply};
use crate::node::Core;
use crate::value::Value;

pub(super) fn register(r: &mut CommandRegistry) -> Result<(), RegistryError> {
    r.register(ids::CLOCK_TIMER, "time", "timer", timer)?;
    r.register(ids::CLOCK_STOP, "time", "timer.stop", timer)?;
    r.register(ids::CLOCK_RESET, "time", "timer.reset", timer)?;
    r.register(ids::CLOCK_NOW, "time", "now", now)?;
    r.register(ids::CLOCK_RANDOM, "time", "random", now)?;
    Ok(())
}

fn timer(core: &mut Core, caller: u64, cmd: Command) -> Reply {
    Reply::ok(match cmd {
        Command::Timer {
            local,
            delay_ns,
            period_ns,
        } => Value::Int(core.arm_timer(caller, local, delay_ns, period_ns) as i64),
        Command::TimerStop { key } => Value::Bool(core.cancel_timer(key)),
        Command::TimerReset { key, delay_ns } => Value::Bool(core.reset_timer(key, delay_ns)),
        other => return mismatch(&other),
    })
}

fn now(core: &mut Core, _caller: u64, cmd: Command) -> Reply {
    Reply::ok(match cmd {
        Command::Now { wall: true } => Value::Int(core.wall_now_ns()),
        Command::Now { wall: false } => Value::Int(core.now() as i64),
        Command::NodeRandom => Value::Int(core.random_u64() as i64),
        other => return mismatch(&other),
    })
}
