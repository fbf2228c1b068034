//! Owned values that cross process boundaries: message payloads, spawn arguments, results.
//! A `Value` never points into a Lua heap; converting to and from Lua lives in `lua::convert`.

pub mod codec;

use std::fmt;
use std::sync::Arc;

/// An error's kind. Wippy's kinds have a variant each; `errors.new{kind = ...}` may name any
/// other string, kept as `Custom` so Lua reads back exactly what it wrote.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum ErrorKind {
    /// The unset kind (`""`).
    #[default]
    Unknown,
    NotFound,
    AlreadyExists,
    Invalid,
    PermissionDenied,
    Unavailable,
    Internal,
    Canceled,
    Conflict,
    Timeout,
    RateLimited,
    Custom(Arc<str>),
}

impl ErrorKind {
    /// The kind as Lua sees it (CamelCase, as Wippy spells it; the unset kind is `""`).
    pub fn as_str(&self) -> &str {
        match self {
            ErrorKind::Unknown => "",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::Invalid => "Invalid",
            ErrorKind::PermissionDenied => "PermissionDenied",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Internal => "Internal",
            ErrorKind::Canceled => "Canceled",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::RateLimited => "RateLimited",
            ErrorKind::Custom(s) => s,
        }
    }
}

impl From<&str> for ErrorKind {
    fn from(s: &str) -> Self {
        match s {
            "" => ErrorKind::Unknown,
            "NotFound" => ErrorKind::NotFound,
            "AlreadyExists" => ErrorKind::AlreadyExists,
            "Invalid" => ErrorKind::Invalid,
            "PermissionDenied" => ErrorKind::PermissionDenied,
            "Unavailable" => ErrorKind::Unavailable,
            "Internal" => ErrorKind::Internal,
            "Canceled" => ErrorKind::Canceled,
            "Conflict" => ErrorKind::Conflict,
            "Timeout" => ErrorKind::Timeout,
            "RateLimited" => ErrorKind::RateLimited,
            other => ErrorKind::Custom(other.into()),
        }
    }
}

impl From<String> for ErrorKind {
    fn from(s: String) -> Self {
        ErrorKind::from(s.as_str())
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds under the names the code uses (`ErrorValue::new(kind::INVALID, ..)`).
pub mod kind {
    use super::ErrorKind;
    pub const NOT_FOUND: ErrorKind = ErrorKind::NotFound;
    pub const ALREADY_EXISTS: ErrorKind = ErrorKind::AlreadyExists;
    pub const INVALID: ErrorKind = ErrorKind::Invalid;
    pub const PERMISSION_DENIED: ErrorKind = ErrorKind::PermissionDenied;
    pub const UNAVAILABLE: ErrorKind = ErrorKind::Unavailable;
    pub const INTERNAL: ErrorKind = ErrorKind::Internal;
    pub const CANCELED: ErrorKind = ErrorKind::Canceled;
    pub const CONFLICT: ErrorKind = ErrorKind::Conflict;
    pub const TIMEOUT: ErrorKind = ErrorKind::Timeout;
    pub const RATE_LIMITED: ErrorKind = ErrorKind::RateLimited;
    pub const UNKNOWN: ErrorKind = ErrorKind::Unknown;
}

/// A Wippy error value: survives crossing processes as an error, not as a string.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ErrorValue {
    pub kind: ErrorKind,
    pub message: String,
    pub retryable: Option<bool>,
    pub details: Option<Value>,
    /// Text added by `errors.wrap` (outermost first, joined by ": "); the message stays the
    /// inner one, `tostring` shows `context: message`.
    pub context: Option<String>,
    /// Where `errors.new` was called: (source, line, function name), innermost first.
    pub frames: Vec<(String, u32, String)>,
}

impl ErrorValue {
    pub fn new(kind: impl Into<ErrorKind>, message: impl Into<String>) -> Self {
        ErrorValue {
            kind: kind.into(),
            message: message.into(),
            retryable: None,
            details: None,
            context: None,
            frames: Vec::new(),
        }
    }
}

impl fmt::Display for ErrorValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.context {
            write!(f, "{c}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A table copied out of Lua: the sequence part `1..=n` in `array`, every other key in `map`
/// (in the order Lua iterated them, which is deterministic for string and number keys).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Table {
    pub array: Vec<Value>,
    pub map: Vec<(Value, Value)>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map
            .iter()
            .find(|(k, _)| matches!(k, Value::Str(s) if s.as_slice() == key.as_bytes()))
            .map(|(_, v)| v)
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.map.push((Value::from(key), value));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.array.is_empty() && self.map.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Lua strings are byte strings.
    Str(Vec<u8>),
    Table(Box<Table>),
    Error(Box<ErrorValue>),
}

impl Value {
    pub fn table(t: Table) -> Value {
        Value::Table(Box::new(t))
    }

    pub fn error(e: ErrorValue) -> Value {
        Value::Error(Box::new(e))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// The text `tostring` would give for scalars; tables and errors get a short form.
    pub fn to_display(&self) -> String {
        match self {
            Value::Nil => "nil".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Str(s) => String::from_utf8_lossy(s).into_owned(),
            Value::Table(_) => "table".into(),
            Value::Error(e) => e.message.clone(),
        }
    }
}

/// Lua's `%.14g` rendering of a float, as `tostring` prints it.
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return if f.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        };
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == f.trunc() && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    let s = format!("{}", f);
    if s.len() <= 17 {
        s
    } else {
        format!("{:.14e}", f)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.as_bytes().to_vec())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s.into_bytes())
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_keep_the_text_lua_sees() {
        let named = [
            (kind::NOT_FOUND, "NotFound"),
            (kind::ALREADY_EXISTS, "AlreadyExists"),
            (kind::INVALID, "Invalid"),
            (kind::PERMISSION_DENIED, "PermissionDenied"),
            (kind::UNAVAILABLE, "Unavailable"),
            (kind::INTERNAL, "Internal"),
            (kind::CANCELED, "Canceled"),
            (kind::CONFLICT, "Conflict"),
            (kind::TIMEOUT, "Timeout"),
            (kind::RATE_LIMITED, "RateLimited"),
            (kind::UNKNOWN, ""),
        ];
        for (k, text) in named {
            assert_eq!(k.as_str(), text);
            assert_eq!(ErrorKind::from(text), k, "{text} parses to its variant");
            assert_eq!(k.to_string(), text);
        }
        let custom = ErrorKind::from("QuotaExceeded");
        assert_eq!(custom, ErrorKind::Custom("QuotaExceeded".into()));
        assert_eq!(custom.as_str(), "QuotaExceeded");
        assert_ne!(
            ErrorKind::from("notfound"),
            kind::NOT_FOUND,
            "kinds are case-sensitive"
        );
        assert_eq!(ErrorValue::default().kind, kind::UNKNOWN);
        assert_eq!(ErrorValue::new("Invalid", "m").kind, kind::INVALID);
    }
}
