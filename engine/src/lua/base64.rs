//! The `base64` module: RFC 4648 standard alphabet with padding.

use super::errors::fail;
use crate::value::{kind, ErrorValue};
use ::base64::engine::general_purpose::STANDARD;
use ::base64::Engine as _;
use mlua::{Lua, Table, Value as LV};

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "encode",
        lua.create_function(|lua, v: LV| match v {
            LV::String(s) => Ok((
                LV::String(lua.create_string(STANDARD.encode(s.as_bytes()))?),
                LV::Nil,
            )),
            other => fail(
                lua,
                ErrorValue::new(
                    kind::INVALID,
                    format!("base64.encode expects a string, got {}", other.type_name()),
                ),
            ),
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, v: LV| match v {
            LV::String(s) => match STANDARD.decode(s.as_bytes()) {
                Ok(b) => Ok((LV::String(lua.create_string(b)?), LV::Nil)),
                Err(e) => fail(
                    lua,
                    ErrorValue::new(kind::INVALID, format!("illegal base64 data: {e}")),
                ),
            },
            other => fail(
                lua,
                ErrorValue::new(
                    kind::INVALID,
                    format!("base64.decode expects a string, got {}", other.type_name()),
                ),
            ),
        })?,
    )?;
    Ok(t)
}
