//! Wippy error values in Lua (`errors` global and the error userdata's methods).
//! Errors are values returned as `nil, err`; raising is reserved for programming mistakes.

use super::convert::{to_lua, to_value};
use crate::value::{kind, ErrorValue, Value};
use mlua::{Lua, MetaMethod, Result as LuaResult, Table, UserData, UserDataMethods, Value as LV};

#[derive(Clone, Debug)]
pub struct ErrorUd(pub ErrorValue);

impl UserData for ErrorUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("kind", |_, e, ()| Ok(e.0.kind.as_str().to_string()));
        m.add_method("message", |_, e, ()| Ok(e.0.message.clone()));
        m.add_method("retryable", |_, e, ()| Ok(e.0.retryable));
        m.add_method("details", |lua, e, ()| match &e.0.details {
            Some(d) => to_lua(lua, d),
            None => Ok(LV::Nil),
        });
        m.add_method("stack", |_, e, ()| {
            Ok(e.0
                .frames
                .iter()
                .map(|(src, line, name)| format!("{src}:{line} in {name}"))
                .collect::<Vec<_>>()
                .join("\n"))
        });
        m.add_meta_method(MetaMethod::ToString, |_, e, ()| Ok(e.0.to_string()));
        m.add_meta_function(MetaMethod::Concat, |_, (a, b): (LV, LV)| {
            Ok(format!("{}{}", display(&a), display(&b)))
        });
    }
}

pub fn display(v: &LV) -> String {
    match v {
        LV::UserData(ud) => match ud.borrow::<ErrorUd>() {
            Ok(e) => e.0.to_string(),
            Err(_) => "userdata".into(),
        },
        LV::String(s) => s.to_string_lossy(),
        LV::Number(n) => crate::value::format_float(*n),
        LV::Integer(i) => i.to_string(),
        LV::Boolean(b) => b.to_string(),
        LV::Nil => "nil".into(),
        // A Rust-side error caught by pcall: show its message, not the wrapper.
        LV::Error(e) => {
            let m = e.to_string();
            let m = m.strip_prefix("runtime error: ").unwrap_or(&m).to_string();
            match m.find("\nstack traceback:") {
                Some(i) => m[..i].to_string(),
                None => m,
            }
        }
        other => format!("{}: {:p}", other.type_name(), other.to_pointer()),
    }
}

/// `nil, err` as a Lua multi-value.
/// Errors the runtime returns are not retryable unless the module says so (Wippy's modules
/// answer `false`, not `nil`); errors built with `errors.new` keep what the caller gave.
pub fn fail(lua: &Lua, mut e: ErrorValue) -> LuaResult<(LV, LV)> {
    e.retryable.get_or_insert(false);
    Ok((LV::Nil, LV::UserData(lua.create_userdata(ErrorUd(e))?)))
}

/// A single return value (no trailing nil): for results that are often passed straight on as
/// the last argument of another call, where an extra nil would become an extra argument.
pub fn one(v: LV) -> LuaResult<mlua::MultiValue> {
    let mut m = mlua::MultiValue::new();
    m.push_back(v);
    Ok(m)
}

/// `nil, err` as a MultiValue, for functions that return `one` on success.
pub fn fail_multi(lua: &Lua, e: ErrorValue) -> LuaResult<mlua::MultiValue> {
    let (a, b) = fail(lua, e)?;
    let mut m = mlua::MultiValue::new();
    m.push_back(a);
    m.push_back(b);
    Ok(m)
}

/// The Lua call stack above the current Rust function, innermost first (bounded).
fn frames(lua: &Lua) -> Vec<(String, u32, String)> {
    let mut out = Vec::new();
    for level in 1..32 {
        let f = lua.inspect_stack(level, |d| {
            let src = d
                .source()
                .short_src
                .map(|s| s.into_owned())
                .unwrap_or_default();
            let line = d.current_line().unwrap_or(0) as u32;
            let name = d
                .names()
                .name
                .map(|s| s.into_owned())
                .unwrap_or_else(|| "?".into());
            (src, line, name)
        });
        match f {
            Some(fr) => {
                if fr.0 != "[C]" && !fr.0.starts_with("weft-") {
                    out.push(fr);
                }
            }
            None => break,
        }
    }
    out
}

pub fn new_error(k: crate::value::ErrorKind, m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(k, m)
}

/// Reads a Lua value as an error: error userdata as is, strings become messages.
pub fn from_lua(v: &LV) -> Option<ErrorValue> {
    match v {
        LV::Nil => None,
        LV::UserData(ud) => ud.borrow::<ErrorUd>().ok().map(|e| e.0.clone()),
        LV::String(s) => Some(ErrorValue::new(kind::UNKNOWN, s.to_string_lossy())),
        other => Some(ErrorValue::new(kind::UNKNOWN, display(other))),
    }
}

pub fn module(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    for (name, k) in [
        ("NOT_FOUND", kind::NOT_FOUND),
        ("ALREADY_EXISTS", kind::ALREADY_EXISTS),
        ("INVALID", kind::INVALID),
        ("PERMISSION_DENIED", kind::PERMISSION_DENIED),
        ("UNAVAILABLE", kind::UNAVAILABLE),
        ("INTERNAL", kind::INTERNAL),
        ("CANCELED", kind::CANCELED),
        ("CONFLICT", kind::CONFLICT),
        ("TIMEOUT", kind::TIMEOUT),
        ("RATE_LIMITED", kind::RATE_LIMITED),
        ("UNKNOWN", kind::UNKNOWN),
    ] {
        t.set(name, k.as_str())?;
    }
    t.set(
        "new",
        lua.create_function(|lua, v: LV| {
            let e = match &v {
                LV::Table(tb) => {
                    let details = match tb.get::<LV>("details")? {
                        LV::Table(d)
                            if d.raw_len() == 0 && d.pairs::<LV, LV>().next().is_none() =>
                        {
                            None
                        }
                        LV::Nil => None,
                        d => Some(to_value(&d).unwrap_or(Value::Nil)),
                    };
                    ErrorValue {
                        kind: tb.get::<Option<String>>("kind")?.unwrap_or_default().into(),
                        message: tb.get::<Option<String>>("message")?.unwrap_or_default(),
                        retryable: tb.get::<Option<bool>>("retryable")?,
                        details,
                        context: None,
                        frames: Vec::new(),
                    }
                }
                other => ErrorValue::new(kind::UNKNOWN, display(other)),
            };
            let mut e = e;
            e.frames = frames(lua);
            lua.create_userdata(ErrorUd(e))
        })?,
    )?;
    t.set(
        "wrap",
        lua.create_function(|lua, (inner, context): (LV, Option<String>)| {
            // `errors.wrap(nil, ...)` wraps nothing: nil back, as Go's Wrap(nil) does.
            let Some(mut e) = from_lua(&inner) else {
                return Ok(LV::Nil);
            };
            // Kind, retryable, details and message stay the inner error's (spec T2.1); the
            // context is kept beside them and shown by tostring as `context: message`
            // (decision where the spec says unclear).
            if let Some(c) = context.filter(|c| !c.is_empty()) {
                e.context = Some(match e.context.take() {
                    Some(inner) => format!("{c}: {inner}"),
                    None => c,
                });
            }
            Ok(LV::UserData(lua.create_userdata(ErrorUd(e))?))
        })?,
    )?;
    t.set(
        "is",
        lua.create_function(|_, (v, k): (LV, String)| {
            Ok(match &v {
                LV::UserData(ud) => ud
                    .borrow::<ErrorUd>()
                    .map(|e| e.0.kind.as_str() == k)
                    .unwrap_or(false),
                _ => false,
            })
        })?,
    )?;
    // Weft does not record where an error was created, so there is no stack to give: nil, which
    // the spec allows ("... or nil"). Decision recorded here; `err:stack()` is "" likewise.
    t.set(
        "call_stack",
        lua.create_function(|lua, v: LV| {
            let Some(e) = from_lua(&v).filter(|e| !e.frames.is_empty()) else {
                return Ok(LV::Nil);
            };
            let t = lua.create_table()?;
            t.set("thread", "main")?;
            let fs = lua.create_table()?;
            for (i, (src, line, name)) in e.frames.iter().enumerate() {
                let f = lua.create_table()?;
                f.set("source", src.as_str())?;
                f.set("line", *line)?;
                f.set("name", name.as_str())?;
                fs.raw_set(i + 1, f)?;
            }
            t.set("frames", fs)?;
            Ok(LV::Table(t))
        })?,
    )?;
    Ok(t)
}
