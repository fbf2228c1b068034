//! `grpc.health.v1.Health` for the node: the whole server (`""`) and the dispatcher
//! (`collector.CollectiveDispatcher`) are SERVING while the node runs and NOT_SERVING from its
//! stop on; any other service name is unknown (Check: NOT_FOUND; Watch: SERVICE_UNKNOWN).

use super::Dispatch;
use futures_lite::StreamExt;
use std::sync::{Arc, Mutex};
use weft_wire::health::health_server::Health;
use weft_wire::health::{HealthCheckRequest, HealthCheckResponse};

pub const SERVING: i32 = 1;
pub const NOT_SERVING: i32 = 2;
const SERVICE_UNKNOWN: i32 = 3;

/// The current status and the Watch streams to tell when it changes.
pub struct State {
    inner: Mutex<(i32, Vec<async_channel::Sender<i32>>)>,
}

impl State {
    pub fn new() -> State {
        State {
            inner: Mutex::new((SERVING, Vec::new())),
        }
    }

    pub fn get(&self) -> i32 {
        self.inner.lock().map(|s| s.0).unwrap_or(NOT_SERVING)
    }

    pub fn set(&self, status: i32) {
        if let Ok(mut s) = self.inner.lock() {
            if s.0 == status {
                return;
            }
            s.0 = status;
            // A watcher that went away is forgotten; one that is behind gets the newest later.
            s.1.retain(|w| !w.is_closed());
            for w in &s.1 {
                let _ = w.try_send(status);
            }
        }
    }

    /// A receiver that gets the current status first, then every change.
    fn watch(&self) -> async_channel::Receiver<i32> {
        let (tx, rx) = async_channel::bounded(16);
        if let Ok(mut s) = self.inner.lock() {
            let _ = tx.try_send(s.0);
            s.1.push(tx);
        }
        rx
    }
}

fn known(service: &str) -> bool {
    service.is_empty() || service == super::DISPATCHER
}

pub struct Service(pub Arc<Dispatch>);

type WatchStream = std::pin::Pin<
    Box<dyn futures_lite::Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>,
>;

#[tonic::async_trait]
impl Health for Service {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        let service = request.into_inner().service;
        if !known(&service) {
            return Err(tonic::Status::not_found(format!(
                "unknown service '{service}'"
            )));
        }
        Ok(tonic::Response::new(HealthCheckResponse {
            status: self.0.health.get(),
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<WatchStream>, tonic::Status> {
        let service = request.into_inner().service;
        let stream: WatchStream = if known(&service) {
            Box::pin(
                self.0
                    .health
                    .watch()
                    .map(|status| Ok(HealthCheckResponse { status })),
            )
        } else {
            Box::pin(
                futures_lite::stream::once(Ok(HealthCheckResponse {
                    status: SERVICE_UNKNOWN,
                }))
                .chain(futures_lite::stream::pending()),
            )
        };
        Ok(tonic::Response::new(stream))
    }
}
