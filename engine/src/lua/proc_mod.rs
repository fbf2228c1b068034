//! The `process` global: identity, send, spawn family, inbox/events/listen, control, names.
//! Every call acts on the node core at once; none blocks.

use super::channel::{new_chan_ud, ChanUd};
use super::convert::to_value;
use super::errors::{fail, ErrorUd};
use super::process::unbounded_chan;
use super::{current, host};
use crate::node::SpawnOptions;
use crate::value::{kind, ErrorValue, Value};
use mlua::{AnyUserData, Lua, Table, Value as LV, Variadic};

fn ok_true() -> mlua::Result<(LV, LV)> {
    Ok((LV::Boolean(true), LV::Nil))
}

fn result(lua: &Lua, r: Result<(), ErrorValue>) -> mlua::Result<(LV, LV)> {
    match r {
        Ok(()) => ok_true(),
        Err(e) => fail(lua, e),
    }
}

fn dest_string(v: &LV) -> Option<String> {
    match v {
        LV::String(s) => Some(s.to_string_lossy()),
        _ => None,
    }
}

fn payload(args: &[LV]) -> Result<Vec<Value>, ErrorValue> {
    args.iter().map(to_value).collect()
}

fn spawn_with(lua: &Lua, args: Variadic<LV>, monitor: bool, link: bool) -> mlua::Result<(LV, LV)> {
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
    let st = current(lua)?;
    let me = st.borrow().id;
    let h = host(lua);
    let r = h.core.borrow_mut().spawn(
        &id,
        &hostname,
        vals,
        SpawnOptions {
            parent: Some(me),
            monitor,
            link,
            ..Default::default()
        },
    );
    match r {
        Ok(pid) => Ok((LV::String(lua.create_string(pid.to_string())?), LV::Nil)),
        Err(e) => fail(lua, e),
    }
}

fn control(
    lua: &Lua,
    dest: LV,
    f: impl FnOnce(&mut crate::node::Core, u64, &str) -> Result<(), ErrorValue>,
) -> mlua::Result<(LV, LV)> {
    let Some(d) = dest_string(&dest) else {
        return fail(
            lua,
            ErrorValue::new(kind::INVALID, "destination must be a pid or a name"),
        );
    };
    let me = current(lua)?.borrow().id;
    let h = host(lua);
    let r = f(&mut h.core.borrow_mut(), me, &d);
    result(lua, r)
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let p = lua.create_table()?;
    p.set(
        "pid",
        lua.create_function(|lua, ()| Ok(current(lua)?.borrow().pid_str.clone()))?,
    )?;
    p.set(
        "id",
        lua.create_function(|lua, ()| Ok(current(lua)?.borrow().entry.id.clone()))?,
    )?;
    p.set(
        "send",
        lua.create_function(|lua, args: Variadic<LV>| {
            if args.len() < 2 {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, "send needs a destination and a topic"),
                );
            }
            let (Some(d), Some(topic)) = (dest_string(&args[0]), dest_string(&args[1])) else {
                return fail(
                    lua,
                    ErrorValue::new(kind::INVALID, "send: destination and topic must be strings"),
                );
            };
            let vals = match payload(&args[2..]) {
                Ok(v) => v,
                Err(e) => return fail(lua, e),
            };
            let me = current(lua)?.borrow().id;
            let h = host(lua);
            let r = h.core.borrow_mut().send(Some(me), &d, topic, vals);
            result(lua, r)
        })?,
    )?;
    p.set(
        "spawn",
        lua.create_function(|lua, a: Variadic<LV>| spawn_with(lua, a, false, false))?,
    )?;
    p.set(
        "spawn_monitored",
        lua.create_function(|lua, a: Variadic<LV>| spawn_with(lua, a, true, false))?,
    )?;
    p.set(
        "spawn_linked",
        lua.create_function(|lua, a: Variadic<LV>| spawn_with(lua, a, false, true))?,
    )?;
    p.set(
        "spawn_linked_monitored",
        lua.create_function(|lua, a: Variadic<LV>| spawn_with(lua, a, true, true))?,
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
        lua.create_function(|lua, d: LV| control(lua, d, |c, _, d| c.terminate(d)))?,
    )?;
    p.set(
        "cancel",
        lua.create_function(|lua, (d, reason): (LV, Option<String>)| {
            control(lua, d, |c, me, d| {
                c.cancel(me, d, reason.unwrap_or_default())
            })
        })?,
    )?;
    p.set(
        "monitor",
        lua.create_function(|lua, d: LV| control(lua, d, |c, me, d| c.monitor(me, d)))?,
    )?;
    p.set(
        "unmonitor",
        lua.create_function(|lua, d: LV| control(lua, d, |c, me, d| c.unmonitor(me, d)))?,
    )?;
    p.set(
        "link",
        lua.create_function(|lua, d: LV| control(lua, d, |c, me, d| c.link(me, d)))?,
    )?;
    p.set(
        "unlink",
        lua.create_function(|lua, d: LV| control(lua, d, |c, me, d| c.unlink(me, d)))?,
    )?;
    p.set(
        "get_options",
        lua.create_function(|lua, ()| {
            let me = current(lua)?.borrow().id;
            let trap = host(lua)
                .core
                .borrow()
                .proc(me)
                .map(|p| p.trap_links)
                .unwrap_or(false);
            let t = lua.create_table()?;
            t.set("trap_links", trap)?;
            Ok(t)
        })?,
    )?;
    p.set(
        "set_options",
        lua.create_function(|lua, opts: Table| {
            let me = current(lua)?.borrow().id;
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
            if let Some(b) = trap {
                if let Some(p) = host(lua).core.borrow_mut().proc_mut(me) {
                    p.trap_links = b;
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
                if scope.unwrap_or(0) != 0 {
                    return fail(
                        lua,
                        ErrorValue::new(
                            kind::INTERNAL,
                            "distributed registry not available on a standalone node",
                        ),
                    );
                }
                let me = current(lua)?.borrow().id;
                let h = host(lua);
                let mut core = h.core.borrow_mut();
                let target = match pid {
                    Some(p) => match core.resolve(&p) {
                        Ok(t) => t,
                        Err(e) => {
                            drop(core);
                            return fail(lua, e);
                        }
                    },
                    None => me,
                };
                let r = core.register_name(&name, target);
                drop(core);
                result(lua, r)
            },
        )?,
    )?;
    r.set(
        "lookup",
        lua.create_function(|lua, name: String| {
            let h = host(lua);
            let core = h.core.borrow();
            match core.names.lookup(&name).and_then(|id| core.pid_of(id)) {
                Some(p) => Ok((LV::String(lua.create_string(p.to_string())?), LV::Nil)),
                None => {
                    drop(core);
                    fail(lua, ErrorValue::new(kind::NOT_FOUND, "name not registered"))
                }
            }
        })?,
    )?;
    r.set(
        "unregister",
        lua.create_function(|lua, (name, _scope): (String, Option<i64>)| {
            Ok(host(lua).core.borrow_mut().names.unregister(&name))
        })?,
    )?;
    Ok(r)
}
