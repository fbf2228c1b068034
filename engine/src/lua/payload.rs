//! The `payload` global: a value with a format, transcoded between Lua values, JSON, YAML,
//! plain text and bytes. Lua-format payloads hold a `Value`; the others hold their text.

use super::convert::{to_lua, to_value};
use super::errors::fail;
use crate::value::{kind, ErrorValue, Value};
use mlua::{Lua, MetaMethod, Table, UserData, UserDataMethods, Value as LV};

pub const JSON: &str = "json/plain";
pub const YAML: &str = "yaml/plain";
pub const STRING: &str = "text/plain";
pub const BYTES: &str = "application/octet-stream";
pub const MSGPACK: &str = "application/msgpack";
pub const LUA: &str = "lua/any";
pub const GOLANG: &str = "golang/any";
pub const ERROR: &str = "golang/error";

#[derive(Clone, Debug)]
pub struct Payload {
    pub format: String,
    /// For `lua/any` and `golang/error` the value; for the text formats a `Value::Str`.
    pub value: Value,
}

impl Payload {
    pub fn of(v: Value) -> Payload {
        let format = if matches!(v, Value::Error(_)) {
            ERROR
        } else {
            LUA
        };
        Payload {
            format: format.into(),
            value: v,
        }
    }

    /// The payload as a Lua-side value: decoded for JSON/YAML, the text for text/bytes.
    fn decoded(&self) -> Result<Value, String> {
        match self.format.as_str() {
            JSON => crate::json::decode(&self.text()),
            YAML => super::yaml::decode(&self.text()),
            _ => Ok(self.value.clone()),
        }
    }

    fn text(&self) -> String {
        match &self.value {
            Value::Str(b) => String::from_utf8_lossy(b).into_owned(),
            v => v.to_display(),
        }
    }

    pub fn transcode(&self, to: &str) -> Result<Payload, String> {
        let v = self.decoded()?;
        let value = match to {
            LUA | GOLANG => v,
            JSON => Value::from(crate::json::encode(&v)?),
            YAML => Value::from(super::yaml::encode(&v, &[])),
            // Decision (spec silent): strings, numbers and booleans convert to their text;
            // tables to JSON text; payloads already text keep their bytes.
            STRING | BYTES => match v {
                Value::Str(b) => Value::Str(b),
                Value::Table(_) => Value::from(crate::json::encode(&v)?),
                Value::Nil => Value::from(""),
                other => Value::from(other.to_display()),
            },
            other => return Err(format!("cannot transcode to unsupported format '{other}'")),
        };
        Ok(Payload {
            format: to.into(),
            value,
        })
    }
}

impl UserData for Payload {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("get_format", |_, p, ()| Ok(p.format.clone()));
        // One value on success: `process.send(to, t, msg:payload():data())` must send one payload.
        m.add_method("data", |lua, p, ()| match p.decoded() {
            Ok(v) => super::errors::one(to_lua(lua, &v)?),
            Err(e) => super::errors::fail_multi(lua, ErrorValue::new(kind::INTERNAL, e)),
        });
        m.add_method("unmarshal", |lua, p, ()| match p.decoded() {
            Ok(v) => super::errors::one(to_lua(lua, &v)?),
            Err(e) => super::errors::fail_multi(lua, ErrorValue::new(kind::INTERNAL, e)),
        });
        m.add_method("transcode", |lua, p, to: LV| {
            let LV::String(to) = to else {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, "transcode expects a format string"),
                );
            };
            match p.transcode(&to.to_string_lossy()) {
                Ok(np) => Ok((LV::UserData(lua.create_userdata(np)?), LV::Nil)),
                Err(e) => fail(lua, ErrorValue::new(kind::INTERNAL, e)),
            }
        });
        m.add_meta_method(MetaMethod::ToString, |_, p, ()| {
            Ok(match p.format.as_str() {
                LUA | GOLANG | ERROR => format!(
                    "payload{{format={}, value={}}}",
                    p.format,
                    p.value.to_display()
                ),
                _ => format!("payload{{format={}, value={}}}", p.format, p.text()),
            })
        });
    }
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let f = lua.create_table()?;
    for (k, v) in [
        ("JSON", JSON),
        ("YAML", YAML),
        ("STRING", STRING),
        ("BYTES", BYTES),
        ("MSGPACK", MSGPACK),
        ("LUA", LUA),
        ("GOLANG", GOLANG),
        ("ERROR", ERROR),
    ] {
        f.set(k, v)?;
    }
    t.set("format", f)?;
    t.set(
        "new",
        lua.create_function(|lua, v: LV| match to_value(&v) {
            Ok(v) => Ok((LV::UserData(lua.create_userdata(Payload::of(v))?), LV::Nil)),
            Err(e) => fail(lua, e),
        })?,
    )?;
    Ok(t)
}
