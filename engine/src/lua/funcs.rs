//! `funcs` (call/async/new → Executor), Future objects, the `ctx` module and the context-carrying
//! Spawner (`process.with_context` / `process.with_options`).
//!
//! A call runs the `function.lua` entry as a short-lived process on `node::FUNCTION_HOST`
//! (`Core::call`); its end completes a tag of the caller, so the caller's coroutine parks on
//! that tag like on any world command, and a completion for a dead caller is dropped.
//!
//! Decisions where the spec says 'unclear':
//! - `with_options` (Wippy: "implementation-specific options", its example `{timeout = 5000}`)
//!   reads `timeout` (milliseconds as a number, or a duration string/value such as `"2s"`) and
//!   `idempotent` (boolean: a call served by another node may run again elsewhere when a reply
//!   is lost); other keys are kept and ignored. A bad value is `nil, err` (Invalid). Options
//!   merge over the executor's earlier ones. The timeout bounds a call served by another node
//!   (its dispatch deadline, and the deadline of its one attempt) and a call served here (the
//!   callee is stopped when it runs out); a failed call reports kind Timeout.
//! - `with_actor` / `with_scope` are accepted and stored; there is no security model yet.
//! - A future's channel is not closed after its one delivery.
//! - `future:cancel()` does not block: it stops the callee if it is still running and the
//!   future fails with kind Canceled; if the callee already finished, its result stands.

use super::channel::new_chan_ud;
use super::convert::{to_lua, to_value};
use super::coroutines::{ChanRef, Item};
use super::errors::{fail, ErrorUd};
use super::lua_process::new_private_chan;
use super::payload::Payload;
use super::{answer, current, dispatch};
use crate::command::{CallOptions, Command, Reply};
use crate::value::{kind, ErrorValue, Value};
use mlua::{
    AnyUserData, Function, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods,
    Value as LV, Variadic,
};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

type Ctx = BTreeMap<String, Value>;

fn invalid(m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(kind::INVALID, m)
}

/// Reads a `with_context` table: string keys, values copied as they would cross a process.
fn ctx_table(v: &LV) -> Result<Ctx, ErrorValue> {
    let LV::Table(t) = v else {
        return Err(invalid("context must be a table"));
    };
    let mut out = Ctx::new();
    for pair in t.pairs::<LV, LV>() {
        let (k, v) = pair.map_err(|e| ErrorValue::new(kind::INTERNAL, e.to_string()))?;
        let LV::String(k) = k else {
            return Err(invalid("context keys must be strings"));
        };
        let k = k.to_string_lossy();
        if k.is_empty() {
            return Err(invalid("context keys must not be empty"));
        }
        out.insert(k, to_value(&v)?);
    }
    Ok(out)
}

fn merged(base: &Ctx, over: &Ctx) -> Ctx {
    let mut m = base.clone();
    for (k, v) in over {
        m.insert(k.clone(), v.clone());
    }
    m
}

/// The calling process's context values.
fn caller_context(lua: &Lua) -> mlua::Result<Ctx> {
    match super::request(lua, Command::Context)? {
        Ok(Value::Table(t)) => Ok(t
            .map
            .iter()
            .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v.clone())))
            .collect()),
        _ => Ok(Ctx::new()),
    }
}

/// Context a child adds over its parent's (None: inherit as is).
fn overlay(own: &Ctx) -> Option<Ctx> {
    (!own.is_empty()).then(|| own.clone())
}

/// The options this runtime reads from a `with_options` table, over `base`.
fn call_options(base: CallOptions, v: &LV) -> Result<CallOptions, ErrorValue> {
    let LV::Table(t) = v else {
        return Err(invalid("options must be a table"));
    };
    let get = |k: &str| {
        t.raw_get::<LV>(k)
            .map_err(|e| ErrorValue::new(kind::INTERNAL, e.to_string()))
    };
    let mut o = base;
    const MS: f64 = 1_000_000.0;
    let timeout = match get("timeout")? {
        LV::Nil => None,
        LV::Integer(ms) if ms > 0 => Some((ms as u64).saturating_mul(MS as u64)),
        LV::Number(ms) if ms.is_finite() && ms > 0.0 => Some((ms * MS).min(u64::MAX as f64) as u64),
        d @ (LV::String(_) | LV::UserData(_)) => match super::time::to_ns(&d) {
            Ok(n) if n > 0 => Some(n as u64),
            _ => return Err(invalid("timeout must be a positive duration")),
        },
        _ => {
            return Err(invalid(
                "timeout must be a positive number of milliseconds or a duration",
            ))
        }
    };
    if timeout.is_some() {
        o.timeout_ns = timeout;
    }
    match get("idempotent")? {
        LV::Nil => {}
        LV::Boolean(b) => o.idempotent = b,
        _ => return Err(invalid("idempotent must be a boolean")),
    }
    Ok(o)
}

/// Starts a call; `args[0]` is the target. Returns the tag its completion will carry.
fn start_call(
    lua: &Lua,
    own: &Ctx,
    options: CallOptions,
    args: &[LV],
) -> mlua::Result<Result<u64, ErrorValue>> {
    let target = match args.first() {
        Some(LV::String(s)) => s.to_string_lossy(),
        _ => {
            return Ok(Err(invalid(
                "function id must be a string (namespace:name)",
            )))
        }
    };
    let vals: Result<Vec<Value>, ErrorValue> = args[1..].iter().map(to_value).collect();
    let vals = match vals {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let reply = dispatch(
        lua,
        Command::Call {
            target,
            args: vals,
            context: overlay(own),
            options,
        },
    )?;
    Ok(match reply {
        Reply::Pending(tag) => Ok(tag),
        other => other.into_result().and_then(|v| {
            Err(ErrorValue::new(
                kind::INTERNAL,
                format!("call answered without waiting: {v:?}"),
            ))
        }),
    })
}

/// `call`: parks the calling coroutine until the callee ends (wrapped by the prelude's `blocking`).
fn do_call(lua: &Lua, own: &Ctx, opts: CallOptions, args: &[LV]) -> mlua::Result<(LV, LV)> {
    match start_call(lua, own, opts, args)? {
        Err(e) => fail(lua, e),
        Ok(tag) => super::lua_process::await_tag(lua, tag),
    }
}

fn do_async(lua: &Lua, own: &Ctx, opts: CallOptions, args: &[LV]) -> mlua::Result<(LV, LV)> {
    match start_call(lua, own, opts, args)? {
        Err(e) => fail(lua, e),
        Ok(tag) => {
            let chan = new_private_chan();
            let chan_ud = new_chan_ud(lua, chan.clone())?;
            let slot = Rc::new(RefCell::new(FutureSlot {
                chan,
                result: None,
                canceled: false,
                tag,
            }));
            current(lua)?.borrow_mut().futures.insert(tag, slot.clone());
            let ud = lua.create_userdata(FutureUd { slot, chan_ud })?;
            Ok((LV::UserData(ud), LV::Nil))
        }
    }
}

// ---- Future ------------------------------------------------------------------------------------

/// The state of one `funcs.async` call, shared by the Future userdata and the process routing.
pub struct FutureSlot {
    pub chan: ChanRef,
    pub result: Option<Result<Value, ErrorValue>>,
    pub canceled: bool,
    pub tag: u64,
}

/// Records a completed call on its future; returns what its channel delivers (a Payload on
/// success, the error object on failure).
pub fn complete_future(f: &Rc<RefCell<FutureSlot>>, result: Result<Value, ErrorValue>) -> Item {
    let item = match &result {
        Ok(v) => Item::Payload(v.clone()),
        Err(e) => Item::Done(Err(e.clone())),
    };
    f.borrow_mut().result = Some(result);
    item
}

pub struct FutureUd {
    slot: Rc<RefCell<FutureSlot>>,
    chan_ud: AnyUserData,
}

impl UserData for FutureUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("response", |_, f, ()| Ok(f.chan_ud.clone()));
        m.add_method("channel", |_, f, ()| Ok(f.chan_ud.clone()));
        m.add_method("is_complete", |_, f, ()| {
            Ok(f.slot.borrow().result.is_some())
        });
        m.add_method("is_canceled", |_, f, ()| Ok(f.slot.borrow().canceled));
        m.add_method("result", |lua, f, ()| match &f.slot.borrow().result {
            None => Ok((LV::Nil, LV::Nil)),
            Some(Ok(v)) => Ok((
                LV::UserData(lua.create_userdata(Payload::of(v.clone()))?),
                LV::Nil,
            )),
            Some(Err(e)) => fail(lua, e.clone()),
        });
        m.add_method("error", |lua, f, ()| match &f.slot.borrow().result {
            Some(Err(e)) => Ok((LV::UserData(lua.create_userdata(ErrorUd(e.clone()))?), true)),
            _ => Ok((LV::Nil, false)),
        });
        m.add_method("cancel", |lua, f, ()| {
            let (tag, pending) = {
                let mut s = f.slot.borrow_mut();
                s.canceled = true;
                (s.tag, s.result.is_none())
            };
            // The node stops the callee if it still runs; its late result is then ignored.
            let stopped = pending
                && matches!(
                    super::request(lua, Command::CancelCall { tag })?,
                    Ok(Value::Bool(true))
                );
            if stopped {
                let e = ErrorValue::new(kind::CANCELED, "function call canceled");
                let st = current(lua)?;
                let mut st = st.borrow_mut();
                st.futures.remove(&tag);
                let item = complete_future(&f.slot, Err(e));
                let ch = f.slot.borrow().chan.clone();
                st.tasks.deliver(&ch, item);
            }
            Ok((true, LV::Nil))
        });
        m.add_meta_method(MetaMethod::ToString, |_, _, ()| Ok("Future"));
    }
}

// ---- Executor ----------------------------------------------------------------------------------

#[derive(Clone, Default)]
pub struct ExecUd {
    context: Ctx,
    /// What `with_options` set that the node reads (the rest is ignored).
    options: CallOptions,
    // Stored for later use (security); not interpreted yet.
    #[allow(dead_code)]
    actor: Value,
    #[allow(dead_code)]
    scope: Value,
}

impl UserData for ExecUd {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_meta_field_with(MetaMethod::Index, |lua| {
            lua.named_registry_value::<Table>("weft.exec_methods")
        });
    }
}

fn exec_of(ud: &AnyUserData) -> mlua::Result<ExecUd> {
    Ok(ud
        .borrow::<ExecUd>()
        .map_err(|_| mlua::Error::runtime("bad argument #1 (executor expected)"))?
        .clone())
}

fn exec_methods(lua: &Lua, blocking: &Function) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "with_context",
        lua.create_function(|lua, (ud, v): (AnyUserData, LV)| {
            let mut e = exec_of(&ud)?;
            match ctx_table(&v) {
                Ok(c) => {
                    e.context = merged(&e.context, &c);
                    Ok((LV::UserData(lua.create_userdata(e)?), LV::Nil))
                }
                Err(err) => fail(lua, err),
            }
        })?,
    )?;
    t.set(
        "with_options",
        lua.create_function(|lua, (ud, v): (AnyUserData, LV)| {
            let mut e = exec_of(&ud)?;
            match call_options(e.options, &v) {
                Ok(o) => {
                    e.options = o;
                    Ok((LV::UserData(lua.create_userdata(e)?), LV::Nil))
                }
                Err(err) => fail(lua, err),
            }
        })?,
    )?;
    for field in ["with_actor", "with_scope"] {
        t.set(
            field,
            lua.create_function(move |lua, (ud, v): (AnyUserData, LV)| {
                let mut e = exec_of(&ud)?;
                let val = to_value(&v).unwrap_or(Value::Nil);
                match field {
                    "with_actor" => e.actor = val,
                    _ => e.scope = val,
                }
                lua.create_userdata(e)
            })?,
        )?;
    }
    let raw_call = lua.create_function(|lua, args: Variadic<LV>| {
        let Some(LV::UserData(ud)) = args.first() else {
            return Err(mlua::Error::runtime("bad argument #1 (executor expected)"));
        };
        let e = exec_of(ud)?;
        do_call(lua, &e.context, e.options, &args[1..])
    })?;
    t.set("call", blocking.call::<Function>(raw_call)?)?;
    t.set(
        "async",
        lua.create_function(|lua, args: Variadic<LV>| {
            let Some(LV::UserData(ud)) = args.first() else {
                return Err(mlua::Error::runtime("bad argument #1 (executor expected)"));
            };
            let e = exec_of(ud)?;
            do_async(lua, &e.context, e.options, &args[1..])
        })?,
    )?;
    t.set_readonly(true);
    Ok(t)
}

/// The `funcs` module.
pub fn module(lua: &Lua, prelude: &Table) -> mlua::Result<Table> {
    let blocking: Function = prelude.get("blocking")?;
    lua.set_named_registry_value("weft.exec_methods", exec_methods(lua, &blocking)?)?;
    let t = lua.create_table()?;
    let none = CallOptions::default();
    let raw_call =
        lua.create_function(move |lua, args: Variadic<LV>| do_call(lua, &Ctx::new(), none, &args))?;
    t.set("call", blocking.call::<Function>(raw_call)?)?;
    t.set(
        "async",
        lua.create_function(move |lua, args: Variadic<LV>| {
            do_async(lua, &Ctx::new(), none, &args)
        })?,
    )?;
    t.set(
        "new",
        lua.create_function(|lua, ()| lua.create_userdata(ExecUd::default()))?,
    )?;
    Ok(t)
}

// ---- ctx ---------------------------------------------------------------------------------------

/// The `ctx` module: read-only view of the process's context values.
pub fn ctx_module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        lua.create_function(|lua, key: LV| {
            let key = match &key {
                LV::String(s) if !s.as_bytes().is_empty() => s.to_string_lossy(),
                _ => return fail(lua, invalid("context key must be a non-empty string")),
            };
            let c = caller_context(lua)?;
            match c.get(&key) {
                Some(v) => Ok((to_lua(lua, v)?, LV::Nil)),
                None => fail(
                    lua,
                    ErrorValue::new(kind::NOT_FOUND, format!("context key not found: {key}")),
                ),
            }
        })?,
    )?;
    t.set(
        "all",
        lua.create_function(|lua, ()| {
            let c = caller_context(lua)?;
            let t = lua.create_table()?;
            for (k, v) in c.iter() {
                t.raw_set(k.as_str(), to_lua(lua, v)?)?;
            }
            Ok((t, LV::Nil))
        })?,
    )?;
    Ok(t)
}

// ---- Spawner -----------------------------------------------------------------------------------

#[derive(Clone, Default)]
pub struct SpawnerUd {
    context: Ctx,
    // Stored for later use (options such as network, security); not interpreted yet.
    #[allow(dead_code)]
    options: Value,
    #[allow(dead_code)]
    actor: Value,
    #[allow(dead_code)]
    scope: Value,
    name: Option<String>,
}

impl SpawnerUd {
    fn spawn(
        &self,
        lua: &Lua,
        args: Variadic<LV>,
        monitor: bool,
        link: bool,
    ) -> mlua::Result<(LV, LV)> {
        super::process::spawn_named(
            lua,
            &args,
            monitor,
            link,
            self.name.clone(),
            overlay(&self.context),
        )
    }
}

impl UserData for SpawnerUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("with_context", |lua, s, v: LV| match ctx_table(&v) {
            Ok(c) => {
                let mut n = s.clone();
                n.context = merged(&n.context, &c);
                Ok((LV::UserData(lua.create_userdata(n)?), LV::Nil))
            }
            Err(e) => fail(lua, e),
        });
        m.add_method("with_options", |lua, s, v: LV| {
            let mut n = s.clone();
            n.options = to_value(&v).unwrap_or(Value::Nil);
            lua.create_userdata(n)
        });
        m.add_method("with_actor", |lua, s, v: LV| {
            let mut n = s.clone();
            n.actor = to_value(&v).unwrap_or(Value::Nil);
            lua.create_userdata(n)
        });
        m.add_method("with_scope", |lua, s, v: LV| {
            let mut n = s.clone();
            n.scope = to_value(&v).unwrap_or(Value::Nil);
            lua.create_userdata(n)
        });
        m.add_method("with_name", |lua, s, name: String| {
            let mut n = s.clone();
            n.name = Some(name);
            lua.create_userdata(n)
        });
        m.add_method("spawn", |lua, s, a: Variadic<LV>| {
            s.spawn(lua, a, false, false)
        });
        m.add_method("spawn_monitored", |lua, s, a: Variadic<LV>| {
            s.spawn(lua, a, true, false)
        });
        m.add_method("spawn_linked", |lua, s, a: Variadic<LV>| {
            s.spawn(lua, a, false, true)
        });
        m.add_method("spawn_linked_monitored", |lua, s, a: Variadic<LV>| {
            s.spawn(lua, a, true, true)
        });
        m.add_meta_method(MetaMethod::ToString, |_, _, ()| Ok("process.Spawner"));
    }
}

/// `process.exec(id, host, ...)`: spawn, wait for the end, return the result (a Rust primitive
/// wrapped by the prelude's `blocking`). Context values propagate as for calls.
fn process_exec(lua: &Lua, args: mlua::Variadic<LV>) -> mlua::Result<(LV, LV)> {
    let (Some(LV::String(id)), Some(LV::String(host_id))) = (args.first(), args.get(1)) else {
        return fail(lua, invalid("process.exec needs an entry id and a host"));
    };
    let (id, host_id) = (id.to_string_lossy(), host_id.to_string_lossy());
    let vals: Result<Vec<Value>, ErrorValue> = args[2..].iter().map(to_value).collect();
    let vals = match vals {
        Ok(v) => v,
        Err(e) => return fail(lua, e),
    };
    let reply = dispatch(
        lua,
        Command::Exec {
            target: id,
            host: host_id,
            args: vals,
        },
    )?;
    answer(lua, reply)
}

/// Adds `with_context` / `with_options` (Spawner constructors) and `exec` to the `process` table.
pub fn extend_process_exec(lua: &Lua, p: &Table, prelude: &Table) -> mlua::Result<()> {
    let blocking: Function = prelude.get("blocking")?;
    let raw = lua.create_function(process_exec)?;
    p.set("exec", blocking.call::<Function>(raw)?)?;
    Ok(())
}

/// Adds `with_context` / `with_options` (Spawner constructors) to the `process` table.
pub fn extend_process(lua: &Lua, p: &Table) -> mlua::Result<()> {
    p.set(
        "with_context",
        lua.create_function(|lua, v: LV| match ctx_table(&v) {
            Ok(c) => Ok((
                LV::UserData(lua.create_userdata(SpawnerUd {
                    context: c,
                    ..Default::default()
                })?),
                LV::Nil,
            )),
            Err(e) => fail(lua, e),
        })?,
    )?;
    p.set(
        "with_options",
        lua.create_function(|lua, v: LV| {
            lua.create_userdata(SpawnerUd {
                options: to_value(&v).unwrap_or(Value::Nil),
                ..Default::default()
            })
        })?,
    )?;
    Ok(())
}
