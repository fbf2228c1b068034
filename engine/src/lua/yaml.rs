//! The `yaml` module: decode YAML text into Lua values, encode Lua tables as block YAML with
//! an optional key order. Keys not named in `field_order` are always sorted, so the output is
//! deterministic (Go's encoder sorts map keys too; `sort_unordered` is accepted for that reason).

use super::convert::{to_lua, to_value};
use super::errors::fail;
use crate::value::{kind, ErrorValue, Table as VTable, Value};
use mlua::{Lua, Table, Value as LV};

/// serde_json's tree (what serde-saphyr decodes into here) as a Weft value.
pub fn from_json(j: &serde_json::Value) -> Value {
    match j {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::table(VTable {
            array: a.iter().map(from_json).collect(),
            map: vec![],
        }),
        serde_json::Value::Object(o) => Value::table(VTable {
            array: vec![],
            map: o
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), from_json(v)))
                .filter(|(_, v)| !v.is_nil())
                .collect(),
        }),
    }
}

pub fn decode(text: &str) -> Result<Value, String> {
    let mut opts = serde_saphyr::Options::default();
    opts.strict_booleans = true;
    opts.with_snippet = false;
    serde_saphyr::from_str_with_options::<serde_json::Value>(text, opts)
        .map(|j| from_json(&j))
        .map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())
}

fn plain_ok(s: &str) -> bool {
    const RESERVED: &[&str] = &[
        "true", "false", "null", "yes", "no", "on", "off", "~", "y", "n",
    ];
    !s.is_empty()
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err()
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " _-./@".contains(c))
        && !s.ends_with(' ')
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Nil => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => ".nan".into(),
        Value::Float(f) if f.is_infinite() => if *f > 0.0 { ".inf" } else { "-.inf" }.into(),
        Value::Float(f) => {
            let s = crate::value::format_float(*f);
            if s.contains(['.', 'e', 'n', 'i']) {
                s
            } else {
                format!("{s}.0")
            }
        }
        Value::Str(b) => {
            let s = String::from_utf8_lossy(b);
            if plain_ok(&s) {
                s.into_owned()
            } else {
                serde_json::to_string(&*s).unwrap_or_default()
            }
        }
        Value::Error(e) => serde_json::to_string(&e.to_string()).unwrap_or_default(),
        Value::Table(_) => String::new(),
    }
}

fn key_text(k: &Value) -> String {
    scalar(k)
}

fn ordered<'a>(t: &'a VTable, order: &[String]) -> Vec<(&'a Value, &'a Value)> {
    let mut rest: Vec<(&Value, &Value)> = t.map.iter().map(|(k, v)| (k, v)).collect();
    let mut out = Vec::with_capacity(rest.len());
    for name in order {
        if let Some(i) = rest.iter().position(|(k, _)| k.as_str() == Some(name)) {
            out.push(rest.remove(i));
        }
    }
    rest.sort_by_key(|a| key_text(a.0));
    out.extend(rest);
    out
}

fn is_empty_table(v: &Value) -> Option<bool> {
    match v {
        Value::Table(t) => Some(t.is_empty()),
        _ => None,
    }
}

fn emit(v: &Value, indent: usize, order: &[String], out: &mut String) {
    let pad = " ".repeat(indent);
    let Value::Table(t) = v else {
        out.push_str(&scalar(v));
        out.push('\n');
        return;
    };
    if t.is_empty() {
        out.push_str("{}\n");
        return;
    }
    // Integer-keyed entries beyond the sequence part make a map like any other key.
    if t.map.is_empty() {
        for item in &t.array {
            out.push_str(&pad);
            out.push_str("- ");
            child(item, indent + 2, order, out, true);
        }
        return;
    }
    let mut entries: Vec<(Value, &Value)> = t
        .array
        .iter()
        .enumerate()
        .map(|(i, v)| (Value::Int(i as i64 + 1), v))
        .collect();
    entries.extend(ordered(t, order).into_iter().map(|(k, v)| (k.clone(), v)));
    for (k, val) in entries {
        out.push_str(&pad);
        out.push_str(&key_text(&k));
        out.push(':');
        match is_empty_table(val) {
            Some(false) => {
                out.push('\n');
                let nested_indent = match val {
                    Value::Table(t) if t.map.is_empty() => indent,
                    _ => indent + 2,
                };
                emit(val, nested_indent, order, out);
            }
            _ => {
                out.push(' ');
                emit(val, 0, order, out);
            }
        }
    }
}

/// A value after `- `: scalars inline, maps start on the same line, lists nest below.
fn child(v: &Value, indent: usize, order: &[String], out: &mut String, _first: bool) {
    match v {
        Value::Table(t) if !t.is_empty() => {
            let mut s = String::new();
            emit(v, indent, order, &mut s);
            let s = if t.map.is_empty() {
                format!("\n{s}")
            } else {
                s[indent..].to_string()
            };
            out.push_str(&s);
        }
        _ => emit(v, 0, order, out),
    }
}

pub fn encode(v: &Value, order: &[String]) -> String {
    let mut out = String::new();
    emit(v, 0, order, &mut out);
    out
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "encode",
        lua.create_function(|lua, (v, opts): (LV, Option<Table>)| {
            if !matches!(v, LV::Table(_)) {
                return fail(
                    lua,
                    ErrorValue::new(
                        kind::INVALID,
                        format!("yaml.encode expects a table, got {}", v.type_name()),
                    ),
                );
            }
            let mut order = Vec::new();
            if let Some(o) = &opts {
                if let Ok(Some(fo)) = o.get::<Option<Table>>("field_order") {
                    for s in fo.sequence_values::<String>().flatten() {
                        order.push(s);
                    }
                }
            }
            match to_value(&v) {
                Ok(val) => Ok((
                    LV::String(lua.create_string(encode(&val, &order))?),
                    LV::Nil,
                )),
                Err(e) => fail(lua, ErrorValue::new(kind::INTERNAL, e.message)),
            }
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, v: LV| {
            let LV::String(s) = v else {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, "yaml.decode expects a string"),
                );
            };
            let text = s.to_string_lossy();
            if text.is_empty() {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, "yaml.decode: empty input"),
                );
            }
            match decode(&text) {
                Ok(v) => Ok((to_lua(lua, &v)?, LV::Nil)),
                Err(m) => fail(
                    lua,
                    ErrorValue::new(kind::INTERNAL, format!("yaml.decode: {m}")),
                ),
            }
        })?,
    )?;
    Ok(t)
}
