//! The `env` module: variables declared by `env.variable` entries, read from their storages
//! (engine::env). Setting a variable of a file storage persists it through a world command.

use super::errors::fail;
use super::host;
use crate::value::{kind, ErrorValue};
use mlua::{Function, Lua, Table, Value as LV};

fn key_arg(v: &LV, f: &str) -> Result<String, ErrorValue> {
    match v {
        LV::String(s) => Ok(s.to_string_lossy()),
        other => Err(ErrorValue::new(
            kind::INVALID,
            format!("env.{f}: key must be a string, got {}", other.type_name()),
        )),
    }
}

pub fn module(lua: &Lua, prelude: &Table) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        lua.create_function(|lua, k: LV| {
            let k = match key_arg(&k, "get") {
                Ok(k) => k,
                Err(e) => return fail(lua, e),
            };
            let r = host(lua).core.borrow().env.get(&k);
            match r {
                Ok(v) => Ok((LV::String(lua.create_string(v)?), LV::Nil)),
                Err(e) => fail(lua, e),
            }
        })?,
    )?;
    let blocking: Function = prelude.get("blocking")?;
    let set_raw = lua.create_function(|lua, (k, v): (LV, LV)| {
        let k = match key_arg(&k, "set") {
            Ok(k) => k,
            Err(e) => return fail(lua, e),
        };
        let v = match v {
            LV::String(s) => s.to_string_lossy(),
            LV::Integer(i) => i.to_string(),
            LV::Number(n) => crate::value::format_float(n),
            other => {
                return fail(
                    lua,
                    ErrorValue::new(
                        kind::INVALID,
                        format!("env.set: value must be a string, got {}", other.type_name()),
                    ),
                )
            }
        };
        let r = host(lua).core.borrow_mut().env.set(&k, &v);
        match r {
            Ok(None) => Ok((LV::Boolean(true), LV::Nil)),
            Ok(Some(w)) => super::process::world_call(
                lua,
                crate::world::WorldCommand::EnvFileSet {
                    path: w.path,
                    key: w.key,
                    value: w.value,
                    auto_create: w.auto_create,
                    file_mode: (w.file_mode & 0o7777) as u32,
                    dir_mode: (w.dir_mode & 0o7777) as u32,
                },
            ),
            Err(e) => fail(lua, e),
        }
    })?;
    t.set("set", blocking.call::<Function>(set_raw)?)?;
    t.set(
        "get_all",
        lua.create_function(|lua, ()| {
            let all = host(lua).core.borrow().env.all();
            let out = lua.create_table()?;
            for (k, v) in all {
                out.set(k, v)?;
            }
            Ok((LV::Table(out), LV::Nil))
        })?,
    )?;
    Ok(t)
}
