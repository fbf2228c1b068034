//! The collector's `CollectiveDispatcher` and the gRPC health service on the node's cluster
//! port, and the clients that reach foreign collectors (issue 10, driver side). The engine
//! decides everything; this module only moves its requests and answers:
//!
//! - server: every unary `Connect`/`Serve`/`Dispatch` gets a request id and becomes
//!   `Input::Dispatch` (prost converted field by field, `grpc-timeout` as a deadline on the
//!   node's clock, a `traceparent` header copied into `routing_hints` / `execution_context` when
//!   absent); the handler parks until `Output::DispatchRespond` for its id. Application failures
//!   stay gRPC OK with `status` in the body; during shutdown requests get gRPC UNAVAILABLE.
//! - client: `Output::DispatchSend` goes through one client per address (dialled lazily, the
//!   gRPC connection backoff after a failed dial); the outcome returns as `Input::DispatchReply`:
//!   a dial failure is `TransportError::unsent`, a failure after the request was written `lost`.
//! - health: `grpc.health.v1.Health/Check` and `Watch`, SERVING while the node runs, NOT_SERVING
//!   from its stop on.

pub mod bench;
mod client;
mod convert;
// The `dispatch` fuzz target's body (fuzz/ includes it by path) and its corpus replay.
#[cfg(test)]
mod fuzz;
mod health;
mod server;

use health::NOT_SERVING;

use super::Log;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};
use weft_engine::dispatch::collector::{CallId, ReqId};
use weft_engine::dispatch::{Request, Response};

/// The service names on the node's port.
pub const DISPATCHER: &str = "collector.CollectiveDispatcher";
pub const HEALTH: &str = "grpc.health.v1.Health";

/// What the dispatch side of the transport counted.
#[derive(Debug, Default)]
pub struct Counters {
    /// Inbound RPCs handed to the node.
    pub requests: AtomicU64,
    /// Answers from the node that found their request still waiting.
    pub responses: AtomicU64,
    /// Requests whose caller went away before the answer (the node was told to withdraw them).
    pub cancelled: AtomicU64,
    /// Outbound calls to foreign collectors, and those that failed in transport.
    pub calls: AtomicU64,
    pub call_failures: AtomicU64,
    /// Outbound calls dropped because the node stopped waiting for them.
    pub calls_aborted: AtomicU64,
    pub dials: AtomicU64,
    pub dial_failures: AtomicU64,
}

/// The node's dispatch endpoint: shared by the gRPC handlers, the clients and the driver loop.
pub struct Dispatch {
    /// The node's clock starts here (`Instant` = nanoseconds since `epoch`).
    epoch: StdInstant,
    inputs: crate::inputs::InputTx,
    next_req: AtomicU64,
    /// Inbound requests waiting for the node's answer.
    pending: Mutex<BTreeMap<ReqId, async_channel::Sender<Response>>>,
    /// False from the node's stop on: new requests are refused.
    open: AtomicBool,
    health: health::State,
    pool: client::Pool,
    /// Outbound calls in flight: dropping one's sender ends the call (`abort`).
    calls: Mutex<BTreeMap<CallId, async_channel::Sender<()>>>,
    log: Log,
    pub counters: Counters,
}

impl Dispatch {
    pub fn new(epoch: StdInstant, inputs: crate::inputs::InputTx, log: Log) -> Dispatch {
        Dispatch {
            epoch,
            inputs,
            next_req: AtomicU64::new(1),
            pending: Mutex::new(BTreeMap::new()),
            open: AtomicBool::new(true),
            health: health::State::new(),
            pool: client::Pool::default(),
            calls: Mutex::new(BTreeMap::new()),
            log,
            counters: Counters::default(),
        }
    }

    /// Now on the node's clock.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The node's `Instant` as a point on the real clock.
    fn to_std(&self, at: u64) -> StdInstant {
        self.epoch + Duration::from_nanos(at)
    }

    /// The node's answer to request `req` (`Output::DispatchRespond`). An answer whose caller
    /// went away (cancelled, timed out) is dropped.
    pub fn respond(&self, req: ReqId, response: Response) {
        let waiting = self.pending.lock().ok().and_then(|mut p| p.remove(&req));
        if let Some(tx) = waiting {
            self.counters.responses.fetch_add(1, Ordering::Relaxed);
            let _ = tx.try_send(response);
        }
    }

    /// `Output::DispatchSend`: call the foreign collector at `address`.
    pub fn send(
        self: &Arc<Self>,
        call: CallId,
        peer: String,
        address: String,
        request: Request,
        deadline: u64,
    ) {
        client::send(self.clone(), call, peer, address, request, deadline);
    }

    /// `Output::DispatchAbort`: the node no longer waits for `call`; the RPC is dropped (its
    /// HTTP/2 stream reset), so the foreign collector's handler sees its context cancelled.
    pub fn abort(&self, call: CallId) {
        let gone = self.calls.lock().ok().and_then(|mut c| c.remove(&call));
        if gone.is_some() {
            self.counters.calls_aborted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The node got a stop signal: health says NOT_SERVING; requests are still taken (services
    /// that are still up may answer them).
    pub fn draining(&self) {
        self.health.set(NOT_SERVING);
    }

    /// The node has stopped: health says NOT_SERVING, new requests are refused, and requests
    /// still waiting end with gRPC UNAVAILABLE.
    pub fn stopping(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.health.set(NOT_SERVING);
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
    }

    /// The routes this module serves, added to the node's router.
    pub(super) fn routes(self: &Arc<Self>, router: super::net::Router) -> super::net::Router {
        router
            .add(
                DISPATCHER,
                weft_wire::collector::collective_dispatcher_server::CollectiveDispatcherServer::new(
                    server::Service(self.clone()),
                ),
            )
            .add(
                HEALTH,
                weft_wire::health::health_server::HealthServer::new(health::Service(self.clone())),
            )
    }
}

#[cfg(test)]
mod tests;
