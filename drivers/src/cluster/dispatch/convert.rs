//! prost messages of package `collector` <-> the engine's plain dispatch types, field by field.
//! `Status.code` is copied as the raw `i32` (the collector puts HTTP numbers in it; prost's
//! `code()` getter would read 200 as `OK`). Every conversion is total: bad input cannot panic.

use std::collections::{BTreeMap, HashMap};
use weft_engine::dispatch::types as t;
use weft_engine::dispatch::Response;
use weft_wire::collector as pb;
use weft_wire::prost_types;

fn map_in(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

fn map_out(m: BTreeMap<String, String>) -> HashMap<String, String> {
    m.into_iter().collect()
}

fn any_in(a: prost_types::Any) -> t::Any {
    t::Any {
        type_url: a.type_url,
        value: a.value,
    }
}

fn any_out(a: t::Any) -> prost_types::Any {
    prost_types::Any {
        type_url: a.type_url,
        value: a.value,
    }
}

fn service_in(s: pb::ServiceTypeRef) -> t::ServiceRef {
    t::ServiceRef {
        namespace: s.namespace,
        service_name: s.service_name,
    }
}

fn service_out(s: t::ServiceRef) -> pb::ServiceTypeRef {
    pb::ServiceTypeRef {
        namespace: s.namespace,
        service_name: s.service_name,
    }
}

pub fn status_in(s: pb::Status) -> t::Status {
    t::Status {
        code: s.code,
        message: s.message,
        details: map_in(s.details),
    }
}

pub fn status_out(s: t::Status) -> pb::Status {
    pb::Status {
        code: s.code,
        message: s.message,
        details: map_out(s.details),
    }
}

pub fn serve_request_in(r: pb::ServeRequest) -> t::ServeRequest {
    t::ServeRequest {
        namespace: r.namespace,
        service: r.service.map(service_in),
        method_name: r.method_name,
        input: r.input.map(any_in),
        execution_context: map_in(r.execution_context),
    }
}

pub fn serve_request_out(r: t::ServeRequest) -> pb::ServeRequest {
    pb::ServeRequest {
        namespace: r.namespace,
        service: r.service.map(service_out),
        method_name: r.method_name,
        input: r.input.map(any_out),
        execution_context: map_out(r.execution_context),
    }
}

pub fn connect_request_in(r: pb::ConnectRequest) -> t::ConnectRequest {
    t::ConnectRequest {
        address: r.address,
        namespaces: r.namespaces,
        metadata: map_in(r.metadata),
    }
}

pub fn connect_request_out(r: t::ConnectRequest) -> pb::ConnectRequest {
    pb::ConnectRequest {
        address: r.address,
        namespaces: r.namespaces,
        metadata: map_out(r.metadata),
    }
}

pub fn dispatch_request_in(r: pb::DispatchRequest) -> t::DispatchRequest {
    t::DispatchRequest {
        namespace: r.namespace,
        service: r.service.map(service_in),
        method_name: r.method_name,
        input: r.input.map(any_in),
        target_collector_id: r.target_collector_id,
        routing_hints: map_in(r.routing_hints),
    }
}

pub fn dispatch_request_out(r: t::DispatchRequest) -> pb::DispatchRequest {
    pb::DispatchRequest {
        namespace: r.namespace,
        service: r.service.map(service_out),
        method_name: r.method_name,
        input: r.input.map(any_out),
        target_collector_id: r.target_collector_id,
        routing_hints: map_out(r.routing_hints),
    }
}

pub fn serve_response_in(r: pb::ServeResponse) -> t::ServeResponse {
    t::ServeResponse {
        status: r.status.map(status_in),
        output: r.output.map(any_in),
        executor_id: r.executor_id,
    }
}

pub fn connect_response_in(r: pb::ConnectResponse) -> t::ConnectResponse {
    t::ConnectResponse {
        status: r.status.map(status_in),
        connection_id: r.connection_id,
        shared_namespaces: r.shared_namespaces,
        target_collector_id: r.target_collector_id,
    }
}

pub fn dispatch_response_in(r: pb::DispatchResponse) -> t::DispatchResponse {
    t::DispatchResponse {
        status: r.status.map(status_in),
        output: r.output.map(any_in),
        handled_by_collector_id: r.handled_by_collector_id,
    }
}

/// The status every response we send carries (P6): a response without one (the node never
/// sends such, but a mismatch must not reach the wire as a status-less reply) becomes a 500.
fn status_or_internal(s: Option<t::Status>) -> pb::Status {
    status_out(s.unwrap_or_else(|| {
        t::Status::new(t::code::INTERNAL, "internal error: response without status")
    }))
}

/// The node's answer as a `ServeResponse`; an answer of another kind keeps only its status.
pub fn serve_response_out(r: Response) -> pb::ServeResponse {
    match r {
        Response::Serve(r) => pb::ServeResponse {
            status: Some(status_or_internal(r.status)),
            output: r.output.map(any_out),
            executor_id: r.executor_id,
        },
        other => pb::ServeResponse {
            status: Some(status_or_internal(other.status().cloned())),
            ..Default::default()
        },
    }
}

/// The node's answer as a `ConnectResponse`; an answer of another kind keeps only its status.
pub fn connect_response_out(r: Response) -> pb::ConnectResponse {
    match r {
        Response::Connect(r) => pb::ConnectResponse {
            status: Some(status_or_internal(r.status)),
            connection_id: r.connection_id,
            shared_namespaces: r.shared_namespaces,
            target_collector_id: r.target_collector_id,
        },
        other => pb::ConnectResponse {
            status: Some(status_or_internal(other.status().cloned())),
            ..Default::default()
        },
    }
}

/// The node's answer as a `DispatchResponse`; an answer of another kind keeps only its status.
pub fn dispatch_response_out(r: Response) -> pb::DispatchResponse {
    match r {
        Response::Dispatch(r) => pb::DispatchResponse {
            status: Some(status_or_internal(r.status)),
            output: r.output.map(any_out),
            handled_by_collector_id: r.handled_by_collector_id,
        },
        other => pb::DispatchResponse {
            status: Some(status_or_internal(other.status().cloned())),
            ..Default::default()
        },
    }
}

/// `grpc-timeout` (gRPC over HTTP/2: 1-8 ASCII digits and a unit H, M, S, m, u or n) as a
/// duration; `None` when absent or malformed (a malformed header is ignored, as no deadline).
pub fn parse_grpc_timeout(v: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    if v.len() < 2 || v.len() > 9 || !v.is_ascii() {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use weft_wire::prost::Message as _;

    #[test]
    fn grpc_timeout_units_and_malformed_values() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in [
            "",
            "S",
            "5",
            "5s",
            "123456789S",
            "-1S",
            "1.5S",
            "五S",
            "5 S",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn http_status_codes_survive_the_wire_as_raw_numbers() {
        let mut details = BTreeMap::new();
        details.insert("last_peer".to_string(), "b".to_string());
        let status = t::Status {
            code: 404,
            message: "no collector found for namespace 'x'".into(),
            details,
        };
        let resp = dispatch_response_out(Response::Dispatch(t::DispatchResponse {
            status: Some(status.clone()),
            output: Some(t::Any {
                type_url: "type.googleapis.com/google.protobuf.Value".into(),
                value: vec![1, 2, 3],
            }),
            handled_by_collector_id: "n1".into(),
        }));
        let bytes = resp.encode_to_vec();
        // field 1 (status), then its field 1 (code) = varint 404 = 0x94 0x03.
        assert_eq!(&bytes[2..5], &[0x08, 0x94, 0x03]);
        let back = dispatch_response_in(pb::DispatchResponse::decode(&bytes[..]).unwrap());
        assert_eq!(back.status, Some(status));
        assert_eq!(back.handled_by_collector_id, "n1");
        assert_eq!(back.output.unwrap().value, vec![1, 2, 3]);
    }

    #[test]
    fn a_response_of_another_kind_or_without_status_still_carries_a_status() {
        let wrong = Response::Dispatch(t::DispatchResponse {
            status: Some(t::Status::new(404, "nope")),
            ..Default::default()
        });
        let s = serve_response_out(wrong.clone()).status.unwrap();
        assert_eq!((s.code, s.message.as_str()), (404, "nope"));
        let c = connect_response_out(wrong).status.unwrap();
        assert_eq!(c.code, 404);
        let none = serve_response_out(Response::Serve(t::ServeResponse::default()));
        assert_eq!(none.status.unwrap().code, 500);
    }

    #[test]
    fn requests_convert_field_by_field_both_ways() {
        let mut hints = HashMap::new();
        hints.insert("traceparent".to_string(), "00-abc-def-01".to_string());
        let pbreq = pb::DispatchRequest {
            namespace: "orders".into(),
            service: Some(pb::ServiceTypeRef {
                namespace: "ignored".into(),
                service_name: "orders".into(),
            }),
            method_name: "create".into(),
            input: Some(prost_types::Any {
                type_url: "t".into(),
                value: vec![9],
            }),
            target_collector_id: "n2".into(),
            routing_hints: hints,
        };
        let ours = dispatch_request_in(pbreq.clone());
        assert_eq!(ours.service.as_ref().unwrap().namespace, "ignored");
        assert_eq!(ours.routing_hints["traceparent"], "00-abc-def-01");
        assert_eq!(dispatch_request_out(ours), pbreq);
        let serve = pb::ServeRequest {
            namespace: "n".into(),
            service: None,
            method_name: "m".into(),
            input: None,
            execution_context: HashMap::new(),
        };
        assert_eq!(serve_request_out(serve_request_in(serve.clone())), serve);
        let conn = pb::ConnectRequest {
            address: "a:1".into(),
            namespaces: vec!["x".into(), "x".into()],
            metadata: HashMap::new(),
        };
        assert_eq!(connect_request_out(connect_request_in(conn.clone())), conn);
    }
}
