//! The `json` module: encode/decode between Lua values and JSON text with Wippy's rules.
//! The codec itself is `crate::json`; this file only converts and maps errors to values.

use super::convert::{to_lua, to_value};
use super::errors::fail;
use crate::value::{kind, ErrorValue};
use mlua::{Lua, Table, Value as LV};

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "encode",
        lua.create_function(|lua, v: LV| {
            let r = to_value(&v)
                .map_err(|e| e.message)
                .and_then(|v| crate::json::encode(&v));
            match r {
                Ok(s) => Ok((LV::String(lua.create_string(s)?), LV::Nil)),
                Err(m) => fail(lua, ErrorValue::new(kind::INTERNAL, m)),
            }
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, s: LV| {
            let LV::String(s) = s else {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, "json.decode expects a string"),
                );
            };
            let text = s.to_string_lossy();
            if text.is_empty() {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, "json.decode: empty input"),
                );
            }
            match crate::json::decode(&text) {
                Ok(v) => Ok((to_lua(lua, &v)?, LV::Nil)),
                Err(m) => fail(lua, ErrorValue::new(kind::INTERNAL, m)),
            }
        })?,
    )?;
    Ok(t)
}
