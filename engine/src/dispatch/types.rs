//! The collector's wire messages as plain domain types (package `collector`, `common.proto` and
//! `dispatcher.proto`). No prost here: the driver converts these field by field.

use std::collections::BTreeMap;

/// `Status.code` values the collector puts on the wire (HTTP numbers inside the proto's open
/// enum; the driver must copy the raw `i32`, never prost's `code()` getter).
pub mod code {
    pub const OK: i32 = 200;
    pub const BAD_REQUEST: i32 = 400;
    pub const NOT_FOUND: i32 = 404;
    pub const INTERNAL: i32 = 500;
}

/// `collector.Status`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Status {
    pub code: i32,
    pub message: String,
    pub details: BTreeMap<String, String>,
}

impl Status {
    pub fn new(code: i32, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            details: BTreeMap::new(),
        }
    }

    pub fn ok() -> Status {
        Status::new(code::OK, "OK")
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Status {
        self.details.insert(key.to_string(), value.into());
        self
    }

    pub fn is_ok(&self) -> bool {
        self.code == code::OK
    }
}

/// `google.protobuf.Any`: a type URL and the message's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Any {
    pub type_url: String,
    pub value: Vec<u8>,
}

/// `collector.ServiceTypeRef` (its `namespace` is ignored, as the collector ignores it).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServiceRef {
    pub namespace: String,
    pub service_name: String,
}

impl ServiceRef {
    pub fn named(service_name: &str) -> Option<ServiceRef> {
        Some(ServiceRef {
            namespace: String::new(),
            service_name: service_name.to_string(),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServeRequest {
    pub namespace: String,
    pub service: Option<ServiceRef>,
    pub method_name: String,
    pub input: Option<Any>,
    pub execution_context: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ServeResponse {
    pub status: Option<Status>,
    pub output: Option<Any>,
    pub executor_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub address: String,
    pub namespaces: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub status: Option<Status>,
    pub connection_id: String,
    pub shared_namespaces: Vec<String>,
    pub target_collector_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DispatchRequest {
    pub namespace: String,
    pub service: Option<ServiceRef>,
    pub method_name: String,
    pub input: Option<Any>,
    pub target_collector_id: String,
    pub routing_hints: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DispatchResponse {
    pub status: Option<Status>,
    pub output: Option<Any>,
    pub handled_by_collector_id: String,
}

/// One unary RPC of `collector.CollectiveDispatcher`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Connect(ConnectRequest),
    Serve(ServeRequest),
    Dispatch(DispatchRequest),
}

/// The reply to a [`Request`] of the same variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Connect(ConnectResponse),
    Serve(ServeResponse),
    Dispatch(DispatchResponse),
}

impl Response {
    /// The status every response carries (P6); `None` only for a malformed peer reply.
    pub fn status(&self) -> Option<&Status> {
        match self {
            Response::Connect(r) => r.status.as_ref(),
            Response::Serve(r) => r.status.as_ref(),
            Response::Dispatch(r) => r.status.as_ref(),
        }
    }
}
