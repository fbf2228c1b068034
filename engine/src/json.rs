//! JSON text for Weft `Value`s with Wippy's rules: Go `json.Marshal`-style output, Lua-shaped input.
//! Pure and total: no I/O, no Lua state, and no panic on any input (the decoder is fuzzed).

use crate::value::{Table, Value};
use std::collections::BTreeMap;

/// Nesting limit for both directions; deeper data is rejected rather than risking the stack.
const MAX_DEPTH: usize = 128;

/// Encodes a value as compact JSON, the way Go's `json.Marshal` would print the Lua data.
///
/// Tables become arrays (pure sequence, or empty) or objects (string keys only);
/// anything in between is an error because JSON has no shape for it.
pub fn encode(v: &Value) -> Result<String, String> {
    let mut out = String::new();
    encode_into(&mut out, v, 0)?;
    Ok(out)
}

fn encode_into(out: &mut String, v: &Value, depth: usize) -> Result<(), String> {
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => write_float(out, *f),
        Value::Str(s) => write_string(out, s),
        // Errors cross into JSON as their text; kind and details have no JSON home.
        Value::Error(e) => write_string(out, e.message.as_bytes()),
        Value::Table(t) => {
            if depth + 1 > MAX_DEPTH {
                return Err(format!(
                    "json: cannot encode table nested deeper than {MAX_DEPTH}"
                ));
            }
            encode_table(out, t, depth + 1)?;
        }
    }
    Ok(())
}

fn encode_table(out: &mut String, t: &Table, depth: usize) -> Result<(), String> {
    if !t.array.is_empty() && !t.map.is_empty() {
        return Err("json: cannot encode table with mixed array and map keys".into());
    }
    if t.map.is_empty() {
        // An empty table is an empty array: Lua cannot tell `{}` the object from `{}` the list,
        // and Wippy picks the list.
        out.push('[');
        for (i, item) in t.array.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            encode_into(out, item, depth)?;
        }
        out.push(']');
        return Ok(());
    }
    out.push('{');
    for (i, (k, item)) in t.map.iter().enumerate() {
        let key = match k {
            Value::Str(s) => s,
            // Integer keys that reach `map` are not a 1..n sequence (holes or a non-1 start).
            Value::Int(_) | Value::Float(_) => {
                return Err(
                    "json: cannot encode sparse array (table has non-sequential number keys)"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "json: cannot encode table with {} key",
                    kind_name(other)
                ))
            }
        };
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        encode_into(out, item, depth)?;
    }
    out.push('}');
    Ok(())
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Bool(_) => "boolean",
        Value::Int(_) | Value::Float(_) => "number",
        Value::Str(_) => "string",
        Value::Table(_) => "table",
        Value::Error(_) => "error",
    }
}

/// Go's float encoding: shortest round-trip digits, plain notation in [1e-6, 1e21),
/// exponent notation outside it with Go's `e-7` / `e+21` spelling. JSON has no NaN or
/// infinity, and Wippy writes those as `null` instead of failing the whole encode.
fn write_float(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str("null");
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` already gives shortest digits ("1.5e-7", "1e21"); only the exponent sign differs.
        let s = format!("{:e}", f);
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                out.push_str(mantissa);
                out.push('e');
                if !exp.starts_with('-') {
                    out.push('+');
                }
                out.push_str(exp);
            }
            None => out.push_str(&s),
        }
    } else {
        // Display is shortest round-trip without exponent, and prints 2.0 as "2" like Go.
        out.push_str(&f.to_string());
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_u_escape(out: &mut String, c: u32) {
    out.push_str("\\u");
    for shift in [12u32, 8, 4, 0] {
        out.push(HEX[((c >> shift) & 0xf) as usize] as char);
    }
}

/// Go's `json.Marshal` string escaping, HTML-safe variant (its default): `<`, `>`, `&`,
/// U+2028 and U+2029 are `\u`-escaped so the output can sit inside HTML/JS. Every byte
/// that is not part of valid UTF-8 becomes its own `\ufffd`, exactly as Go does.
fn write_string(out: &mut String, s: &[u8]) {
    out.push('"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => push_u_escape(out, c as u32),
                c if (c as u32) < 0x20 => push_u_escape(out, c as u32),
                c => out.push(c),
            }
        }
        for _ in chunk.invalid() {
            out.push_str("\\ufffd");
        }
    }
    out.push('"');
}

/// Decodes JSON text into a `Value` shaped the way Lua would see it.
///
/// Integers that fit i64 stay integers; every other number is a float. Arrays fill
/// `Table.array` (nulls stay as `Nil`, i.e. holes); objects fill `Table.map` in document
/// order, and members whose value is `null` vanish, as assigning nil does in Lua.
pub fn decode(s: &str) -> Result<Value, String> {
    let mut p = Parser {
        src: s,
        b: s.as_bytes(),
        pos: 0,
    };
    p.skip_ws();
    if p.pos >= p.b.len() {
        return Err("json: unexpected end of JSON input".into());
    }
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos < p.b.len() {
        return Err(p.bad_char("after top-level value"));
    }
    Ok(v)
}

struct Parser<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    /// Go's syntax-error wording, plus the byte offset of the offending character
    /// because Go's message alone does not say where the problem is.
    fn bad_char(&self, context: &str) -> String {
        if self.pos >= self.b.len() {
            return format!("json: unexpected end of JSON input at offset {}", self.pos);
        }
        let c = self
            .src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        format!(
            "json: invalid character {} {} at offset {}",
            quote_char(c),
            context,
            self.pos
        )
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Nil),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.number(),
            _ => Err(self.bad_char("looking for beginning of value")),
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
        for expected in word.bytes() {
            if self.peek() != Some(expected) {
                return Err(self.bad_char(&format!(
                    "in literal {} (expecting {})",
                    word,
                    quote_char(expected as char)
                )));
            }
            self.pos += 1;
        }
        Ok(v)
    }

    fn enter(&self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "json: exceeded max depth of {MAX_DEPTH} at offset {}",
                self.pos
            ));
        }
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        self.enter(depth)?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::table(Table::default()));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.bad_char("after array element")),
            }
        }
        Ok(Value::table(Table {
            array: items,
            map: Vec::new(),
        }))
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        self.enter(depth)?;
        self.pos += 1; // '{'
                       // Slots keep document order; a later duplicate overwrites in place and a null
                       // empties the slot, mirroring repeated assignment to a Lua table.
        let mut slots: Vec<Option<(Vec<u8>, Value)>> = Vec::new();
        let mut index: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::table(Table::default()));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.bad_char("looking for beginning of object key string"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.bad_char("after object key"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value(depth)?;
            match (index.get(&key).copied(), v.is_nil()) {
                (Some(i), true) => {
                    if let Some(slot) = slots.get_mut(i) {
                        *slot = None;
                    }
                    index.remove(&key);
                }
                (Some(i), false) => {
                    if let Some(Some((_, old))) = slots.get_mut(i) {
                        *old = v;
                    }
                }
                (None, true) => {}
                (None, false) => {
                    index.insert(key.clone(), slots.len());
                    slots.push(Some((key, v)));
                }
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.bad_char("after object key:value pair")),
            }
        }
        let map = slots
            .into_iter()
            .flatten()
            .map(|(k, v)| (Value::Str(k), v))
            .collect();
        Ok(Value::table(Table {
            array: Vec::new(),
            map,
        }))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.bad_char("in \\u hexadecimal character escape")),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    /// Reads a string literal starting at its opening quote. The input is `&str`, so raw
    /// bytes are already valid UTF-8 and can be copied through untouched.
    fn string(&mut self) -> Result<Vec<u8>, String> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let start = self.pos;
            while let Some(&c) = self.b.get(self.pos) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.extend_from_slice(self.b.get(start..self.pos).unwrap_or_default());
            match self.peek() {
                None => return Err(self.bad_char("in string literal")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(c) => c,
                        None => return Err(self.bad_char("in string escape code")),
                    };
                    let simple = match c {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(0x08),
                        b'f' => Some(0x0c),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        _ => None,
                    };
                    if let Some(byte) = simple {
                        out.push(byte);
                        self.pos += 1;
                        continue;
                    }
                    if c != b'u' {
                        return Err(self.bad_char("in string escape code"));
                    }
                    self.pos += 1;
                    let ch = self.unicode_escape()?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                Some(_) => return Err(self.bad_char("in string literal")),
            }
        }
    }

    /// After `\u`: a surrogate pair joins into one char; a lone surrogate becomes U+FFFD
    /// and whatever followed it is decoded on its own (Go's behaviour).
    fn unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        if !(0xD800..0xE000).contains(&hi) {
            return Ok(char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER));
        }
        if (0xD800..0xDC00).contains(&hi)
            && self.b.get(self.pos) == Some(&b'\\')
            && self.b.get(self.pos + 1) == Some(&b'u')
        {
            let save = self.pos;
            self.pos += 2;
            if let Ok(lo) = self.hex4() {
                if (0xDC00..0xE000).contains(&lo) {
                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    return Ok(char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
            }
            // Not a pair: rewind so the next escape is read (and validated) normally.
            self.pos = save;
        }
        Ok(char::REPLACEMENT_CHARACTER)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.bad_char("in numeric literal")),
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            integral = false;
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.bad_char("after decimal point in numeric literal"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integral = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.bad_char("in exponent of numeric literal"));
            }
        }
        let text = self.src.get(start..self.pos).unwrap_or("");
        if integral {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::Int(i));
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(format!(
                "json: number {text} out of range at offset {start}"
            )),
        }
    }
}

/// Go's `quoteChar`: single-quoted, with the awkward quote characters special-cased.
fn quote_char(c: char) -> String {
    match c {
        '\'' => "'\\''".into(),
        '"' => "'\"'".into(),
        c if c.is_control() || c == char::REPLACEMENT_CHARACTER => {
            let e: String = c.escape_default().collect();
            format!("'{e}'")
        }
        c => format!("'{c}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ErrorValue;

    fn s(x: &str) -> Value {
        Value::from(x)
    }
    fn arr(items: Vec<Value>) -> Value {
        Value::table(Table {
            array: items,
            map: Vec::new(),
        })
    }
    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::table(Table {
            array: Vec::new(),
            map: pairs.into_iter().map(|(k, v)| (s(k), v)).collect(),
        })
    }
    fn enc(v: &Value) -> String {
        encode(v).expect("encode")
    }

    #[test]
    fn encode_scalars() {
        let cases: Vec<(Value, &str)> = vec![
            (Value::Nil, "null"),
            (Value::Bool(true), "true"),
            (Value::Bool(false), "false"),
            (Value::Int(0), "0"),
            (Value::Int(-42), "-42"),
            (Value::Int(i64::MAX), "9223372036854775807"),
            (Value::Int(i64::MIN), "-9223372036854775808"),
            (Value::Float(99.5), "99.5"),
            (Value::Float(2.0), "2"),
            (Value::Float(-3.0), "-3"),
            (Value::Float(0.1), "0.1"),
            (Value::Float(1.0 / 3.0), "0.3333333333333333"),
            (Value::Float(1e20), "100000000000000000000"),
            (Value::Float(1e21), "1e+21"),
            (Value::Float(1.5e300), "1.5e+300"),
            (Value::Float(1e-6), "0.000001"),
            (Value::Float(1e-7), "1e-7"),
            (Value::Float(-1.25e-10), "-1.25e-10"),
            (Value::Float(5e-324), "5e-324"),
            (Value::Float(0.0), "0"),
            (Value::Float(f64::NAN), "null"),
            (Value::Float(f64::INFINITY), "null"),
            (Value::Float(f64::NEG_INFINITY), "null"),
            (s("hi"), r#""hi""#),
            (s("a\"b\\c"), r#""a\"b\\c""#),
            (
                s("\n\r\t\u{8}\u{c}\u{1}\u{1f}"),
                r#""\n\r\t\b\f\u0001\u001f""#,
            ),
            (s("<a&b>"), r#""\u003ca\u0026b\u003e""#),
            (s("\u{2028}\u{2029}"), r#""\u2028\u2029""#),
            (s("héllo ✓ 😀 \u{7f}"), "\"héllo ✓ 😀 \u{7f}\""),
            (s("/"), r#""/""#),
            (Value::Str(vec![b'a', 0xff, b'b']), r#""a\ufffdb""#),
            // Truncated 3-byte sequence: Go emits one replacement per bad byte.
            (Value::Str(vec![0xe2, 0x82, b'A']), r#""\ufffd\ufffdA""#),
            (
                Value::Str(vec![0xed, 0xa0, 0x80]),
                r#""\ufffd\ufffd\ufffd""#,
            ),
            (
                Value::error(ErrorValue::new("Invalid", "bad \"thing\"")),
                r#""bad \"thing\"""#,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(enc(&v), want, "encode({v:?})");
        }
    }

    #[test]
    fn encode_tables() {
        assert_eq!(enc(&Value::table(Table::default())), "[]");
        assert_eq!(
            enc(&arr(vec![
                Value::Int(1),
                s("x"),
                Value::Nil,
                Value::Bool(true)
            ])),
            r#"[1,"x",null,true]"#
        );
        assert_eq!(
            enc(&obj(vec![
                ("b", Value::Int(1)),
                ("a", Value::Float(99.5)),
                ("c", arr(vec![]))
            ])),
            r#"{"b":1,"a":99.5,"c":[]}"#
        );
        let nested = obj(vec![("list", arr(vec![obj(vec![("k", s("v"))])]))]);
        assert_eq!(enc(&nested), r#"{"list":[{"k":"v"}]}"#);
        let mut bad_key = Table::default();
        bad_key.map.push((Value::Str(vec![0xff]), Value::Int(1)));
        assert_eq!(enc(&Value::table(bad_key)), r#"{"\ufffd":1}"#);
    }

    #[test]
    fn encode_rejects_unrepresentable_tables() {
        let mixed = Table {
            array: vec![Value::Int(1)],
            map: vec![(s("a"), Value::Int(2))],
        };
        assert!(encode(&Value::table(mixed)).unwrap_err().contains("mixed"));
        // {[1]="a", [3]="b"}: a holey sequence lands in map with integer keys.
        let holes = Table {
            array: Vec::new(),
            map: vec![(Value::Int(1), s("a")), (Value::Int(3), s("b"))],
        };
        assert!(encode(&Value::table(holes)).unwrap_err().contains("sparse"));
        let float_key = Table {
            array: Vec::new(),
            map: vec![(Value::Float(1.5), s("a"))],
        };
        assert!(encode(&Value::table(float_key)).is_err());
        let bool_key = Table {
            array: Vec::new(),
            map: vec![(Value::Bool(true), s("a"))],
        };
        assert!(encode(&Value::table(bool_key))
            .unwrap_err()
            .contains("boolean"));
        let mixed_keys = Table {
            array: Vec::new(),
            map: vec![(s("a"), s("a")), (Value::Int(5), s("b"))],
        };
        assert!(encode(&Value::table(mixed_keys)).is_err());
        // Errors deep inside still surface.
        let inner = Table {
            array: vec![Value::Int(1)],
            map: vec![(s("a"), Value::Int(2))],
        };
        assert!(encode(&arr(vec![Value::table(inner)])).is_err());
    }

    fn nest(depth: usize) -> Value {
        let mut v = Value::Int(1);
        for _ in 0..depth {
            v = arr(vec![v]);
        }
        v
    }

    #[test]
    fn encode_depth_limit() {
        assert!(encode(&nest(128)).is_ok());
        assert!(encode(&nest(129)).unwrap_err().contains("deeper"));
    }

    #[test]
    fn decode_scalars() {
        let cases: Vec<(&str, Value)> = vec![
            ("null", Value::Nil),
            ("true", Value::Bool(true)),
            (" false ", Value::Bool(false)),
            ("0", Value::Int(0)),
            ("-0", Value::Int(0)),
            ("42", Value::Int(42)),
            ("-17", Value::Int(-17)),
            ("9223372036854775807", Value::Int(i64::MAX)),
            ("-9223372036854775808", Value::Int(i64::MIN)),
            ("9223372036854775808", Value::Float(9223372036854775808.0)),
            ("1.0", Value::Float(1.0)),
            ("99.5", Value::Float(99.5)),
            ("1e2", Value::Float(100.0)),
            ("1E-2", Value::Float(0.01)),
            ("-2.5e+3", Value::Float(-2500.0)),
            (r#""hi""#, s("hi")),
            (r#""a\"b\\c\/d""#, s("a\"b\\c/d")),
            (r#""\b\f\n\r\t""#, s("\u{8}\u{c}\n\r\t")),
            (r#""\u0041\u00e9\u2028""#, s("Aé\u{2028}")),
            (r#""\ud83d\ude00""#, s("😀")),
            (r#""\uD83D\uDE00""#, s("😀")),
            (r#""\ud83d""#, s("\u{fffd}")),
            (r#""\ude00x""#, s("\u{fffd}x")),
            (r#""\ud83d\u0041""#, s("\u{fffd}A")),
            (r#""\ud83d\ud83d\ude00""#, s("\u{fffd}😀")),
            ("\"héllo ✓\"", s("héllo ✓")),
            ("\"\u{7f}\"", s("\u{7f}")),
        ];
        for (input, want) in cases {
            assert_eq!(decode(input), Ok(want), "decode({input:?})");
        }
    }

    #[test]
    fn decode_containers() {
        assert_eq!(decode("[]"), Ok(arr(vec![])));
        assert_eq!(decode("{}"), Ok(Value::table(Table::default())));
        assert_eq!(
            decode(r#"[1, null, "x", 2.5]"#),
            Ok(arr(vec![
                Value::Int(1),
                Value::Nil,
                s("x"),
                Value::Float(2.5)
            ]))
        );
        assert_eq!(
            decode(r#"{"z":1,"a":[true],"gone":null,"m":{"k":"v"}}"#),
            Ok(obj(vec![
                ("z", Value::Int(1)),
                ("a", arr(vec![Value::Bool(true)])),
                ("m", obj(vec![("k", s("v"))])),
            ]))
        );
        // Duplicates overwrite in place; a later null removes the key.
        assert_eq!(
            decode(r#"{"a":1,"b":2,"a":3}"#),
            Ok(obj(vec![("a", Value::Int(3)), ("b", Value::Int(2))]))
        );
        assert_eq!(
            decode(r#"{"a":1,"b":2,"a":null,"a":4}"#),
            Ok(obj(vec![("b", Value::Int(2)), ("a", Value::Int(4))]))
        );
        assert_eq!(decode(r#"{"a":null}"#), Ok(Value::table(Table::default())));
        assert_eq!(
            decode(" \t\r\n{ \"k\" : [ 1 , 2 ] } \n"),
            Ok(obj(vec![("k", arr(vec![Value::Int(1), Value::Int(2)]))]))
        );
    }

    #[test]
    fn decode_errors() {
        let cases: &[(&str, &str)] = &[
            ("", "unexpected end of JSON input"),
            ("   ", "unexpected end of JSON input"),
            (
                "x",
                "invalid character 'x' looking for beginning of value at offset 0",
            ),
            (
                "[1,]",
                "invalid character ']' looking for beginning of value at offset 3",
            ),
            (
                "[1 2]",
                "invalid character '2' after array element at offset 3",
            ),
            (
                "{\"a\" 1}",
                "invalid character '1' after object key at offset 5",
            ),
            (
                "{\"a\":1 \"b\":2}",
                "invalid character '\"' after object key:value pair at offset 7",
            ),
            (
                "{1:2}",
                "invalid character '1' looking for beginning of object key string at offset 1",
            ),
            (
                "{\"a\":1,}",
                "invalid character '}' looking for beginning of object key string at offset 7",
            ),
            ("tru", "unexpected end of JSON input at offset 3"),
            (
                "trUe",
                "invalid character 'U' in literal true (expecting 'u') at offset 2",
            ),
            ("nul", "unexpected end of JSON input"),
            (
                "01",
                "invalid character '1' after top-level value at offset 1",
            ),
            ("1.", "unexpected end of JSON input"),
            (
                "1.x",
                "invalid character 'x' after decimal point in numeric literal at offset 2",
            ),
            (
                "1.e5",
                "invalid character 'e' after decimal point in numeric literal at offset 2",
            ),
            ("1e", "unexpected end of JSON input"),
            (
                "1ex",
                "invalid character 'x' in exponent of numeric literal at offset 2",
            ),
            ("-", "unexpected end of JSON input"),
            ("-a", "invalid character 'a' in numeric literal at offset 1"),
            ("+1", "invalid character '+' looking for beginning of value"),
            (".5", "invalid character '.' looking for beginning of value"),
            (
                "1 2",
                "invalid character '2' after top-level value at offset 2",
            ),
            ("\"abc", "unexpected end of JSON input"),
            (
                "\"a\u{1}\"",
                "invalid character '\\u{1}' in string literal at offset 2",
            ),
            (
                "\"\\x\"",
                "invalid character 'x' in string escape code at offset 2",
            ),
            (
                "\"\\u12g4\"",
                "invalid character 'g' in \\u hexadecimal character escape at offset 5",
            ),
            ("\"\\ud83d\\u12\"", "in \\u hexadecimal character escape"),
            ("1e400", "out of range"),
            (
                "NaN",
                "invalid character 'N' looking for beginning of value",
            ),
            (
                "é",
                "invalid character 'é' looking for beginning of value at offset 0",
            ),
            ("\u{feff}1", "looking for beginning of value"),
            ("[\"a\"}", "after array element"),
            (
                "'a'",
                "invalid character '\\'' looking for beginning of value",
            ),
        ];
        for (input, want) in cases {
            let err = decode(input).expect_err(input);
            assert!(
                err.contains(want),
                "decode({input:?}) = {err:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn decode_depth_limit() {
        let ok = "[".repeat(128) + &"]".repeat(128);
        assert!(decode(&ok).is_ok());
        let deep = "[".repeat(129) + &"]".repeat(129);
        assert!(decode(&deep).unwrap_err().contains("max depth"));
        let deep_obj = "{\"a\":".repeat(129) + "1" + &"}".repeat(129);
        assert!(decode(&deep_obj).unwrap_err().contains("max depth"));
        // Far past the limit must fail fast, not blow the stack.
        assert!(decode(&"[".repeat(100_000)).is_err());
    }

    #[test]
    fn round_trips() {
        let docs = [
            r#"{"name":"weft","n":3,"f":99.5,"tags":["a","b"],"nested":{"ok":true}}"#,
            r#"[1,2.5,"\u003c\u0026\u003e",null,[],[[1]]]"#,
            "\"\\u2028 \u{fffd} é\"",
            r#"-1.5e-7"#,
        ];
        for doc in docs {
            let v = decode(doc).expect(doc);
            assert_eq!(enc(&v), doc);
        }
    }

    #[test]
    fn never_panics_on_prefixes() {
        let doc =
            r#"{"a":[1,-2.5e+3,"x\u00e9\ud83d\ude00\n",{"b":null,"c":[true,false]}],"d":"é✓"}"#;
        for end in 0..=doc.len() {
            if let Some(prefix) = doc.get(..end) {
                let _ = decode(prefix);
            }
            if let Some(suffix) = doc.get(end..) {
                let _ = decode(suffix);
            }
        }
        for junk in [
            "\\",
            "\"\\",
            "\"\\u",
            "\"\\ud800\\",
            "\"\\ud800\\u",
            "[-",
            "{\"",
            "{\"a\"",
            "{\"a\":",
            "[1,",
            "-0.",
            "0e+",
        ] {
            assert!(decode(junk).is_err(), "{junk:?}");
        }
    }
}
