//! Deep copies between Lua values and owned `Value`s: what crosses a process boundary.
//! Tables are copied, errors stay errors, every other userdata and functions become nil.

use super::errors::ErrorUd;
use crate::value::{ErrorValue, Table, Value};
use mlua::{Lua, Result as LuaResult, Value as LV};

const MAX_DEPTH: usize = 128;

pub fn to_value(v: &LV) -> Result<Value, ErrorValue> {
    let mut seen = Vec::new();
    conv(v, 0, &mut seen)
}

fn conv(
    v: &LV,
    depth: usize,
    seen: &mut Vec<*const std::ffi::c_void>,
) -> Result<Value, ErrorValue> {
    Ok(match v {
        LV::Nil => Value::Nil,
        LV::Boolean(b) => Value::Bool(*b),
        LV::Integer(i) => Value::Int(*i),
        LV::Number(n) => number(*n),
        LV::String(s) => Value::Str(s.with_bytes(<[u8]>::to_vec)),
        LV::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(ErrorValue::new(
                    crate::value::kind::INVALID,
                    "table nested too deeply to copy",
                ));
            }
            let p = t.to_pointer();
            if seen.contains(&p) {
                return Err(ErrorValue::new(
                    crate::value::kind::INVALID,
                    "cannot copy a table that contains itself",
                ));
            }
            seen.push(p);
            let n = t.raw_len();
            let mut out = Table::default();
            for i in 1..=n {
                let item: LV = t.raw_get(i).map_err(lua_err)?;
                out.array.push(conv(&item, depth + 1, seen)?);
            }
            for pair in t.pairs::<LV, LV>() {
                let (k, val) = pair.map_err(lua_err)?;
                if let LV::Integer(i) = k {
                    if i >= 1 && (i as usize) <= n {
                        continue;
                    }
                }
                if let LV::Number(f) = k {
                    if f >= 1.0 && f.fract() == 0.0 && (f as usize) <= n {
                        continue;
                    }
                }
                let key = conv(&k, depth + 1, seen)?;
                if key.is_nil() {
                    continue;
                }
                out.map.push((key, conv(&val, depth + 1, seen)?));
            }
            seen.pop();
            Value::table(out)
        }
        LV::UserData(ud) => match ud.borrow::<ErrorUd>() {
            Ok(e) => Value::error(e.0.clone()),
            Err(_) => Value::Nil,
        },
        _ => Value::Nil,
    })
}

/// Luau numbers are doubles: an integral one that fits i64 travels as an integer.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && (-9.007_199_254_740_992e15..=9.007_199_254_740_992e15).contains(&n) {
        Value::Int(n as i64)
    } else {
        Value::Float(n)
    }
}

fn lua_err(e: mlua::Error) -> ErrorValue {
    ErrorValue::new(crate::value::kind::INTERNAL, e.to_string())
}

pub fn to_lua(lua: &Lua, v: &Value) -> LuaResult<LV> {
    Ok(match v {
        Value::Nil => LV::Nil,
        Value::Bool(b) => LV::Boolean(*b),
        Value::Int(i) => LV::Number(*i as f64),
        Value::Float(f) => LV::Number(*f),
        Value::Str(s) => LV::String(lua.create_string(s)?),
        Value::Table(t) => {
            let tbl = lua.create_table_with_capacity(t.array.len(), t.map.len())?;
            for (i, item) in t.array.iter().enumerate() {
                tbl.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            for (k, item) in &t.map {
                let k = to_lua(lua, k)?;
                if !k.is_nil() {
                    tbl.raw_set(k, to_lua(lua, item)?)?;
                }
            }
            LV::Table(tbl)
        }
        Value::Error(e) => LV::UserData(lua.create_userdata(ErrorUd((**e).clone()))?),
    })
}
