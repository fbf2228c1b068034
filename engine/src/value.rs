//! Owned values that cross process boundaries: message payloads, spawn arguments, results.
//! A `Value` never points into a Lua heap; converting to and from Lua lives in `lua::convert`.

use std::fmt;

/// Error kinds as Wippy spells them (CamelCase; the unset kind is the empty string).
pub mod kind {
    pub const NOT_FOUND: &str = "NotFound";
    pub const ALREADY_EXISTS: &str = "AlreadyExists";
    pub const INVALID: &str = "Invalid";
    pub const PERMISSION_DENIED: &str = "PermissionDenied";
    pub const UNAVAILABLE: &str = "Unavailable";
    pub const INTERNAL: &str = "Internal";
    pub const CANCELED: &str = "Canceled";
    pub const CONFLICT: &str = "Conflict";
    pub const TIMEOUT: &str = "Timeout";
    pub const RATE_LIMITED: &str = "RateLimited";
    pub const UNKNOWN: &str = "";
}

/// A Wippy error value: survives crossing processes as an error, not as a string.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ErrorValue {
    pub kind: String,
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
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        ErrorValue {
            kind: kind.to_string(),
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
