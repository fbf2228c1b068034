//! Clients for foreign collectors: one HTTP/2 connection per address, dialled on the first
//! call, redialled after a failure on the gRPC connection backoff schedule (1 s, ×1.6, ±20 %
//! jitter, at most 120 s). Weft nodes of one cluster do not come through here (they use the
//! relay); these are collectors met through `Connect`, often Go ones, so keep-alive pings are
//! as rare as grpc-go's enforcement allows (5 minutes, never on an idle connection).

use super::super::net::{self, Channel};
use super::convert;
use super::Dispatch;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};
use weft_engine::dispatch::collector::CallId;
use weft_engine::dispatch::{Request, Response, TransportError};
use weft_engine::node::Level;
use weft_engine::Input;
use weft_wire::collector::collective_dispatcher_client::CollectiveDispatcherClient;

/// gRPC connection backoff (doc/connection-backoff.md of the gRPC project).
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MULTIPLIER: f64 = 1.6;
const BACKOFF_JITTER: f64 = 0.2;
const BACKOFF_MAX: Duration = Duration::from_secs(120);
/// The least time a dial is given (the call's deadline may cut it shorter).
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// grpc-go's default enforcement: pings more often than this get GOAWAY `too_many_pings`.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(300);

type Client = CollectiveDispatcherClient<Channel>;

/// One address's connection and its dial backoff.
#[derive(Default)]
struct Slot {
    client: Option<Client>,
    /// Consecutive failed dials, and when the next dial may start.
    failures: u32,
    retry_at: Option<StdInstant>,
}

/// The delay before redial number `failures` (1 = after the first failure), without jitter.
pub fn backoff(failures: u32) -> Duration {
    let mut d = BACKOFF_INITIAL.as_secs_f64();
    for _ in 1..failures.min(64) {
        d = (d * BACKOFF_MULTIPLIER).min(BACKOFF_MAX.as_secs_f64());
    }
    Duration::from_secs_f64(d.min(BACKOFF_MAX.as_secs_f64()))
}

/// `d` spread by ±20 % (`unit` in [0, 1) picks where).
pub fn jittered(d: Duration, unit: f64) -> Duration {
    let f = 1.0 + BACKOFF_JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    Duration::from_secs_f64(d.as_secs_f64() * f)
}

fn random_unit() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Default)]
pub struct Pool {
    slots: Mutex<BTreeMap<String, Arc<smol::lock::Mutex<Slot>>>>,
}

impl Pool {
    fn slot(&self, address: &str) -> Option<Arc<smol::lock::Mutex<Slot>>> {
        let mut slots = self.slots.lock().ok()?;
        Some(slots.entry(address.to_string()).or_default().clone())
    }
}

/// The client for `address`: the open one, or a new dial unless the backoff still holds.
async fn client(d: &Dispatch, address: &str, deadline: StdInstant) -> Result<Client, String> {
    let slot = d
        .pool
        .slot(address)
        .ok_or_else(|| "client pool poisoned".to_string())?;
    let mut s = slot.lock().await;
    if let Some(c) = &s.client {
        return Ok(c.clone());
    }
    let now = StdInstant::now();
    if let Some(at) = s.retry_at.filter(|at| *at > now) {
        return Err(format!(
            "not redialled yet after {} failed dials (next in {} ms)",
            s.failures,
            (at - now).as_millis()
        ));
    }
    d.counters.dials.fetch_add(1, Ordering::Relaxed);
    let within = MIN_CONNECT_TIMEOUT.min(deadline.saturating_duration_since(now));
    let dialed = net::connect_with(address, KEEPALIVE_INTERVAL, false, within)
        .await
        .and_then(|ch| {
            Ok(Client::with_origin(ch, net::origin(address)?)
                .max_decoding_message_size(4 << 20)
                .max_encoding_message_size(4 << 20))
        });
    match dialed {
        Ok(c) => {
            s.failures = 0;
            s.retry_at = None;
            s.client = Some(c.clone());
            Ok(c)
        }
        Err(e) => {
            d.counters.dial_failures.fetch_add(1, Ordering::Relaxed);
            s.failures = s.failures.saturating_add(1);
            s.retry_at = Some(StdInstant::now() + jittered(backoff(s.failures), random_unit()));
            Err(e)
        }
    }
}

/// Forgets `address`'s connection after a transport failure (the next call redials).
async fn forget(d: &Dispatch, address: &str) {
    if let Some(slot) = d.pool.slot(address) {
        slot.lock().await.client = None;
    }
}

/// Sends `request` with the time left to `deadline` as its `grpc-timeout`.
async fn rpc(mut c: Client, request: Request, left: Duration) -> Result<Response, tonic::Status> {
    fn with<T>(m: T, left: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        r.set_timeout(left);
        r
    }
    Ok(match request {
        Request::Serve(r) => Response::Serve(convert::serve_response_in(
            c.serve(with(convert::serve_request_out(r), left))
                .await?
                .into_inner(),
        )),
        Request::Connect(r) => Response::Connect(convert::connect_response_in(
            c.connect(with(convert::connect_request_out(r), left))
                .await?
                .into_inner(),
        )),
        Request::Dispatch(r) => Response::Dispatch(convert::dispatch_response_in(
            c.dispatch(with(convert::dispatch_request_out(r), left))
                .await?
                .into_inner(),
        )),
    })
}

/// Whether a gRPC error says the request was surely not run (so a retry elsewhere is safe).
fn surely_unsent(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::Unimplemented)
}

/// Whether a gRPC error came from the connection rather than from the peer's answer.
fn connection_broken(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unknown
            | tonic::Code::Unavailable
            | tonic::Code::Cancelled
            | tonic::Code::Internal
    )
}

pub fn send(
    d: Arc<Dispatch>,
    call: CallId,
    peer: String,
    address: String,
    request: Request,
    deadline: u64,
) {
    let at = d.to_std(deadline);
    d.counters.calls.fetch_add(1, Ordering::Relaxed);
    let (abort_tx, abort_rx) = async_channel::bounded::<()>(1);
    if let Ok(mut c) = d.calls.lock() {
        c.insert(call, abort_tx);
    }
    net::spawn(async move {
        let attempt = async {
            let c = match client(&d, &address, at).await {
                Ok(c) => c,
                Err(e) => return Some(Err(TransportError::unsent(format!("dial {address}: {e}")))),
            };
            let left = at.saturating_duration_since(StdInstant::now());
            Some(match rpc(c, request, left).await {
                Ok(r) => Ok(r),
                Err(s) if surely_unsent(&s) => Err(TransportError::unsent(format!(
                    "{address}: {}: {}",
                    s.code(),
                    s.message()
                ))),
                Err(s) => {
                    if connection_broken(&s) {
                        forget(&d, &address).await;
                    }
                    Err(TransportError::lost(format!(
                        "{address}: {}: {}",
                        s.code(),
                        s.message()
                    )))
                }
            })
        };
        // Past the deadline the node has timed the call out itself, and an aborted call is
        // one it no longer waits for: nothing to report.
        let expire = async {
            smol::Timer::at(at).await;
            None
        };
        let aborted = async {
            let _ = abort_rx.recv().await;
            None
        };
        let outcome =
            futures_lite::future::or(aborted, futures_lite::future::or(attempt, expire)).await;
        if let Ok(mut c) = d.calls.lock() {
            c.remove(&call);
        }
        if let Some(result) = outcome {
            if let Err(e) = &result {
                d.counters.call_failures.fetch_add(1, Ordering::Relaxed);
                (d.log)(
                    Level::Debug,
                    "dispatch: call to a collector failed",
                    vec![
                        ("peer".into(), peer.clone()),
                        ("address".into(), address.clone()),
                        ("sent".into(), e.sent.to_string()),
                        ("error".into(), e.message.clone()),
                    ],
                );
            }
            let _ = d.inputs.send(Input::DispatchReply { call, result });
        }
    })
    .detach();
}
