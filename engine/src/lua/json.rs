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
                return super::errors::fail_multi(
                    lua,
                    ErrorValue::new(kind::INVALID, "json.decode expects a string"),
                );
            };
            let text = s.to_string_lossy();
            if text.is_empty() {
                return super::errors::fail_multi(
                    lua,
                    ErrorValue::new(kind::INVALID, "json.decode: empty input"),
                );
            }
            match crate::json::decode(&text) {
                Ok(v) => super::errors::one(to_lua(lua, &v)?),
                Err(m) => super::errors::fail_multi(lua, ErrorValue::new(kind::INTERNAL, m)),
            }
        })?,
    )?;
    t.set(
        "validate",
        lua.create_function(|lua, (schema, data): (LV, LV)| {
            if data.is_nil() {
                return invalid(lua, "data is required".into());
            }
            let data = match to_value(&data) {
                Ok(d) => super::jsonschema::to_json(&d),
                Err(e) => return invalid(lua, e.message),
            };
            check(lua, &schema, &data)
        })?,
    )?;
    t.set(
        "validate_string",
        lua.create_function(|lua, (schema, data): (LV, LV)| {
            let LV::String(s) = data else {
                return invalid(lua, "json.validate_string expects a JSON string".into());
            };
            match serde_json::from_slice::<serde_json::Value>(&s.as_bytes()) {
                Ok(d) => check(lua, &schema, &d),
                Err(e) => invalid(lua, format!("invalid JSON: {e}")),
            }
        })?,
    )?;
    Ok(t)
}

/// `false, err` (Invalid): the validate functions return false rather than nil (spec §0.1).
fn invalid(lua: &Lua, m: String) -> mlua::Result<(LV, LV)> {
    let (_, e) = fail(lua, ErrorValue::new(kind::INVALID, m))?;
    Ok((LV::Boolean(false), e))
}

/// Schemas come as a Lua table or as JSON text.
fn check(lua: &Lua, schema: &LV, data: &serde_json::Value) -> mlua::Result<(LV, LV)> {
    let schema = match schema {
        LV::String(s) => match serde_json::from_slice::<serde_json::Value>(&s.as_bytes()) {
            Ok(j) => j,
            Err(e) => return invalid(lua, format!("invalid schema JSON: {e}")),
        },
        LV::Table(_) => match to_value(schema) {
            Ok(v) => super::jsonschema::to_json(&v),
            Err(e) => return invalid(lua, e.message),
        },
        other => {
            return invalid(
                lua,
                format!(
                    "schema must be a table or JSON string, got {}",
                    other.type_name()
                ),
            )
        }
    };
    match super::jsonschema::validate(&schema, data, "") {
        Ok(()) => Ok((LV::Boolean(true), LV::Nil)),
        Err(m) => invalid(lua, m),
    }
}
