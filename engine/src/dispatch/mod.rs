//! Collective dispatch: namespace-routed function calls across collectors, wire-compatible with
//! accretional/collector's `CollectiveDispatcher` (`Connect`, `Serve`, `Dispatch`). This module
//! owns the routing and serving decisions as a pure state machine; it must not do I/O, read a
//! clock, or await user code (spec: `shared/spec/dispatch.md`).
//!
//! - `types`: the protos' messages as plain Rust (no prost; the driver converts field by field,
//!   copying `Status.code` as the raw `i32`).
//! - `collector`: one node's dispatcher (`Collector`): `handle(now, Input)`, `poll_output()`,
//!   `poll_timeout()`, in the quinn-proto style of the node itself.
//! - `peers`: per-peer namespaces (versioned), load (in-flight, EWMA latency) and a circuit
//!   breaker (consecutive failures → ejection with exponential backoff → one half-open probe).
//! - `payload`: Lua `Value` <-> `google.protobuf.Any` (Value/Struct/ListValue/wrappers).
//! - `functions`: `function.lua` entries as methods (`Functions`), and the mapping between a Lua
//!   call and a dispatch (`call_request`, `call_result`, `handler_input`, `handler_result`).
//! - `invariants`: a `Checker` for the simulator (no call answered twice, every call answered by
//!   its deadline, no non-idempotent call run twice), keyed by the `weft-call` identity every
//!   collector puts in the handler's context and carries across hops and retries.
//!
//! # Behaviour (parity and deliberate fixes)
//!
//! Parity with the collector (spec §4 P1-P6): the same 400 checks and messages, in the same
//! order, for Serve and Dispatch; Serve's 8-step table (validator exactly once, before lookup;
//! `executor_id` only on success); Connect's reply (`Connected with N shared namespaces`,
//! requester-ordered intersection with duplicates kept, `target_collector_id` = our id, source
//! from `metadata.collector_id` else `unknown`); target dispatch returns the remote status
//! verbatim, a transport failure as 500 `serve RPC failed: ...`; auto-route prefers local, ends in
//! 404 `no collector found for namespace '<ns>'`; every response carries `status`.
//!
//! Deliberate deviations (spec §3, H1-H9):
//! - H1: accepting a Connect makes the initiator a routable peer at its advertised address, for
//!   the namespaces it advertised (the driver dials lazily on the first `Output::Send`).
//! - H2: target = our own id runs locally; a target matches only a peer's id (an anonymous
//!   initiator is known by its address, so `"unknown"` matches nothing).
//! - H3: self-connect (our id or our address) is a 400 `cannot connect to self`; the same peer
//!   (id + address + direction) connecting again replaces its record.
//! - H4: peers live in a `BTreeMap` by id; the only choice (P2C) uses the seeded generator.
//! - H5: each remote attempt gets `attempt_timeout_ns` (cut to the request deadline); a peer that
//!   never answers costs at most that; the final 404 carries `last_peer`, `last_error` and
//!   `attempts` in `details`.
//! - At most once (H7) wins over H5's "try the next candidate" when the outcome is unknown: after
//!   a timeout, a lost connection or a status-less reply from a peer the request may have reached,
//!   a call not marked idempotent (`routing_hints["idempotent"] = "true"`) is answered 500
//!   `serve RPC failed: <error>` (details: `peer`, `retried`) instead of being run elsewhere. A
//!   remote 404/400 (nothing ran), or an error that surely happened before sending
//!   (`TransportError { sent: false }`), moves on to the next candidate. A remote 500 (the handler
//!   ran and failed) is returned as is for non-idempotent calls, not masked as a 404 (§3.6).
//! - H8: with `Forward::Dispatch` the request is forwarded as a Dispatch whose `routing_hints`
//!   carry `weft-hops` and `weft-visited`; a collector never forwards past `max_hops` or back to a
//!   visited collector, so A→B→C works and A→B→A ends in a 404. `Forward::Serve` (default, the
//!   collector's behaviour) is one hop.
//! - H9: a handler with no output (`Input::Handled { result: Ok(None) }`) or a result `payload`
//!   cannot encode is a 500 `handler error: ...`.
//! - Method keys are (service, method) pairs, so `("a.b","c")` and `("a","b.c")` no longer collide.
//! - Namespaces are not frozen at handshake: `set_methods` announces changes
//!   (`Event::NamespacesChanged` with a version) and peers' updates with a stale version are ignored.
//! - Breaker: 5 consecutive transport failures/timeouts eject a peer for 1 s × 2^(ejections),
//!   capped at 60 s; then one probe request goes through; its success closes the breaker, its
//!   failure re-ejects for longer. A remote error status is not a failure of the peer.
//!
//! Needs the gRPC transport, not this module: the wire format of P1-P6 against grpcio/Go, `grpc-timeout` parsing,
//! H6's real concurrency (here: 100 interleaved requests in one state machine), health checks,
//! redial backoff.
//!
//! # How it plugs into the node (implemented in `node`)
//!
//! As built (differences from the plan below): namespaces travel as relay frames
//! (`Frame::DispatchNamespaces`, sent on every peer up with `reply`, and to every up peer on a
//! change), not in membership metadata; requests between Weft nodes are `Frame::DispatchRequest`
//! / `DispatchReply`, withdrawn with `DispatchCancel` (a canceled or dead caller, a timed-out
//! attempt; the peer's deadline is the attempt's plus a grace so the caller's timeout decides);
//! `funcs.call` dispatches only when some peer serves (or served) the namespace, else it keeps
//! "function not found"; its arguments travel as `functions::call_request` says (several as a
//! counted list, `hint::ARGS`), and `with_options{timeout, idempotent}` become the deadline and
//! the hints `ATTEMPT` / `IDEMPOTENT`.
//!
//! `Core` owns one `Collector` built from the registry: `Functions::from_entries` turns every
//! `function.lua` entry into a `MethodKey` (and remembers which entry serves it); a registry
//! change rebuilds it and calls `set_methods` with the new keys. `Node::poll_timeout` becomes the minimum with `Collector::poll_timeout`, and
//! the node calls `handle(now, Input::Tick)` when it is reached. New node variants:
//! `Input::Dispatch { req, deadline, request }`, `Input::DispatchCancel { req }` (its caller
//! went away) and `Input::DispatchReply { call, result }` (from the driver);
//! `Output::DispatchSend { call, peer, address, request, deadline }`, `Output::DispatchAbort
//! { call }` (drop that RPC) and `Output::DispatchRespond { req, response }` (to the driver). The node handles the rest itself:
//!
//! - `Output::Invoke { job, key, input, context, deadline }`: `handler_input(input)` (an error is
//!   fed back at once as `Handled { Err(..) }`), run the entry `Functions::entry(&key)` as
//!   `funcs.call` does (`Core::call_on` with a node-internal caller), with `context` as its context
//!   values; when the callee ends, `handler_result(outcome)` gives `Input::Handled { job, result }`
//!   (a Lua error or an unencodable result is a 500, never a crash). `Output::Cancel { job }` kills
//!   the callee.
//! - `Output::Event(Handled { .. })` is logged with `handled_by`; `NamespacesChanged` is gossiped
//!   through membership (a member's metadata carries `(namespaces, version)`), and the receiving
//!   node feeds `Input::PeerNamespaces`. Membership `Up`/`Down` become `Input::PeerUp` (with the
//!   peer's cluster address and namespaces) / `Input::PeerDown`; Weft nodes need no Connect.
//! - `funcs.call("orders:create_order", x)` where the registry has no such entry: instead of "function
//!   not found", the caller's tag waits on a Dispatch the node submits itself (`Input::Request`
//!   with a request id from the node's own counter, `Request::Dispatch(call_request(target, &x,
//!   idempotent)?)`, deadline from the call's timeout). The `Respond` for that id completes the
//!   tag with `call_result(&response)`: the decoded output on 200, otherwise an error value whose
//!   kind follows the code (400 Invalid, 404 NotFound, 500 Internal) and whose message is the
//!   status message. Only the default naming is reachable this way (service = namespace, method =
//!   entry name): a remote entry renamed by `meta.service`/`meta.method` is called by its key.
//!
//! # How the gRPC service in the driver maps to it
//!
//! Each unary call on `/collector.CollectiveDispatcher/{Connect,Serve,Dispatch}` gets a request id,
//! becomes `Input::Request` with the prost message converted to `types` and the `grpc-timeout`
//! header as `deadline` (driver clock → node `Instant`), and the handler future parks on a oneshot
//! keyed by that id; `Output::Respond` resolves it. Application failures stay gRPC OK with
//! `status` in the body (as the collector does). The driver copies a `traceparent` metadata entry
//! into `routing_hints` when absent. `Output::Send` goes through a per-address client (lazy dial);
//! its result returns as `Input::Reply`: a dial/connect error is `TransportError::unsent`, any error
//! after the request was written (reset, GOAWAY, timeout) is `TransportError::lost`. Outbound
//! `Connect` (the collector's `ConnectTo`) is `Input::ConnectTo`; its outcome is an `Event`.

pub mod collector;
pub mod functions;
pub mod invariants;
pub mod node;
pub mod payload;
pub mod peers;
pub mod types;

/// Nanoseconds on the node's monotonic clock (the node's `Instant`).
pub type Instant = u64;

pub use collector::{
    Collector, Config, Connection, Event, Forward, Input, MethodKey, Output, TransportError,
};
pub use types::{code, Any, Request, Response, ServiceRef, Status};
