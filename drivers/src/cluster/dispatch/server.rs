//! The `collector.CollectiveDispatcher` server: each unary RPC becomes `Input::Dispatch` and
//! waits for the node's `Output::DispatchRespond`.

use super::convert;
use super::Dispatch;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use weft_engine::dispatch::collector::{hint, ReqId};
use weft_engine::dispatch::{Request, Response};
use weft_engine::Input;
use weft_wire::collector as pb;
use weft_wire::collector::collective_dispatcher_server::CollectiveDispatcher;

pub struct Service(pub Arc<Dispatch>);

/// Takes the waiting entry back out if the handler's future is dropped (the client cancelled,
/// hung up, or its deadline passed) before the node answered, and tells the node, which
/// withdraws the request (a handler still running stops, a peer's run is cancelled).
struct Waiting<'a> {
    d: &'a Dispatch,
    req: ReqId,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let unanswered = match self.d.pending.lock() {
            Ok(mut p) => p.remove(&self.req).is_some(),
            Err(_) => false,
        };
        if unanswered && self.d.open.load(Ordering::SeqCst) {
            self.d.counters.cancelled.fetch_add(1, Ordering::Relaxed);
            let _ = self.d.inputs.send(Input::DispatchCancel { req: self.req });
        }
    }
}

fn header<'m>(meta: &'m tonic::metadata::MetadataMap, key: &str) -> Option<&'m str> {
    meta.get(key).and_then(|v| v.to_str().ok())
}

impl Dispatch {
    /// Hands `request` to the node and waits for its answer.
    async fn call(
        &self,
        meta: &tonic::metadata::MetadataMap,
        mut request: Request,
    ) -> Result<Response, tonic::Status> {
        if !self.open.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("the node is shutting down"));
        }
        if let Some(tp) = header(meta, hint::TRACEPARENT) {
            let map = match &mut request {
                Request::Dispatch(r) => Some(&mut r.routing_hints),
                Request::Serve(r) => Some(&mut r.execution_context),
                Request::Connect(_) => None,
            };
            if let Some(m) = map {
                m.entry(hint::TRACEPARENT.to_string())
                    .or_insert_with(|| tp.to_string());
            }
        }
        let deadline = header(meta, "grpc-timeout")
            .and_then(convert::parse_grpc_timeout)
            .map(|d| {
                self.now()
                    .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            });
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = async_channel::bounded(1);
        match self.pending.lock() {
            Ok(mut p) => {
                p.insert(req, tx);
            }
            Err(_) => return Err(tonic::Status::internal("dispatch state poisoned")),
        }
        let _waiting = Waiting { d: self, req };
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if self
            .inputs
            .send(Input::Dispatch {
                req,
                deadline,
                request,
            })
            .is_err()
        {
            return Err(tonic::Status::unavailable("the node has stopped"));
        }
        rx.recv()
            .await
            .map_err(|_| tonic::Status::unavailable("the node stopped before answering"))
    }
}

#[tonic::async_trait]
impl CollectiveDispatcher for Service {
    async fn serve(
        &self,
        request: tonic::Request<pb::ServeRequest>,
    ) -> Result<tonic::Response<pb::ServeResponse>, tonic::Status> {
        let (meta, _, msg) = request.into_parts();
        let r = Request::Serve(convert::serve_request_in(msg));
        let resp = self.0.call(&meta, r).await?;
        Ok(tonic::Response::new(convert::serve_response_out(resp)))
    }

    async fn connect(
        &self,
        request: tonic::Request<pb::ConnectRequest>,
    ) -> Result<tonic::Response<pb::ConnectResponse>, tonic::Status> {
        let (meta, _, msg) = request.into_parts();
        let r = Request::Connect(convert::connect_request_in(msg));
        let resp = self.0.call(&meta, r).await?;
        Ok(tonic::Response::new(convert::connect_response_out(resp)))
    }

    async fn dispatch(
        &self,
        request: tonic::Request<pb::DispatchRequest>,
    ) -> Result<tonic::Response<pb::DispatchResponse>, tonic::Status> {
        let (meta, _, msg) = request.into_parts();
        let r = Request::Dispatch(convert::dispatch_request_in(msg));
        let resp = self.0.call(&meta, r).await?;
        Ok(tonic::Response::new(convert::dispatch_response_out(resp)))
    }
}
