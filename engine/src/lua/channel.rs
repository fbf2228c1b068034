//! The `channel` global: channels, their methods and `channel.select` (first ready case wins).
//! Blocking is done by the prelude's `park`; these primitives only answer now or register a wait.

use super::coroutines::{Case, Chan, ChanRef, Item, Selected, Wait, WaitKind};
use super::current;
use mlua::{
    AnyUserData, Lua, MetaMethod, MultiValue, Table, UserData, UserDataFields, Value as LV,
};

/// A channel handle. Identity (`==`) is the userdata's identity.
pub struct ChanUd(pub ChanRef);

impl UserData for ChanUd {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_meta_field_with(MetaMethod::Index, |lua| {
            lua.named_registry_value::<Table>("weft.chan_methods")
        });
    }
}

/// A select case: the channel's userdata and, for a send case, the value.
pub struct CaseUd {
    pub chan: AnyUserData,
    pub send: Option<LV>,
}

impl UserData for CaseUd {}

fn chan_of(ud: &AnyUserData) -> mlua::Result<ChanRef> {
    Ok(ud
        .borrow::<ChanUd>()
        .map_err(|_| mlua::Error::runtime("bad argument #1 (channel expected)"))?
        .0
        .clone())
}

pub fn new_chan_ud(lua: &Lua, ch: ChanRef) -> mlua::Result<AnyUserData> {
    lua.create_userdata(ChanUd(ch))
}

fn one(v: LV) -> MultiValue {
    let mut m = MultiValue::new();
    m.push_back(v);
    m
}

/// Runs a select for the current coroutine; parks it when nothing is ready.
fn do_select(
    lua: &Lua,
    kind: WaitKind,
    cases: Vec<(AnyUserData, Option<LV>)>,
    has_default: bool,
) -> mlua::Result<MultiValue> {
    let st = current(lua)?;
    let mut core_cases = Vec::with_capacity(cases.len());
    for (ud, send) in &cases {
        core_cases.push(Case {
            chan: chan_of(ud)?,
            send: send.clone().map(Item::Lua),
        });
    }
    let plain_send = kind == WaitKind::Send;
    // Outside a coroutine the process runs, only a select that need not wait can go ahead.
    let can_park = super::lua_process::parkable(lua, &st.borrow());
    let mut s = st.borrow_mut();
    let task = s.current_task;
    match s
        .tasks
        .select(task, core_cases, has_default || !can_park, plain_send)
    {
        Selected::Default if !has_default => {
            drop(s);
            Err(super::lua_process::ensure_parkable(lua, &st.borrow()).unwrap_err())
        }
        Selected::Closed => Err(mlua::Error::runtime("send on closed channel")),
        Selected::Default => {
            let t = lua.create_table()?;
            t.raw_set("default", true)?;
            t.raw_set("ok", true)?;
            Ok(one(LV::Table(t)))
        }
        Selected::Ready(c) => {
            drop(s);
            match kind {
                WaitKind::Recv => {
                    let v = match c.item {
                        Some(i) => super::lua_process::item_to_lua(lua, i)?,
                        None => LV::Nil,
                    };
                    let mut m = one(v);
                    m.push_back(LV::Boolean(c.ok));
                    Ok(m)
                }
                WaitKind::Send => Ok(one(LV::Boolean(true))),
                _ => {
                    let (ud, sent) = &cases[c.case];
                    let t = lua.create_table()?;
                    t.raw_set("channel", ud.clone())?;
                    let v = match (c.item, sent) {
                        (Some(i), _) => super::lua_process::item_to_lua(lua, i)?,
                        (None, Some(v)) => v.clone(),
                        _ => LV::Nil,
                    };
                    t.raw_set("value", v)?;
                    t.raw_set("ok", c.ok)?;
                    Ok(one(LV::Table(t)))
                }
            }
        }
        Selected::Blocked => {
            if let Some(Some(t)) = s.tasks.slots.get_mut(task) {
                t.wait = Some(Wait {
                    kind,
                    cases: cases
                        .into_iter()
                        .map(|(ud, v)| (LV::UserData(ud), v))
                        .collect(),
                });
            }
            super::interrupt::parking();
            Ok(one(super::park_value()))
        }
    }
}

pub fn install_raw(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    raw.set(
        "chan_send",
        lua.create_function(|lua, (ud, v): (AnyUserData, LV)| {
            do_select(lua, WaitKind::Send, vec![(ud, Some(v))], false)
        })?,
    )?;
    raw.set(
        "chan_recv",
        lua.create_function(|lua, ud: AnyUserData| {
            do_select(lua, WaitKind::Recv, vec![(ud, None)], false)
        })?,
    )?;
    raw.set(
        "chan_close",
        lua.create_function(|lua, ud: AnyUserData| {
            let ch = chan_of(&ud)?;
            let st = current(lua)?;
            let mut s = st.borrow_mut();
            let mut c = ch.borrow_mut();
            s.tasks.close(&mut c);
            Ok(())
        })?,
    )?;
    raw.set(
        "case_send",
        lua.create_function(|lua, (ud, v): (AnyUserData, LV)| {
            chan_of(&ud)?;
            lua.create_userdata(CaseUd {
                chan: ud,
                send: Some(v),
            })
        })?,
    )?;
    raw.set(
        "case_receive",
        lua.create_function(|lua, ud: AnyUserData| {
            chan_of(&ud)?;
            lua.create_userdata(CaseUd {
                chan: ud,
                send: None,
            })
        })?,
    )?;
    raw.set(
        "select",
        lua.create_function(|lua, (cases, default): (Table, Option<bool>)| {
            let has_default = default.unwrap_or(false)
                || cases.raw_get::<Option<bool>>("default")?.unwrap_or(false);
            let mut list = Vec::new();
            for v in cases.sequence_values::<LV>() {
                // Non-case items are skipped, as Wippy does.
                if let LV::UserData(ud) = v? {
                    if let Ok(c) = ud.borrow::<CaseUd>() {
                        list.push((c.chan.clone(), c.send.clone()));
                    }
                }
            }
            do_select(lua, WaitKind::Select, list, has_default)
        })?,
    )?;
    Ok(())
}

pub fn module(lua: &Lua, prelude: &Table) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "new",
        lua.create_function(|lua, cap: Option<i64>| {
            let cap = cap.unwrap_or(0);
            if cap < 0 {
                return Err(mlua::Error::runtime(
                    "bad argument #1 to 'new' (capacity must not be negative)",
                ));
            }
            new_chan_ud(lua, Chan::new(cap as usize))
        })?,
    )?;
    t.set("select", prelude.get::<LV>("select")?)?;
    Ok(t)
}
