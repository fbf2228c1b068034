//! The exact byte encoding of a `Value`: ints and floats, byte strings, array and map parts and
//! errors kept as they are. The registry's history store (`registry::encode`) and the cluster's
//! relay frames (`cluster::frame`) both write values with it.
//!
//! Layout: one tag byte, then the body; every length and count is a u64, little-endian.
//! `0` nil, `1` bool (one byte), `2` int (i64), `3` float (f64 bits), `4` string (length, bytes),
//! `5` table (array count, values; map count, key/value pairs), `6` error with kind and message
//! only (length-prefixed texts), `7` error with everything (kind, message, retryable as 0/1/2 for
//! unset/false/true, details as a flag byte and a value, context as a flag byte and a text, the
//! frame count and each frame's source, line (u32) and function). Decoding is strict, so one
//! value has exactly one encoding: booleans and flags are 0 or 1 (2 for a set retryable), error
//! texts are UTF-8, and every length is checked against the bytes left before anything is
//! allocated for it. An error with no retryable,
//! details, context or frames is written as `6`, so bytes stored before `7` existed still match.

use super::{ErrorValue, Table, Value};
use std::fmt;

/// How deep tables and error details may nest; deeper input is refused, never recursed into.
pub const MAX_DEPTH: usize = 200;

/// What was wrong with bytes that do not decode to a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The input ended inside a value.
    Truncated,
    /// A tag byte no value starts with.
    BadTag(u8),
    /// A length larger than the input could hold.
    BadLength(u64),
    /// Tables or error details nested deeper than `MAX_DEPTH`.
    TooDeep,
    /// A boolean or flag byte other than the ones written (booleans are 0 or 1).
    BadByte(u8),
    /// An error's kind, message, context or frame text that is not UTF-8.
    BadUtf8,
    /// An error with nothing but kind and message under tag 7 (its one encoding is tag 6).
    NotCanonical,
    /// Bytes left after a whole value (only `decode`, which takes exactly one value).
    TrailingBytes(usize),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Truncated => f.write_str("truncated"),
            CodecError::BadTag(t) => write!(f, "bad tag {t}"),
            CodecError::BadLength(n) => write!(f, "bad length {n}"),
            CodecError::TooDeep => write!(f, "nested deeper than {MAX_DEPTH}"),
            CodecError::BadByte(b) => write!(f, "bad flag byte {b}"),
            CodecError::BadUtf8 => f.write_str("error text is not UTF-8"),
            CodecError::NotCanonical => f.write_str("plain error written in the long form"),
            CodecError::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
        }
    }
}

fn put_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

fn is_plain(e: &ErrorValue) -> bool {
    e.retryable.is_none() && e.details.is_none() && e.context.is_none() && e.frames.is_empty()
}

/// Appends the encoding of `v` to `out`.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.push(0),
        Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Value::Int(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(3);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Str(s) => {
            out.push(4);
            put_bytes(s, out);
        }
        Value::Table(t) => {
            out.push(5);
            out.extend_from_slice(&(t.array.len() as u64).to_le_bytes());
            for x in &t.array {
                encode(x, out);
            }
            out.extend_from_slice(&(t.map.len() as u64).to_le_bytes());
            for (k, x) in &t.map {
                encode(k, out);
                encode(x, out);
            }
        }
        Value::Error(e) if is_plain(e) => {
            out.push(6);
            put_bytes(e.kind.as_str().as_bytes(), out);
            put_bytes(e.message.as_bytes(), out);
        }
        Value::Error(e) => {
            out.push(7);
            put_bytes(e.kind.as_str().as_bytes(), out);
            put_bytes(e.message.as_bytes(), out);
            out.push(match e.retryable {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            });
            match &e.details {
                None => out.push(0),
                Some(d) => {
                    out.push(1);
                    encode(d, out);
                }
            }
            match &e.context {
                None => out.push(0),
                Some(c) => {
                    out.push(1);
                    put_bytes(c.as_bytes(), out);
                }
            }
            out.extend_from_slice(&(e.frames.len() as u64).to_le_bytes());
            for (src, line, func) in &e.frames {
                put_bytes(src.as_bytes(), out);
                out.extend_from_slice(&line.to_le_bytes());
                put_bytes(func.as_bytes(), out);
            }
        }
    }
}

/// A cursor over bytes being decoded: every read checks the length first.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.remaining() {
            return Err(CodecError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    /// A u64 length followed by that many bytes; a length beyond the input is `BadLength`.
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u64()?;
        if n > self.remaining() as u64 {
            return Err(CodecError::BadLength(n));
        }
        self.take(n as usize)
    }

    /// A count of items still to read, each at least `min_item` bytes long: a count the rest
    /// of the input cannot hold is `BadLength` before anything is allocated for it.
    pub fn count(&mut self, min_item: usize) -> Result<u64, CodecError> {
        let n = self.u64()?;
        if n.saturating_mul(min_item.max(1) as u64) > self.remaining() as u64 {
            return Err(CodecError::BadLength(n));
        }
        Ok(n)
    }

    fn text(&mut self) -> Result<String, CodecError> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_owned)
            .map_err(|_| CodecError::BadUtf8)
    }

    /// One value at the cursor.
    pub fn value(&mut self) -> Result<Value, CodecError> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::TooDeep);
        }
        Ok(match self.u8()? {
            0 => Value::Nil,
            1 => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(CodecError::BadByte(b)),
            },
            2 => Value::Int(self.u64()? as i64),
            3 => Value::Float(f64::from_bits(self.u64()?)),
            4 => Value::Str(self.bytes()?.to_vec()),
            5 => {
                let mut t = Table::default();
                for _ in 0..self.count(1)? {
                    t.array.push(self.value_at(depth + 1)?);
                }
                for _ in 0..self.count(2)? {
                    let k = self.value_at(depth + 1)?;
                    t.map.push((k, self.value_at(depth + 1)?));
                }
                Value::table(t)
            }
            6 => {
                let k = self.text()?;
                Value::error(ErrorValue::new(k, self.text()?))
            }
            7 => {
                let k = self.text()?;
                let mut e = ErrorValue::new(k, self.text()?);
                e.retryable = match self.u8()? {
                    0 => None,
                    1 => Some(false),
                    2 => Some(true),
                    b => return Err(CodecError::BadByte(b)),
                };
                e.details = match self.u8()? {
                    0 => None,
                    1 => Some(self.value_at(depth + 1)?),
                    b => return Err(CodecError::BadByte(b)),
                };
                e.context = match self.u8()? {
                    0 => None,
                    1 => Some(self.text()?),
                    b => return Err(CodecError::BadByte(b)),
                };
                for _ in 0..self.count(20)? {
                    let src = self.text()?;
                    let line = self.u32()?;
                    e.frames.push((src, line, self.text()?));
                }
                if is_plain(&e) {
                    return Err(CodecError::NotCanonical);
                }
                Value::error(e)
            }
            t => return Err(CodecError::BadTag(t)),
        })
    }
}

/// Decodes exactly one value: bytes left after it are an error.
pub fn decode(b: &[u8]) -> Result<Value, CodecError> {
    let mut r = Reader::new(b);
    let v = r.value()?;
    match r.remaining() {
        0 => Ok(v),
        n => Err(CodecError::TrailingBytes(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_errors_round_trip_and_plain_ones_keep_the_old_bytes() {
        let plain = Value::error(ErrorValue::new("NotFound", "gone"));
        let mut b = Vec::new();
        encode(&plain, &mut b);
        assert_eq!(b[0], 6, "a plain error keeps tag 6");
        assert_eq!(decode(&b), Ok(plain));

        let mut e = ErrorValue::new("Custom", "m");
        e.retryable = Some(true);
        e.details = Some(Value::from("d"));
        e.context = Some("ctx".into());
        e.frames = vec![("a.lua".into(), 3, "f".into())];
        let full = Value::error(e);
        let mut b = Vec::new();
        encode(&full, &mut b);
        assert_eq!(b[0], 7);
        assert_eq!(decode(&b), Ok(full));
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn huge_counts_fail_before_allocating() {
        let mut b = vec![5];
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode(&b), Err(CodecError::BadLength(u64::MAX)));
        let mut s = vec![4];
        s.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert_eq!(decode(&s), Err(CodecError::BadLength(1 << 40)));
        assert_eq!(decode(&[9]), Err(CodecError::BadTag(9)));
        assert_eq!(decode(&[0, 0]), Err(CodecError::TrailingBytes(1)));
        assert_eq!(decode(&[1, 2]), Err(CodecError::BadByte(2)));
        let mut bad_text = vec![6];
        bad_text.extend_from_slice(&1u64.to_le_bytes());
        bad_text.push(0xff);
        assert_eq!(decode(&bad_text), Err(CodecError::BadUtf8));
        let deep: Vec<u8> = std::iter::repeat_n([5u8, 1, 0, 0, 0, 0, 0, 0, 0], 300)
            .flatten()
            .collect();
        assert_eq!(decode(&deep), Err(CodecError::TooDeep));
    }
}
