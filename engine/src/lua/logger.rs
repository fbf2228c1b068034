//! The `logger` module (a Logger userdata with fields and names) and the global `print`.
//! Records go to the driver as `Output::Log` with the process's pid and location attached.

use super::current;
use super::errors::display;
use crate::node::Level;
use mlua::{AnyUserData, Lua, Table, UserData, UserDataMethods, Value as LV, Variadic};

#[derive(Clone, Default)]
pub struct LoggerUd {
    pub name: Option<String>,
    pub fields: Vec<(String, String)>,
}

fn field_value(v: &LV) -> String {
    match v {
        LV::Table(t) => {
            let v =
                super::convert::to_value(&LV::Table(t.clone())).unwrap_or(crate::value::Value::Nil);
            crate::json::encode(&v).unwrap_or_else(|_| "table".into())
        }
        other => display(other),
    }
}

fn fields_of(t: &Option<Table>) -> mlua::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    if let Some(t) = t {
        for pair in t.pairs::<LV, LV>() {
            let (k, v) = pair?;
            if let LV::String(k) = k {
                out.push((k.to_string_lossy(), field_value(&v)));
            }
        }
        out.sort();
    }
    Ok(out)
}

fn put(fields: &mut Vec<(String, String)>, k: String, v: String) {
    match fields.iter_mut().find(|(have, _)| *have == k) {
        Some(slot) => slot.1 = v,
        None => fields.push((k, v)),
    }
}

fn record(
    lua: &Lua,
    level: Level,
    base: &LoggerUd,
    msg: String,
    extra: Vec<(String, String)>,
) -> mlua::Result<()> {
    let mut fields = Vec::new();
    if let Some(n) = &base.name {
        fields.push(("logger".to_string(), n.clone()));
    }
    if let Ok(st) = current(lua) {
        let s = st.borrow();
        fields.push(("pid".to_string(), s.pid_text()));
        let line = lua
            .inspect_stack(1, |d| d.current_line())
            .flatten()
            .unwrap_or(0);
        fields.push(("location".to_string(), format!("{}:{}", s.entry.id, line)));
    }
    // The caller's fields (`with` ones, then this call's) win over the automatic ones; each
    // key appears once, in the place it first took.
    for (k, v) in base.fields.iter().cloned().chain(extra) {
        put(&mut fields, k, v);
    }
    let _ = super::request(
        lua,
        crate::command::Command::Log {
            level,
            message: msg,
            fields,
        },
    );
    Ok(())
}

impl UserData for LoggerUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        for (name, level) in [
            ("debug", Level::Debug),
            ("info", Level::Info),
            ("warn", Level::Warn),
            ("error", Level::Error),
        ] {
            m.add_method(name, move |lua, l, (msg, f): (String, Option<Table>)| {
                let extra = fields_of(&f)?;
                if level == Level::Error {
                    if let Some(t) = &f {
                        // Wippy moves the `error` field out of the caller's table.
                        let _ = t.raw_set("error", LV::Nil);
                    }
                }
                record(lua, level, l, msg, extra)
            });
        }
        m.add_method("with", |_, l, f: Option<Table>| {
            let mut n = l.clone();
            for (k, v) in fields_of(&f)? {
                put(&mut n.fields, k, v);
            }
            Ok(n)
        });
        m.add_method("named", |_, l, name: String| {
            if name.is_empty() {
                return Err(mlua::Error::runtime("logger name must not be empty"));
            }
            let mut n = l.clone();
            n.name = Some(match &l.name {
                Some(p) => format!("{p}.{name}"),
                None => name,
            });
            Ok(n)
        });
    }
}

pub fn root(lua: &Lua) -> mlua::Result<AnyUserData> {
    lua.create_userdata(LoggerUd::default())
}

/// Global `print`: a log record at info level, arguments joined by a space.
pub fn global_print(lua: &Lua, args: Variadic<LV>) -> mlua::Result<()> {
    let msg = args.iter().map(display).collect::<Vec<_>>().join(" ");
    record(lua, Level::Info, &LoggerUd::default(), msg, vec![])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::put;

    #[test]
    fn later_fields_replace_earlier_ones_in_place() {
        let mut f = vec![
            ("pid".to_string(), "auto".to_string()),
            ("location".to_string(), "x:1".to_string()),
        ];
        put(&mut f, "pid".into(), "mine".into());
        put(&mut f, "k".into(), "v".into());
        assert_eq!(
            f,
            vec![
                ("pid".to_string(), "mine".to_string()),
                ("location".to_string(), "x:1".to_string()),
                ("k".to_string(), "v".to_string()),
            ]
        );
    }
}
