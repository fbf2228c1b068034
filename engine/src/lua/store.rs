//! The `store` module: key-value stores (`store.memory`, `store.sql`). Every operation is a world
//! command (ids 60–79) carrying the node's clock, so TTLs follow node time (virtual under the
//! simulator). Decision: both kinds live in the world, see weft-world's `store` module.

use super::convert::to_value;
use super::current;
use super::errors::fail;
use super::lua_process::world_call;
use super::sql::kind_of;
use crate::value::{kind, ErrorValue};
use crate::world::{ttl_ns, ListOptions, PutOptions, WorldCommand};
use mlua::{AnyUserData, Lua, MetaMethod, Table, UserData, UserDataFields, Value as LV};

pub struct StoreUd {
    pub id: String,
    pub released: bool,
}

impl UserData for StoreUd {
    fn add_fields<F: UserDataFields<Self>>(f: &mut F) {
        f.add_meta_field_with(MetaMethod::ToString, |lua| {
            lua.create_function(|_, ud: AnyUserData| {
                let released = ud.borrow::<StoreUd>().map(|s| s.released).unwrap_or(false);
                Ok(if released {
                    "store.Store{released}"
                } else {
                    "store.Store{}"
                })
            })
        });
        f.add_meta_field_with(MetaMethod::Index, |lua| {
            lua.named_registry_value::<Table>("weft.store")
        });
    }
}

fn invalid(m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(kind::INVALID, m)
}

fn key(v: &LV) -> Result<String, ErrorValue> {
    match v {
        LV::String(s) => std::str::from_utf8(&s.as_bytes())
            .map(String::from)
            .map_err(|_| invalid("store key must be UTF-8 text")),
        other => Err(invalid(format!(
            "store key must be a string, got {}",
            other.type_name()
        ))),
    }
}

pub fn install_raw(lua: &Lua, raw: &Table) -> mlua::Result<()> {
    raw.set(
        "store_get",
        lua.create_function(|lua, id: LV| {
            let Some(id) = id.as_string().map(|s| s.to_string_lossy()) else {
                return fail(lua, invalid("store id must be a string"));
            };
            if id.is_empty() {
                return fail(lua, invalid("store id must not be empty"));
            }
            let id = if id.contains(':') {
                id
            } else {
                let ns = current(lua)?.borrow().entry.namespace.clone();
                format!("{ns}:{id}")
            };
            match kind_of(lua, &id) {
                Some(k) if k.is_store() => Ok((
                    LV::UserData(lua.create_userdata(StoreUd {
                        id,
                        released: false,
                    })?),
                    LV::Nil,
                )),
                _ => fail(
                    lua,
                    ErrorValue::new(kind::NOT_FOUND, format!("store '{id}' not found")),
                ),
            }
        })?,
    )?;
    // store_op(store, op, a, b, c): one primitive for every method that asks the world.
    raw.set(
        "store_op",
        lua.create_function(
            |lua, (ud, op, a, b, c): (AnyUserData, String, LV, LV, LV)| {
                let id = {
                    let s = ud
                        .borrow::<StoreUd>()
                        .map_err(|_| mlua::Error::runtime("bad argument #1 (store expected)"))?;
                    if s.released {
                        return fail(lua, invalid("store handle was released"));
                    }
                    s.id.clone()
                };
                let now_ns = super::time::wall_now(lua)?;
                let r: Result<_, ErrorValue> = (|| {
                    use WorldCommand::*;
                    let store = id;
                    Ok(match op.as_str() {
                        "get" => StoreGet {
                            store,
                            now_ns,
                            key: key(&a)?,
                        },
                        "has" => StoreHas {
                            store,
                            now_ns,
                            key: key(&a)?,
                        },
                        "delete" => StoreDelete {
                            store,
                            now_ns,
                            key: key(&a)?,
                        },
                        "entry" => StoreEntry {
                            store,
                            now_ns,
                            key: key(&a)?,
                        },
                        "set" | "put" => {
                            let key = key(&a)?;
                            if b.is_nil() {
                                return Err(invalid("store value must not be nil"));
                            }
                            let value = to_value(&b)?;
                            let extra = to_value(&c)?;
                            if op == "set" {
                                StoreSet {
                                    store,
                                    now_ns,
                                    key,
                                    value,
                                    ttl_ns: ttl_ns(&extra)?,
                                }
                            } else {
                                StorePut {
                                    store,
                                    now_ns,
                                    key,
                                    value,
                                    options: PutOptions::from_value(&extra)?,
                                }
                            }
                        }
                        "list" => StoreList {
                            store,
                            now_ns,
                            options: ListOptions::from_value(&to_value(&a)?)?,
                        },
                        "info" => StoreInfo { store },
                        other => return Err(invalid(format!("unknown store operation '{other}'"))),
                    })
                })();
                match r {
                    Ok(cmd) => world_call(lua, cmd),
                    Err(e) => fail(lua, e),
                }
            },
        )?,
    )?;
    raw.set(
        "store_release",
        // Idempotent; the handle's other methods answer Invalid afterwards.
        lua.create_function(|_, ud: AnyUserData| {
            let mut s = ud
                .borrow_mut::<StoreUd>()
                .map_err(|_| mlua::Error::runtime("bad argument #1 (store expected)"))?;
            s.released = true;
            Ok(true)
        })?,
    )?;
    Ok(())
}

pub fn module(lua: &Lua, glue: &Table) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("get", glue.get::<LV>("store_get")?)?;
    let backend = lua.create_table()?;
    for (k, v) in [
        ("MEMORY", "memory"),
        ("SQL", "sql"),
        ("KV_RAFT", "kv.raft"),
        ("KV_CRDT", "kv.crdt"),
        ("UNKNOWN", "unknown"),
    ] {
        backend.set(k, v)?;
    }
    t.set("backend", backend)?;
    let cons = lua.create_table()?;
    for (k, v) in [
        ("LINEARIZABLE", "linearizable"),
        ("EVENTUAL", "eventual"),
        ("LOCAL", "local"),
        ("UNKNOWN", "unknown"),
    ] {
        cons.set(k, v)?;
    }
    t.set("consistency", cons)?;
    Ok(t)
}
