//! The `process` global: identity, send, spawn family, inbox/events/listen, control, names.
//! Each operation on other processes is a command dispatched through the node's registry; the
//! spawn family and control functions are wrapped by the prelude's `blocking`, so a handler that
//! answers later (another shard or node) parks the caller instead of failing.

use super::channel::{new_chan_ud, ChanUd};
use super::convert::to_value;
use super::errors::{fail, ErrorUd};
use super::lua_process::unbounded_chan;
use super::{answer, current, dispatch};
use crate::command::{Command, NameOp, Reply};
use crate::value::{kind, ErrorValue, Value};
use mlua::{AnyUserData, Function, Lua, Table, Value as LV, Variadic};

fn ok_true() -> mlua::Result<(LV, LV)> {
    Ok((LV::Boolean(true), LV::Nil))
}

fn arg(a: &Variadic<LV>, i: usize) -> LV {
    a.get(i).cloned().unwrap_or(LV::Nil)
}

fn dest_string(v: &LV) -> Option<String> {
    match v {
        LV::String(s) => Some(s.with_bytes(|b| String::from_utf8_lossy(b).into_owned())),
        _ => None,
    }
}

/// `process.send`'s destination: a PID written out is parsed here (no copy of its text), any
/// other string (a name) goes to the node as text.
fn send_dest(v: &LV) -> Option<crate::command::Dest> {
    let LV::String(s) = v else {
        return None;
    };
    s.with_bytes(|b| {
        let pid = std::str::from_utf8(b)
            .ok()
            .filter(|t| t.starts_with('{'))
            .and_then(crate::pid::Pid::parse);
        Some(match pid {
            Some(p) => crate::command::Dest::Pid(p),
            None => crate::command::Dest::Text(String::from_utf8_lossy(b).into_owned()),
        })
    })
}

fn payload(args: &[LV]) -> Result<Vec<Value>, ErrorValue> {
    args.iter().map(to_value).collect()
}

fn spawn_with(lua: &Lua, args: Variadic<LV>, monitor: bool, link: bool) -> mlua::Result<(LV, LV)> {
    spawn_named(lua, &args, monitor, link, None, None)
}

/// The spawn family (`process.spawn*` and a Spawner's): entry id, host, then arguments;
/// `name` registers the child, `context` adds to the caller's context values.
pub(crate) fn spawn_named(
    lua: &Lua,
    args: &[LV],
    monitor: bool,
    link: bool,
    name: Option<String>,
    context: Option<crate::command::ContextOverlay>,
) -> mlua::Result<(LV, LV)> {
    if args.len() < 2 {
        return fail(
            lua,
            ErrorValue::new(kind::INVALID, "spawn needs an entry id and a host"),
        );
    }
    let (Some(id), Some(hostname)) = (dest_string(&args[0]), dest_string(&args[1])) else {
        return fail(
            lua,
            ErrorValue::new(kind::INVALID, "spawn: entry id and host must be strings"),
        );
    };
    let vals = match payload(&args[2..]) {
        Ok(v) => v,
        Err(e) => return fail(lua, e),
    };
    let reply = dispatch(
        lua,
        Command::Spawn {
            entry: id,
            host: hostname,
            args: vals,
            monitor,
            link,
            name,
            context,
        },
    )?;
    answer(lua, reply)
}

fn control(lua: &Lua, dest: LV, make: impl FnOnce(String) -> Command) -> mlua::Result<(LV, LV)> {
    let Some(d) = dest_string(&dest) else {
        return fail(
            lua,
            ErrorValue::new(kind::INVALID, "destination must be a pid or a name"),
        );
    };
    let reply = dispatch(lua, make(d))?;
    answer(lua, reply)
}

/// Wraps a Rust function with the prelude's `blocking` so a pending reply parks the caller.
fn blocking(
    lua: &Lua,
    prelude: &Table,
    f: impl Fn(&Lua, Variadic<LV>) -> mlua::Result<(LV, LV)> + 'static,
) -> mlua::Result<Function> {
    let wrap: Function = prelude.get("blocking")?;
    wrap.call(lua.create_function(f)?)
}

pub fn module(lua: &Lua, prelude: &Table) -> mlua::Result<Table> {
    let p = lua.create_table()?;
    p.set(
        "pid",
        lua.create_function(|lua, ()| Ok(current(lua)?.borrow().pid_text()))?,
    )?;
    p.set(
        "id",
        lua.create_function(|lua, ()| Ok(current(lua)?.borrow().entry.id.clone()))?,
    )?;
    p.set(
        "send",
        lua.create_function(|lua, args: mlua::MultiValue| {
            if args.len() < 2 {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, "send needs a destination and a topic"),
                );
            }
            let (Some(dest), Some(topic)) = (send_dest(&args[0]), dest_string(&args[1])) else {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, "send: destination and topic must be strings"),
                );
            };
            let vals = match args.range(2..).map(to_value).collect() {
                Ok(v) => v,
                Err(e) => return fail(lua, e),
            };
            let reply = dispatch(
                lua,
                Command::Send {
                    dest,
                    topic,
                    payload: vals,
                },
            )?;
            match reply {
                Reply::Done(Err(e)) => fail(lua, e),
                // Sends never wait: a remote or sharded route has queued the message.
                _ => ok_true(),
            }
        })?,
    )?;
    p.set(
        "spawn",
        blocking(lua, prelude, |lua, a| spawn_with(lua, a, false, false))?,
    )?;
    p.set(
        "spawn_monitored",
        blocking(lua, prelude, |lua, a| spawn_with(lua, a, true, false))?,
    )?;
    p.set(
        "spawn_linked",
        blocking(lua, prelude, |lua, a| spawn_with(lua, a, false, true))?,
    )?;
    p.set(
        "spawn_linked_monitored",
        blocking(lua, prelude, |lua, a| spawn_with(lua, a, true, true))?,
    )?;
    p.set(
        "inbox",
        lua.create_function(|lua, ()| {
            let st = current(lua)?;
            if let Some((_, ud)) = &st.borrow().inbox {
                return Ok(ud.clone());
            }
            let ch = unbounded_chan();
            let ud = new_chan_ud(lua, ch.clone())?;
            let mut s = st.borrow_mut();
            s.inbox = Some((ch, ud.clone()));
            s.flush_pending(lua)?;
            Ok(ud)
        })?,
    )?;
    p.set(
        "events",
        lua.create_function(|lua, ()| {
            let st = current(lua)?;
            if let Some((_, ud)) = &st.borrow().events {
                return Ok(ud.clone());
            }
            let ch = unbounded_chan();
            let ud = new_chan_ud(lua, ch.clone())?;
            let mut s = st.borrow_mut();
            s.events = Some((ch, ud.clone()));
            s.flush_pending(lua)?;
            Ok(ud)
        })?,
    )?;
    p.set(
        "listen",
        lua.create_function(|lua, (topic, opts): (String, Option<Table>)| {
            if topic.is_empty() || topic.starts_with('@') {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, format!("invalid listen topic: '{topic}'")),
                );
            }
            let as_message = match &opts {
                Some(o) => o.get::<Option<bool>>("message")?.unwrap_or(false),
                None => false,
            };
            let st = current(lua)?;
            if let Some((_, ud)) = st.borrow().listens.get(&topic) {
                return Ok((LV::UserData(ud.clone()), LV::Nil));
            }
            let ch = unbounded_chan();
            ch.borrow_mut().raw = !as_message;
            let ud = new_chan_ud(lua, ch.clone())?;
            let mut s = st.borrow_mut();
            s.listens.insert(topic, (ch, ud.clone()));
            s.flush_pending(lua)?;
            Ok((LV::UserData(ud), LV::Nil))
        })?,
    )?;
    p.set(
        "unlisten",
        lua.create_function(|lua, ud: AnyUserData| {
            let ch = ud
                .borrow::<ChanUd>()
                .map_err(|_| {
                    mlua::Error::runtime("bad argument #1 to 'unlisten' (channel expected)")
                })?
                .0
                .clone();
            let st = current(lua)?;
            st.borrow_mut()
                .listens
                .retain(|_, (c, _)| !std::rc::Rc::ptr_eq(c, &ch));
            Ok(())
        })?,
    )?;
    p.set(
        "terminate",
        blocking(lua, prelude, |lua, a| {
            control(lua, arg(&a, 0), |dest| Command::Terminate { dest })
        })?,
    )?;
    p.set(
        "cancel",
        blocking(lua, prelude, |lua, a| {
            let reason = dest_string(&arg(&a, 1)).unwrap_or_default();
            control(lua, arg(&a, 0), |dest| Command::Cancel { dest, reason })
        })?,
    )?;
    for (name, on) in [("monitor", true), ("unmonitor", false)] {
        p.set(
            name,
            blocking(lua, prelude, move |lua, a| {
                control(lua, arg(&a, 0), |dest| Command::Monitor { dest, on })
            })?,
        )?;
    }
    for (name, on) in [("link", true), ("unlink", false)] {
        p.set(
            name,
            blocking(lua, prelude, move |lua, a| {
                control(lua, arg(&a, 0), |dest| Command::Link { dest, on })
            })?,
        )?;
    }
    p.set(
        "get_options",
        lua.create_function(|lua, ()| {
            let opts = super::request(lua, Command::Options { trap_links: None })?;
            let trap = match &opts {
                Ok(Value::Table(t)) => matches!(t.get("trap_links"), Some(Value::Bool(true))),
                _ => false,
            };
            let t = lua.create_table()?;
            t.set("trap_links", trap)?;
            Ok(t)
        })?,
    )?;
    p.set(
        "set_options",
        lua.create_function(|lua, opts: Table| {
            let mut trap = None;
            for pair in opts.pairs::<LV, LV>() {
                let (k, v) = pair?;
                match (dest_string(&k).as_deref(), v) {
                    (Some("trap_links"), LV::Boolean(b)) => trap = Some(b),
                    (k, _) => {
                        let msg = format!("unknown or invalid option: {}", k.unwrap_or("?"));
                        let e =
                            lua.create_userdata(ErrorUd(ErrorValue::new(kind::INVALID, msg)))?;
                        return Ok((LV::Boolean(false), LV::UserData(e)));
                    }
                }
            }
            if trap.is_some() {
                if let Err(e) = super::request(lua, Command::Options { trap_links: trap })? {
                    return fail(lua, e);
                }
            }
            Ok((LV::Boolean(true), LV::Nil))
        })?,
    )?;
    let ev = lua.create_table()?;
    ev.set("EXIT", "pid.exit")?;
    ev.set("LINK_DOWN", "pid.link.down")?;
    ev.set("CANCEL", "pid.cancel")?;
    p.set("event", ev)?;
    p.set("registry", registry(lua)?)?;
    Ok(p)
}

fn registry(lua: &Lua) -> mlua::Result<Table> {
    let r = lua.create_table()?;
    r.set("LOCAL", 0)?;
    r.set("EVENTUAL", 1)?;
    r.set("CONSISTENT", 2)?;
    r.set("STRONG", 3)?;
    r.set(
        "register",
        lua.create_function(
            |lua, (name, pid, scope): (String, Option<String>, Option<i64>)| {
                let op = match scope.unwrap_or(0) {
                    0 => NameOp::Register { name, pid },
                    1 => NameOp::Claim { name, pid },
                    s => {
                        let m = format!(
                            "registry scope {s}: distributed registry not available (LOCAL and EVENTUAL are)"
                        );
                        return fail(lua, ErrorValue::new(kind::INTERNAL, m));
                    }
                };
                match super::request(lua, Command::Name(op))? {
                    Ok(_) => ok_true(),
                    Err(e) => fail(lua, e),
                }
            },
        )?,
    )?;
    r.set(
        "lookup",
        lua.create_function(|lua, name: String| {
            let reply = dispatch(lua, Command::Name(NameOp::Lookup { name }))?;
            answer(lua, reply)
        })?,
    )?;
    r.set(
        "unregister",
        lua.create_function(|lua, (name, scope): (String, Option<i64>)| {
            let op = match scope.unwrap_or(0) {
                1 => NameOp::Release { name },
                _ => NameOp::Unregister { name },
            };
            match super::request(lua, Command::Name(op))? {
                Ok(Value::Bool(b)) => Ok(b),
                _ => Ok(false),
            }
        })?,
    )?;
    Ok(r)
}
