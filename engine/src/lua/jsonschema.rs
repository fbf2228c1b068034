//! A JSON Schema subset for `json.validate`: type, properties, required, items, enum, const,
//! minimum/maximum (and exclusive forms), minLength/maxLength, minItems/maxItems, pattern,
//! additionalProperties (boolean or schema), anyOf/allOf/oneOf/not. Written here instead of
//! pulling the `jsonschema` crate, whose dependency tree (HTTP resolving, regex engines, URL
//! handling) is far larger than this module. Unknown keywords are ignored, as the spec allows.

use crate::value::{Table, Value};
use serde_json::Value as J;

/// A Weft value as a JSON tree. Lua tables with only a sequence part become arrays, others
/// objects (non-string keys written as their text); an empty table is an empty array, as
/// `json.encode` writes it.
pub fn to_json(v: &Value) -> J {
    match v {
        Value::Nil => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => J::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Value::Str(s) => J::String(String::from_utf8_lossy(s).into_owned()),
        Value::Error(e) => J::String(e.to_string()),
        Value::Table(t) => table(t),
    }
}

fn table(t: &Table) -> J {
    if t.map.is_empty() {
        return J::Array(t.array.iter().map(to_json).collect());
    }
    let mut o = serde_json::Map::new();
    for (i, v) in t.array.iter().enumerate() {
        o.insert((i + 1).to_string(), to_json(v));
    }
    for (k, v) in &t.map {
        o.insert(k.to_display(), to_json(v));
    }
    J::Object(o)
}

fn type_ok(ty: &str, v: &J) -> bool {
    match ty {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "array" => v.is_array() || v.as_object().is_some_and(|o| o.is_empty()),
        // An empty Lua table is both an empty array and an empty object.
        "object" => v.is_object() || v.as_array().is_some_and(|a| a.is_empty()),
        _ => true,
    }
}

/// Checks `v` against `schema`; the first violation as `path: what`.
pub fn validate(schema: &J, v: &J, path: &str) -> Result<(), String> {
    let s = match schema {
        J::Bool(true) => return Ok(()),
        J::Bool(false) => return Err(format!("{}: no value is allowed here", at(path))),
        J::Object(s) => s,
        _ => return Ok(()),
    };
    let fail = |m: String| Err(format!("{}: {m}", at(path)));
    match s.get("type") {
        Some(J::String(t)) if !type_ok(t, v) => return fail(format!("expected {t}")),
        Some(J::Array(ts)) if !ts.iter().any(|t| t.as_str().is_some_and(|t| type_ok(t, v))) => {
            return fail(format!("expected one of {}", J::Array(ts.clone())))
        }
        _ => {}
    }
    if let Some(J::Array(opts)) = s.get("enum") {
        if !opts.iter().any(|o| json_eq(o, v)) {
            return fail("value is not one of the allowed values".into());
        }
    }
    if let Some(c) = s.get("const") {
        if !json_eq(c, v) {
            return fail(format!("value must be {c}"));
        }
    }
    if let Some(n) = v.as_f64() {
        let num = |k: &str| s.get(k).and_then(|x| x.as_f64());
        if let Some(m) = num("minimum").filter(|m| n < *m) {
            return fail(format!("{n} is less than the minimum {m}"));
        }
        if let Some(m) = num("maximum").filter(|m| n > *m) {
            return fail(format!("{n} is greater than the maximum {m}"));
        }
        if let Some(m) = num("exclusiveMinimum").filter(|m| n <= *m) {
            return fail(format!("{n} must be greater than {m}"));
        }
        if let Some(m) = num("exclusiveMaximum").filter(|m| n >= *m) {
            return fail(format!("{n} must be less than {m}"));
        }
    }
    if let Some(st) = v.as_str() {
        let len = st.chars().count() as u64;
        if let Some(m) = s.get("minLength").and_then(J::as_u64).filter(|m| len < *m) {
            return fail(format!("string shorter than {m}"));
        }
        if let Some(m) = s.get("maxLength").and_then(J::as_u64).filter(|m| len > *m) {
            return fail(format!("string longer than {m}"));
        }
        if let Some(p) = s.get("pattern").and_then(J::as_str) {
            match regex_lite::Regex::new(p) {
                Ok(re) if !re.is_match(st) => {
                    return fail(format!("string does not match pattern {p}"))
                }
                Ok(_) => {}
                Err(e) => return fail(format!("invalid pattern {p}: {e}")),
            }
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if let Some(m) = s.get("minItems").and_then(J::as_u64).filter(|m| n < *m) {
            return fail(format!("fewer than {m} items"));
        }
        if let Some(m) = s.get("maxItems").and_then(J::as_u64).filter(|m| n > *m) {
            return fail(format!("more than {m} items"));
        }
        if let Some(is) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(is, item, &format!("{path}/{i}"))?;
            }
        }
    }
    let empty = serde_json::Map::new();
    let obj = match v {
        J::Object(o) => Some(o),
        J::Array(a) if a.is_empty() => Some(&empty),
        _ => None,
    };
    if let Some(o) = obj {
        if let Some(J::Array(req)) = s.get("required") {
            for r in req.iter().filter_map(J::as_str) {
                if !o.contains_key(r) {
                    return fail(format!("missing required property '{r}'"));
                }
            }
        }
        let props = s.get("properties").and_then(J::as_object);
        for (k, val) in o {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(ps, val, &format!("{path}/{k}"))?,
                None => match s.get("additionalProperties") {
                    Some(J::Bool(false)) => return fail(format!("property '{k}' is not allowed")),
                    Some(ap @ J::Object(_)) => validate(ap, val, &format!("{path}/{k}"))?,
                    _ => {}
                },
            }
        }
    }
    if let Some(J::Array(all)) = s.get("allOf") {
        for sub in all {
            validate(sub, v, path)?;
        }
    }
    if let Some(J::Array(any)) = s.get("anyOf") {
        if !any.iter().any(|sub| validate(sub, v, path).is_ok()) {
            return fail("value matches none of anyOf".into());
        }
    }
    if let Some(J::Array(one)) = s.get("oneOf") {
        let n = one
            .iter()
            .filter(|sub| validate(sub, v, path).is_ok())
            .count();
        if n != 1 {
            return fail(format!("value matches {n} of oneOf, expected exactly 1"));
        }
    }
    if let Some(not) = s.get("not") {
        if validate(not, v, path).is_ok() {
            return fail("value matches a schema it must not".into());
        }
    }
    Ok(())
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// Equality with integers and floats of the same value equal (JSON has one number type).
fn json_eq(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}
