//! The body of the `dispatch` fuzz target (fuzz/fuzz_targets/dispatch.rs includes this file and
//! `convert.rs` by path, so the fuzz crate needs neither this binary crate nor its I/O stack), and
//! the replay of its corpus (`fuzz/corpus/dispatch`) under `cargo test`.
//!
//! Input: a sequence of chunks `[tag][len lo][len hi][len bytes]` (a short tail is one chunk).
//! Each chunk is decoded as the prost message its tag names: an inbound `DispatchRequest`,
//! `ServeRequest` or `ConnectRequest` (with a `grpc-timeout` text), or a peer's reply to the
//! oldest outstanding call, or a handler result, or time passing. Requests are converted into
//! engine types (`convert`) and handed to a sans-IO `Collector` serving two methods with one
//! peer; every output is converted back to prost and encoded. Must never panic, and:
//! - conversions are lossless both ways (`x_out(x_in(m)) == m`);
//! - every request is answered exactly once (after time runs past every deadline);
//! - every response decodes back to what was sent.

use super::convert;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use weft_engine::dispatch::collector::{
    Collector, Config, Input, MethodKey, Output, TransportError,
};
use weft_engine::dispatch::{Any, Request, Response};
use weft_wire::collector as pb;
use weft_wire::prost::Message;
use weft_wire::prost_types;

/// The answers the collector gave, by request id.
#[derive(Default)]
struct Seen {
    answered: BTreeMap<u64, u32>,
    /// Calls the collector sent (oldest first) and jobs it invoked, waiting for an outcome.
    calls: VecDeque<(u64, &'static str)>,
    jobs: VecDeque<u64>,
}

fn chunks(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = data.split_first() {
        let (len, rest) = match rest {
            [lo, hi, rest @ ..] => (usize::from(*lo) | usize::from(*hi) << 8, rest),
            _ => (rest.len(), &rest[rest.len()..]),
        };
        let len = len.min(rest.len());
        out.push((tag, &rest[..len]));
        data = &rest[len..];
    }
    out
}

fn collector() -> Collector {
    let mut c = Collector::new(
        Config::new("n1", "n1:7000", 7),
        [
            MethodKey::new("orders", "orders", "create"),
            MethodKey::new("a", "a.b", "c"),
        ],
    );
    c.handle(
        0,
        Input::PeerUp {
            id: "n2".into(),
            address: "n2:7000".into(),
            namespaces: vec!["orders".into(), "remote".into()],
            version: 1,
        },
    );
    c
}

/// Encodes `m` and checks that it decodes to itself.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M, what: &str) {
    let bytes = m.encode_to_vec();
    let back = M::decode(&bytes[..]).unwrap_or_else(|e| panic!("{what}: re-decode failed: {e}"));
    assert_eq!(&back, m, "{what}: encode/decode changed the message");
}

/// Drains the collector's outputs into `seen`, converting each to its prost form.
fn drain(c: &mut Collector, seen: &mut Seen) {
    while let Some(o) = c.poll_output() {
        match o {
            Output::Respond { req, response } => {
                *seen.answered.entry(req).or_default() += 1;
                match response.clone() {
                    Response::Dispatch(r) => {
                        let out = convert::dispatch_response_out(response);
                        round_trip(&out, "DispatchResponse");
                        assert!(out.status.is_some(), "a response without status");
                        let back = convert::dispatch_response_in(out);
                        assert_eq!(back.output, r.output, "DispatchResponse output");
                    }
                    Response::Serve(_) => {
                        let out = convert::serve_response_out(response);
                        round_trip(&out, "ServeResponse");
                        assert!(out.status.is_some(), "a response without status");
                    }
                    Response::Connect(_) => {
                        let out = convert::connect_response_out(response);
                        round_trip(&out, "ConnectResponse");
                        assert!(out.status.is_some(), "a response without status");
                    }
                }
            }
            Output::Send { call, request, .. } => {
                let kind = match request {
                    Request::Dispatch(r) => {
                        let out = convert::dispatch_request_out(r.clone());
                        round_trip(&out, "forwarded DispatchRequest");
                        assert_eq!(convert::dispatch_request_in(out), r, "DispatchRequest");
                        "dispatch"
                    }
                    Request::Serve(r) => {
                        let out = convert::serve_request_out(r.clone());
                        round_trip(&out, "forwarded ServeRequest");
                        assert_eq!(convert::serve_request_in(out), r, "ServeRequest");
                        "serve"
                    }
                    Request::Connect(r) => {
                        let out = convert::connect_request_out(r.clone());
                        round_trip(&out, "outbound ConnectRequest");
                        assert_eq!(convert::connect_request_in(out), r, "ConnectRequest");
                        "connect"
                    }
                };
                seen.calls.push_back((call, kind));
            }
            Output::Invoke { job, .. } => seen.jobs.push_back(job),
            // An aborted call may still be answered (by a late peer): the harness keeps it.
            Output::Cancel { .. } | Output::Abort { .. } | Output::Event(_) => {}
        }
    }
}

/// The inbound request a chunk decodes to, checked to convert losslessly both ways.
fn request(tag: u8, bytes: &[u8]) -> Option<Request> {
    Some(match tag {
        0 => {
            let m = pb::DispatchRequest::decode(bytes).ok()?;
            let r = convert::dispatch_request_in(m.clone());
            assert_eq!(
                convert::dispatch_request_out(r.clone()),
                m,
                "DispatchRequest"
            );
            Request::Dispatch(r)
        }
        1 => {
            let m = pb::ServeRequest::decode(bytes).ok()?;
            let r = convert::serve_request_in(m.clone());
            assert_eq!(convert::serve_request_out(r.clone()), m, "ServeRequest");
            Request::Serve(r)
        }
        _ => {
            let m = pb::ConnectRequest::decode(bytes).ok()?;
            let r = convert::connect_request_in(m.clone());
            assert_eq!(convert::connect_request_out(r.clone()), m, "ConnectRequest");
            Request::Connect(r)
        }
    })
}

/// A peer's reply to the oldest outstanding call, decoded as that call's response type; bytes
/// that do not decode are a transport failure (sent or not by the chunk's length parity).
fn reply(kind: &str, bytes: &[u8]) -> Result<Response, TransportError> {
    let fail = || {
        if bytes.len().is_multiple_of(2) {
            TransportError::lost("fuzz: connection lost")
        } else {
            TransportError::unsent("fuzz: dial refused")
        }
    };
    match kind {
        "dispatch" => pb::DispatchResponse::decode(bytes)
            .map(|m| Response::Dispatch(convert::dispatch_response_in(m)))
            .map_err(|_| fail()),
        "serve" => pb::ServeResponse::decode(bytes)
            .map(|m| Response::Serve(convert::serve_response_in(m)))
            .map_err(|_| fail()),
        _ => pb::ConnectResponse::decode(bytes)
            .map(|m| Response::Connect(convert::connect_response_in(m)))
            .map_err(|_| fail()),
    }
}

pub fn one(data: &[u8]) {
    let mut c = collector();
    let mut seen = Seen::default();
    let mut now: u64 = 1;
    let mut next_req: u64 = 1;
    let mut asked = BTreeSet::new();
    let mut timeout: Option<u64> = None;
    for (tag, bytes) in chunks(data) {
        match tag % 8 {
            t @ 0..=2 => {
                let Some(r) = request(t, bytes) else { continue };
                let req = next_req;
                next_req += 1;
                asked.insert(req);
                let deadline = timeout.take().map(|d| now.saturating_add(d));
                c.handle(
                    now,
                    Input::Request {
                        req,
                        deadline,
                        request: r,
                    },
                );
            }
            3 => {
                // A `grpc-timeout` header for the next request.
                timeout = std::str::from_utf8(bytes)
                    .ok()
                    .and_then(convert::parse_grpc_timeout)
                    .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            }
            4 => {
                if let Some((call, kind)) = seen.calls.pop_front() {
                    let result = reply(kind, bytes);
                    c.handle(now, Input::Reply { call, result });
                }
            }
            5 => {
                if let Some(job) = seen.jobs.pop_front() {
                    let result = match bytes.split_first() {
                        None => Ok(None),
                        Some((0, rest)) => Err(String::from_utf8_lossy(rest).into_owned()),
                        Some((_, rest)) => prost_types::Any::decode(rest)
                            .map(|a| {
                                Some(Any {
                                    type_url: a.type_url,
                                    value: a.value,
                                })
                            })
                            .map_err(|e| e.to_string()),
                    };
                    c.handle(now, Input::Handled { job, result });
                }
            }
            6 => {
                let mut n = [0u8; 8];
                let k = bytes.len().min(8);
                n[..k].copy_from_slice(&bytes[..k]);
                now = now.saturating_add(u64::from_le_bytes(n) % 120_000_000_000);
                c.handle(now, Input::Tick);
            }
            _ => {
                let text = String::from_utf8_lossy(bytes);
                let namespaces: Vec<String> = text.split(',').map(String::from).collect();
                c.handle(
                    now,
                    Input::PeerNamespaces {
                        id: "n2".into(),
                        namespaces,
                        version: 2 + bytes.len() as u64,
                    },
                );
            }
        }
        drain(&mut c, &mut seen);
    }
    // The peer and the handlers answer whatever still waits (as failures), then time runs
    // past every deadline: every request must be answered by then.
    for _ in 0..256 {
        if let Some((call, _)) = seen.calls.pop_front() {
            let result = Err(TransportError::lost("fuzz: end of input"));
            c.handle(now, Input::Reply { call, result });
        } else if let Some(job) = seen.jobs.pop_front() {
            c.handle(
                now,
                Input::Handled {
                    job,
                    result: Ok(None),
                },
            );
        } else if let Some(t) = c.poll_timeout() {
            now = now.max(t.saturating_add(1));
            c.handle(now, Input::Tick);
        } else {
            break;
        }
        drain(&mut c, &mut seen);
    }
    assert_eq!(
        c.pending(),
        0,
        "requests still pending after every deadline"
    );
    for req in &asked {
        assert_eq!(
            seen.answered.get(req).copied().unwrap_or(0),
            1,
            "request {req} not answered exactly once"
        );
    }
    assert!(
        seen.answered.keys().all(|r| asked.contains(r)),
        "an answer to a request never made"
    );
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Replays `fuzz/corpus/dispatch` (seeds and past crashes) through the target body.
    #[test]
    fn dispatch_fuzz_corpus_replays() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dispatch");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus directory {} missing: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(
            files.len() >= 5,
            "corpus {} has too few seeds",
            dir.display()
        );
        for f in &files {
            let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if std::panic::catch_unwind(|| super::one(&data)).is_err() {
                panic!("dispatch fuzz target panicked on {}", f.display());
            }
        }
    }
}
