//! The `env` module: variables declared by `env.variable` entries, read from their storages
//! (engine::env). Setting a variable of a file storage persists it through a world command.

use super::errors::fail;
use super::host;
use crate::command::ids;
use crate::value::{kind, ErrorValue, Value};
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
