//! The `events` module: subscribe to and publish on the node's event bus (`crate::eventbus`).
//! A subscription's channel is fed from the bus when the process steps; it holds
//! `eventbus::SUB_BUFFER` items, and items that find it full are dropped and counted.

use super::channel::new_chan_ud;
use super::convert::to_value;
use super::coroutines::{Chan, ChanRef};
use super::errors::fail;
use super::{current, request};
use crate::command::Command;
use crate::eventbus::SUB_BUFFER;
use crate::value::{kind, ErrorValue, Value};
use mlua::{AnyUserData, Lua, MetaMethod, Table, UserData, UserDataMethods, Value as LV};
use std::cell::Cell;

pub struct SubscriptionUd {
    id: u64,
    chan: ChanRef,
    chan_ud: AnyUserData,
    closed: Cell<bool>,
}

impl UserData for SubscriptionUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("channel", |_, s, ()| Ok(s.chan_ud.clone()));
        m.add_method("close", |lua, s, ()| {
            if !s.closed.replace(true) {
                request(lua, Command::Unsubscribe { sub: s.id })?
                    .map_err(|e| mlua::Error::runtime(e.message))?;
                let st = current(lua)?;
                let mut st = st.borrow_mut();
                st.bus_subs.remove(&s.id);
                st.tasks.close(&mut s.chan.borrow_mut());
            }
            Ok(true)
        });
        m.add_meta_method(MetaMethod::ToString, |_, s, ()| {
            Ok(format!("events.Subscription{{id={}}}", s.id))
        });
    }
}

/// A required non-empty string argument, else an Invalid error naming it.
fn name_arg(v: &LV, what: &str) -> Result<String, ErrorValue> {
    match v {
        LV::String(s) if !s.as_bytes().is_empty() => Ok(s.to_string_lossy()),
        _ => Err(ErrorValue::new(
            kind::INVALID,
            format!("{what} must be a non-empty string"),
        )),
    }
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "subscribe",
        lua.create_function(|lua, (system, kind_pat): (LV, LV)| {
            let system = match name_arg(&system, "system") {
                Ok(s) => s,
                Err(e) => return fail(lua, e),
            };
            // Decision: a missing or empty kind pattern means every kind.
            let kind_pat = match &kind_pat {
                LV::Nil => None,
                LV::String(s) if s.as_bytes().is_empty() => None,
                LV::String(s) => Some(s.to_string_lossy()),
                _ => return fail(lua, ErrorValue::new(kind::INVALID, "kind must be a string")),
            };
            let st = current(lua)?;
            let id = match request(
                lua,
                Command::Subscribe {
                    system,
                    kind: kind_pat,
                },
            )? {
                Ok(Value::Int(id)) => id as u64,
                Ok(_) => return fail(lua, ErrorValue::new(kind::INTERNAL, "no subscription id")),
                Err(e) => return fail(lua, e),
            };
            let chan = Chan::new(SUB_BUFFER);
            let chan_ud = new_chan_ud(lua, chan.clone())?;
            st.borrow_mut().bus_subs.insert(id, chan.clone());
            let ud = lua.create_userdata(SubscriptionUd {
                id,
                chan,
                chan_ud,
                closed: Cell::new(false),
            })?;
            Ok((LV::UserData(ud), LV::Nil))
        })?,
    )?;
    t.set(
        "send",
        lua.create_function(|lua, (system, kind_v, path, data): (LV, LV, LV, LV)| {
            let args = name_arg(&system, "system").and_then(|s| {
                Ok((
                    s,
                    name_arg(&kind_v, "kind")?,
                    name_arg(&path, "path")?,
                    to_value(&data)?,
                ))
            });
            let (system, k, path, data): (String, String, String, Value) = match args {
                Ok(a) => a,
                Err(e) => return fail(lua, e),
            };
            match request(
                lua,
                Command::Publish {
                    system,
                    kind: k,
                    path,
                    data,
                },
            )? {
                Ok(_) => Ok((LV::Boolean(true), LV::Nil)),
                Err(e) => fail(lua, e),
            }
        })?,
    )?;
    Ok(t)
}
