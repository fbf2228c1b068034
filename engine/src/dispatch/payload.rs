//! Lua values <-> `google.protobuf.Any` payloads: a function's argument comes from the request's
//! `input`, its result goes back as a `google.protobuf.Value`. Pure and total (bad bytes are an
//! error, never a panic); the protobuf wire format is written by hand so the engine needs no prost.
//!
//! Decoding: `Value`, `Struct`, `ListValue` and the nine wrapper types become Lua values; any
//! other type URL reaches the function as `{type_url = ..., value = <bytes>}`, and a result of
//! exactly that shape is passed through as that `Any` unchanged. Numbers that are whole and
//! within ±2^53 become integers. Encoding: tables follow `json`'s rule (a pure sequence or an
//! empty table is a list, string keys only is a struct, a mix is an error).

use super::types::Any;
use crate::value::{Table, Value};

/// Nesting limit for both directions; deeper payloads are rejected.
pub const MAX_DEPTH: usize = 64;

const PREFIX: &str = "type.googleapis.com/";
pub const VALUE_URL: &str = "type.googleapis.com/google.protobuf.Value";

/// Why a payload could not be mapped; the dispatcher answers it with a 500 (or 400 for input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadError(pub String);

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn perr<T>(m: impl Into<String>) -> Result<T, PayloadError> {
    Err(PayloadError(m.into()))
}

/// The largest magnitude a double holds exactly as an integer.
const EXACT_INT: i64 = 1 << 53;

// ---------------------------------------------------------------- encode

/// A function's result as the `Any` the response carries.
pub fn encode_result(v: &Value) -> Result<Any, PayloadError> {
    if let Some(any) = as_raw_any(v) {
        return Ok(any);
    }
    let mut out = Vec::new();
    encode_value(&mut out, v, 0)?;
    Ok(Any {
        type_url: VALUE_URL.to_string(),
        value: out,
    })
}

/// `{type_url = "...", value = "..."}` with nothing else: an `Any` the function built itself.
fn as_raw_any(v: &Value) -> Option<Any> {
    let Value::Table(t) = v else { return None };
    if !t.array.is_empty() || t.map.len() != 2 {
        return None;
    }
    let url = t.get("type_url")?.as_str()?;
    let Value::Str(bytes) = t.get("value")? else {
        return None;
    };
    Some(Any {
        type_url: url.to_string(),
        value: bytes.clone(),
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, ((field as u64) << 3) | wire as u64);
}

fn put_len(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_double(out: &mut Vec<u8>, field: u32, f: f64) {
    put_tag(out, field, 1);
    out.extend_from_slice(&f.to_le_bytes());
}

/// Writes the fields of one `google.protobuf.Value` message.
fn encode_value(out: &mut Vec<u8>, v: &Value, depth: usize) -> Result<(), PayloadError> {
    if depth > MAX_DEPTH {
        return perr("result nests too deeply");
    }
    match v {
        Value::Nil => {
            put_tag(out, 1, 0);
            put_varint(out, 0);
        }
        Value::Bool(b) => {
            put_tag(out, 4, 0);
            put_varint(out, *b as u64);
        }
        Value::Int(i) => {
            if !(-EXACT_INT..=EXACT_INT).contains(i) {
                return perr(format!("integer {i} does not fit a protobuf Value number"));
            }
            put_double(out, 2, *i as f64);
        }
        Value::Float(f) => put_double(out, 2, *f),
        Value::Str(s) => {
            if std::str::from_utf8(s).is_err() {
                return perr("string is not UTF-8 (return {type_url=..., value=...} for bytes)");
            }
            put_len(out, 3, s);
        }
        Value::Error(e) => return perr(format!("an error value is not a result: {}", e.message)),
        Value::Table(t) => {
            let mut inner = Vec::new();
            let field = encode_table(&mut inner, t, depth + 1)?;
            put_len(out, field, &inner);
        }
    }
    Ok(())
}

/// Writes a `ListValue` or `Struct` body; returns the `Value` field it belongs in (6 or 5).
fn encode_table(out: &mut Vec<u8>, t: &Table, depth: usize) -> Result<u32, PayloadError> {
    if t.map.is_empty() {
        for item in &t.array {
            let mut v = Vec::new();
            encode_value(&mut v, item, depth)?;
            put_len(out, 1, &v);
        }
        return Ok(6);
    }
    if !t.array.is_empty() {
        return perr("table mixes a sequence with other keys");
    }
    for (k, item) in &t.map {
        let Some(key) = k.as_str() else {
            return perr("table has a key that is not a UTF-8 string");
        };
        let mut v = Vec::new();
        encode_value(&mut v, item, depth)?;
        let mut entry = Vec::new();
        put_len(&mut entry, 1, key.as_bytes());
        put_len(&mut entry, 2, &v);
        put_len(out, 1, &entry);
    }
    Ok(5)
}

// ---------------------------------------------------------------- decode

/// A request's `input` as the function's argument (`None` → nil).
pub fn decode_input(any: Option<&Any>) -> Result<Value, PayloadError> {
    let Some(any) = any else {
        return Ok(Value::Nil);
    };
    let name = any
        .type_url
        .rsplit_once('/')
        .map(|(_, n)| n)
        .unwrap_or(&any.type_url);
    let b = &any.value[..];
    match name {
        "google.protobuf.Value" => decode_value(b, 0),
        "google.protobuf.Struct" => decode_struct(b, 0),
        "google.protobuf.ListValue" => decode_list(b, 0),
        "google.protobuf.DoubleValue" => wrapper(b, |f| match f {
            Field::Fixed64(x) => Some(number(f64::from_bits(x))),
            _ => None,
        }),
        "google.protobuf.FloatValue" => wrapper(b, |f| match f {
            Field::Fixed32(x) => Some(number(f32::from_bits(x) as f64)),
            _ => None,
        }),
        "google.protobuf.Int64Value" => wrapper(b, |f| match f {
            Field::Varint(x) => Some(Value::Int(x as i64)),
            _ => None,
        }),
        "google.protobuf.UInt64Value" => wrapper(b, |f| match f {
            Field::Varint(x) if x <= i64::MAX as u64 => Some(Value::Int(x as i64)),
            Field::Varint(x) => Some(Value::Float(x as f64)),
            _ => None,
        }),
        "google.protobuf.Int32Value" => wrapper(b, |f| match f {
            Field::Varint(x) => Some(Value::Int(x as i32 as i64)),
            _ => None,
        }),
        "google.protobuf.UInt32Value" => wrapper(b, |f| match f {
            Field::Varint(x) => Some(Value::Int(x as u32 as i64)),
            _ => None,
        }),
        "google.protobuf.BoolValue" => wrapper(b, |f| match f {
            Field::Varint(x) => Some(Value::Bool(x != 0)),
            _ => None,
        }),
        "google.protobuf.StringValue" | "google.protobuf.BytesValue" => wrapper(b, |f| match f {
            Field::Bytes(s) => Some(Value::Str(s.to_vec())),
            _ => None,
        }),
        _ => Ok(Value::table(
            Table::default()
                .with("type_url", Value::from(any.type_url.as_str()))
                .with("value", Value::Str(any.value.clone())),
        )),
    }
    .map(|v| match (v, name) {
        // A wrapper with no field set is its default value.
        (Value::Nil, n) => wrapper_default(n),
        (v, _) => v,
    })
}

fn wrapper_default(name: &str) -> Value {
    match name {
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => Value::Int(0),
        "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value" => Value::Int(0),
        "google.protobuf.BoolValue" => Value::Bool(false),
        "google.protobuf.StringValue" | "google.protobuf.BytesValue" => Value::Str(Vec::new()),
        _ => Value::Nil,
    }
}

fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() <= EXACT_INT as f64 {
        Value::Int(f as i64)
    } else {
        Value::Float(f)
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

/// Walks the fields of one message, calling `f(number, field)` for each.
fn fields<'a>(
    mut b: &'a [u8],
    mut f: impl FnMut(u32, Field<'a>) -> Result<(), PayloadError>,
) -> Result<(), PayloadError> {
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let number = key >> 3;
        if number == 0 || number > u32::MAX as u64 >> 3 {
            return perr("invalid field number");
        }
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut b)?),
            1 => Field::Fixed64(u64::from_le_bytes(
                take(&mut b, 8)?.try_into().unwrap_or([0; 8]),
            )),
            2 => {
                let n = varint(&mut b)?;
                if n > b.len() as u64 {
                    return perr("truncated length-delimited field");
                }
                Field::Bytes(take(&mut b, n as usize)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(
                take(&mut b, 4)?.try_into().unwrap_or([0; 4]),
            )),
            w => return perr(format!("unsupported wire type {w}")),
        };
        f(number as u32, field)?;
    }
    Ok(())
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], PayloadError> {
    if b.len() < n {
        return perr("truncated field");
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn varint(b: &mut &[u8]) -> Result<u64, PayloadError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let Some((&byte, rest)) = b.split_first() else {
            return perr("truncated varint");
        };
        *b = rest;
        if i == 9 && byte > 1 {
            return perr("varint overflows 64 bits");
        }
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte < 0x80 {
            return Ok(v);
        }
    }
    perr("varint too long")
}

fn wrapper(b: &[u8], pick: impl Fn(Field<'_>) -> Option<Value>) -> Result<Value, PayloadError> {
    let mut out = Value::Nil;
    fields(b, |n, f| {
        if n == 1 {
            out = pick(f)
                .ok_or_else(|| PayloadError("wrapper field has the wrong wire type".into()))?;
        }
        Ok(())
    })?;
    Ok(out)
}

fn decode_value(b: &[u8], depth: usize) -> Result<Value, PayloadError> {
    if depth > MAX_DEPTH {
        return perr("input nests too deeply");
    }
    let mut out = Value::Nil;
    fields(b, |n, f| {
        out = match (n, f) {
            (1, Field::Varint(_)) => Value::Nil,
            (2, Field::Fixed64(x)) => number(f64::from_bits(x)),
            (3, Field::Bytes(s)) => Value::Str(s.to_vec()),
            (4, Field::Varint(x)) => Value::Bool(x != 0),
            (5, Field::Bytes(s)) => decode_struct(s, depth + 1)?,
            (6, Field::Bytes(s)) => decode_list(s, depth + 1)?,
            (1..=6, _) => return perr("protobuf Value field has the wrong wire type"),
            _ => return Ok(()),
        };
        Ok(())
    })?;
    Ok(out)
}

fn decode_struct(b: &[u8], depth: usize) -> Result<Value, PayloadError> {
    if depth > MAX_DEPTH {
        return perr("input nests too deeply");
    }
    // Proto map semantics: the last entry for a key wins; keys come out sorted.
    let mut m = std::collections::BTreeMap::new();
    fields(b, |n, f| {
        if n != 1 {
            return Ok(());
        }
        let Field::Bytes(entry) = f else {
            return perr("protobuf Struct entry has the wrong wire type");
        };
        let (mut key, mut val) = (Vec::new(), Value::Nil);
        fields(entry, |n, f| {
            match (n, f) {
                (1, Field::Bytes(k)) => key = k.to_vec(),
                (2, Field::Bytes(v)) => val = decode_value(v, depth + 1)?,
                (1 | 2, _) => return perr("protobuf Struct entry has the wrong wire type"),
                _ => {}
            }
            Ok(())
        })?;
        m.insert(key, val);
        Ok(())
    })?;
    let mut t = Table::default();
    for (k, v) in m {
        if !v.is_nil() {
            t.map.push((Value::Str(k), v));
        }
    }
    Ok(Value::table(t))
}

fn decode_list(b: &[u8], depth: usize) -> Result<Value, PayloadError> {
    if depth > MAX_DEPTH {
        return perr("input nests too deeply");
    }
    let mut t = Table::default();
    fields(b, |n, f| {
        match (n, f) {
            (1, Field::Bytes(v)) => t.array.push(decode_value(v, depth + 1)?),
            (1, _) => return perr("protobuf ListValue item has the wrong wire type"),
            _ => {}
        }
        Ok(())
    })?;
    Ok(Value::table(t))
}

/// A type URL for a well-known type name (`"google.protobuf.Struct"` → its full URL).
pub fn type_url(name: &str) -> String {
    format!("{PREFIX}{name}")
}

#[cfg(test)]
mod tests;
