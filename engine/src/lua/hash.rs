//! The `hash` module: digests (md5, sha1, sha256, sha512), their HMACs and FNV-1a.
//! Digests come as lower-case hex, or raw bytes when the last argument is true.

use super::errors::fail;
use crate::value::{kind, ErrorValue};
use hmac::{Hmac, Mac};
use md5::Md5;
use mlua::{Lua, Table, Value as LV};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

fn bytes_arg(v: &LV, what: &str, name: &str) -> Result<Vec<u8>, ErrorValue> {
    match v {
        LV::String(s) => Ok(s.as_bytes().to_vec()),
        other => Err(ErrorValue::new(
            kind::INVALID,
            format!(
                "hash.{name}: {what} must be a string, got {}",
                other.type_name()
            ),
        )),
    }
}

fn out(lua: &Lua, digest: &[u8], raw: bool) -> mlua::Result<(LV, LV)> {
    let s = if raw {
        lua.create_string(digest)?
    } else {
        lua.create_string(hex(digest))?
    };
    Ok((LV::String(s), LV::Nil))
}

fn digest(name: &str, data: &[u8]) -> Vec<u8> {
    match name {
        "md5" => Md5::digest(data).to_vec(),
        "sha1" => Sha1::digest(data).to_vec(),
        "sha256" => Sha256::digest(data).to_vec(),
        _ => Sha512::digest(data).to_vec(),
    }
}

fn hmac(name: &str, key: &[u8], data: &[u8]) -> Vec<u8> {
    // `new_from_slice` accepts keys of any length for HMAC; the error arm cannot happen.
    macro_rules! mac {
        ($d:ty) => {
            match <Hmac<$d> as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(data);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        };
    }
    match name {
        "md5" => mac!(Md5),
        "sha1" => mac!(Sha1),
        "sha256" => mac!(Sha256),
        _ => mac!(Sha512),
    }
}

/// FNV-1a, 32 and 64 bit (the variant Go's `hash/fnv` New32a/New64a compute).
pub fn fnv32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

pub fn fnv64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn module(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for name in ["md5", "sha1", "sha256", "sha512"] {
        t.set(
            name,
            lua.create_function(move |lua, (data, raw): (LV, Option<bool>)| {
                match bytes_arg(&data, "data", name) {
                    Ok(d) => out(lua, &digest(name, &d), raw.unwrap_or(false)),
                    Err(e) => fail(lua, e),
                }
            })?,
        )?;
        let hname: &'static str = match name {
            "md5" => "hmac_md5",
            "sha1" => "hmac_sha1",
            "sha256" => "hmac_sha256",
            _ => "hmac_sha512",
        };
        t.set(
            hname,
            lua.create_function(move |lua, (data, key, raw): (LV, LV, Option<bool>)| {
                let d = match bytes_arg(&data, "data", hname) {
                    Ok(d) => d,
                    Err(e) => return fail(lua, e),
                };
                let k = match bytes_arg(&key, "secret", hname) {
                    Ok(k) => k,
                    Err(e) => return fail(lua, e),
                };
                out(lua, &hmac(name, &k, &d), raw.unwrap_or(false))
            })?,
        )?;
    }
    t.set(
        "fnv32",
        lua.create_function(|lua, data: LV| match bytes_arg(&data, "data", "fnv32") {
            Ok(d) => Ok((LV::Number(f64::from(fnv32(&d))), LV::Nil)),
            Err(e) => fail(lua, e),
        })?,
    )?;
    t.set(
        "fnv64",
        // Luau numbers are doubles: a 64-bit hash above 2^53 loses its low bits. Decision: give
        // the value as Lua holds it (a number), as the spec asks; compare fnv64 results only
        // with each other, not as exact integers.
        lua.create_function(|lua, data: LV| match bytes_arg(&data, "data", "fnv64") {
            Ok(d) => Ok((LV::Number(fnv64(&d) as f64), LV::Nil)),
            Err(e) => fail(lua, e),
        })?,
    )?;
    Ok(t)
}
