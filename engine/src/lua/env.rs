//! The `env` module: variables declared by `env.variable` entries, read from their storages
//! (engine::env). Setting a variable of a file storage persists it through a world command.

use super::errors::fail;
use super::{answer, dispatch, request};
use crate::command::Command;
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
            match request(lua, Command::EnvGet { key: k })? {
                Ok(Value::Str(v)) => Ok((LV::String(lua.create_string(v)?), LV::Nil)),
                Ok(_) => Ok((LV::String(lua.create_string("")?), LV::Nil)),
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
        // A `.env` file storage answers once the file is written.
        let reply = dispatch(lua, Command::EnvSet { key: k, value: v })?;
        answer(lua, reply)
    })?;
    t.set("set", blocking.call::<Function>(set_raw)?)?;
    t.set(
        "get_all",
        lua.create_function(|lua, ()| {
            let out = lua.create_table()?;
            if let Ok(Value::Table(all)) = request(lua, Command::EnvAll)? {
                for (k, v) in &all.map {
                    if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                        out.set(k, v)?;
                    }
                }
            }
            Ok((LV::Table(out), LV::Nil))
        })?,
    )?;
    Ok(t)
}
