//! The `registry` module (spec §1.15): reads entries and versions from the node's versioned
//! registry, builds changesets and applies them (a blocking world write, see `crate::registry`).
//!
//! Decisions where the spec is unclear:
//! - `Version:string()` is the id in decimal; `tostring(version)` is `Version(<id>)`.
//! - `changes:ops()` gives deletes as `{kind = "entry.delete", entry = {id = ...}}`.
//! - `apply_version(v)` to a version whose state equals the current one returns `true` and
//!   makes no new version (an empty changeset is not a version).
//! - Entries in `find` results are ordered by id.

use super::convert::{to_lua, to_value};
use super::errors::fail;
use super::{answer, dispatch};
use crate::command::{Command, RegistryQuery, Reply};
use crate::entries::Entry;
use crate::registry::{self as reg, Op, State};
use crate::value::{kind, ErrorValue, Table as VTable, Value};
use mlua::{
    AnyUserData, Function, Lua, MetaMethod, Result as LuaResult, Table, UserData, UserDataMethods,
    Value as LV,
};
use std::cell::RefCell;
use std::rc::Rc;

fn invalid(m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(kind::INVALID, m)
}

fn entry_to_lua(lua: &Lua, e: &Entry) -> LuaResult<LV> {
    let t = VTable::default()
        .with("id", Value::from(e.id.as_str()))
        .with("kind", Value::from(e.kind.as_str()))
        .with("meta", Value::table(e.meta.clone()))
        .with("data", Value::table(e.data.clone()));
    to_lua(lua, &Value::table(t))
}

fn entries_to_lua<'a>(lua: &Lua, it: impl Iterator<Item = &'a Rc<Entry>>) -> LuaResult<Table> {
    let t = lua.create_table()?;
    for (i, e) in it.enumerate() {
        t.raw_set(i + 1, entry_to_lua(lua, e)?)?;
    }
    Ok(t)
}

/// An id given as `"ns:name"` or `{ns = ..., name = ...}`.
fn id_of(v: Option<&Value>) -> Result<String, ErrorValue> {
    match v {
        Some(Value::Str(_)) => v
            .and_then(|v| v.as_str())
            .map(String::from)
            .ok_or_else(|| invalid("entry id must be a string")),
        Some(Value::Table(t)) => {
            let ns = t.get("ns").and_then(|v| v.as_str());
            let name = t.get("name").and_then(|v| v.as_str());
            match (ns, name) {
                (Some(ns), Some(name)) => Ok(format!("{ns}:{name}")),
                _ => Err(invalid("entry id table needs ns and name strings")),
            }
        }
        _ => Err(invalid("entry needs an id (string or {ns, name})")),
    }
}

fn entry_from_lua(v: &LV) -> Result<Entry, ErrorValue> {
    let LV::Table(_) = v else {
        return Err(invalid("entry must be a table"));
    };
    let Value::Table(t) = to_value(v)? else {
        return Err(invalid("entry must be a table"));
    };
    let id = id_of(t.get("id"))?;
    reg::check_id(&id)?;
    let kind = t
        .get("kind")
        .and_then(|v| v.as_str())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| invalid("entry needs a kind string"))?
        .to_string();
    let tab = |k: &str| -> Result<VTable, ErrorValue> {
        match t.get(k) {
            None | Some(Value::Nil) => Ok(VTable::default()),
            Some(Value::Table(x)) => Ok((**x).clone()),
            Some(_) => Err(invalid(format!("entry {k} must be a table"))),
        }
    };
    let (namespace, name) = crate::entries::parse_id(&id);
    Ok(Entry {
        id,
        namespace,
        name,
        kind: kind.into(),
        meta: tab("meta")?,
        data: tab("data")?,
        file: "<registry>".into(),
        ..Default::default()
    })
}

fn find_in(lua: &Lua, state: &State, filter: LV) -> LuaResult<(LV, LV)> {
    let pairs: Vec<(String, Value)> = match &filter {
        LV::Nil => Vec::new(),
        LV::Table(_) => match to_value(&filter) {
            Ok(Value::Table(t)) => t
                .map
                .iter()
                .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v.clone())))
                .collect(),
            Ok(_) => Vec::new(),
            Err(e) => return fail(lua, e),
        },
        _ => return fail(lua, invalid("find: filter must be a table")),
    };
    let criteria = match reg::parse_filter(&pairs) {
        Ok((c, ignored)) => {
            if !ignored.is_empty() {
                let _ = dispatch(
                    lua,
                    Command::Log {
                        level: crate::node::Level::Warn,
                        message:
                            "registry.find: filter keys ignored (use .kind/.ns/.name/.id or meta.*)"
                                .into(),
                        fields: vec![("keys".into(), ignored.join(","))],
                    },
                );
            }
            c
        }
        Err(e) => return fail(lua, e),
    };
    let t = entries_to_lua(lua, state.values().filter(|e| reg::matches(e, &criteria)))?;
    Ok((LV::Table(t), LV::Nil))
}

// ---- userdata -----------------------------------------------------------------------------------

#[derive(Clone, Copy)]
pub struct VersionUd(pub u64);

impl UserData for VersionUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("id", |_, v, ()| Ok(v.0 as i64));
        m.add_method("string", |_, v, ()| Ok(v.0.to_string()));
        m.add_method("previous", |lua, v, ()| {
            let ok = v.0 > 1 && has_version(lua, v.0 - 1)?;
            ok.then(|| lua.create_userdata(VersionUd(v.0 - 1)))
                .transpose()
        });
        m.add_method("next", |lua, v, ()| {
            let ok = has_version(lua, v.0 + 1)?;
            ok.then(|| lua.create_userdata(VersionUd(v.0 + 1)))
                .transpose()
        });
        m.add_meta_method(MetaMethod::ToString, |_, v, ()| {
            Ok(format!("Version({})", v.0))
        });
        m.add_meta_method(MetaMethod::Eq, |_, v, o: AnyUserData| {
            Ok(o.borrow::<VersionUd>().is_ok_and(|o| o.0 == v.0))
        });
    }
}

pub struct SnapshotUd {
    version: u64,
    state: Rc<State>,
}

impl UserData for SnapshotUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("entries", |lua, s, ()| {
            Ok((LV::Table(entries_to_lua(lua, s.state.values())?), LV::Nil))
        });
        m.add_method("get", |lua, s, id: String| match s.state.get(&id) {
            Some(e) => Ok((entry_to_lua(lua, e)?, LV::Nil)),
            None => fail(
                lua,
                ErrorValue::new(kind::NOT_FOUND, format!("entry not found: {id}")),
            ),
        });
        m.add_method("namespace", |lua, s, ns: String| {
            entries_to_lua(lua, s.state.values().filter(|e| e.namespace == ns))
        });
        m.add_method("find", |lua, s, filter: LV| find_in(lua, &s.state, filter));
        m.add_method("changes", |_, _, ()| Ok(ChangesUd::default()));
        m.add_method("version", |_, s, ()| Ok(VersionUd(s.version)));
        m.add_meta_method(MetaMethod::ToString, |_, s, ()| {
            Ok(format!(
                "Snapshot(version={}, entries={})",
                s.version,
                s.state.len()
            ))
        });
    }
}

#[derive(Default)]
pub struct ChangesUd {
    ops: RefCell<Vec<Op>>,
}

fn push_op(lua: &Lua, ud: AnyUserData, op: Result<Op, ErrorValue>) -> LuaResult<(LV, LV)> {
    match op {
        Ok(op) => {
            ud.borrow::<ChangesUd>()?.ops.borrow_mut().push(op);
            Ok((LV::UserData(ud), LV::Nil))
        }
        Err(e) => fail(lua, e),
    }
}

fn ops_to_lua(lua: &Lua, ops: &[Op]) -> LuaResult<Table> {
    let t = lua.create_table()?;
    for (i, op) in ops.iter().enumerate() {
        let item = lua.create_table()?;
        item.raw_set("kind", op.kind_name())?;
        match op {
            Op::Create(e) | Op::Update(e) => item.raw_set("entry", entry_to_lua(lua, e)?)?,
            Op::Delete(id) => {
                let e = lua.create_table()?;
                e.raw_set("id", id.as_str())?;
                item.raw_set("entry", e)?;
            }
        }
        t.raw_set(i + 1, item)?;
    }
    Ok(t)
}

impl UserData for ChangesUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_function("create", |lua, (ud, e): (AnyUserData, LV)| {
            push_op(lua, ud, entry_from_lua(&e).map(Op::Create))
        });
        m.add_function("update", |lua, (ud, e): (AnyUserData, LV)| {
            push_op(lua, ud, entry_from_lua(&e).map(Op::Update))
        });
        m.add_function("delete", |lua, (ud, id): (AnyUserData, LV)| {
            let id = to_value(&id).and_then(|v| {
                let id = id_of(Some(&v))?;
                reg::check_id(&id)?;
                Ok(Op::Delete(id))
            });
            push_op(lua, ud, id)
        });
        m.add_method("ops", |lua, c, ()| ops_to_lua(lua, &c.ops.borrow()));
        // `apply` blocks (a world write): it is a Lua wrapper found through __index.
        m.add_meta_function(MetaMethod::Index, |lua, (_, k): (LV, String)| {
            if k == "apply" {
                lua.named_registry_value::<LV>("weft.registry.apply")
            } else {
                Ok(LV::Nil)
            }
        });
        m.add_meta_method(MetaMethod::ToString, |_, c, ()| {
            Ok(format!("Changes({} ops)", c.ops.borrow().len()))
        });
    }
}

pub struct HistoryUd;

impl UserData for HistoryUd {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("versions", |lua, _, ()| versions(lua, ()));
        m.add_method("get_version", |lua, _, id: LV| {
            let n = version_arg(&id)?;
            if n > 0 && has_version(lua, n)? {
                Ok((LV::UserData(lua.create_userdata(VersionUd(n))?), LV::Nil))
            } else {
                fail(lua, not_found_version(&id))
            }
        });
        m.add_method("snapshot_at", |lua, _, v: LV| snapshot_at(lua, v));
    }
}

/// Reads registry state through the node: (version, entries).
fn read(lua: &Lua, q: RegistryQuery) -> LuaResult<Result<(u64, Rc<State>), ErrorValue>> {
    Ok(match dispatch(lua, Command::RegistryRead(q))? {
        Reply::State { version, state } => Ok((version, state)),
        other => Err(other
            .into_result()
            .err()
            .unwrap_or_else(|| ErrorValue::new(kind::INTERNAL, "unexpected registry reply"))),
    })
}

fn has_version(lua: &Lua, n: u64) -> LuaResult<bool> {
    Ok(read(lua, RegistryQuery::Version(n))?.is_ok())
}

fn version_arg(v: &LV) -> LuaResult<u64> {
    match v {
        LV::Integer(i) if *i > 0 => Ok(*i as u64),
        LV::Number(n) if *n >= 1.0 && n.fract() == 0.0 => Ok(*n as u64),
        LV::UserData(ud) => Ok(ud.borrow::<VersionUd>()?.0),
        _ => Ok(0),
    }
}

fn not_found_version(v: &LV) -> ErrorValue {
    ErrorValue::new(
        kind::NOT_FOUND,
        format!("version not found: {}", super::errors::display(v)),
    )
}

fn snapshot_at(lua: &Lua, v: LV) -> LuaResult<(LV, LV)> {
    let n = version_arg(&v)?;
    if n == 0 {
        return fail(lua, invalid("version must be a positive integer"));
    }
    match read(lua, RegistryQuery::Version(n))? {
        Ok((version, state)) => Ok((
            LV::UserData(lua.create_userdata(SnapshotUd { version, state })?),
            LV::Nil,
        )),
        Err(_) => fail(lua, not_found_version(&v)),
    }
}

fn versions(lua: &Lua, (): ()) -> LuaResult<(LV, LV)> {
    let ids = match dispatch(lua, Command::RegistryRead(RegistryQuery::Versions))? {
        Reply::Versions(ids) => ids,
        other => return fail(lua, other.into_result().unwrap_err()),
    };
    let t = lua.create_table()?;
    for (i, id) in ids.into_iter().enumerate() {
        t.raw_set(i + 1, VersionUd(id))?;
    }
    Ok((LV::Table(t), LV::Nil))
}

/// Submits `ops` and parks the caller until the world confirmed (or refused) the write.
fn submit(lua: &Lua, ops: Vec<Op>) -> LuaResult<(LV, LV)> {
    let reply = dispatch(lua, Command::RegistryApply { ops })?;
    answer(lua, reply)
}

const WRAP: &str = r#"
local blocking, raw_apply, raw_apply_version, mkversion = ...
local ap, apv = blocking(raw_apply), blocking(raw_apply_version)
local function apply(self)
  local v, e = ap(self)
  if e ~= nil then return nil, e end
  return mkversion(v)
end
local function apply_version(v)
  local r, e = apv(v)
  if e ~= nil then return false, e end
  return true
end
return apply, apply_version
"#;

pub fn module(lua: &Lua, prelude: &Table) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        lua.create_function(|lua, id: String| {
            match read(lua, RegistryQuery::Entry(id.clone()))? {
                Ok((_, state)) => match state.get(&id) {
                    Some(e) => Ok((entry_to_lua(lua, e)?, LV::Nil)),
                    None => fail(
                        lua,
                        ErrorValue::new(kind::NOT_FOUND, format!("entry not found: {id}")),
                    ),
                },
                Err(e) => fail(lua, e),
            }
        })?,
    )?;
    t.set(
        "find",
        lua.create_function(|lua, filter: LV| match read(lua, RegistryQuery::Live)? {
            Ok((_, state)) => find_in(lua, &state, filter),
            Err(e) => fail(lua, e),
        })?,
    )?;
    t.set(
        "parse_id",
        lua.create_function(|lua, s: String| {
            let (ns, name) = crate::entries::parse_id(&s);
            let t = lua.create_table()?;
            t.raw_set("ns", ns)?;
            t.raw_set("name", name)?;
            Ok(t)
        })?,
    )?;
    t.set(
        "snapshot",
        lua.create_function(|lua, ()| match read(lua, RegistryQuery::Current)? {
            Ok((version, state)) => Ok((
                LV::UserData(lua.create_userdata(SnapshotUd { version, state })?),
                LV::Nil,
            )),
            Err(e) => fail(lua, e),
        })?,
    )?;
    t.set("snapshot_at", lua.create_function(snapshot_at)?)?;
    t.set(
        "current_version",
        lua.create_function(|lua, ()| {
            let id = match super::request(lua, Command::RegistryRead(RegistryQuery::CurrentId))? {
                Ok(Value::Int(id)) => id as u64,
                _ => 0,
            };
            if id == 0 {
                return fail(
                    lua,
                    ErrorValue::new(kind::UNAVAILABLE, "registry not loaded"),
                );
            }
            Ok((LV::UserData(lua.create_userdata(VersionUd(id))?), LV::Nil))
        })?,
    )?;
    t.set("versions", lua.create_function(versions)?)?;
    t.set(
        "history",
        lua.create_function(|lua, ()| Ok((lua.create_userdata(HistoryUd)?, LV::Nil)))?,
    )?;
    t.set(
        "build_delta",
        lua.create_function(|lua, (from, to): (LV, LV)| {
            let read = |v: &LV| -> Result<State, ErrorValue> {
                let LV::Table(t) = v else {
                    return Err(invalid("build_delta expects two arrays of entries"));
                };
                let mut s = State::new();
                for item in t.sequence_values::<LV>() {
                    let item = item.map_err(|e| invalid(e.to_string()))?;
                    let e = entry_from_lua(&item)?;
                    s.insert(e.id.clone(), Rc::new(e));
                }
                Ok(s)
            };
            match read(&from).and_then(|f| Ok((f, read(&to)?))) {
                Ok((f, t)) => {
                    let mut ops = reg::delta(&f, &t);
                    // Deletes carry the whole entry they remove.
                    let out = ops_to_lua(lua, &ops)?;
                    for (i, op) in ops.drain(..).enumerate() {
                        if let Op::Delete(id) = op {
                            let item: Table = out.raw_get(i + 1)?;
                            item.raw_set("entry", entry_to_lua(lua, &f[&id])?)?;
                        }
                    }
                    Ok((LV::Table(out), LV::Nil))
                }
                Err(e) => fail(lua, e),
            }
        })?,
    )?;

    let raw_apply = lua.create_function(|lua, ud: AnyUserData| {
        let ops = ud.borrow::<ChangesUd>()?.ops.borrow().clone();
        submit(lua, ops)
    })?;
    // Wippy's apply_version moves the current version (no new version is made).
    let raw_apply_version = lua.create_function(|lua, v: LV| {
        let n = version_arg(&v)?;
        if n == 0 || !has_version(lua, n)? {
            return fail(lua, not_found_version(&v));
        }
        // Answers once the world has stored the new head (wrapped by the prelude's blocking).
        let reply = dispatch(lua, Command::RegistryMove { version: n })?;
        answer(lua, reply)
    })?;
    let mkversion = lua.create_function(|lua, v: LV| {
        let id = version_arg(&v)?;
        lua.create_userdata(VersionUd(id))
    })?;
    let blocking: Function = prelude.get("blocking")?;
    let (apply, apply_version): (Function, Function) = lua
        .load(WRAP)
        .set_name("=weft-registry")
        .call((blocking, raw_apply, raw_apply_version, mkversion))?;
    lua.set_named_registry_value("weft.registry.apply", apply)?;
    t.set("apply_version", apply_version)?;
    Ok(t)
}
