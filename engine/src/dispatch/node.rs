//! The collector inside the node (the plan in this module's parent, "How it plugs into the
//! node"). A cluster node owns one `Collector` (id = node name, address = cluster address)
//! serving its `function.lua` entries; this file carries what goes in and out of it:
//!
//! - in: `Input::Dispatch` and `Input::DispatchCancel` (the driver's gRPC service),
//!   `Input::DispatchReply`, dispatch relay
//!   frames from other Weft nodes, `funcs.call` of a function served elsewhere, a handler's end,
//!   peers up and down, registry changes, time;
//! - out: `Output::DispatchRespond`, `Output::DispatchSend` (foreign collectors only), relay
//!   frames (`DispatchRequest` / `DispatchReply` / `DispatchNamespaces`) to Weft nodes, handler
//!   runs as function calls, completions of the calling process's tag, logs and traces.
//!
//! Request ids: the collector's are the node's own (`NodeDispatch::next_req`, starting at the
//! incarnation's PID base, so a call's `weft-call` identity `<node>/<req>` never repeats across
//! restarts); each remembers who waits for its answer (`Origin`), so the driver's ids, a peer's
//! call ids and local calls never collide. A peer's repeated `DispatchRequest` (same incarnation, call id at or below
//! the last one taken) is dropped as a duplicate: a request runs at most once per frame.

use super::collector::{hint, CallId, JobId, ReqId};
use super::functions::{self, Functions};
use super::types::DispatchResponse;
use super::{code, Collector, Config, Event, Input as In, Output as Out};
use super::{Request, Response, Status, TransportError};
use crate::cluster::frame::Frame;
use crate::command::CallOptions;
use crate::node::*;
use crate::pid::{NodeId, Pid};
use crate::trace::TraceEvent;
use crate::value::{kind, ErrorValue, Value};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

/// How much longer than the caller's attempt a Weft peer keeps a request (see `Out::Send`).
const PEER_GRACE_NS: u64 = 100_000_000;

/// Host of the node-internal caller a handler run answers to (`caller_pid`).
pub const DISPATCH_HOST: &str = "node:dispatch";

/// Who waits for the answer to a request the collector took.
#[derive(PartialEq)]
enum Origin {
    /// The driver's gRPC service, under its own request id.
    Driver(ReqId),
    /// The collector of another Weft node (relay frame), under its call id.
    Peer(NodeId, CallId),
    /// A process of this node (`funcs.call` of a function served elsewhere): its tag.
    Local(Pid, u64),
}

impl NodeDispatch {
    /// The request the collector took for `origin`, while it is unanswered.
    fn request_of(&self, origin: &Origin) -> Option<ReqId> {
        self.origins
            .iter()
            .find_map(|(req, o)| (o == origin).then_some(*req))
    }
}

pub(crate) struct NodeDispatch {
    collector: Collector,
    functions: Functions,
    origins: BTreeMap<ReqId, Origin>,
    next_req: ReqId,
    /// Handler runs under way: job → the callee process.
    jobs: BTreeMap<JobId, u64>,
    /// Calls of local processes waiting on a dispatch: (caller, its tag) → request.
    by_caller: BTreeMap<(u64, u64), ReqId>,
    /// Per peer: (its incarnation, the highest call id taken from it).
    seen: BTreeMap<NodeId, (u64, CallId)>,
    /// Outputs are being drained: a nested drain leaves them to the outer loop.
    draining: bool,
}

impl NodeDispatch {
    pub(crate) fn new(cfg: &ClusterConfig, seed: u64) -> NodeDispatch {
        let c = Config::new(cfg.node.as_str(), &cfg.addr, seed ^ 0x4449_5350_4154_4348);
        let base =
            crate::cluster::peers::pid_epoch(cfg.incarnation) << crate::cluster::peers::EPOCH_SHIFT;
        NodeDispatch {
            collector: Collector::new(c, []),
            functions: Functions::default(),
            origins: BTreeMap::new(),
            next_req: base,
            jobs: BTreeMap::new(),
            by_caller: BTreeMap::new(),
            seen: BTreeMap::new(),
            draining: false,
        }
    }

    pub(crate) fn collector(&self) -> &Collector {
        &self.collector
    }
}

/// The caller a handler run's end is reported to (never a process: counter 0 is never issued).
pub(crate) fn caller_pid(node: &NodeId) -> Pid {
    Pid::on(node.clone(), Arc::from(DISPATCH_HOST), 0)
}

fn is_caller(pid: &Pid) -> bool {
    pid.uniq == 0 && &*pid.host == DISPATCH_HOST
}

/// The error a refused request gets on a node without a collector (standalone).
fn disabled() -> Response {
    Response::Dispatch(DispatchResponse {
        status: Some(Status::new(
            code::NOT_FOUND,
            "collective dispatch is not enabled on this node (it is not part of a cluster)",
        )),
        ..Default::default()
    })
}

impl Core {
    fn dsp(&mut self) -> Option<&mut NodeDispatch> {
        self.dispatch.as_deref_mut()
    }

    /// Feeds the collector and acts on what it says.
    fn collector_handle(&mut self, input: In) {
        let now = self.now;
        let Some(d) = self.dsp() else { return };
        d.collector.handle(now, input);
        self.drain_dispatch();
    }

    fn fresh_req(&mut self, origin: Origin) -> ReqId {
        let d = self.dispatch.as_deref_mut().expect("caller checked");
        d.next_req += 1;
        d.origins.insert(d.next_req, origin);
        d.next_req
    }

    /// `Input::Dispatch`: an RPC from the driver's gRPC service.
    pub(crate) fn dispatch_request(
        &mut self,
        req: ReqId,
        deadline: Option<Instant>,
        request: Request,
    ) {
        if self.dispatch.is_none() {
            return self.emit(Output::DispatchRespond {
                req,
                response: disabled(),
            });
        }
        let id = self.fresh_req(Origin::Driver(req));
        self.asked(id, deadline, &request);
        self.collector_handle(In::Request {
            req: id,
            deadline,
            request,
        });
    }

    /// `Input::DispatchCancel`: the driver's caller of request `req` is gone; the request is
    /// withdrawn (nothing when it was answered already).
    pub(crate) fn dispatch_driver_cancel(&mut self, req: ReqId) {
        let id = self.dsp().and_then(|d| d.request_of(&Origin::Driver(req)));
        if let Some(id) = id {
            self.collector_handle(In::Cancel { req: id });
        }
    }

    /// `Input::DispatchReply`: a foreign collector answered (or the transport failed).
    pub(crate) fn dispatch_reply(
        &mut self,
        call: CallId,
        result: Result<Response, TransportError>,
    ) {
        self.collector_handle(In::Reply { call, result });
    }

    /// Each run: time passed for the collector.
    pub(crate) fn dispatch_tick(&mut self) {
        let now = self.now;
        let due = self
            .dispatch
            .as_ref()
            .and_then(|d| d.collector.poll_timeout())
            .is_some_and(|t| t <= now);
        if due {
            self.collector_handle(In::Tick);
        }
    }

    pub(crate) fn dispatch_poll_timeout(&self) -> Option<Instant> {
        self.dispatch.as_ref()?.collector.poll_timeout()
    }

    /// `funcs.call(target, ...)` where no local entry is `target`: Some(the caller's tag, the
    /// dispatch's answer completes it) when a peer serves (or served) its namespace; None
    /// when no collector anywhere knows it (the caller gets "function not found"). The
    /// options' timeout is the dispatch's deadline (and bounds its attempt); `idempotent`
    /// marks it so.
    pub(crate) fn dispatch_call(
        &mut self,
        caller: u64,
        target: &str,
        args: &[Value],
        options: CallOptions,
    ) -> Option<Result<u64, ErrorValue>> {
        let d = self.dispatch.as_ref()?;
        let ns = target.split_once(':')?.0;
        if !d.collector.peer_namespace(ns) {
            return None;
        }
        let request = match functions::call_request(target, args, &options) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let p = self.procs.get_mut(&caller)?;
        let tag = p.tags.issue(crate::command::ids::FUNCTION_CALL).tag;
        let pid = p.pid.clone();
        let id = self.fresh_req(Origin::Local(pid, tag));
        if let Some(d) = self.dsp() {
            d.by_caller.insert((caller, tag), id);
        }
        let deadline = options.timeout_ns.map(|t| self.now.saturating_add(t));
        let request = Request::Dispatch(request);
        self.asked(id, deadline, &request);
        self.collector_handle(In::Request {
            req: id,
            deadline,
            request,
        });
        Some(Ok(tag))
    }

    /// `future:cancel()` of a call served elsewhere: the dispatch is withdrawn (the remote run
    /// is canceled) and the caller's tag completes with kind Canceled. False when no dispatch
    /// of `caller` waits on `tag`.
    pub(crate) fn dispatch_cancel(&mut self, caller: u64, tag: u64) -> bool {
        let Some(req) = self.dsp().and_then(|d| d.by_caller.remove(&(caller, tag))) else {
            return false;
        };
        self.collector_handle(In::Cancel { req });
        true
    }

    /// Hook in the exit cascade: the dispatches a dead process waited on are withdrawn, so
    /// their remote runs are canceled as a local callee would be.
    pub(crate) fn dispatch_caller_exited(&mut self, caller: u64) {
        let reqs: Vec<ReqId> = match self.dsp() {
            Some(d) if !d.by_caller.is_empty() => {
                let keys: Vec<(u64, u64)> = d
                    .by_caller
                    .range((caller, 0)..=(caller, u64::MAX))
                    .map(|(k, _)| *k)
                    .collect();
                keys.iter().filter_map(|k| d.by_caller.remove(k)).collect()
            }
            _ => return,
        };
        for req in reqs {
            self.collector_handle(In::Cancel { req });
        }
    }

    /// Hook in `Core::complete`: a handler run ended (its caller is the collector). Returns
    /// the completion back when it is not one.
    pub(crate) fn dispatch_completion(
        &mut self,
        pid: &Pid,
        tag: u64,
        result: Result<Value, ErrorValue>,
    ) -> Option<Result<Value, ErrorValue>> {
        if !is_caller(pid) {
            return Some(result);
        }
        let d = self.dsp()?;
        d.jobs.remove(&tag);
        let result = functions::handler_result(result);
        self.collector_handle(In::Handled { job: tag, result });
        None
    }

    /// A membership peer is up: route to it (namespaces follow in its frame) and tell it ours.
    pub(crate) fn dispatch_peer_up(&mut self, node: &NodeId) {
        let Some(d) = self.dispatch.as_ref() else {
            return;
        };
        let (namespaces, version) = (d.collector.namespaces(), d.collector.namespaces_version());
        let address = self
            .cluster
            .as_ref()
            .and_then(|c| c.membership.as_ref())
            .and_then(|m| m.members_up().find(|id| id.node == *node))
            .map(|id| id.addr.clone())
            .unwrap_or_default();
        self.collector_handle(In::PeerUp {
            id: node.to_string(),
            address,
            namespaces: Vec::new(),
            version: 0,
        });
        let f = Frame::DispatchNamespaces {
            namespaces,
            version,
            reply: true,
        };
        let _ = self.transmit(node, &f);
    }

    /// A membership peer is down: its in-flight calls fail as lost (at most once applies).
    pub(crate) fn dispatch_peer_down(&mut self, node: &NodeId) {
        if self.dispatch.is_some() {
            self.collector_handle(In::PeerDown {
                id: node.to_string(),
            });
        }
    }

    /// The registry changed: serve exactly the `function.lua` entries now registered.
    pub(crate) fn dispatch_refresh(&mut self) {
        if self.dispatch.is_none() {
            return;
        }
        let f = Functions::from_entries(self.entries.values().map(|e| &**e));
        let d = self.dsp().expect("checked");
        if d.functions == f {
            return;
        }
        d.collector.set_methods(f.keys().cloned());
        d.functions = f;
        self.drain_dispatch();
    }

    /// A dispatch relay frame from `from` (already authenticated by `cluster_frame`).
    pub(crate) fn dispatch_frame(&mut self, from: &NodeId, f: Frame) {
        if self.dispatch.is_none() {
            return self.frame_dropped(from, "dead", format!("{} frame", f.name()));
        }
        match f {
            Frame::DispatchRequest {
                call,
                timeout_ns,
                request,
            } => {
                let inc = self
                    .cluster
                    .as_ref()
                    .and_then(|c| c.peers.get(from))
                    .map_or(0, |p| p.incarnation);
                let d = self.dsp().expect("checked");
                let seen = d.seen.entry(from.clone()).or_insert((inc, 0));
                if seen.0 != inc {
                    *seen = (inc, 0);
                }
                if call <= seen.1 {
                    let last = seen.1;
                    return self.frame_dropped(
                        from,
                        "duplicate",
                        format!("dispatch call {call}, last taken {last}"),
                    );
                }
                seen.1 = call;
                let deadline = Some(self.now.saturating_add(timeout_ns));
                let id = self.fresh_req(Origin::Peer(from.clone(), call));
                self.collector_handle(In::Request {
                    req: id,
                    deadline,
                    request,
                });
            }
            Frame::DispatchReply { call, response } => {
                let late = |c: &Core| {
                    c.dispatch
                        .as_ref()
                        .map_or(0, |d| d.collector.stats().late_replies)
                };
                let before = late(self);
                self.collector_handle(In::Reply {
                    call,
                    result: Ok(response),
                });
                if late(self) > before {
                    // Its request was answered already (attempt timeout): dropped, counted.
                    self.log(
                        Level::Info,
                        "dispatch late reply dropped",
                        vec![
                            ("peer".into(), from.to_string()),
                            ("call".into(), call.to_string()),
                        ],
                    );
                }
            }
            Frame::DispatchCancel { call } => {
                let d = self.dsp().expect("checked");
                let req = d.request_of(&Origin::Peer(from.clone(), call));
                // None: answered already (the reply crossed the cancel).
                if let Some(req) = req {
                    self.collector_handle(In::Cancel { req });
                }
            }
            Frame::DispatchNamespaces {
                namespaces,
                version,
                reply,
            } => {
                self.collector_handle(In::PeerNamespaces {
                    id: from.to_string(),
                    namespaces,
                    version,
                });
                if reply {
                    let c = self.dispatch.as_ref().expect("checked");
                    let f = Frame::DispatchNamespaces {
                        namespaces: c.collector.namespaces(),
                        version: c.collector.namespaces_version(),
                        reply: false,
                    };
                    let _ = self.transmit(from, &f);
                }
            }
            other => self.frame_dropped(from, "invalid", format!("{} frame", other.name())),
        }
    }

    /// Acts on every output of the collector, in order (inputs fed meanwhile queue theirs).
    fn drain_dispatch(&mut self) {
        match self.dsp() {
            Some(d) if !d.draining => d.draining = true,
            _ => return,
        }
        while let Some(o) = self.dsp().and_then(|d| d.collector.poll_output()) {
            self.dispatch_output(o);
        }
        if let Some(d) = self.dsp() {
            d.draining = false;
        }
    }

    fn dispatch_output(&mut self, o: Out) {
        match o {
            Out::Send {
                call,
                peer,
                address,
                request,
                deadline,
            } => {
                let node = NodeId::named(&peer);
                let member = !peer.is_empty()
                    && self
                        .cluster
                        .as_ref()
                        .is_some_and(|c| c.peers.contains_key(&node));
                if !member {
                    return self.emit(Output::DispatchSend {
                        call,
                        peer,
                        address,
                        request,
                        deadline,
                    });
                }
                // The peer's deadline is ours plus a grace: our own timeout (and the
                // `DispatchCancel` it sends) decides the attempt, never the peer's answer
                // racing it; the peer's answer is then a late reply, dropped and counted.
                let f = Frame::DispatchRequest {
                    call,
                    timeout_ns: deadline
                        .saturating_sub(self.now)
                        .saturating_add(PEER_GRACE_NS),
                    request,
                };
                if let Err(e) = self.transmit(&node, &f) {
                    let result = Err(TransportError::unsent(e.message));
                    self.collector_handle(In::Reply { call, result });
                }
            }
            Out::Respond { req, response } => {
                let Some(origin) = self.dsp().and_then(|d| d.origins.remove(&req)) else {
                    return;
                };
                self.trace(TraceEvent::DispatchAnswered { req });
                match origin {
                    Origin::Driver(req) => self.emit(Output::DispatchRespond { req, response }),
                    Origin::Peer(node, call) => {
                        let _ = self.transmit(&node, &Frame::DispatchReply { call, response });
                    }
                    Origin::Local(pid, tag) => {
                        if let Some(d) = self.dsp() {
                            d.by_caller.remove(&(pid.uniq, tag));
                        }
                        let r = match &response {
                            Response::Dispatch(d) => functions::call_result(d),
                            _ => Err(ErrorValue::new(kind::INTERNAL, "dispatch answered oddly")),
                        };
                        self.complete(&pid, tag, r);
                    }
                }
            }
            Out::Invoke {
                job,
                key,
                input,
                context,
                ..
            } => {
                if let Some(call) = context.get(super::collector::hint::CALL) {
                    self.trace(TraceEvent::DispatchInvoked { call });
                }
                let started = self.invoke(job, &key, input, context);
                if let Err(e) = started {
                    self.collector_handle(In::Handled {
                        job,
                        result: Err(e),
                    });
                }
            }
            Out::Abort { call, peer, .. } => {
                // A Weft peer is told to cancel its run; the RPC to a foreign collector is
                // dropped (its stream reset), which cancels the run on a gRPC server.
                let node = NodeId::named(&peer);
                let member = self
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.peers.contains_key(&node));
                if member {
                    let _ = self.transmit(&node, &Frame::DispatchCancel { call });
                } else {
                    self.emit(Output::DispatchAbort { call });
                }
            }
            Out::Cancel { job } => {
                if let Some(p) = self.dsp().and_then(|d| d.jobs.remove(&job)) {
                    self.kill(
                        p,
                        ErrorValue::new(kind::CANCELED, "dispatch deadline exceeded"),
                    );
                }
            }
            Out::Event(e) => self.dispatch_event(e),
        }
    }

    /// Runs the entry serving `key` as a function call whose end answers `job`.
    fn invoke(
        &mut self,
        job: JobId,
        key: &super::MethodKey,
        input: Option<super::Any>,
        context: BTreeMap<String, String>,
    ) -> Result<(), String> {
        let d = self.dsp().expect("draining");
        let Some(entry) = d.functions.entry(key).map(str::to_string) else {
            return Err(format!("no entry serves {}.{}", key.service, key.method));
        };
        let args = functions::handler_args(input.as_ref(), &context)?;
        let ctx: BTreeMap<String, Value> = context
            .into_iter()
            .filter(|(k, _)| k != hint::ARGS)
            .map(|(k, v)| (k, Value::from(v.as_str())))
            .collect();
        let opts = SpawnOptions {
            reply: Some(job),
            dispatch: true,
            context: Some(Rc::new(ctx)),
            ..Default::default()
        };
        let pid = self
            .spawn(&entry, FUNCTION_HOST, args, opts)
            .map_err(|e| e.message)?;
        if let Some(d) = self.dsp() {
            d.jobs.insert(job, pid.uniq);
        }
        Ok(())
    }

    fn dispatch_event(&mut self, e: Event) {
        match e {
            Event::Handled {
                req,
                rpc,
                namespace,
                key,
                code,
                handled_by,
                attempts,
            } => {
                if self.log_min <= Level::Debug {
                    self.log(
                        Level::Debug,
                        "dispatch handled",
                        vec![
                            ("req".into(), req.to_string()),
                            ("rpc".into(), rpc.into()),
                            ("namespace".into(), namespace),
                            ("method".into(), key),
                            ("code".into(), code.to_string()),
                            ("handled_by".into(), handled_by),
                            ("attempts".into(), attempts.to_string()),
                        ],
                    );
                }
            }
            Event::NamespacesChanged {
                namespaces,
                version,
            } => {
                let up = self.up_peers();
                let f = Frame::DispatchNamespaces {
                    namespaces,
                    version,
                    reply: false,
                };
                for n in up {
                    let _ = self.transmit(&n, &f);
                }
            }
            Event::PeerEjected { peer, until } => self.log(
                Level::Warn,
                "dispatch peer ejected",
                vec![
                    ("peer".into(), peer),
                    ("until_ns".into(), until.to_string()),
                ],
            ),
            Event::PeerRestored { peer } => self.log(
                Level::Info,
                "dispatch peer restored",
                vec![("peer".into(), peer)],
            ),
            Event::Connected {
                connection_id,
                peer,
                shared,
            } => self.log(
                Level::Info,
                "dispatch connected",
                vec![
                    ("peer".into(), peer),
                    ("connection".into(), connection_id),
                    ("shared".into(), shared.join(",")),
                ],
            ),
            Event::ConnectFailed { address, error } => self.log(
                Level::Warn,
                "dispatch connect failed",
                vec![("address".into(), address), ("error".into(), error)],
            ),
        }
    }

    /// A call entered the cluster here (trace for the simulator's dispatch invariants).
    fn asked(&mut self, req: ReqId, deadline: Option<Instant>, request: &Request) {
        if self.observer.is_none() {
            return;
        }
        let idempotent = match request {
            Request::Dispatch(d) => {
                d.routing_hints
                    .get(super::collector::hint::IDEMPOTENT)
                    .map(String::as_str)
                    == Some("true")
            }
            _ => false,
        };
        let timeout_ns = match deadline {
            Some(t) => t.saturating_sub(self.now),
            None => self
                .dispatch
                .as_ref()
                .map_or(0, |d| d.collector.request_timeout_ns()),
        };
        self.trace(TraceEvent::DispatchAsked {
            req,
            timeout_ns,
            idempotent,
        });
    }
}

impl Node {
    /// This node's collector (None on a standalone node): routing state for tests and status.
    pub fn with_collector<R>(&self, f: impl FnOnce(&Collector) -> R) -> Option<R> {
        let core = self.core.borrow();
        core.dispatch.as_ref().map(|d| f(d.collector()))
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
