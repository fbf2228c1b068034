//! The `uuid` module. Randomness comes from the node's seeded generator and time from the
//! node's clock, never from the OS, so a simulated run draws the same UUIDs for the same seed.

use super::errors::fail;
use crate::command::Command;
use crate::value::Value;
use crate::value::{kind, ErrorValue};
use ::uuid::{Builder, Uuid, Variant};
use md5::Md5;
use mlua::{Lua, Table, Value as LV};
use sha1::Sha1;
use sha2::Digest;

fn random_bytes<const N: usize>(lua: &Lua) -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let r = match super::request(lua, Command::NodeRandom) {
            Ok(Ok(Value::Int(r))) => r as u64,
            _ => 0,
        };
        chunk.copy_from_slice(&r.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn invalid(m: impl Into<String>) -> ErrorValue {
    ErrorValue::new(kind::INVALID, m)
}

fn ok_str(lua: &Lua, s: String) -> mlua::Result<(LV, LV)> {
    Ok((LV::String(lua.create_string(s)?), LV::Nil))
}

fn parse_arg(v: &LV, f: &str) -> Result<Uuid, ErrorValue> {
    match v {
        LV::String(s) => Uuid::try_parse(&s.to_string_lossy())
            .map_err(|e| invalid(format!("uuid.{f}: invalid UUID: {e}"))),
        other => Err(invalid(format!(
            "uuid.{f}: expected a UUID string, got {}",
            other.type_name()
        ))),
    }
}

fn variant_name(u: &Uuid) -> &'static str {
    match u.get_variant() {
        Variant::NCS => "NCS",
        Variant::RFC4122 => "RFC4122",
        Variant::Microsoft => "Microsoft",
        Variant::Future => "Future",
        _ => "Invalid",
    }
}

fn name_based(lua: &Lua, ns: LV, name: LV, v5: bool) -> mlua::Result<(LV, LV)> {
    let f = if v5 { "v5" } else { "v3" };
    let ns = match parse_arg(&ns, f) {
        Ok(u) => u,
        Err(e) => return fail(lua, e),
    };
    let LV::String(name) = name else {
        return fail(lua, invalid(format!("uuid.{f}: name must be a string")));
    };
    let mut data = ns.as_bytes().to_vec();
    data.extend_from_slice(&name.as_bytes());
    let u = if v5 {
        let d = Sha1::digest(&data);
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        Builder::from_sha1_bytes(b).into_uuid()
    } else {
        let d = Md5::digest(&data);
        let mut b = [0u8; 16];
        b.copy_from_slice(&d);
        Builder::from_md5_bytes(b).into_uuid()
    };
    ok_str(lua, u.hyphenated().to_string())
}

/// 100 ns intervals between 1582-10-15 and 1970-01-01.
const GREGORIAN_OFFSET: u64 = 0x01B2_1DD2_1381_4000;

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "v4",
        lua.create_function(|lua, ()| {
            let u = Builder::from_random_bytes(random_bytes::<16>(lua)).into_uuid();
            ok_str(lua, u.hyphenated().to_string())
        })?,
    )?;
    t.set(
        "v7",
        lua.create_function(|lua, ()| {
            let ms = super::time::wall_now(lua)?.max(0) as u64 / 1_000_000;
            let r = random_bytes::<10>(lua);
            let u = Builder::from_unix_timestamp_millis(ms, &r).into_uuid();
            ok_str(lua, u.hyphenated().to_string())
        })?,
    )?;
    t.set(
        "v1",
        lua.create_function(|lua, ()| {
            let ns = super::time::wall_now(lua)?.max(0) as u64;
            let ticks = ns / 100 + GREGORIAN_OFFSET;
            // Node id: random with the multicast bit set (RFC 4122 §4.5), as no MAC is read.
            let r = random_bytes::<8>(lua);
            let mut node = [0u8; 6];
            node.copy_from_slice(&r[..6]);
            node[0] |= 0x01;
            let clock_seq = u16::from_le_bytes([r[6], r[7]]) & 0x3fff;
            let u = Builder::from_gregorian_timestamp(ticks, clock_seq, &node).into_uuid();
            ok_str(lua, u.hyphenated().to_string())
        })?,
    )?;
    t.set(
        "v3",
        lua.create_function(|lua, (ns, name): (LV, LV)| name_based(lua, ns, name, false))?,
    )?;
    t.set(
        "v5",
        lua.create_function(|lua, (ns, name): (LV, LV)| name_based(lua, ns, name, true))?,
    )?;
    t.set(
        "validate",
        lua.create_function(|_, v: LV| {
            Ok(match v {
                LV::String(s) => Uuid::try_parse(&s.to_string_lossy()).is_ok(),
                _ => false,
            })
        })?,
    )?;
    t.set(
        "version",
        lua.create_function(|lua, v: LV| match parse_arg(&v, "version") {
            Ok(u) => Ok((LV::Integer(u.get_version_num() as i64), LV::Nil)),
            Err(e) => fail(lua, e),
        })?,
    )?;
    t.set(
        "variant",
        lua.create_function(|lua, v: LV| match parse_arg(&v, "variant") {
            Ok(u) => ok_str(lua, variant_name(&u).into()),
            Err(e) => fail(lua, e),
        })?,
    )?;
    t.set(
        "parse",
        lua.create_function(|lua, v: LV| {
            let u = match parse_arg(&v, "parse") {
                Ok(u) => u,
                Err(e) => return fail(lua, e),
            };
            let out = lua.create_table()?;
            out.set("version", u.get_version_num() as i64)?;
            out.set("variant", variant_name(&u))?;
            // Timestamp as Unix seconds (float) for time-based versions.
            if let Some(ts) = u.get_timestamp() {
                let (s, n) = ts.to_unix();
                out.set("timestamp", s as f64 + f64::from(n) / 1e9)?;
            }
            if u.get_version_num() == 1 {
                let b = u.as_bytes();
                let node: Vec<String> = b[10..16].iter().map(|x| format!("{x:02x}")).collect();
                out.set("node", node.join(":"))?;
            }
            Ok((LV::Table(out), LV::Nil))
        })?,
    )?;
    t.set(
        "format",
        lua.create_function(|lua, (v, style): (LV, Option<String>)| {
            let u = match parse_arg(&v, "format") {
                Ok(u) => u,
                Err(e) => return fail(lua, e),
            };
            let s = match style.as_deref().unwrap_or("standard") {
                "standard" => u.hyphenated().to_string(),
                "simple" => u.simple().to_string(),
                "urn" => u.urn().to_string(),
                other => {
                    return fail(
                        lua,
                        invalid(format!(
                            "uuid.format: unknown format '{other}' (standard, simple, urn)"
                        )),
                    )
                }
            };
            ok_str(lua, s)
        })?,
    )?;
    Ok(t)
}
