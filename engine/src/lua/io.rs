//! The `io` module: terminal output and line input, only for the terminal host's process.
//! Output goes to the driver as `Output::Stdout`; reads are world commands answered by tag.

use super::errors::{display, fail};
use super::{current, request};
use crate::command::Command;
use crate::node::Output;
use crate::value::{kind, ErrorValue};
use crate::world::WorldCommand;
use mlua::{Lua, Table, Value as LV, Variadic};

fn terminal(lua: &Lua) -> mlua::Result<bool> {
    Ok(current(lua)?.borrow().terminal)
}

fn no_terminal() -> ErrorValue {
    ErrorValue::new(kind::UNAVAILABLE, "no terminal context")
}

fn join(args: &Variadic<LV>, sep: &str) -> String {
    args.iter().map(display).collect::<Vec<_>>().join(sep)
}

fn emit(lua: &Lua, o: Output) {
    let (stderr, bytes) = match o {
        Output::Stderr(b) => (true, b),
        Output::Stdout(b) => (false, b),
        _ => return,
    };
    // A write cannot fail; a reply other than ok would be a dispatcher bug and is not the
    // writer's to handle.
    let _ = request(lua, Command::Write { stderr, bytes });
}

/// Asks the driver to run a terminal read and parks the caller until it completes.
fn read_cmd(lua: &Lua, cmd: WorldCommand) -> mlua::Result<(LV, LV)> {
    if !terminal(lua)? {
        return fail(lua, no_terminal());
    }
    super::lua_process::world_call(lua, cmd)
}

pub fn install_raw(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    raw.set(
        "readline",
        lua.create_function(|lua, ()| read_cmd(lua, WorldCommand::TerminalReadLine))?,
    )?;
    raw.set(
        "read",
        lua.create_function(|lua, n: Option<i64>| {
            let max_bytes = n.filter(|n| *n > 0).unwrap_or(1024) as usize;
            read_cmd(lua, WorldCommand::TerminalRead { max_bytes })
        })?,
    )?;
    Ok(())
}

pub fn module(lua: &Lua, prelude: &Table) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "print",
        lua.create_function(|lua, args: Variadic<LV>| {
            if terminal(lua)? {
                let mut s = join(&args, "\t");
                s.push('\n');
                emit(lua, Output::Stdout(s.into_bytes()));
            }
            Ok(true)
        })?,
    )?;
    t.set(
        "eprint",
        lua.create_function(|lua, args: Variadic<LV>| {
            if terminal(lua)? {
                let mut s = join(&args, "\t");
                s.push('\n');
                emit(lua, Output::Stderr(s.into_bytes()));
            }
            Ok(true)
        })?,
    )?;
    t.set(
        "write",
        lua.create_function(|lua, args: Variadic<LV>| {
            if !terminal(lua)? {
                return fail(lua, no_terminal());
            }
            emit(lua, Output::Stdout(join(&args, "").into_bytes()));
            Ok((LV::Boolean(true), LV::Nil))
        })?,
    )?;
    t.set(
        "flush",
        lua.create_function(|lua, ()| {
            if !terminal(lua)? {
                return fail(lua, no_terminal());
            }
            Ok((LV::Boolean(true), LV::Nil))
        })?,
    )?;
    t.set(
        "raw",
        lua.create_function(|lua, _: Option<bool>| {
            if !terminal(lua)? {
                return fail(lua, no_terminal());
            }
            Ok((LV::Boolean(true), LV::Nil))
        })?,
    )?;
    t.set(
        "args",
        lua.create_function(|lua, ()| {
            let t = lua.create_table()?;
            if terminal(lua)? {
                let st = current(lua)?;
                let args = st.borrow().terminal_args();
                for (i, a) in args.into_iter().enumerate() {
                    t.raw_set(i + 1, a)?;
                }
            }
            Ok(t)
        })?,
    )?;
    t.set("readline", prelude.get::<LV>("readline")?)?;
    t.set("read", prelude.get::<LV>("read")?)?;
    Ok(t)
}
