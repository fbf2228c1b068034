//! One node's CollectiveDispatcher as a sans-IO state machine: requests, peer replies, handler
//! results, peer changes and time go in through `handle`; RPCs to send, responses, handler
//! invocations and events come out of `poll_output`. It never awaits user code or the network.

use super::peers::{Breaker, Health, Peer, Source, Transition};
use super::types::*;
use super::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The transport error of an attempt whose deadline passed.
const DEADLINE: &str = "deadline exceeded";

/// An inbound request, numbered by the driver (or by the node for its own `funcs.call`).
pub type ReqId = u64;
/// An outbound RPC, numbered by the collector.
pub type CallId = u64;
/// A local handler invocation, numbered by the collector.
pub type JobId = u64;

/// Routing hints this implementation reads and writes (other keys pass through untouched).
pub mod hint {
    /// `"true"`: the caller allows a retry on another peer when an attempt's outcome is unknown.
    pub const IDEMPOTENT: &str = "idempotent";
    /// Hops this request has already been forwarded (multi-hop forwarding only).
    pub const HOPS: &str = "weft-hops";
    /// Comma-separated ids of collectors the request has passed through.
    pub const VISITED: &str = "weft-visited";
    /// W3C trace context, mirrored into `execution_context` when forwarding.
    pub const TRACEPARENT: &str = "traceparent";
    /// A call's identity across hops and retries, `<collector that took it>/<its request id>`,
    /// in `execution_context` and the handler's context: a retry keeps it, a new call gets its own.
    pub const CALL: &str = "weft-call";
    /// The input is a `ListValue` of this many arguments, spread over the handler's parameters
    /// (set by a Weft node's `funcs.call` with other than one argument; copied into the
    /// `execution_context` so it survives a `Serve` hop). Absent: the input is one argument.
    pub const ARGS: &str = "weft-args";
    /// Nanoseconds one remote attempt may take instead of `Config::attempt_timeout_ns` (set by
    /// `funcs.call` with a `timeout` option: the caller's own budget bounds the attempt).
    pub const ATTEMPT: &str = "weft-attempt-ns";
    /// Status detail `"true"` on an answer that ended because a deadline passed.
    pub const TIMEOUT: &str = "timeout";
    /// Status detail `"true"` on an answer to a request its origin gave up (`Input::Cancel`).
    pub const CANCELED: &str = "canceled";
}

/// How a collector forwards a request it cannot serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// As `Serve` (the collector's behaviour): exactly one hop, loops impossible.
    Serve,
    /// As `Dispatch` carrying hop count and visited set in `routing_hints`: multi-hop under
    /// `max_hops`, never back to a collector already visited.
    Dispatch,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub id: String,
    /// The address peers dial to reach us (sent in outbound `Connect`).
    pub address: String,
    pub seed: u64,
    /// Longest one forwarded attempt may take (cut to the request's own deadline).
    pub attempt_timeout_ns: u64,
    /// Deadline of a request that arrives without one.
    pub request_timeout_ns: u64,
    /// Deadline of an outbound `Connect`.
    pub connect_timeout_ns: u64,
    /// Remote attempts one auto-routed request may make.
    pub max_attempts: u32,
    pub max_hops: u32,
    pub forward: Forward,
    pub health: Health,
}

impl Config {
    pub fn new(id: &str, address: &str, seed: u64) -> Config {
        Config {
            id: id.to_string(),
            address: address.to_string(),
            seed,
            attempt_timeout_ns: 2_000_000_000,
            request_timeout_ns: 30_000_000_000,
            connect_timeout_ns: 5_000_000_000,
            max_attempts: 3,
            max_hops: 3,
            forward: Forward::Serve,
            health: Health {
                eject_after_failures: 5,
                eject_base_ns: 1_000_000_000,
                eject_max_ns: 60_000_000_000,
                initial_latency_ns: 1_000_000,
            },
        }
    }
}

/// A service method this node serves: `function.lua` entry `ns:name` → (`ns`,
/// `meta.service` or `ns`, `meta.method` or `name`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MethodKey {
    pub namespace: String,
    pub service: String,
    pub method: String,
}

impl MethodKey {
    pub fn new(namespace: &str, service: &str, method: &str) -> MethodKey {
        MethodKey {
            namespace: namespace.to_string(),
            service: service.to_string(),
            method: method.to_string(),
        }
    }

    /// The key of a `function.lua` entry with its `meta.service` / `meta.method`.
    pub fn for_function(
        id: &str,
        service: Option<&str>,
        method: Option<&str>,
    ) -> Option<MethodKey> {
        let (ns, name) = id.split_once(':')?;
        if ns.is_empty() || name.is_empty() {
            return None;
        }
        let service = service.filter(|s| !s.is_empty()).unwrap_or(ns);
        let method = method.filter(|m| !m.is_empty()).unwrap_or(name);
        Some(MethodKey::new(ns, service, method))
    }
}

/// A transport failure of one outbound RPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    pub message: String,
    /// False only when the request surely never reached the peer (dial refused, breaker open in
    /// the driver); then a retry elsewhere cannot execute the call twice.
    pub sent: bool,
}

impl TransportError {
    pub fn unsent(m: impl Into<String>) -> TransportError {
        TransportError {
            message: m.into(),
            sent: false,
        }
    }
    pub fn lost(m: impl Into<String>) -> TransportError {
        TransportError {
            message: m.into(),
            sent: true,
        }
    }
}

pub enum Input {
    /// An inbound RPC (from the gRPC service, or the node's own `funcs.call` as a Dispatch).
    /// `deadline` is the inbound `grpc-timeout` turned into an instant.
    Request {
        req: ReqId,
        deadline: Option<Instant>,
        request: Request,
    },
    /// The outcome of an RPC the collector asked for with `Output::Send`.
    Reply {
        call: CallId,
        result: Result<Response, TransportError>,
    },
    /// A local handler finished: `Ok(Some(output))`, `Ok(None)` for no output (a 500), or the
    /// error text of a failed handler.
    Handled {
        job: JobId,
        result: Result<Option<Any>, String>,
    },
    /// A peer is up (membership) with its served namespaces at `version`.
    PeerUp {
        id: String,
        address: String,
        namespaces: Vec<String>,
        version: u64,
    },
    /// A peer's served namespaces changed (stale versions are ignored).
    PeerNamespaces {
        id: String,
        namespaces: Vec<String>,
        version: u64,
    },
    /// A peer is down; its in-flight calls fail now.
    PeerDown { id: String },
    /// The origin of request `req` gave up on it (its caller canceled or died): it is answered
    /// at once (500, detail `canceled`), its local handler is stopped (`Output::Cancel`) and a
    /// remote attempt under way is withdrawn (`Output::Abort`).
    Cancel { req: ReqId },
    /// Connect to a collector at `address` asking about `namespaces` (the collector's `ConnectTo`).
    ConnectTo {
        address: String,
        namespaces: Vec<String>,
    },
    /// Time passed (`poll_timeout` was reached).
    Tick,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `request` to the collector `peer` at `address` (dial lazily); answer with
    /// `Input::Reply { call }`, or let the deadline pass and the collector times it out.
    Send {
        call: CallId,
        peer: String,
        address: String,
        request: Request,
        deadline: Instant,
    },
    /// The reply to inbound request `req`; exactly one per request.
    Respond {
        req: ReqId,
        response: Response,
    },
    /// Run the local handler of `key` (the `function.lua` entry) with `input`; answer with
    /// `Input::Handled { job }`.
    Invoke {
        job: JobId,
        key: MethodKey,
        input: Option<Any>,
        context: BTreeMap<String, String>,
        deadline: Instant,
    },
    /// The request behind `job` was answered without it (deadline): stop it if still running.
    Cancel {
        job: JobId,
    },
    /// Nobody waits for outbound RPC `call` any more (its request was canceled, or the
    /// attempt timed out): tell `peer` to stop working on it if the transport can. Its reply, if one still comes, only updates
    /// the peer's health.
    Abort {
        call: CallId,
        peer: String,
        address: String,
    },
    Event(Event),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A Serve or Dispatch was answered: the `handled_by` record for logs and traces.
    Handled {
        req: ReqId,
        rpc: &'static str,
        namespace: String,
        key: String,
        code: i32,
        handled_by: String,
        attempts: u32,
    },
    /// Our served namespaces changed; gossip them to peers at this version.
    NamespacesChanged {
        namespaces: Vec<String>,
        version: u64,
    },
    PeerEjected {
        peer: String,
        until: Instant,
    },
    PeerRestored {
        peer: String,
    },
    Connected {
        connection_id: String,
        peer: String,
        shared: Vec<String>,
    },
    ConnectFailed {
        address: String,
        error: String,
    },
}

/// A connection record as the collector keeps it (`collector.Connection`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub source_collector_id: String,
    pub target_collector_id: String,
    pub address: String,
    pub shared_namespaces: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// True for a record of a Connect we accepted, false for one we initiated.
    pub inbound: bool,
}

/// Counters for tests and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub answered: u64,
    pub late_replies: u64,
    pub late_results: u64,
    pub remote_attempts: u64,
}

/// A validator run before handler lookup in Serve (the collector's `RegistryValidator`).
pub type Validator = Box<dyn FnMut(&str, &str, &str) -> Result<(), String>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rpc {
    Serve,
    Dispatch,
}

/// The state of a forwarded auto-routed request.
struct Route {
    service: String,
    method: String,
    input: Option<Any>,
    hints: BTreeMap<String, String>,
    context: BTreeMap<String, String>,
    idempotent: bool,
    hops: u32,
    visited: BTreeSet<String>,
    tried: BTreeSet<String>,
    last_error: Option<(String, String)>,
    call: Option<CallId>,
}

enum Wait {
    Local { job: JobId },
    Target { call: CallId, peer: String },
    Auto(Box<Route>),
}

struct Pending {
    rpc: Rpc,
    namespace: String,
    key: String,
    deadline: Instant,
    /// How long one remote attempt may take (`hint::ATTEMPT`, else the configured one).
    attempt_ns: u64,
    attempts: u32,
    wait: Wait,
}

struct Call {
    req: Option<ReqId>,
    peer: String,
    address: String,
    sent_at: Instant,
    deadline: Instant,
    /// An outbound Connect (no request waits on it).
    connect: bool,
}

pub struct Collector {
    cfg: Config,
    rng: ChaCha8Rng,
    methods: BTreeSet<MethodKey>,
    ns_version: u64,
    validator: Option<Validator>,
    peers: BTreeMap<String, Peer>,
    connections: Vec<Connection>,
    pending: BTreeMap<ReqId, Pending>,
    calls: BTreeMap<CallId, Call>,
    /// No deadline of `pending` or `calls` comes before this (one may have been answered since):
    /// until it, nothing is late, and `expire` need not look.
    earliest: Instant,
    jobs: BTreeMap<JobId, ReqId>,
    next_id: u64,
    out: VecDeque<Output>,
    stats: Stats,
}

impl Collector {
    /// A collector serving `methods` (from the node's `function.lua` entries).
    pub fn new(cfg: Config, methods: impl IntoIterator<Item = MethodKey>) -> Collector {
        Collector {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            methods: methods.into_iter().collect(),
            ns_version: 1,
            validator: None,
            peers: BTreeMap::new(),
            connections: Vec::new(),
            pending: BTreeMap::new(),
            calls: BTreeMap::new(),
            earliest: Instant::MAX,
            jobs: BTreeMap::new(),
            next_id: 1,
            out: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn id(&self) -> &str {
        &self.cfg.id
    }

    /// Namespaces with at least one method, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.methods.iter().map(|k| &k.namespace).collect();
        set.into_iter().cloned().collect()
    }

    /// Version of [`Collector::namespaces`], bumped on every change.
    pub fn namespaces_version(&self) -> u64 {
        self.ns_version
    }

    /// The registry changed: serve exactly `methods` from now on. Requests already running keep
    /// their handler; a changed namespace set is announced as `Event::NamespacesChanged`.
    pub fn set_methods(&mut self, methods: impl IntoIterator<Item = MethodKey>) {
        let before = self.namespaces();
        self.methods = methods.into_iter().collect();
        let after = self.namespaces();
        if before != after {
            self.ns_version += 1;
            self.event(Event::NamespacesChanged {
                namespaces: after,
                version: self.ns_version,
            });
        }
    }

    pub fn set_validator(&mut self, v: Option<Validator>) {
        self.validator = v;
    }

    pub fn connections(&self) -> &[Connection] {
        &self.connections
    }

    pub fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.get(id)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether some peer serves `ns` or served it when last heard of (up or not): a call for
    /// it is routed (and fails with the routing's own error if nobody can take it now).
    pub fn peer_namespace(&self, ns: &str) -> bool {
        self.peers.values().any(|p| p.namespaces.contains(ns))
    }

    /// The deadline of a request that arrives without one, from its arrival.
    pub fn request_timeout_ns(&self) -> u64 {
        self.cfg.request_timeout_ns
    }

    /// Requests not answered yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next instant something times out (a request, an attempt).
    /// The earliest deadline of a request or a call (it may have been answered since: then
    /// the tick at that time finds nothing late and looks for the next one).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.earliest != Instant::MAX).then_some(self.earliest)
    }

    /// The deadline nearest to come, looked for among every request and call.
    fn next_deadline(&self) -> Instant {
        let reqs = self.pending.values().map(|p| p.deadline);
        let calls = self.calls.values().map(|c| c.deadline);
        reqs.chain(calls).min().unwrap_or(Instant::MAX)
    }

    /// A deadline to keep: `expire` looks at requests and calls only once the earliest is due.
    fn watch(&mut self, deadline: Instant) {
        self.earliest = self.earliest.min(deadline);
    }

    fn hold(&mut self, req: ReqId, p: Pending) {
        self.watch(p.deadline);
        self.pending.insert(req, p);
    }

    pub fn handle(&mut self, now: Instant, input: Input) {
        self.expire(now);
        match input {
            Input::Request {
                req,
                deadline,
                request,
            } => {
                if self.pending.contains_key(&req) {
                    // A driver bug; answering twice would be worse than dropping.
                    debug_assert!(false, "request id {req} reused while pending");
                    return;
                }
                let deadline = deadline.unwrap_or(now.saturating_add(self.cfg.request_timeout_ns));
                if deadline <= now && !matches!(request, Request::Connect(_)) {
                    return self.too_late(req, request);
                }
                match request {
                    Request::Connect(r) => self.on_connect(req, r),
                    Request::Serve(r) => self.on_serve(req, deadline, r),
                    Request::Dispatch(r) => self.on_dispatch(now, req, deadline, r),
                }
            }
            Input::Reply { call, result } => self.on_reply(now, call, result),
            Input::Handled { job, result } => self.on_handled(job, result),
            Input::PeerUp {
                id,
                address,
                namespaces,
                version,
            } => {
                if id == self.cfg.id {
                    return;
                }
                let h = self.cfg.health.clone();
                let p = self
                    .peers
                    .entry(id.clone())
                    .or_insert_with(|| Peer::new(&id, &address, Source::Membership, &h));
                p.source = Source::Membership;
                p.address = address;
                if !p.up {
                    // Back from down (maybe a new incarnation): old failures say nothing now.
                    p.breaker = Breaker::Closed { failures: 0 };
                    p.ejections = 0;
                }
                p.up = true;
                // Up announces the peer's current set; its version may restart with a new
                // incarnation, so it replaces whatever we held.
                p.version = version;
                p.namespaces = namespaces.into_iter().collect();
            }
            Input::PeerNamespaces {
                id,
                namespaces,
                version,
            } => {
                if let Some(p) = self.peers.get_mut(&id) {
                    if version > p.version {
                        p.version = version;
                        p.namespaces = namespaces.into_iter().collect();
                    }
                }
            }
            Input::PeerDown { id } => self.on_peer_down(now, &id),
            Input::Cancel { req } => self.on_cancel(req),
            Input::ConnectTo {
                address,
                namespaces,
            } => {
                let call = self.fresh();
                let mut metadata = BTreeMap::new();
                metadata.insert("collector_id".to_string(), self.cfg.id.clone());
                let request = Request::Connect(ConnectRequest {
                    address: self.cfg.address.clone(),
                    namespaces,
                    metadata,
                });
                let deadline = now.saturating_add(self.cfg.connect_timeout_ns);
                self.calls.insert(
                    call,
                    Call {
                        req: None,
                        peer: String::new(),
                        address: address.clone(),
                        sent_at: now,
                        deadline,
                        connect: true,
                    },
                );
                self.watch(deadline);
                self.out.push_back(Output::Send {
                    call,
                    peer: String::new(),
                    address,
                    request,
                    deadline,
                });
            }
            Input::Tick => {}
        }
    }

    fn fresh(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    // ------------------------------------------------------------ Connect

    fn on_connect(&mut self, req: ReqId, r: ConnectRequest) {
        let reply = |status: Status| ConnectResponse {
            status: Some(status),
            ..Default::default()
        };
        if r.address.is_empty() {
            let resp = reply(Status::new(code::BAD_REQUEST, "address is required"));
            return self.answer_connect(req, resp);
        }
        let source = r
            .metadata
            .get("collector_id")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "unknown".to_string());
        // H3: a collector connecting to itself gets a 400 instead of a record pointing home.
        if source == self.cfg.id || r.address == self.cfg.address {
            let resp = reply(Status::new(code::BAD_REQUEST, "cannot connect to self"));
            return self.answer_connect(req, resp);
        }
        let ours: BTreeSet<String> = self.namespaces().into_iter().collect();
        let shared: Vec<String> = r
            .namespaces
            .iter()
            .filter(|n| ours.contains(*n))
            .cloned()
            .collect();
        let n = self.fresh();
        let id = format!("conn-{}-{n}", self.cfg.id);
        // H3: the same peer (id and address) connecting again replaces its record.
        self.connections
            .retain(|c| !(c.inbound && c.source_collector_id == source && c.address == r.address));
        self.connections.push(Connection {
            id: id.clone(),
            source_collector_id: source.clone(),
            target_collector_id: self.cfg.id.clone(),
            address: r.address.clone(),
            shared_namespaces: shared.clone(),
            labels: r.metadata.clone(),
            inbound: true,
        });
        // H1: route back to the initiator at its advertised address, for what it advertised.
        // An anonymous initiator is known by its address.
        let peer_id = if source == "unknown" {
            r.address.clone()
        } else {
            source
        };
        self.learn_connected_peer(&peer_id, &r.address, r.namespaces);
        let n = shared.len();
        self.answer_connect(
            req,
            ConnectResponse {
                status: Some(Status::new(
                    code::OK,
                    format!("Connected with {n} shared namespaces"),
                )),
                connection_id: id,
                shared_namespaces: shared,
                target_collector_id: self.cfg.id.clone(),
            },
        );
    }

    fn learn_connected_peer(&mut self, id: &str, address: &str, namespaces: Vec<String>) {
        let h = self.cfg.health.clone();
        let p = self
            .peers
            .entry(id.to_string())
            .or_insert_with(|| Peer::new(id, address, Source::Connect, &h));
        if p.source == Source::Connect {
            p.address = address.to_string();
            p.namespaces = namespaces.into_iter().collect();
            p.up = true;
        }
    }

    fn answer_connect(&mut self, req: ReqId, resp: ConnectResponse) {
        self.stats.answered += 1;
        self.out.push_back(Output::Respond {
            req,
            response: Response::Connect(resp),
        });
    }

    fn on_connect_reply(&mut self, address: String, result: Result<Response, TransportError>) {
        let resp = match result {
            Ok(Response::Connect(r)) => r,
            Ok(_) => {
                let error = "connect failed: wrong reply type".to_string();
                return self.event(Event::ConnectFailed { address, error });
            }
            Err(e) => {
                let error = format!("connect failed: {}", e.message);
                return self.event(Event::ConnectFailed { address, error });
            }
        };
        match &resp.status {
            Some(s) if s.is_ok() => {}
            s => {
                let msg = s
                    .as_ref()
                    .map(|s| s.message.as_str())
                    .unwrap_or("no status");
                let error = format!("connect failed: {msg}");
                return self.event(Event::ConnectFailed { address, error });
            }
        }
        let target = if resp.target_collector_id.is_empty() {
            address.clone()
        } else {
            resp.target_collector_id.clone()
        };
        self.connections.retain(|c| {
            !(!c.inbound
                && c.target_collector_id == resp.target_collector_id
                && c.address == address)
        });
        let mut labels = BTreeMap::new();
        labels.insert("initiator".to_string(), "true".to_string());
        self.connections.push(Connection {
            id: resp.connection_id.clone(),
            source_collector_id: self.cfg.id.clone(),
            target_collector_id: resp.target_collector_id.clone(),
            address: address.clone(),
            shared_namespaces: resp.shared_namespaces.clone(),
            labels,
            inbound: false,
        });
        if target != self.cfg.id {
            self.learn_connected_peer(&target, &address, resp.shared_namespaces.clone());
        }
        self.event(Event::Connected {
            connection_id: resp.connection_id,
            peer: target,
            shared: resp.shared_namespaces,
        });
    }

    /// A request whose deadline passed before it arrived: nobody waits for its result, so
    /// nothing runs.
    fn too_late(&mut self, req: ReqId, request: Request) {
        let (rpc, ns, service, method) = match &request {
            Request::Serve(r) => (Rpc::Serve, &r.namespace, &r.service, &r.method_name),
            Request::Dispatch(r) => (Rpc::Dispatch, &r.namespace, &r.service, &r.method_name),
            Request::Connect(_) => return,
        };
        let p = Pending::new(rpc, ns, &service_name(service), method, 0);
        let s = Status::new(
            code::INTERNAL,
            "deadline exceeded before the request was handled",
        );
        self.finish(req, p, s, None, String::new());
    }

    // ------------------------------------------------------------ Serve / local

    /// The three 400 checks Serve and Dispatch share, in the collector's order.
    fn check_request(
        namespace: &str,
        service: &Option<ServiceRef>,
        method: &str,
    ) -> Option<Status> {
        if namespace.is_empty() {
            return Some(Status::new(code::BAD_REQUEST, "namespace is required"));
        }
        match service {
            Some(s) if !s.service_name.is_empty() => {}
            _ => return Some(Status::new(code::BAD_REQUEST, "service is required")),
        }
        if method.is_empty() {
            return Some(Status::new(code::BAD_REQUEST, "method_name is required"));
        }
        None
    }

    fn has_local(&self, ns: &str, service: &str, method: &str) -> bool {
        self.methods.contains(&MethodKey::new(ns, service, method))
    }

    fn on_serve(&mut self, req: ReqId, deadline: Instant, r: ServeRequest) {
        let service = service_name(&r.service);
        let p = Pending::new(Rpc::Serve, &r.namespace, &service, &r.method_name, deadline);
        if let Some(s) = Self::check_request(&r.namespace, &r.service, &r.method_name) {
            return self.finish(req, p, s, None, String::new());
        }
        let mut context = r.execution_context;
        if !context.contains_key(hint::CALL) {
            context.insert(hint::CALL.to_string(), format!("{}/{req}", self.cfg.id));
        }
        self.serve_local(req, p, &service, &r.method_name, r.input, context);
    }

    /// Steps 4-6 of the Serve table, then the handler as an `Invoke`.
    fn serve_local(
        &mut self,
        req: ReqId,
        mut p: Pending,
        service: &str,
        method: &str,
        input: Option<Any>,
        context: BTreeMap<String, String>,
    ) {
        let ns = p.namespace.clone();
        if let Some(v) = self.validator.as_mut() {
            if let Err(e) = v(&ns, service, method) {
                let s = Status::new(
                    code::NOT_FOUND,
                    format!("service not registered in registry: {e}"),
                );
                return self.finish(req, p, s, None, String::new());
            }
        }
        if !self.methods.iter().any(|k| k.namespace == ns) {
            let s = Status::new(code::NOT_FOUND, format!("namespace '{ns}' not found"));
            return self.finish(req, p, s, None, String::new());
        }
        if !self.has_local(&ns, service, method) {
            let s = Status::new(
                code::NOT_FOUND,
                format!("method '{service}.{method}' not found in namespace '{ns}'"),
            );
            return self.finish(req, p, s, None, String::new());
        }
        let job = self.fresh();
        self.jobs.insert(job, req);
        let deadline = p.deadline;
        p.wait = Wait::Local { job };
        self.hold(req, p);
        self.out.push_back(Output::Invoke {
            job,
            key: MethodKey::new(&ns, service, method),
            input,
            context,
            deadline,
        });
    }

    fn on_handled(&mut self, job: JobId, result: Result<Option<Any>, String>) {
        let Some(req) = self.jobs.remove(&job) else {
            self.stats.late_results += 1;
            return;
        };
        let Some(p) = self.pending.remove(&req) else {
            self.stats.late_results += 1;
            return;
        };
        let (status, output, by) = match result {
            Ok(Some(out)) => (Status::ok(), Some(out), self.cfg.id.clone()),
            // H9: nothing to put in `output` is a handler error, never a crash.
            Ok(None) => (
                Status::new(code::INTERNAL, "handler error: handler returned no output"),
                None,
                String::new(),
            ),
            Err(e) => (
                Status::new(code::INTERNAL, format!("handler error: {e}")),
                None,
                String::new(),
            ),
        };
        self.finish(req, p, status, output, by);
    }

    /// Answers `req` once, in the shape of its RPC, and logs who handled it.
    fn finish(&mut self, req: ReqId, p: Pending, status: Status, output: Option<Any>, by: String) {
        if let Wait::Local { job } = p.wait {
            if self.jobs.remove(&job).is_some() {
                self.out.push_back(Output::Cancel { job });
            }
        }
        self.stats.answered += 1;
        self.event(Event::Handled {
            req,
            rpc: match p.rpc {
                Rpc::Serve => "Serve",
                Rpc::Dispatch => "Dispatch",
            },
            namespace: p.namespace.clone(),
            key: p.key.clone(),
            code: status.code,
            handled_by: by.clone(),
            attempts: p.attempts,
        });
        let response = match p.rpc {
            Rpc::Serve => Response::Serve(ServeResponse {
                status: Some(status),
                output,
                executor_id: by,
            }),
            Rpc::Dispatch => Response::Dispatch(DispatchResponse {
                status: Some(status),
                output,
                handled_by_collector_id: by,
            }),
        };
        self.out.push_back(Output::Respond { req, response });
    }

    // ------------------------------------------------------------ Dispatch

    fn on_dispatch(&mut self, now: Instant, req: ReqId, deadline: Instant, r: DispatchRequest) {
        let service = service_name(&r.service);
        let mut p = Pending::new(
            Rpc::Dispatch,
            &r.namespace,
            &service,
            &r.method_name,
            deadline,
        );
        if let Some(s) = Self::check_request(&r.namespace, &r.service, &r.method_name) {
            return self.finish(req, p, s, None, String::new());
        }
        let mut context = BTreeMap::new();
        for h in [hint::TRACEPARENT, hint::ARGS] {
            if let Some(t) = r.routing_hints.get(h) {
                context.insert(h.to_string(), t.clone());
            }
        }
        p.attempt_ns = r
            .routing_hints
            .get(hint::ATTEMPT)
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|t| *t > 0)
            .unwrap_or(self.cfg.attempt_timeout_ns);
        let call = r.routing_hints.get(hint::CALL).cloned();
        context.insert(
            hint::CALL.to_string(),
            call.unwrap_or_else(|| format!("{}/{req}", self.cfg.id)),
        );
        let target = r.target_collector_id.as_str();
        // H2: our own id means here.
        if target == self.cfg.id
            || (target.is_empty() && self.has_local(&r.namespace, &service, &r.method_name))
        {
            return self.serve_local(req, p, &service, &r.method_name, r.input, context);
        }
        if !target.is_empty() {
            let Some(peer) = self.peers.get_mut(target) else {
                let s = Status::new(
                    code::NOT_FOUND,
                    format!("no connection to collector '{target}'"),
                );
                return self.finish(req, p, s, None, String::new());
            };
            let why = if !peer.up {
                Some("is down")
            } else if !peer.available(now) {
                Some("is ejected after repeated failures")
            } else {
                None
            };
            if let Some(why) = why {
                let s = Status::new(
                    code::INTERNAL,
                    format!("serve RPC failed: collector '{target}' {why}"),
                );
                return self.finish(req, p, s, None, String::new());
            }
            let target = target.to_string();
            let request = Request::Serve(ServeRequest {
                namespace: r.namespace.clone(),
                service: r.service.clone(),
                method_name: r.method_name.clone(),
                input: r.input,
                execution_context: self.forward_context(&context),
            });
            p.attempts = 1;
            let call = self.send(now, req, &target, request, p.deadline, p.attempt_ns);
            p.wait = Wait::Target { call, peer: target };
            self.hold(req, p);
            return;
        }
        let hops = r
            .routing_hints
            .get(hint::HOPS)
            .and_then(|h| h.parse::<u32>().ok())
            .unwrap_or(0);
        let visited: BTreeSet<String> = r
            .routing_hints
            .get(hint::VISITED)
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let idempotent = r.routing_hints.get(hint::IDEMPOTENT).map(String::as_str) == Some("true");
        p.wait = Wait::Auto(Box::new(Route {
            service,
            method: r.method_name,
            input: r.input,
            hints: r.routing_hints,
            context,
            idempotent,
            hops,
            visited,
            tried: BTreeSet::new(),
            last_error: None,
            call: None,
        }));
        self.try_next(now, req, p);
    }

    fn forward_context(&self, context: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut c = context.clone();
        c.insert("weft-origin".to_string(), self.cfg.id.clone());
        c
    }

    fn send(
        &mut self,
        now: Instant,
        req: ReqId,
        peer_id: &str,
        request: Request,
        req_deadline: Instant,
        attempt_ns: u64,
    ) -> CallId {
        let call = self.fresh();
        let deadline = now.saturating_add(attempt_ns).min(req_deadline);
        let address = match self.peers.get_mut(peer_id) {
            Some(p) => {
                p.start();
                p.address.clone()
            }
            None => String::new(),
        };
        self.stats.remote_attempts += 1;
        self.calls.insert(
            call,
            Call {
                req: Some(req),
                peer: peer_id.to_string(),
                address: address.clone(),
                sent_at: now,
                deadline,
                connect: false,
            },
        );
        self.watch(deadline);
        self.out.push_back(Output::Send {
            call,
            peer: peer_id.to_string(),
            address,
            request,
            deadline,
        });
        call
    }

    /// Auto-route: the next remote attempt, or the final 404.
    fn try_next(&mut self, now: Instant, req: ReqId, mut p: Pending) {
        let Wait::Auto(route) = &mut p.wait else {
            return;
        };
        let ns = p.namespace.clone();
        let own = self.cfg.id.clone();
        let hop_limited = self.cfg.forward == Forward::Dispatch && route.hops >= self.cfg.max_hops;
        let out_of_attempts = p.attempts >= self.cfg.max_attempts || now >= p.deadline;
        let mut candidates: Vec<String> = Vec::new();
        if !hop_limited && !out_of_attempts {
            for (id, peer) in self.peers.iter_mut() {
                if *id != own
                    && peer.namespaces.contains(&ns)
                    && !route.tried.contains(id)
                    && !route.visited.contains(id)
                    && peer.available(now)
                {
                    candidates.push(id.clone());
                }
            }
        }
        let Some(pick) = self.pick(&candidates) else {
            let mut s = Status::new(
                code::NOT_FOUND,
                format!("no collector found for namespace '{ns}'"),
            );
            if let Some((peer, err)) = &route.last_error {
                s = s
                    .with("last_peer", peer.clone())
                    .with("last_error", err.clone());
            }
            if p.attempts > 0 {
                s = s.with("attempts", p.attempts.to_string());
            }
            if hop_limited {
                s = s.with("hop_limit", self.cfg.max_hops.to_string());
            }
            return self.finish(req, p, s, None, String::new());
        };
        route.tried.insert(pick.clone());
        let request = match self.cfg.forward {
            Forward::Serve => Request::Serve(ServeRequest {
                namespace: ns.clone(),
                service: ServiceRef::named(&route.service),
                method_name: route.method.clone(),
                input: route.input.clone(),
                execution_context: {
                    let mut c = route.context.clone();
                    c.insert("weft-origin".to_string(), own.clone());
                    c
                },
            }),
            Forward::Dispatch => {
                let mut hints = route.hints.clone();
                if let Some(c) = route.context.get(hint::CALL) {
                    hints.insert(hint::CALL.to_string(), c.clone());
                }
                hints.insert(hint::HOPS.to_string(), (route.hops + 1).to_string());
                let mut visited = route.visited.clone();
                visited.insert(own.clone());
                hints.insert(
                    hint::VISITED.to_string(),
                    visited.into_iter().collect::<Vec<_>>().join(","),
                );
                Request::Dispatch(DispatchRequest {
                    namespace: ns.clone(),
                    service: ServiceRef::named(&route.service),
                    method_name: route.method.clone(),
                    input: route.input.clone(),
                    target_collector_id: String::new(),
                    routing_hints: hints,
                })
            }
        };
        p.attempts += 1;
        let deadline = p.deadline;
        let call = self.send(now, req, &pick, request, deadline, p.attempt_ns);
        if let Wait::Auto(route) = &mut p.wait {
            route.call = Some(call);
        }
        self.hold(req, p);
    }

    /// Power of two choices over in-flight calls × EWMA latency; candidates come sorted by id.
    fn pick(&mut self, candidates: &[String]) -> Option<String> {
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].clone()),
            n => {
                let a = (self.rng.next_u64() % n as u64) as usize;
                let mut b = (self.rng.next_u64() % (n as u64 - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                let (sa, sb) = (
                    self.peers[&candidates[a]].score(),
                    self.peers[&candidates[b]].score(),
                );
                Some(candidates[if sb < sa { b } else { a }].clone())
            }
        }
    }

    fn on_reply(&mut self, now: Instant, call: CallId, result: Result<Response, TransportError>) {
        let Some(c) = self.calls.remove(&call) else {
            self.stats.late_replies += 1;
            return;
        };
        if c.connect {
            return self.on_connect_reply(c.address, result);
        }
        // Health first: an answer of any status means the peer is alive.
        let alive = matches!(&result, Ok(r) if r.status().is_some());
        let transition = match self.peers.get_mut(&c.peer) {
            Some(p) if alive => p.success(now.saturating_sub(c.sent_at)),
            Some(p) => p.failure(now, &self.cfg.health),
            None => Transition::None,
        };
        self.note(&c.peer, transition);
        let Some(req) = c.req else { return };
        let Some(p) = self.pending.remove(&req) else {
            self.stats.late_replies += 1;
            return;
        };
        self.attempt_done(now, req, p, call, &c.peer, result);
    }

    fn note(&mut self, peer: &str, t: Transition) {
        match t {
            Transition::None => {}
            Transition::Ejected { until } => self.event(Event::PeerEjected {
                peer: peer.to_string(),
                until,
            }),
            Transition::Restored => self.event(Event::PeerRestored {
                peer: peer.to_string(),
            }),
        }
    }

    /// One remote attempt of request `req` ended with `result`.
    fn attempt_done(
        &mut self,
        now: Instant,
        req: ReqId,
        mut p: Pending,
        call: CallId,
        peer: &str,
        result: Result<Response, TransportError>,
    ) {
        let (status, output, by) = match result {
            Ok(Response::Serve(r)) => (r.status, r.output, r.executor_id),
            Ok(Response::Dispatch(r)) => (r.status, r.output, r.handled_by_collector_id),
            Ok(Response::Connect(_)) => (None, None, String::new()),
            Err(e) => {
                return self.attempt_failed(now, req, p, peer, e);
            }
        };
        let Some(status) = status else {
            // The peer answered something without a status: outcome unknown.
            let e = TransportError::lost("reply carries no status");
            return self.attempt_failed(now, req, p, peer, e);
        };
        match &mut p.wait {
            Wait::Target { call: c, .. } if *c == call => {
                // Target dispatch: the remote status verbatim (P4/P5).
                let by = if status.is_ok() { by } else { String::new() };
                self.finish(req, p, status, output, by)
            }
            Wait::Auto(route) if route.call == Some(call) => {
                route.call = None;
                if status.is_ok() {
                    return self.finish(req, p, status, output, by);
                }
                let executed = status.code != code::NOT_FOUND && status.code != code::BAD_REQUEST;
                route.last_error = Some((
                    peer.to_string(),
                    format!("{} {}", status.code, status.message),
                ));
                if executed && !route.idempotent {
                    // The handler ran there and failed: say so (not a masked 404), do not run it again.
                    return self.finish(req, p, status, None, String::new());
                }
                self.try_next(now, req, p)
            }
            _ => {
                self.stats.late_replies += 1;
                self.hold(req, p);
            }
        }
    }

    fn attempt_failed(
        &mut self,
        now: Instant,
        req: ReqId,
        mut p: Pending,
        peer: &str,
        e: TransportError,
    ) {
        let msg = format!("serve RPC failed: {}", e.message);
        let timed_out = e.message == DEADLINE;
        let failed = |s: Status| {
            if timed_out {
                s.with(hint::TIMEOUT, "true")
            } else {
                s
            }
        };
        match &mut p.wait {
            Wait::Target { .. } => self.finish(
                req,
                p,
                failed(Status::new(code::INTERNAL, msg)),
                None,
                String::new(),
            ),
            Wait::Auto(route) => {
                route.call = None;
                route.last_error = Some((peer.to_string(), e.message.clone()));
                if e.sent && !route.idempotent {
                    // At most once: the call may have run there; a blind retry could run it twice.
                    let s = failed(Status::new(code::INTERNAL, msg))
                        .with("peer", peer.to_string())
                        .with("retried", "false (not idempotent)");
                    return self.finish(req, p, s, None, String::new());
                }
                self.try_next(now, req, p)
            }
            Wait::Local { .. } => {
                self.hold(req, p);
            }
        }
    }

    fn on_peer_down(&mut self, now: Instant, id: &str) {
        let Some(peer) = self.peers.get_mut(id) else {
            return;
        };
        peer.up = false;
        let doomed: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.peer == id)
            .map(|(k, _)| *k)
            .collect();
        for call in doomed {
            self.on_reply(
                now,
                call,
                Err(TransportError::lost(format!("collector '{id}' went down"))),
            );
        }
        if let Some(p) = self.peers.get_mut(id) {
            p.in_flight = 0;
        }
    }

    fn on_cancel(&mut self, req: ReqId) {
        let Some(p) = self.pending.remove(&req) else {
            return;
        };
        let call = match &p.wait {
            Wait::Target { call, .. } => Some(*call),
            Wait::Auto(r) => r.call,
            Wait::Local { .. } => None,
        };
        if let Some(c) = call.and_then(|c| self.calls.get_mut(&c).map(|x| (c, x))) {
            let (call, c) = c;
            c.req = None;
            let (peer, address) = (c.peer.clone(), c.address.clone());
            // A Weft peer is told to cancel and still answers (its answer updates its health);
            // the RPC to a foreign collector is dropped, so no answer comes: the call ends here.
            if let Some(p) = self.peers.get_mut(&peer) {
                if p.source != Source::Membership {
                    p.withdrawn();
                    self.calls.remove(&call);
                }
            }
            self.out.push_back(Output::Abort {
                call,
                peer,
                address,
            });
        }
        let s =
            Status::new(code::INTERNAL, "call canceled by the caller").with(hint::CANCELED, "true");
        // `finish` stops a local handler still running (`Output::Cancel`).
        self.finish(req, p, s, None, String::new());
    }

    // ------------------------------------------------------------ time

    fn expire(&mut self, now: Instant) {
        if now < self.earliest {
            return;
        }
        let late: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for call in late {
            // The peer may still be running it: nobody will take its answer, so say so.
            if let Some(c) = self.calls.get(&call).filter(|c| !c.connect) {
                let (peer, address) = (c.peer.clone(), c.address.clone());
                self.out.push_back(Output::Abort {
                    call,
                    peer,
                    address,
                });
            }
            self.on_reply(now, call, Err(TransportError::lost(DEADLINE)));
        }
        let late: Vec<ReqId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for req in late {
            let Some(p) = self.pending.remove(&req) else {
                continue;
            };
            let s = match &p.wait {
                Wait::Local { .. } => {
                    Status::new(code::INTERNAL, "handler error: deadline exceeded")
                }
                Wait::Target { peer, .. } => {
                    Status::new(code::INTERNAL, "serve RPC failed: deadline exceeded")
                        .with("peer", peer.clone())
                }
                Wait::Auto(r) if r.call.is_some() => {
                    Status::new(code::INTERNAL, "serve RPC failed: deadline exceeded")
                }
                Wait::Auto(_) => Status::new(
                    code::NOT_FOUND,
                    format!("no collector found for namespace '{}'", p.namespace),
                ),
            }
            .with(hint::TIMEOUT, "true");
            // The attempt still out belongs to no one now; its reply only updates health.
            if let Wait::Auto(r) = &p.wait {
                if let Some(c) = r.call.and_then(|c| self.calls.get_mut(&c)) {
                    c.req = None;
                }
            }
            if let Wait::Target { call, .. } = &p.wait {
                if let Some(c) = self.calls.get_mut(call) {
                    c.req = None;
                }
            }
            self.finish(req, p, s, None, String::new());
        }
        self.earliest = self.next_deadline();
    }
}

impl Pending {
    /// A request that just arrived and waits on nothing yet.
    fn new(rpc: Rpc, namespace: &str, service: &str, method: &str, deadline: Instant) -> Pending {
        Pending {
            rpc,
            namespace: namespace.to_string(),
            key: format!("{service}.{method}"),
            deadline,
            attempt_ns: 0,
            attempts: 0,
            wait: Wait::Local { job: 0 },
        }
    }
}

fn service_name(s: &Option<ServiceRef>) -> String {
    s.as_ref()
        .map(|s| s.service_name.clone())
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "collector_tests.rs"]
mod tests;
