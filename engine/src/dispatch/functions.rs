//! `function.lua` entries as service methods, and the glue between a Lua call and a dispatch:
//! the request `funcs.call` makes for a function served elsewhere, the error value a non-200
//! answer becomes, and what a handler's Lua result becomes on the wire. Pure data mapping.

use super::collector::{hint, MethodKey};
use super::payload::{decode_input, encode_result};
use super::types::{code, Any, DispatchRequest, DispatchResponse, ServiceRef};
use crate::command::CallOptions;
use crate::entries::{Entry, EntryKind};
use crate::value::{kind, ErrorValue, Table, Value};
use std::collections::BTreeMap;

/// The methods a node serves, each with the entry that runs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Functions {
    by_key: BTreeMap<MethodKey, String>,
}

impl Functions {
    /// Every `function.lua` entry `ns:name` as (`ns`, `meta.service` or `ns`, `meta.method` or
    /// `name`). Two entries claiming one key: the first by entry id keeps it (entries come in
    /// any order, the choice must not depend on it).
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Functions {
        let mut sorted: Vec<&Entry> = entries
            .into_iter()
            .filter(|e| e.kind == EntryKind::FunctionLua)
            .collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let mut by_key = BTreeMap::new();
        for e in sorted {
            let service = e.meta.get("service").and_then(Value::as_str);
            let method = e.meta.get("method").and_then(Value::as_str);
            if let Some(k) = MethodKey::for_function(&e.id, service, method) {
                by_key.entry(k).or_insert_with(|| e.id.clone());
            }
        }
        Functions { by_key }
    }

    pub fn keys(&self) -> impl Iterator<Item = &MethodKey> + '_ {
        self.by_key.keys()
    }

    /// The entry id that serves `key` (what the node runs for an `Output::Invoke`).
    pub fn entry(&self, key: &MethodKey) -> Option<&str> {
        self.by_key.get(key).map(String::as_str)
    }
}

/// The Dispatch `funcs.call(target, ...)` sends when `target` (`ns:name`) is not served here:
/// namespace `ns`, service `ns`, method `name` (the defaults of an entry without
/// `meta.service`/`meta.method`). One argument (or none: nil) is the input itself (what a
/// foreign collector sends and expects); two or more travel as a `ListValue` of the arguments with
/// `hint::ARGS` saying how many, so the callee gets them spread (trailing nils included).
/// The options become hints: `idempotent` allows a retry elsewhere after an unknown outcome,
/// `timeout_ns` bounds one attempt as well as the call.
pub fn call_request(
    target: &str,
    args: &[Value],
    opts: &CallOptions,
) -> Result<DispatchRequest, ErrorValue> {
    let (ns, name) = match target.split_once(':') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => (ns, name),
        _ => {
            return Err(ErrorValue::new(
                kind::INVALID,
                format!("invalid function id (want namespace:name): '{target}'"),
            ))
        }
    };
    let mut routing_hints = BTreeMap::new();
    let input = match args {
        [] => encode_result(&Value::Nil),
        [one] => encode_result(one),
        _ => {
            routing_hints.insert(hint::ARGS.to_string(), args.len().to_string());
            let list = Table {
                array: args.to_vec(),
                map: vec![],
            };
            encode_result(&Value::table(list))
        }
    }
    .map_err(|e| ErrorValue::new(kind::INVALID, format!("argument cannot be sent: {e}")))?;
    if opts.idempotent {
        routing_hints.insert(hint::IDEMPOTENT.to_string(), "true".to_string());
    }
    if let Some(t) = opts.timeout_ns {
        routing_hints.insert(hint::ATTEMPT.to_string(), t.to_string());
    }
    Ok(DispatchRequest {
        namespace: ns.to_string(),
        service: ServiceRef::named(ns),
        method_name: name.to_string(),
        input: Some(input),
        target_collector_id: String::new(),
        routing_hints,
    })
}

/// What the calling Lua code gets back: the decoded output on 200, otherwise an error whose
/// kind follows the code and whose details carry the code and the status details.
pub fn call_result(resp: &DispatchResponse) -> Result<Value, ErrorValue> {
    let Some(status) = &resp.status else {
        return Err(ErrorValue::new(
            kind::INTERNAL,
            "dispatch answered without a status",
        ));
    };
    if status.code == code::OK {
        return decode_input(resp.output.as_ref())
            .map_err(|e| ErrorValue::new(kind::INTERNAL, format!("result cannot be read: {e}")));
    }
    let flag = |d: &str| status.details.get(d).map(String::as_str) == Some("true");
    let k = match status.code {
        _ if flag(hint::CANCELED) => kind::CANCELED,
        _ if flag(hint::TIMEOUT) => kind::TIMEOUT,
        code::BAD_REQUEST => kind::INVALID,
        code::NOT_FOUND => kind::NOT_FOUND,
        code::INTERNAL => kind::INTERNAL,
        _ => kind::UNKNOWN,
    };
    let mut e = ErrorValue::new(k, status.message.clone());
    let mut details = Table::default().with("code", Value::Int(status.code as i64));
    for (key, v) in &status.details {
        details = details.with(key, Value::from(v.as_str()));
    }
    e.details = Some(Value::table(details));
    Err(e)
}

/// A local handler's Lua outcome as `Input::Handled`'s result: a value that cannot be encoded
/// is a handler error (500), never a crash.
pub fn handler_result(r: Result<Value, ErrorValue>) -> Result<Option<Any>, String> {
    match r {
        Ok(v) => encode_result(&v)
            .map(Some)
            .map_err(|e| format!("result cannot be encoded: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

/// A request's input as the handler's argument; undecodable input is a handler error.
pub fn handler_input(input: Option<&Any>) -> Result<Value, String> {
    decode_input(input).map_err(|e| format!("invalid input: {e}"))
}

/// A request's input as the handler's arguments: one, or with `hint::ARGS` = n in `context`
/// the n items of its list (missing ones nil). A count that is not a number, or an input that
/// is not a list of at most that many items, is a handler error.
pub fn handler_args(
    input: Option<&Any>,
    context: &BTreeMap<String, String>,
) -> Result<Vec<Value>, String> {
    let Some(n) = context.get(hint::ARGS) else {
        return Ok(vec![handler_input(input)?]);
    };
    let n: usize = n
        .parse()
        .ok()
        .filter(|n| *n <= MAX_ARGS)
        .ok_or_else(|| format!("invalid input: bad argument count '{n}'"))?;
    let mut args = match handler_input(input)? {
        Value::Table(t) if t.map.is_empty() && t.array.len() <= n => t.array.clone(),
        Value::Nil if n == 0 => Vec::new(),
        _ => return Err(format!("invalid input: not a list of {n} arguments")),
    };
    args.resize(n, Value::Nil);
    Ok(args)
}

/// Most arguments one remote call spreads (a hostile count never allocates more).
pub const MAX_ARGS: usize = 256;

#[cfg(test)]
#[path = "functions_tests.rs"]
mod tests;
