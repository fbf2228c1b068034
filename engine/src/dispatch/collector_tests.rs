//! The collector's Go tests restated (spec §2: C1-C6, S1-S4, D1-D6, registry validation), the
//! parity and hardening scenarios that are state-machine behaviour (P1-P6, H1-H9), and a
//! proptest over random interleavings. `Net` is an in-memory network of collectors in the
//! quinn-proto test style: outputs of one collector become inputs of another.

use super::*;
use crate::dispatch::invariants::Checker;
use crate::dispatch::payload::{decode_input, encode_result};
use crate::value::Value;
use std::cell::Cell;
use std::rc::Rc;

const MS: u64 = 1_000_000;

type Handler = Box<dyn FnMut(&MethodKey, Option<&Any>) -> Result<Option<Any>, String>>;

struct Member {
    c: Collector,
    handler: Option<Handler>,
    /// Invocations not answered yet (when `handler` is None, or held on purpose).
    held: Vec<(JobId, MethodKey, Option<Any>)>,
    /// Every invocation ever made here: (key, input).
    invoked: Vec<(MethodKey, Option<Any>)>,
    cancelled: Vec<JobId>,
    /// Outbound calls withdrawn (`Output::Abort`).
    aborted: Vec<CallId>,
    events: Vec<Event>,
}

/// What the network does with a message from one collector to another.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Link {
    Up,
    /// Dropped silently: the sender times out.
    Drop,
    /// The dial fails before anything is sent.
    Refuse,
}

struct Net {
    now: Instant,
    members: BTreeMap<String, Member>,
    /// Requests a collector received from another: (callee, req) → (caller, call).
    remote: BTreeMap<(String, ReqId), (String, CallId)>,
    /// Answers to requests the test made: (collector, req) → (time, response).
    answers: BTreeMap<(String, ReqId), Vec<(Instant, Response)>>,
    links: BTreeMap<(String, String), Link>,
    next_req: ReqId,
    /// Delivered requests wait here when `hold_network` is set.
    hold_network: bool,
    in_transit: Vec<(String, String, CallId, Request, Instant)>,
    /// The promises every run must keep, fed by `route` (and by the test for what it asks).
    checker: Checker,
}

fn addr(id: &str) -> String {
    format!("{id}.test:7000")
}

fn id_of(address: &str) -> Option<String> {
    address.strip_suffix(".test:7000").map(str::to_string)
}

fn key(ns: &str, s: &str, m: &str) -> MethodKey {
    MethodKey::new(ns, s, m)
}

fn text(s: &str) -> Any {
    encode_result(&Value::from(s)).unwrap()
}

/// Answers with "<collector>:<Service>.<Method>" so a test sees who ran what.
fn echo(node: &str) -> Handler {
    let node = node.to_string();
    Box::new(move |k, _| Ok(Some(text(&format!("{node}:{}.{}", k.service, k.method)))))
}

fn peer_up(id: &str, address: &str, namespaces: &[&str], version: u64) -> Input {
    Input::PeerUp {
        id: id.into(),
        address: address.into(),
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        version,
    }
}

fn dispatch_req(ns: &str, service: &str, method: &str) -> DispatchRequest {
    DispatchRequest {
        namespace: ns.into(),
        service: ServiceRef::named(service),
        method_name: method.into(),
        ..Default::default()
    }
}

fn serve_req(ns: &str, service: &str, method: &str) -> ServeRequest {
    ServeRequest {
        namespace: ns.into(),
        service: ServiceRef::named(service),
        method_name: method.into(),
        ..Default::default()
    }
}

impl Net {
    fn new() -> Net {
        Net {
            now: 1_000 * MS,
            members: BTreeMap::new(),
            remote: BTreeMap::new(),
            answers: BTreeMap::new(),
            links: BTreeMap::new(),
            next_req: 1,
            hold_network: false,
            in_transit: Vec::new(),
            checker: Checker::default(),
        }
    }

    fn add(&mut self, id: &str, methods: Vec<MethodKey>) -> &mut Net {
        self.add_cfg(Config::new(id, &addr(id), 7), methods)
    }

    fn add_cfg(&mut self, cfg: Config, methods: Vec<MethodKey>) -> &mut Net {
        let id = cfg.id.clone();
        self.members.insert(
            id.clone(),
            Member {
                c: Collector::new(cfg, methods),
                handler: Some(echo(&id)),
                held: Vec::new(),
                invoked: Vec::new(),
                cancelled: Vec::new(),
                aborted: Vec::new(),
                events: Vec::new(),
            },
        );
        self
    }

    fn c(&mut self, id: &str) -> &mut Collector {
        &mut self.members.get_mut(id).unwrap().c
    }

    fn m(&mut self, id: &str) -> &mut Member {
        self.members.get_mut(id).unwrap()
    }

    fn input(&mut self, id: &str, input: Input) {
        let now = self.now;
        self.c(id).handle(now, input);
        self.pump();
    }

    /// Every member learns every other through membership, with its namespaces.
    fn mesh(&mut self) {
        let all: Vec<(String, Vec<String>)> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.c.namespaces()))
            .collect();
        for (me, _) in &all {
            for (other, ns) in &all {
                if me != other {
                    self.input(
                        me,
                        Input::PeerUp {
                            id: other.clone(),
                            address: addr(other),
                            namespaces: ns.clone(),
                            version: 1,
                        },
                    );
                }
            }
        }
    }

    fn link(&mut self, from: &str, to: &str, l: Link) {
        self.links.insert((from.into(), to.into()), l);
    }

    /// A request from outside (a gRPC client) to collector `id`; returns its id.
    fn ask(&mut self, id: &str, deadline: Option<Instant>, request: Request) -> ReqId {
        let req = self.next_req;
        self.next_req += 1;
        self.input(
            id,
            Input::Request {
                req,
                deadline,
                request,
            },
        );
        req
    }

    fn answer(&self, id: &str, req: ReqId) -> Option<&Response> {
        let a = self.answers.get(&(id.to_string(), req))?;
        assert_eq!(
            a.len(),
            1,
            "request {req} at {id} answered {} times",
            a.len()
        );
        Some(&a[0].1)
    }

    /// The answer to dispatch `req` made at `id`; panics when there is none yet.
    fn dispatched(&self, id: &str, req: ReqId) -> DispatchResponse {
        match self.answer(id, req) {
            Some(Response::Dispatch(d)) => d.clone(),
            other => panic!("no dispatch answer to {req}: {other:?}"),
        }
    }

    fn dispatch(&mut self, id: &str, r: DispatchRequest) -> DispatchResponse {
        let req = self.ask(id, None, Request::Dispatch(r));
        self.dispatched(id, req)
    }

    fn serve(&mut self, id: &str, r: ServeRequest) -> ServeResponse {
        let req = self.ask(id, None, Request::Serve(r));
        match self.answer(id, req) {
            Some(Response::Serve(d)) => d.clone(),
            other => panic!("no serve answer: {other:?}"),
        }
    }

    fn connect(&mut self, id: &str, r: ConnectRequest) -> ConnectResponse {
        let req = self.ask(id, None, Request::Connect(r));
        match self.answer(id, req) {
            Some(Response::Connect(d)) => d.clone(),
            other => panic!("no connect answer: {other:?}"),
        }
    }

    fn connect_to(&mut self, from: &str, to: &str, namespaces: &[&str]) {
        self.input(
            from,
            Input::ConnectTo {
                address: addr(to),
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            },
        );
    }

    /// Moves the clock forward by `by`, waking each collector at its own `poll_timeout` on the
    /// way, as a driver does.
    fn advance(&mut self, by: u64) {
        let end = self.now + by;
        loop {
            let next = self
                .members
                .values()
                .filter_map(|m| m.c.poll_timeout())
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            let ids: Vec<String> = self.members.keys().cloned().collect();
            for id in ids {
                if self.c(&id).poll_timeout().is_some_and(|x| x <= self.now) {
                    self.input(&id, Input::Tick);
                }
            }
            for (id, m) in &self.members {
                let t = m.c.poll_timeout();
                assert!(
                    t.is_none_or(|t| t > self.now),
                    "{id} still wants {t:?} at {}",
                    self.now
                );
            }
        }
        self.now = end;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.input(&id, Input::Tick);
        }
    }

    /// Runs every member's outputs to quiescence.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            let ids: Vec<String> = self.members.keys().cloned().collect();
            for id in ids {
                while let Some(o) = self.c(&id).poll_output() {
                    progressed = true;
                    self.route(&id, o);
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn route(&mut self, from: &str, o: Output) {
        let now = self.now;
        match o {
            Output::Send {
                call,
                address,
                request,
                deadline,
                ..
            } => {
                assert!(deadline > now, "an attempt is sent with time left");
                let to = id_of(&address).filter(|t| self.members.contains_key(t));
                let link = to
                    .as_ref()
                    .map(|t| {
                        *self
                            .links
                            .get(&(from.to_string(), t.clone()))
                            .unwrap_or(&Link::Up)
                    })
                    .unwrap_or(Link::Refuse);
                match (to, link) {
                    (_, Link::Drop) => {}
                    (Some(to), Link::Up) => {
                        if self.hold_network {
                            self.in_transit
                                .push((from.into(), to, call, request, deadline));
                        } else {
                            self.deliver(from, &to, call, request, deadline);
                        }
                    }
                    _ => self.c(from).handle(
                        now,
                        Input::Reply {
                            call,
                            result: Err(TransportError::unsent("connection refused")),
                        },
                    ),
                }
            }
            Output::Respond { req, response } => {
                assert!(
                    response.status().is_some(),
                    "P6: every response carries status"
                );
                match self.remote.remove(&(from.to_string(), req)) {
                    Some((caller, call)) => {
                        let back = *self
                            .links
                            .get(&(from.to_string(), caller.clone()))
                            .unwrap_or(&Link::Up);
                        if back == Link::Up {
                            self.c(&caller).handle(
                                now,
                                Input::Reply {
                                    call,
                                    result: Ok(response),
                                },
                            );
                        }
                    }
                    None => {
                        self.checker.answered(from, req, now);
                        self.answers
                            .entry((from.to_string(), req))
                            .or_default()
                            .push((now, response))
                    }
                }
            }
            Output::Invoke {
                job,
                key,
                input,
                context,
                ..
            } => {
                self.checker.invoked(&context);
                let m = self.m(from);
                m.invoked.push((key.clone(), input.clone()));
                match m.handler.as_mut() {
                    Some(h) => {
                        let result = h(&key, input.as_ref());
                        m.c.handle(now, Input::Handled { job, result });
                    }
                    None => m.held.push((job, key, input)),
                }
            }
            Output::Cancel { job } => self.m(from).cancelled.push(job),
            Output::Abort { call, .. } => {
                // The callee cancels the request it took for this call, as a node does on a
                // `DispatchCancel` frame.
                let taken = self
                    .remote
                    .iter()
                    .find(|(_, (caller, c))| caller == from && *c == call)
                    .map(|((to, req), _)| (to.clone(), *req));
                self.m(from).aborted.push(call);
                if let Some((to, req)) = taken {
                    self.c(&to).handle(now, Input::Cancel { req });
                }
            }
            Output::Event(e) => self.m(from).events.push(e),
        }
    }

    fn deliver(&mut self, from: &str, to: &str, call: CallId, request: Request, deadline: Instant) {
        let req = self.next_req;
        self.next_req += 1;
        self.remote
            .insert((to.to_string(), req), (from.to_string(), call));
        let now = self.now;
        self.c(to).handle(
            now,
            Input::Request {
                req,
                deadline: Some(deadline),
                request,
            },
        );
    }

    /// Releases held network messages.
    fn flush(&mut self) {
        self.hold_network = false;
        for (from, to, call, request, deadline) in std::mem::take(&mut self.in_transit) {
            self.deliver(&from, &to, call, request, deadline);
        }
        self.pump();
    }

    /// Answers a held invocation at `id`.
    fn complete(&mut self, id: &str, result: Result<Option<Any>, String>) {
        let (job, _, _) = self.m(id).held.remove(0);
        self.input(id, Input::Handled { job, result });
    }
}

fn status(r: &Option<Status>) -> (i32, String) {
    let s = r.as_ref().expect("status present");
    (s.code, s.message.clone())
}

fn out_text(a: &Option<Any>) -> String {
    match decode_input(a.as_ref()).unwrap() {
        Value::Str(s) => String::from_utf8(s).unwrap(),
        v => panic!("not text: {v:?}"),
    }
}

fn connect_req(address: &str, ns: &[&str], collector_id: Option<&str>) -> ConnectRequest {
    let mut metadata = BTreeMap::new();
    if let Some(c) = collector_id {
        metadata.insert("collector_id".to_string(), c.to_string());
    }
    ConnectRequest {
        address: address.into(),
        namespaces: ns.iter().map(|s| s.to_string()).collect(),
        metadata,
    }
}

fn ns_methods(namespaces: &[&str]) -> Vec<MethodKey> {
    namespaces.iter().map(|n| key(n, "S", "M")).collect()
}

/// A (serving nothing) meshed with `servers`, each serving `ns` `S.M`.
fn caller_and_servers(servers: &[&str]) -> Net {
    let mut net = Net::new();
    net.add("A", vec![]);
    for id in servers {
        net.add(id, vec![key("ns", "S", "M")]);
    }
    net.mesh();
    net
}

// ------------------------------------------------------------------ Connection (C1-C6, P1, P2)

#[test]
fn c1_connect_shares_the_requester_ordered_intersection() {
    let mut net = Net::new();
    net.add("node2", ns_methods(&["namespace2", "namespace3"]));
    let r = net.connect(
        "node2",
        connect_req(&addr("node1"), &["namespace1", "namespace2"], Some("node1")),
    );
    assert_eq!(
        status(&r.status),
        (200, "Connected with 1 shared namespaces".into())
    );
    assert!(!r.connection_id.is_empty());
    assert_eq!(r.target_collector_id, "node2");
    assert_eq!(r.shared_namespaces, vec!["namespace2"]);
    let conns = net.c("node2").connections().to_vec();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].id, r.connection_id);
    assert_eq!(conns[0].shared_namespaces, vec!["namespace2"]);
    assert_eq!(conns[0].source_collector_id, "node1");
}

#[test]
fn c2_connect_to_lists_one_record_on_each_side() {
    let mut net = Net::new();
    net.add("node1", ns_methods(&["ns1"]));
    net.add("node2", ns_methods(&["ns1"]));
    net.connect_to("node1", "node2", &["ns1"]);
    assert_eq!(net.c("node1").connections().len(), 1);
    assert_eq!(net.c("node2").connections().len(), 1);
    let mine = &net.c("node1").connections()[0];
    assert_eq!(mine.target_collector_id, "node2");
    assert_eq!(
        mine.labels.get("initiator").map(String::as_str),
        Some("true")
    );
    assert!(net
        .m("node1")
        .events
        .iter()
        .any(|e| matches!(e, Event::Connected { peer, .. } if peer == "node2")));
}

#[test]
fn c3_a_hub_lists_one_record_per_anonymous_peer() {
    let mut net = Net::new();
    net.add("hub", ns_methods(&["ns1"]));
    for i in 0..3 {
        let r = net.connect("hub", connect_req(&format!("peer{i}:1"), &["ns1"], None));
        assert_eq!(status(&r.status).0, 200);
    }
    let conns = net.c("hub").connections().to_vec();
    assert_eq!(conns.len(), 3);
    assert!(conns.iter().all(|c| c.source_collector_id == "unknown"));
    let ids: BTreeSet<_> = conns.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), 3, "distinct connection ids");
}

#[test]
fn c4_intersection_counts() {
    let cases: [(&[&str], &[&str], usize); 4] = [
        (&["ns1", "ns2"], &["ns2", "ns3"], 1),
        (&["ns1", "ns2", "ns3"], &["ns2", "ns3", "ns4"], 2),
        (&["ns1"], &["ns2"], 0),
        (&["ns1", "ns2"], &["ns1", "ns2"], 2),
    ];
    for (theirs, ours, n) in cases {
        let mut net = Net::new();
        net.add("b", ns_methods(ours));
        let r = net.connect("b", connect_req("a:1", theirs, Some("a")));
        assert_eq!(
            status(&r.status),
            (200, format!("Connected with {n} shared namespaces"))
        );
        assert_eq!(r.shared_namespaces.len(), n);
    }
    // Requester order, duplicates kept (the collector's filter).
    let mut net = Net::new();
    net.add("b", ns_methods(&["x", "y"]));
    let r = net.connect("b", connect_req("a:1", &["y", "q", "x", "y"], Some("a")));
    assert_eq!(r.shared_namespaces, vec!["y", "x", "y"]);
}

#[test]
fn c5_empty_address_is_400() {
    let mut net = Net::new();
    net.add("b", ns_methods(&["ns1"]));
    let r = net.connect("b", connect_req("", &["ns1"], Some("a")));
    assert_eq!(status(&r.status), (400, "address is required".into()));
    assert!(r.connection_id.is_empty());
    assert!(net.c("b").connections().is_empty());
}

#[test]
fn c6_mutual_connect_gives_two_records_each() {
    let mut net = Net::new();
    net.add("a", ns_methods(&["ns1", "ns2"]));
    net.add("b", ns_methods(&["ns2", "ns3"]));
    net.connect_to("a", "b", &["ns1", "ns2"]);
    for id in ["a", "b"] {
        let c = net.c(id).connections().to_vec();
        assert_eq!(c.len(), 1, "{id}");
        assert_eq!(c[0].shared_namespaces, vec!["ns2"], "{id}");
    }
    net.connect_to("b", "a", &["ns2", "ns3"]);
    assert_eq!(net.c("a").connections().len(), 2);
    assert_eq!(net.c("b").connections().len(), 2);
}

#[test]
fn p1_outbound_connect_sends_our_id_and_address() {
    let mut c = Collector::new(Config::new("a", "a:1", 1), vec![]);
    c.handle(
        0,
        Input::ConnectTo {
            address: "b:1".into(),
            namespaces: vec!["ns".into()],
        },
    );
    match c.poll_output() {
        Some(Output::Send {
            address,
            request: Request::Connect(r),
            ..
        }) => {
            assert_eq!(address, "b:1");
            assert_eq!(r.address, "a:1");
            assert_eq!(r.namespaces, vec!["ns"]);
            assert_eq!(
                r.metadata.get("collector_id").map(String::as_str),
                Some("a")
            );
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn connect_failures_store_nothing() {
    let mut net = Net::new();
    net.add("a", ns_methods(&["ns1"]));
    net.add("b", ns_methods(&["ns1"]));
    net.link("a", "b", Link::Refuse);
    net.connect_to("a", "b", &["ns1"]);
    assert!(net.c("a").connections().is_empty());
    assert!(net.m("a").events.iter().any(
        |e| matches!(e, Event::ConnectFailed { error, .. } if error == "connect failed: connection refused")
    ));
    // A non-200 reply: the remote says so, we store nothing.
    net.link("a", "b", Link::Up);
    let mut c = Collector::new(Config::new("a", "a:1", 1), vec![]);
    c.handle(
        0,
        Input::ConnectTo {
            address: "b:1".into(),
            namespaces: vec![],
        },
    );
    let Some(Output::Send { call, .. }) = c.poll_output() else {
        panic!()
    };
    let bad = ConnectResponse {
        status: Some(Status::new(400, "address is required")),
        ..Default::default()
    };
    c.handle(
        1,
        Input::Reply {
            call,
            result: Ok(Response::Connect(bad)),
        },
    );
    assert!(c.connections().is_empty());
    assert_eq!(
        c.poll_output(),
        Some(Output::Event(Event::ConnectFailed {
            address: "b:1".into(),
            error: "connect failed: address is required".into()
        }))
    );
}

// ------------------------------------------------------------------ Serve (S1-S4, P3)

#[test]
fn s1_serve_runs_the_handler_and_names_the_executor() {
    let mut net = Net::new();
    net.add("n1", vec![key("test", "TestService", "Echo")]);
    let r = net.serve("n1", serve_req("test", "TestService", "Echo"));
    assert_eq!(status(&r.status), (200, "OK".into()));
    assert_eq!(r.executor_id, "n1");
    assert_eq!(out_text(&r.output), "n1:TestService.Echo");
}

#[test]
fn s2_serve_rejects_with_exact_codes_and_messages() {
    let mut net = Net::new();
    net.add("n1", vec![key("test", "TestService", "Echo")]);
    let mut no_service = serve_req("test", "x", "Echo");
    no_service.service = None;
    let cases = vec![
        (
            serve_req("", "TestService", "Echo"),
            400,
            "namespace is required".to_string(),
        ),
        (no_service, 400, "service is required".into()),
        (
            serve_req("test", "", "Echo"),
            400,
            "service is required".into(),
        ),
        (
            serve_req("test", "TestService", ""),
            400,
            "method_name is required".into(),
        ),
        (
            serve_req("nonexistent", "TestService", "Echo"),
            404,
            "namespace 'nonexistent' not found".into(),
        ),
        (
            serve_req("test", "TestService", "NonexistentMethod"),
            404,
            "method 'TestService.NonexistentMethod' not found in namespace 'test'".into(),
        ),
    ];
    for (req, code, msg) in cases {
        let r = net.serve("n1", req.clone());
        assert_eq!(status(&r.status), (code, msg), "{req:?}");
        assert!(r.executor_id.is_empty(), "executor only on success");
        assert!(r.output.is_none());
    }
    assert!(net.m("n1").invoked.is_empty(), "no handler ran");
}

#[test]
fn s2_check_order_namespace_before_service_before_method() {
    let mut net = Net::new();
    net.add("n1", vec![]);
    let mut all_empty = serve_req("", "", "");
    all_empty.service = None;
    assert_eq!(
        status(&net.serve("n1", all_empty).status).1,
        "namespace is required"
    );
    assert_eq!(
        status(&net.serve("n1", serve_req("x", "", "")).status).1,
        "service is required"
    );
}

#[test]
fn s3_handler_error_is_500_with_its_text() {
    let mut net = Net::new();
    net.add("n1", vec![key("test", "S", "Fail")]);
    net.m("n1").handler = Some(Box::new(|_, _| Err("boom: disk full".into())));
    let r = net.serve("n1", serve_req("test", "S", "Fail"));
    assert_eq!(
        status(&r.status),
        (500, "handler error: boom: disk full".into())
    );
    assert!(r.executor_id.is_empty());
}

#[test]
fn s4_two_services_with_one_method_name_are_distinct() {
    let mut net = Net::new();
    net.add(
        "n1",
        vec![
            key("test", "ServiceA", "Method1"),
            key("test", "ServiceB", "Method1"),
        ],
    );
    let a = net.serve("n1", serve_req("test", "ServiceA", "Method1"));
    let b = net.serve("n1", serve_req("test", "ServiceB", "Method1"));
    assert_eq!(status(&a.status).0, 200);
    assert_eq!(status(&b.status).0, 200);
    assert_ne!(out_text(&a.output), out_text(&b.output));
}

#[test]
fn method_keys_do_not_collide_on_dots() {
    let mut net = Net::new();
    net.add("n1", vec![key("t", "a.b", "c")]);
    let r = net.serve("n1", serve_req("t", "a", "b.c"));
    assert_eq!(status(&r.status).0, 404, "('a','b.c') is not ('a.b','c')");
}

#[test]
fn serve_passes_input_and_context_to_the_handler() {
    let mut c = Collector::new(Config::new("n1", "n1:1", 1), vec![key("t", "S", "M")]);
    let mut req = serve_req("t", "S", "M");
    req.input = Some(text("hello"));
    req.execution_context
        .insert("traceparent".into(), "00-abc-def-01".into());
    c.handle(
        5,
        Input::Request {
            req: 9,
            deadline: Some(100),
            request: Request::Serve(req),
        },
    );
    match c.poll_output() {
        Some(Output::Invoke {
            key: k,
            input,
            context,
            deadline,
            ..
        }) => {
            assert_eq!(k, key("t", "S", "M"));
            assert_eq!(input, Some(text("hello")));
            assert_eq!(
                context.get("traceparent").map(String::as_str),
                Some("00-abc-def-01")
            );
            assert_eq!(deadline, 100);
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(c.pending(), 1);
}

// ------------------------------------------------------------------ Registry validation

fn counting_validator(
    allowed: &'static [(&'static str, &'static str, &'static str)],
) -> (Validator, Rc<Cell<u32>>) {
    let calls = Rc::new(Cell::new(0));
    let c2 = calls.clone();
    let v: Validator = Box::new(move |ns, s, m| {
        c2.set(c2.get() + 1);
        if allowed.contains(&(ns, s, m)) {
            Ok(())
        } else {
            Err("service not registered".into())
        }
    });
    (v, calls)
}

#[test]
fn validator_runs_exactly_once_per_serve() {
    let allowed: &'static [(&str, &str, &str)] = &[("prod", "S", "M")];
    let mut net = Net::new();
    net.add(
        "n1",
        vec![
            key("prod", "S", "M"),
            key("prod", "S", "Unregistered"),
            key("other", "S", "M"),
        ],
    );
    let (v, calls) = counting_validator(allowed);
    net.c("n1").set_validator(Some(v));
    // registered and handled
    assert_eq!(
        status(&net.serve("n1", serve_req("prod", "S", "M")).status).0,
        200
    );
    assert_eq!(calls.get(), 1);
    // unregistered method that exists locally: rejected before lookup
    let r = net.serve("n1", serve_req("prod", "S", "Unregistered"));
    assert_eq!(
        status(&r.status),
        (
            404,
            "service not registered in registry: service not registered".into()
        )
    );
    assert_eq!(calls.get(), 2);
    // wrong namespace
    assert_ne!(
        status(&net.serve("n1", serve_req("other", "S", "M")).status).0,
        200
    );
    assert_eq!(calls.get(), 3);
    // 400s stop before the validator
    net.serve("n1", serve_req("", "S", "M"));
    assert_eq!(calls.get(), 3);
    // a locally auto-routed Dispatch is validated too
    assert_eq!(
        status(&net.dispatch("n1", dispatch_req("prod", "S", "M")).status).0,
        200
    );
    assert_eq!(calls.get(), 4);
}

#[test]
fn validator_is_optional_and_can_be_set_later() {
    let allowed: &'static [(&str, &str, &str)] = &[("prod", "S", "M")];
    let mut net = Net::new();
    net.add("n1", vec![key("prod", "S", "M"), key("prod", "S", "X")]);
    assert_eq!(
        status(&net.serve("n1", serve_req("prod", "S", "X")).status).0,
        200
    );
    let (v, _) = counting_validator(allowed);
    net.c("n1").set_validator(Some(v));
    assert_eq!(
        status(&net.serve("n1", serve_req("prod", "S", "M")).status).0,
        200
    );
    assert_ne!(
        status(&net.serve("n1", serve_req("prod", "S", "X")).status).0,
        200
    );
}

// ------------------------------------------------------------------ Dispatch (D1-D6, P4, P5)

fn ab_connected() -> Net {
    let mut net = Net::new();
    net.add("A", vec![]);
    net.add("B", vec![key("orders", "OrderService", "Create")]);
    net.connect_to("A", "B", &["orders"]);
    net
}

#[test]
fn d1_target_dispatch_runs_on_the_target() {
    let mut net = ab_connected();
    let mut r = dispatch_req("orders", "OrderService", "Create");
    r.target_collector_id = "B".into();
    let resp = net.dispatch("A", r);
    assert_eq!(status(&resp.status), (200, "OK".into()));
    assert_eq!(resp.handled_by_collector_id, "B");
    assert_eq!(out_text(&resp.output), "B:OrderService.Create");
}

#[test]
fn d2_auto_route_prefers_local() {
    let mut net = ab_connected();
    net.c("A")
        .set_methods(vec![key("orders", "OrderService", "Create")]);
    let resp = net.dispatch("A", dispatch_req("orders", "OrderService", "Create"));
    assert_eq!(resp.handled_by_collector_id, "A");
    assert!(net.m("B").invoked.is_empty());
}

#[test]
fn d3_auto_route_reaches_the_remote_server() {
    let mut net = ab_connected();
    let resp = net.dispatch("A", dispatch_req("orders", "OrderService", "Create"));
    assert_eq!(status(&resp.status), (200, "OK".into()));
    assert_eq!(resp.handled_by_collector_id, "B");
    assert!(net.m("A").events.iter().any(|e| matches!(
        e,
        Event::Handled { handled_by, code: 200, rpc: "Dispatch", attempts: 1, .. } if handled_by == "B"
    )));
}

#[test]
fn d4_dispatch_400s() {
    let mut net = ab_connected();
    let mut no_service = dispatch_req("orders", "S", "M");
    no_service.service = None;
    for (r, msg) in [
        (dispatch_req("", "S", "M"), "namespace is required"),
        (no_service, "service is required"),
        (dispatch_req("orders", "", "M"), "service is required"),
        (dispatch_req("orders", "S", ""), "method_name is required"),
    ] {
        assert_eq!(status(&net.dispatch("A", r).status), (400, msg.into()));
    }
}

#[test]
fn d5_unknown_target_is_404() {
    let mut net = Net::new();
    net.add("A", vec![]);
    let mut r = dispatch_req("ns", "S", "M");
    r.target_collector_id = "nonexistent".into();
    let resp = net.dispatch("A", r);
    assert_eq!(
        status(&resp.status),
        (404, "no connection to collector 'nonexistent'".into())
    );
    assert!(resp.handled_by_collector_id.is_empty());
}

#[test]
fn d6_unknown_namespace_is_404() {
    let mut net = Net::new();
    net.add("A", vec![]);
    let resp = net.dispatch("A", dispatch_req("unknown", "S", "M"));
    assert_eq!(
        status(&resp.status),
        (404, "no collector found for namespace 'unknown'".into())
    );
}

#[test]
fn p4_local_failure_does_not_fall_back() {
    let mut net = ab_connected();
    net.c("A")
        .set_methods(vec![key("orders", "OrderService", "Create")]);
    net.m("A").handler = Some(Box::new(|_, _| Err("local broke".into())));
    let resp = net.dispatch("A", dispatch_req("orders", "OrderService", "Create"));
    assert_eq!(
        status(&resp.status),
        (500, "handler error: local broke".into())
    );
    assert!(net.m("B").invoked.is_empty());
}

#[test]
fn p4_target_dispatch_returns_the_remote_status_verbatim() {
    let mut net = ab_connected();
    let mut r = dispatch_req("orders", "OrderService", "Missing");
    r.target_collector_id = "B".into();
    let resp = net.dispatch("A", r);
    assert_eq!(
        status(&resp.status),
        (
            404,
            "method 'OrderService.Missing' not found in namespace 'orders'".into()
        )
    );
    assert!(resp.handled_by_collector_id.is_empty());
}

#[test]
fn p5_transport_failure_on_target_dispatch_is_500() {
    let mut net = ab_connected();
    net.link("A", "B", Link::Refuse);
    let mut r = dispatch_req("orders", "OrderService", "Create");
    r.target_collector_id = "B".into();
    let resp = net.dispatch("A", r);
    assert_eq!(
        status(&resp.status),
        (500, "serve RPC failed: connection refused".into())
    );
}

#[test]
fn p5_a_target_that_never_answers_fails_at_the_attempt_timeout() {
    let mut net = ab_connected();
    net.link("A", "B", Link::Drop);
    let mut r = dispatch_req("orders", "OrderService", "Create");
    r.target_collector_id = "B".into();
    let req = net.ask("A", None, Request::Dispatch(r));
    assert!(net.answer("A", req).is_none());
    let t0 = net.now;
    assert_eq!(net.c("A").poll_timeout(), Some(t0 + 2_000 * MS));
    net.advance(2_000 * MS);
    let d = net.dispatched("A", req);
    assert_eq!(
        status(&d.status),
        (500, "serve RPC failed: deadline exceeded".into())
    );
}

#[test]
fn p6_a_peer_reply_without_status_is_an_error_not_a_crash() {
    let mut c = Collector::new(Config::new("A", "A:1", 1), vec![]);
    c.handle(0, peer_up("B", "B:1", &["ns"], 1));
    let mut r = dispatch_req("ns", "S", "M");
    r.routing_hints.insert("idempotent".into(), "true".into());
    c.handle(
        0,
        Input::Request {
            req: 1,
            deadline: None,
            request: Request::Dispatch(r),
        },
    );
    let Some(Output::Send { call, .. }) = c.poll_output() else {
        panic!()
    };
    c.handle(
        1,
        Input::Reply {
            call,
            result: Ok(Response::Serve(ServeResponse::default())),
        },
    );
    let resp = loop {
        match c.poll_output() {
            Some(Output::Respond {
                response: Response::Dispatch(d),
                ..
            }) => break d,
            Some(_) => {}
            None => panic!("no answer"),
        }
    };
    let s = resp.status.unwrap();
    assert_eq!(s.code, 404);
    assert_eq!(
        s.details.get("last_error").map(String::as_str),
        Some("reply carries no status")
    );
}

// ------------------------------------------------------------------ Hardening (H1-H9)

#[test]
fn h1_the_acceptor_routes_back_to_the_initiator() {
    let mut net = Net::new();
    net.add("A", vec![key("users", "U", "Get")]);
    net.add("B", vec![]);
    net.connect_to("A", "B", &["users"]);
    let resp = net.dispatch("B", dispatch_req("users", "U", "Get"));
    assert_eq!(status(&resp.status).0, 200);
    assert_eq!(resp.handled_by_collector_id, "A");
    let mut r = dispatch_req("users", "U", "Get");
    r.target_collector_id = "A".into();
    assert_eq!(net.dispatch("B", r).handled_by_collector_id, "A");
}

#[test]
fn h2_own_id_runs_locally_and_unknown_matches_no_one() {
    let mut net = Net::new();
    net.add("A", vec![key("ns", "S", "M")]);
    net.add("B", vec![key("ns", "S", "M")]);
    net.mesh();
    let mut r = dispatch_req("ns", "S", "M");
    r.target_collector_id = "A".into();
    assert_eq!(net.dispatch("A", r).handled_by_collector_id, "A");
    assert!(net.m("B").invoked.is_empty());
    // An anonymous initiator does not make "unknown" a target.
    net.connect("A", connect_req("anon:1", &["ns"], None));
    let mut r = dispatch_req("ns", "S", "M");
    r.target_collector_id = "unknown".into();
    assert_eq!(
        status(&net.dispatch("A", r).status).1,
        "no connection to collector 'unknown'"
    );
}

#[test]
fn h3_duplicate_connect_replaces_and_self_connect_is_rejected() {
    let mut net = Net::new();
    net.add("B", ns_methods(&["ns"]));
    let first = net.connect("B", connect_req("a:1", &["ns"], Some("a")));
    let second = net.connect("B", connect_req("a:1", &["ns"], Some("a")));
    assert_ne!(first.connection_id, second.connection_id);
    let conns = net.c("B").connections().to_vec();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].id, second.connection_id);
    // A new address for the same id is another link.
    net.connect("B", connect_req("a:2", &["ns"], Some("a")));
    assert_eq!(net.c("B").connections().len(), 2);
    for r in [
        connect_req("x:1", &["ns"], Some("B")),
        connect_req(&addr("B"), &["ns"], None),
    ] {
        let resp = net.connect("B", r);
        assert_eq!(status(&resp.status), (400, "cannot connect to self".into()));
    }
    assert_eq!(net.c("B").connections().len(), 2);
}

fn three_servers(seed: u64) -> Net {
    let mut net = Net::new();
    net.add_cfg(Config::new("A", &addr("A"), seed), vec![]);
    for id in ["B", "C", "D"] {
        net.add(id, vec![key("ns", "S", "M")]);
    }
    net.mesh();
    net
}

fn handled_by_counts(net: &mut Net, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = net.dispatch("A", dispatch_req("ns", "S", "M"));
        assert_eq!(status(&r.status).0, 200);
        *seen.entry(r.handled_by_collector_id).or_insert(0) += 1;
    }
    seen
}

#[test]
fn h4_candidate_choice_is_a_function_of_the_seed() {
    let a = handled_by_counts(&mut three_servers(11), 60);
    let b = handled_by_counts(&mut three_servers(11), 60);
    assert_eq!(a, b, "same seed, same choices");
    // Replies take no time here, so a chosen peer's EWMA drops and P2C keeps it while it
    // wins its pairs; every peer still gets drawn into pairs.
    assert!(a.len() >= 2, "{a:?}");
    let runs: BTreeSet<Vec<(String, usize)>> = (0..8)
        .map(|s| {
            handled_by_counts(&mut three_servers(s), 30)
                .into_iter()
                .collect()
        })
        .collect();
    assert!(runs.len() > 1, "different seeds choose differently");
}

#[test]
fn p2c_prefers_the_less_loaded_peer() {
    let mut net = three_servers(3);
    // B and C hold every call open; D answers at once. P2C picks D whenever D is one of the two
    // choices and the pair (B, C) otherwise: about 2/3 of calls, against 1/3 for a uniform pick.
    net.m("B").handler = None;
    net.m("C").handler = None;
    for _ in 0..4 {
        net.ask("A", None, Request::Dispatch(dispatch_req("ns", "S", "M")));
    }
    let d_before = net.m("D").invoked.len();
    for _ in 0..60 {
        net.ask("A", None, Request::Dispatch(dispatch_req("ns", "S", "M")));
    }
    let d_runs = net.m("D").invoked.len() - d_before;
    assert!(d_runs >= 32, "D took {d_runs} of 60");
}

#[test]
fn h5_a_silent_peer_costs_one_attempt_timeout_then_the_next_is_tried() {
    let mut net = caller_and_servers(&["B", "C"]);
    net.link("A", "B", Link::Drop);
    net.link("A", "C", Link::Drop);
    let mut r = dispatch_req("ns", "S", "M");
    r.routing_hints.insert("idempotent".into(), "true".into());
    let t0 = net.now;
    let req = net.ask("A", Some(t0 + 10_000 * MS), Request::Dispatch(r));
    net.advance(2_000 * MS - 1);
    assert!(net.answer("A", req).is_none());
    net.advance(1);
    assert!(net.answer("A", req).is_none(), "second candidate now");
    net.advance(2_000 * MS);
    let d = net.dispatched("A", req);
    let s = d.status.unwrap();
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "no collector found for namespace 'ns'")
    );
    assert_eq!(
        s.details.get("last_error").map(String::as_str),
        Some("deadline exceeded")
    );
    assert_eq!(s.details.get("attempts").map(String::as_str), Some("2"));
    assert!(s.details.contains_key("last_peer"));
    assert_eq!(net.now - t0, 4_000 * MS, "two attempt timeouts, no more");
}

#[test]
fn h5_a_refused_dial_moves_on_even_when_not_idempotent() {
    let mut net = caller_and_servers(&["B", "C"]);
    net.link("A", "B", Link::Refuse);
    for _ in 0..5 {
        let r = net.dispatch("A", dispatch_req("ns", "S", "M"));
        assert_eq!(r.handled_by_collector_id, "C");
    }
}

#[test]
fn h5_a_remote_404_moves_on_and_a_remote_500_is_not_masked() {
    let mut net = Net::new();
    net.add("A", vec![]);
    net.add("B", vec![key("ns", "Other", "M")]);
    net.add("C", vec![key("ns", "S", "M")]);
    net.mesh();
    for _ in 0..4 {
        assert_eq!(
            net.dispatch("A", dispatch_req("ns", "S", "M"))
                .handled_by_collector_id,
            "C"
        );
    }
    net.m("C").handler = Some(Box::new(|_, _| Err("db down".into())));
    let r = net.dispatch("A", dispatch_req("ns", "S", "M"));
    assert_eq!(status(&r.status), (500, "handler error: db down".into()));
    assert_eq!(net.m("C").invoked.len(), 5, "ran once, not retried");
}

#[test]
fn h6_a_hundred_interleaved_dispatches_are_each_answered_once_correctly() {
    let mut net = Net::new();
    net.add("A", vec![key("local", "S", "M")]);
    net.add("B", vec![key("remote", "S", "M")]);
    net.mesh();
    net.hold_network = true;
    let mut reqs = Vec::new();
    for i in 0..100 {
        let ns = if i % 2 == 0 { "local" } else { "remote" };
        let mut r = dispatch_req(ns, "S", "M");
        r.input = Some(text(&format!("call {i}")));
        reqs.push((ns, net.ask("A", None, Request::Dispatch(r))));
    }
    // Connects in between get distinct ids.
    let c1 = net.connect("A", connect_req("x:1", &[], Some("x")));
    let c2 = net.connect("A", connect_req("y:1", &[], Some("y")));
    assert_ne!(c1.connection_id, c2.connection_id);
    // Registry changes while requests run.
    net.c("A")
        .set_methods(vec![key("local", "S", "M"), key("extra", "S", "M")]);
    net.flush();
    for (ns, req) in reqs {
        let d = net.dispatched("A", req);
        assert_eq!(status(&d.status).0, 200);
        assert_eq!(
            d.handled_by_collector_id,
            if ns == "local" { "A" } else { "B" }
        );
    }
    assert_eq!(net.c("A").pending(), 0);
}

#[test]
fn h7_partition_falls_through_and_heals() {
    let mut net = caller_and_servers(&["B"]);
    net.link("A", "B", Link::Drop);
    // Not idempotent, sent and lost: one attempt, then an honest 500 (no blind retry).
    let t0 = net.now;
    let req = net.ask("A", None, Request::Dispatch(dispatch_req("ns", "S", "M")));
    net.advance(2_000 * MS);
    let d = net.dispatched("A", req);
    let s = d.status.unwrap();
    assert_eq!(
        (s.code, s.message.as_str()),
        (500, "serve RPC failed: deadline exceeded")
    );
    assert_eq!(s.details.get("peer").map(String::as_str), Some("B"));
    assert_eq!(net.now - t0, 2_000 * MS);
    // With C serving too, an idempotent call falls through to C within the attempt timeout.
    net.add("C", vec![key("ns", "S", "M")]);
    net.mesh();
    let mut r = dispatch_req("ns", "S", "M");
    r.routing_hints.insert("idempotent".into(), "true".into());
    let req = net.ask("A", None, Request::Dispatch(r));
    if net.answer("A", req).is_none() {
        net.advance(2_000 * MS);
    }
    let d = net.dispatched("A", req);
    assert_eq!(d.handled_by_collector_id, "C");
    // Heal: B serves again.
    net.link("A", "B", Link::Up);
    net.c("C").set_methods(vec![]);
    net.input(
        "A",
        Input::PeerNamespaces {
            id: "C".into(),
            namespaces: vec![],
            version: 2,
        },
    );
    let r = net.dispatch("A", dispatch_req("ns", "S", "M"));
    assert_eq!(r.handled_by_collector_id, "B");
}

#[test]
fn h7_a_reply_lost_after_execution_is_not_retried() {
    let mut net = caller_and_servers(&["B", "C"]);
    // Requests arrive; replies from B and C are lost.
    net.link("B", "A", Link::Drop);
    net.link("C", "A", Link::Drop);
    let req = net.ask("A", None, Request::Dispatch(dispatch_req("ns", "S", "M")));
    net.advance(2_000 * MS);
    let d = net.dispatched("A", req);
    assert_eq!(status(&d.status).0, 500);
    let runs = net.m("B").invoked.len() + net.m("C").invoked.len();
    assert_eq!(runs, 1, "executed once");
    // Marked idempotent: the retry is allowed.
    let mut r = dispatch_req("ns", "S", "M");
    r.routing_hints.insert("idempotent".into(), "true".into());
    net.ask("A", None, Request::Dispatch(r));
    net.advance(2_000 * MS);
    net.advance(2_000 * MS);
    let runs = net.m("B").invoked.len() + net.m("C").invoked.len();
    assert_eq!(runs, 3);
}

#[test]
fn h8_multi_hop_reaches_c_and_a_cycle_terminates() {
    let mut net = Net::new();
    for id in ["A", "B"] {
        let mut cfg = Config::new(id, &addr(id), 1);
        cfg.forward = Forward::Dispatch;
        net.add_cfg(cfg, vec![]);
    }
    net.add("C", vec![key("ns", "S", "M")]);
    // A knows only B (as routing ns); B knows C.
    net.input("A", peer_up("B", &addr("B"), &["ns"], 1));
    net.input("B", peer_up("C", &addr("C"), &["ns"], 1));
    let r = net.dispatch("A", dispatch_req("ns", "S", "M"));
    assert_eq!(status(&r.status).0, 200);
    assert_eq!(r.handled_by_collector_id, "C");
    // Cycle: A and B each think the other routes "loop".
    net.input("A", peer_up("B", &addr("B"), &["loop"], 2));
    net.input("B", peer_up("A", &addr("A"), &["loop"], 1));
    let r = net.dispatch("A", dispatch_req("loop", "S", "M"));
    assert_eq!(
        status(&r.status),
        (404, "no collector found for namespace 'loop'".into())
    );
    assert_eq!(net.c("A").pending() + net.c("B").pending(), 0);
}

#[test]
fn h8_hop_limit_bounds_a_chain() {
    let mut net = Net::new();
    let chain = ["N0", "N1", "N2", "N3", "N4", "N5"];
    for id in chain {
        let mut cfg = Config::new(id, &addr(id), 1);
        cfg.forward = Forward::Dispatch;
        cfg.max_hops = 3;
        net.add_cfg(cfg, vec![]);
    }
    net.c("N5").set_methods(vec![key("ns", "S", "M")]);
    for w in chain.windows(2) {
        net.input(w[0], peer_up(w[1], &addr(w[1]), &["ns"], 1));
    }
    let r = net.dispatch("N0", dispatch_req("ns", "S", "M"));
    assert_eq!(status(&r.status).0, 404, "five hops needed, three allowed");
    assert!(net.m("N5").invoked.is_empty());
    let r = net.dispatch("N2", dispatch_req("ns", "S", "M"));
    assert_eq!(r.handled_by_collector_id, "N5", "three hops are fine");
}

#[test]
fn h9_no_output_is_500_never_a_crash() {
    let mut net = Net::new();
    net.add("A", vec![key("ns", "S", "M")]);
    net.m("A").handler = Some(Box::new(|_, _| Ok(None)));
    let r = net.serve("A", serve_req("ns", "S", "M"));
    assert_eq!(
        status(&r.status),
        (500, "handler error: handler returned no output".into())
    );
}

// ------------------------------------------------------------------ breaker, updates, deadlines

#[test]
fn breaker_ejects_after_consecutive_failures_then_probes() {
    let mut cfg = Config::new("A", &addr("A"), 1);
    cfg.health.eject_after_failures = 2;
    let mut net = Net::new();
    net.add_cfg(cfg, vec![]);
    net.add("B", vec![key("ns", "S", "M")]);
    net.mesh();
    net.link("A", "B", Link::Refuse);
    for _ in 0..2 {
        net.dispatch("A", dispatch_req("ns", "S", "M"));
    }
    let until = match net
        .m("A")
        .events
        .iter()
        .find(|e| matches!(e, Event::PeerEjected { .. }))
    {
        Some(Event::PeerEjected { until, .. }) => *until,
        _ => panic!("not ejected"),
    };
    assert_eq!(until, net.now + 1_000 * MS);
    // Ejected: not even tried.
    net.link("A", "B", Link::Up);
    let r = net.dispatch("A", dispatch_req("ns", "S", "M"));
    assert_eq!(status(&r.status).0, 404);
    assert!(net.m("B").invoked.is_empty());
    // After the ejection a probe goes through and restores B.
    net.advance(1_000 * MS);
    assert_eq!(
        net.dispatch("A", dispatch_req("ns", "S", "M"))
            .handled_by_collector_id,
        "B"
    );
    assert!(net
        .m("A")
        .events
        .iter()
        .any(|e| matches!(e, Event::PeerRestored { peer } if peer == "B")));
}

#[test]
fn breaker_backoff_doubles_and_is_capped() {
    let h = Health {
        eject_after_failures: 1,
        eject_base_ns: 10,
        eject_max_ns: 35,
        initial_latency_ns: 1,
    };
    let mut p = Peer::new("B", "b", crate::dispatch::peers::Source::Membership, &h);
    let mut now = 0;
    let mut lengths = Vec::new();
    assert!(p.available(now));
    p.start();
    for i in 0..4 {
        match p.failure(now, &h) {
            Transition::Ejected { until } => {
                lengths.push(until - now);
                assert!(!p.available(until - 1));
                now = until;
            }
            t => panic!("{t:?}"),
        }
        assert!(p.available(now), "half-open after the ejection");
        p.start();
        assert!(!p.available(now), "one probe at a time");
        if i == 3 {
            break;
        }
    }
    assert_eq!(lengths, vec![10, 20, 35, 35]);
    assert_eq!(p.success(5), Transition::Restored);
    assert!(p.available(now));
}

#[test]
fn namespace_updates_are_announced_and_stale_ones_ignored() {
    let mut c = Collector::new(Config::new("A", "A:1", 1), vec![key("a", "S", "M")]);
    assert_eq!(c.namespaces(), vec!["a"]);
    c.set_methods(vec![key("a", "S", "M"), key("a", "S", "N")]);
    assert_eq!(
        c.poll_output(),
        None,
        "same namespaces: nothing to announce"
    );
    c.set_methods(vec![key("b", "S", "M")]);
    assert_eq!(
        c.poll_output(),
        Some(Output::Event(Event::NamespacesChanged {
            namespaces: vec!["b".into()],
            version: 2
        }))
    );
    c.handle(0, peer_up("B", "B:1", &["x"], 5));
    c.handle(
        0,
        Input::PeerNamespaces {
            id: "B".into(),
            namespaces: vec!["old".into()],
            version: 4,
        },
    );
    assert!(c.peer("B").unwrap().namespaces.contains("x"));
    c.handle(
        0,
        Input::PeerNamespaces {
            id: "B".into(),
            namespaces: vec!["y".into()],
            version: 6,
        },
    );
    assert!(c.peer("B").unwrap().namespaces.contains("y"));
    assert!(!c.peer("B").unwrap().namespaces.contains("x"));
}

#[test]
fn a_restarted_peer_is_taken_as_it_announces_itself() {
    let mut cfg = Config::new("A", "A:1", 1);
    cfg.health.eject_after_failures = 1;
    let mut c = Collector::new(cfg, vec![]);
    c.handle(0, peer_up("B", "B:1", &["old"], 5));
    // One lost call ejects B.
    c.handle(
        0,
        Input::Request {
            req: 1,
            deadline: None,
            request: Request::Dispatch(dispatch_req("old", "S", "M")),
        },
    );
    let Some(Output::Send { call, .. }) = c.poll_output() else {
        panic!()
    };
    c.handle(
        1,
        Input::Reply {
            call,
            result: Err(TransportError::lost("reset")),
        },
    );
    assert!(matches!(c.peer("B").unwrap().breaker, Breaker::Open { .. }));
    // B restarts: its namespace version starts again at 1, and it is routable at once.
    c.handle(2, Input::PeerDown { id: "B".into() });
    c.handle(3, peer_up("B", "B:1", &["new"], 1));
    let b = c.peer("B").unwrap();
    assert_eq!(b.namespaces.iter().collect::<Vec<_>>(), vec!["new"]);
    assert_eq!(b.breaker, Breaker::Closed { failures: 0 });
    c.handle(
        3,
        Input::PeerNamespaces {
            id: "B".into(),
            namespaces: vec!["newer".into()],
            version: 2,
        },
    );
    assert!(c.peer("B").unwrap().namespaces.contains("newer"));
}

#[test]
fn a_registry_change_reroutes_at_once() {
    let mut net = caller_and_servers(&["B"]);
    assert_eq!(
        net.dispatch("A", dispatch_req("ns", "S", "M"))
            .handled_by_collector_id,
        "B"
    );
    net.c("A").set_methods(vec![key("ns", "S", "M")]);
    assert_eq!(
        net.dispatch("A", dispatch_req("ns", "S", "M"))
            .handled_by_collector_id,
        "A"
    );
}

#[test]
fn a_slow_local_handler_is_answered_at_the_deadline_and_cancelled() {
    let mut net = Net::new();
    net.add("A", vec![key("ns", "S", "M")]);
    net.m("A").handler = None;
    let t0 = net.now;
    let req = net.ask(
        "A",
        Some(t0 + 50 * MS),
        Request::Serve(serve_req("ns", "S", "M")),
    );
    assert_eq!(net.c("A").poll_timeout(), Some(t0 + 50 * MS));
    net.advance(50 * MS);
    let Some(Response::Serve(s)) = net.answer("A", req).cloned() else {
        panic!()
    };
    assert_eq!(
        status(&s.status),
        (500, "handler error: deadline exceeded".into())
    );
    assert_eq!(net.m("A").cancelled.len(), 1);
    // The late result is dropped, not answered twice.
    net.complete("A", Ok(Some(text("late"))));
    assert_eq!(net.answers[&("A".to_string(), req)].len(), 1);
    assert_eq!(net.c("A").stats().late_results, 1);
}

/// The collector wakes at the earliest deadline it holds. When that request was answered
/// first, the wake-up finds nothing late and the next deadline still fails its request on time.
#[test]
fn a_deadline_after_an_answered_one_still_fails_on_time() {
    let mut net = Net::new();
    net.add("A", vec![key("ns", "S", "M")]);
    net.m("A").handler = None;
    let t0 = net.now;
    let serve = || Request::Serve(serve_req("ns", "S", "M"));
    let first = net.ask("A", Some(t0 + 10 * MS), serve());
    let second = net.ask("A", Some(t0 + 30 * MS), serve());
    net.complete("A", Ok(Some(text("done"))));
    assert!(net.answer("A", first).is_some());
    net.advance(20 * MS);
    assert!(net.answer("A", second).is_none(), "not late yet");
    assert_eq!(net.c("A").poll_timeout(), Some(t0 + 30 * MS));
    net.advance(10 * MS);
    let Some(Response::Serve(s)) = net.answer("A", second).cloned() else {
        panic!("answered at its deadline")
    };
    assert_eq!(
        status(&s.status),
        (500, "handler error: deadline exceeded".into())
    );
    assert_eq!(net.c("A").poll_timeout(), None, "nothing left to wait for");
}

#[test]
fn a_peer_going_down_fails_its_calls_at_once() {
    let mut net = caller_and_servers(&["B"]);
    net.m("B").handler = None;
    let req = net.ask("A", None, Request::Dispatch(dispatch_req("ns", "S", "M")));
    net.input("A", Input::PeerDown { id: "B".into() });
    let d = net.dispatched("A", req);
    assert_eq!(
        status(&d.status),
        (500, "serve RPC failed: collector 'B' went down".into())
    );
    let r = net.dispatch("A", dispatch_req("ns", "S", "M"));
    assert_eq!(status(&r.status).0, 404, "a down peer is no candidate");
    let mut r = dispatch_req("ns", "S", "M");
    r.target_collector_id = "B".into();
    assert_eq!(
        status(&net.dispatch("A", r).status),
        (500, "serve RPC failed: collector 'B' is down".into())
    );
}

#[test]
fn traceparent_travels_with_the_forwarded_call() {
    let mut a = Collector::new(Config::new("A", "A:1", 1), vec![]);
    let mut b = Collector::new(
        Config::new("B", "B:1", 1),
        vec![key("orders", "O", "Create")],
    );
    a.handle(0, peer_up("B", "B:1", &["orders"], 1));
    let mut r = dispatch_req("orders", "O", "Create");
    r.routing_hints
        .insert("traceparent".into(), "00-t-s-01".into());
    a.handle(
        0,
        Input::Request {
            req: 1,
            deadline: None,
            request: Request::Dispatch(r),
        },
    );
    let Some(Output::Send {
        request,
        deadline,
        peer,
        address,
        ..
    }) = a.poll_output()
    else {
        panic!()
    };
    assert_eq!((peer.as_str(), address.as_str()), ("B", "B:1"));
    assert_eq!(
        deadline,
        2_000 * MS,
        "the attempt timeout, not the request's 30 s"
    );
    b.handle(
        0,
        Input::Request {
            req: 7,
            deadline: Some(deadline),
            request,
        },
    );
    let Some(Output::Invoke { context, .. }) = b.poll_output() else {
        panic!()
    };
    assert_eq!(
        context.get("traceparent").map(String::as_str),
        Some("00-t-s-01")
    );
    assert_eq!(context.get("weft-origin").map(String::as_str), Some("A"));
}

#[test]
fn a_request_arriving_after_its_deadline_does_not_run() {
    let mut net = Net::new();
    net.add("A", vec![key("ns", "S", "M")]);
    let now = net.now;
    let r = net.ask("A", Some(now), Request::Serve(serve_req("ns", "S", "M")));
    let Some(Response::Serve(s)) = net.answer("A", r).cloned() else {
        panic!()
    };
    assert_eq!(status(&s.status).0, 500);
    assert!(net.m("A").invoked.is_empty());
}

// ------------------------------------------------------------------ proptest: interleavings

mod interleavings {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Step {
        /// A client dispatch at member `at` for namespace `ns` (0..3), maybe targeted, maybe idempotent.
        Ask {
            at: usize,
            ns: usize,
            target: Option<usize>,
            idempotent: bool,
            timeout_ms: u64,
        },
        /// Finish the oldest held handler at member `at`: ok, error, or no output.
        Finish {
            at: usize,
            how: u8,
        },
        /// Deliver, drop or deliver-late held network messages.
        Net {
            how: u8,
        },
        SetLink {
            from: usize,
            to: usize,
            link: u8,
        },
        Down {
            at: usize,
            peer: usize,
        },
        Up {
            at: usize,
            peer: usize,
        },
        Advance {
            ms: u64,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0..3usize, 0..3usize, prop::option::weighted(0.2, 0..4usize), any::<bool>(), 1..5_000u64)
                .prop_map(|(at, ns, target, idempotent, timeout_ms)| Step::Ask { at, ns, target, idempotent, timeout_ms }),
            2 => (0..3usize, 0..3u8).prop_map(|(at, how)| Step::Finish { at, how }),
            5 => (0..5u8).prop_map(|how| Step::Net { how }),
            1 => (0..3usize, 0..3usize, 0..3u8).prop_map(|(from, to, link)| Step::SetLink { from, to, link }),
            1 => (0..3usize, 0..3usize).prop_map(|(at, peer)| Step::Down { at, peer }),
            1 => (0..3usize, 0..3usize).prop_map(|(at, peer)| Step::Up { at, peer }),
            3 => (1..1_500u64).prop_map(|ms| Step::Advance { ms }),
        ]
    }

    const IDS: [&str; 3] = ["A", "B", "C"];
    const NS: [&str; 3] = ["n0", "n1", "n2"];

    fn run(seed: u64, steps: Vec<Step>) -> Result<(), TestCaseError> {
        let mut net = Net::new();
        for (i, id) in IDS.iter().enumerate() {
            let mut cfg = Config::new(id, &addr(id), seed + i as u64);
            cfg.attempt_timeout_ns = 400 * MS;
            cfg.health.eject_after_failures = 2;
            cfg.health.eject_base_ns = 500 * MS;
            // A serves n0, B serves n0+n1, C serves n1+n2.
            let served: &[&str] = match i {
                0 => &["n0"],
                1 => &["n0", "n1"],
                _ => &["n1", "n2"],
            };
            net.add_cfg(cfg, served.iter().map(|n| key(n, "S", "M")).collect());
            net.m(id).handler = None;
        }
        net.mesh();
        net.hold_network = true;
        // (member, req) → (deadline, idempotent, input tag)
        let mut asked: Vec<(String, ReqId, Instant, bool)> = Vec::new();
        let mut tag = 0u64;
        for s in steps {
            match s {
                Step::Ask {
                    at,
                    ns,
                    target,
                    idempotent,
                    timeout_ms,
                } => {
                    let mut r = dispatch_req(NS[ns], "S", "M");
                    if let Some(t) = target {
                        r.target_collector_id = if t < 3 { IDS[t].into() } else { "ghost".into() };
                    }
                    if idempotent {
                        r.routing_hints.insert("idempotent".into(), "true".into());
                    }
                    tag += 1;
                    r.input = Some(text(&format!("call-{tag}")));
                    let deadline = net.now + timeout_ms * MS;
                    // The checker hears of the call before it can be answered.
                    net.checker
                        .asked(IDS[at], net.next_req, deadline, idempotent);
                    let req = net.ask(IDS[at], Some(deadline), Request::Dispatch(r));
                    asked.push((IDS[at].into(), req, deadline, idempotent));
                }
                Step::Finish { at, how } => {
                    if !net.m(IDS[at]).held.is_empty() {
                        let result = match how {
                            0 => Ok(Some(text("ok"))),
                            1 => Err("failed".into()),
                            _ => Ok(None),
                        };
                        net.complete(IDS[at], result);
                    }
                }
                Step::Net { how } => {
                    if !net.in_transit.is_empty() {
                        let (from, to, call, request, deadline) = net.in_transit.remove(0);
                        match how {
                            0..=2 => net.deliver(&from, &to, call, request, deadline),
                            3 => {} // lost
                            _ => net.in_transit.push((from, to, call, request, deadline)),
                        }
                        net.hold_network = true;
                        net.pump();
                    }
                }
                Step::SetLink { from, to, link } => {
                    let l = [Link::Up, Link::Drop, Link::Refuse][link as usize];
                    net.link(IDS[from], IDS[to], l);
                }
                Step::Down { at, peer } if at != peer => net.input(
                    IDS[at],
                    Input::PeerDown {
                        id: IDS[peer].into(),
                    },
                ),
                Step::Up { at, peer } if at != peer => {
                    let namespaces = net.c(IDS[peer]).namespaces();
                    net.input(
                        IDS[at],
                        Input::PeerUp {
                            id: IDS[peer].into(),
                            address: addr(IDS[peer]),
                            namespaces,
                            version: 1,
                        },
                    )
                }
                Step::Down { .. } | Step::Up { .. } => {}
                Step::Advance { ms } => net.advance(ms * MS),
            }
            net.checker.check(net.now);
            prop_assert!(
                net.checker.violations().is_empty(),
                "{:?}",
                net.checker.violations()
            );
        }
        // Let every deadline pass: everything is answered, nothing twice.
        net.advance(10_000 * MS);
        net.checker.check(net.now);
        prop_assert!(
            net.checker.violations().is_empty(),
            "{:?}",
            net.checker.violations()
        );
        for (at, req, deadline, _) in &asked {
            let a = net.answers.get(&(at.clone(), *req));
            prop_assert!(a.is_some(), "request {} never answered", req);
            let a = a.unwrap();
            prop_assert_eq!(a.len(), 1);
            prop_assert!(a[0].0 <= *deadline);
            prop_assert!(a[0].1.status().is_some());
        }
        // At most once: a non-idempotent call's input ran at most once across the cluster.
        let mut runs: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for id in IDS {
            for (_, input) in &net.m(id).invoked {
                let bytes = input.as_ref().map(|a| a.value.clone()).unwrap_or_default();
                *runs.entry(bytes).or_insert(0) += 1;
            }
        }
        for (i, (_, _, _, idempotent)) in asked.iter().enumerate() {
            let input = text(&format!("call-{}", i + 1)).value;
            let n = runs.get(&input).copied().unwrap_or(0);
            if !idempotent {
                prop_assert!(n <= 1, "call-{} ran {} times", i + 1, n);
            }
        }
        Ok(())
    }

    fn text_field() -> BoxedStrategy<String> {
        prop_oneof![
            Just(String::new()),
            Just("n0".to_string()),
            Just("S".to_string()),
            Just("M".to_string()),
            Just("A".to_string()),
            Just("B".to_string()),
            "[a-zA-Z0-9.:_ ]{0,8}"
        ]
        .boxed()
    }

    fn any_request() -> impl Strategy<Value = Request> {
        let service = || {
            prop::option::of(text_field().prop_map(|s| ServiceRef {
                namespace: String::new(),
                service_name: s,
            }))
        };
        let input = || {
            prop::option::of(
                (text_field(), prop::collection::vec(any::<u8>(), 0..12)).prop_map(|(t, v)| Any {
                    type_url: t,
                    value: v,
                }),
            )
        };
        let hints = prop::collection::btree_map(
            prop_oneof![
                Just("weft-hops".to_string()),
                Just("weft-visited".to_string()),
                Just("idempotent".to_string()),
                text_field()
            ],
            text_field(),
            0..3,
        );
        prop_oneof![
            (
                text_field(),
                service(),
                text_field(),
                input(),
                text_field(),
                hints
            )
                .prop_map(
                    |(
                        namespace,
                        service,
                        method_name,
                        input,
                        target_collector_id,
                        routing_hints,
                    )| {
                        Request::Dispatch(DispatchRequest {
                            namespace,
                            service,
                            method_name,
                            input,
                            target_collector_id,
                            routing_hints,
                        })
                    }
                ),
            (text_field(), service(), text_field(), input()).prop_map(
                |(namespace, service, method_name, input)| {
                    Request::Serve(ServeRequest {
                        namespace,
                        service,
                        method_name,
                        input,
                        execution_context: BTreeMap::new(),
                    })
                }
            ),
            (
                text_field(),
                prop::collection::vec(text_field(), 0..4),
                prop::collection::btree_map(text_field(), text_field(), 0..2)
            )
                .prop_map(|(address, namespaces, metadata)| {
                    Request::Connect(ConnectRequest {
                        address,
                        namespaces,
                        metadata,
                    })
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        /// Arbitrary field values (empty, unknown, garbage hints and payloads) from outside:
        /// never a panic, every request answered exactly once and with a status.
        #[test]
        fn arbitrary_requests_are_each_answered_once(reqs in prop::collection::vec((0..3usize, any_request()), 1..30)) {
            let mut net = Net::new();
            for (i, id) in IDS.iter().enumerate() {
                let mut cfg = Config::new(id, &addr(id), i as u64);
                cfg.forward = if i == 1 { Forward::Dispatch } else { Forward::Serve };
                net.add_cfg(cfg, vec![key(NS[i], "S", "M")]);
            }
            net.mesh();
            let mut asked = Vec::new();
            for (at, r) in reqs {
                asked.push((IDS[at], net.ask(IDS[at], None, r)));
            }
            net.advance(60_000 * MS);
            for (at, req) in asked {
                let a = net.answers.get(&(at.to_string(), req));
                prop_assert!(a.is_some_and(|a| a.len() == 1 && a[0].1.status().is_some()));
            }
            for id in IDS {
                prop_assert_eq!(net.c(id).pending(), 0);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn random_interleavings_keep_the_invariants(seed in 0u64..1000, steps in prop::collection::vec(step(), 1..80)) {
            run(seed, steps)?;
        }
    }
}

#[test]
fn a_canceled_request_is_answered_once_and_its_remote_run_is_stopped() {
    let mut net = caller_and_servers(&["B"]);
    net.m("B").handler = None;
    let req = net.ask("A", None, Request::Dispatch(dispatch_req("ns", "S", "M")));
    assert_eq!(net.m("B").held.len(), 1, "running on B");
    net.input("A", Input::Cancel { req });
    let d = net.dispatched("A", req);
    let s = d.status.unwrap();
    assert_eq!(
        (s.code, s.message.as_str()),
        (500, "call canceled by the caller")
    );
    assert_eq!(
        s.details.get(hint::CANCELED).map(String::as_str),
        Some("true")
    );
    assert_eq!(net.m("A").aborted.len(), 1, "the attempt was withdrawn");
    assert_eq!(net.m("B").cancelled.len(), 1, "B stopped its handler");
    assert_eq!((net.c("A").pending(), net.c("B").pending()), (0, 0));
    // B's answer to the withdrawn call is no second answer; a late handler result is dropped.
    net.complete("B", Ok(Some(text("late"))));
    assert_eq!(net.answer("A", req).map(|_| ()), Some(()));
    assert_eq!(net.c("B").stats().late_results, 1);
    // Canceling what is answered already, or an unknown id, does nothing.
    net.input("A", Input::Cancel { req });
    net.input("A", Input::Cancel { req: 999 });
    assert_eq!(net.c("A").stats().answered, 1);
}

/// A foreign collector (reached through Connect) is not told to cancel: the RPC to it is
/// dropped. Its call ends at once, with no verdict on the peer's health.
#[test]
fn a_canceled_call_to_a_foreign_collector_is_dropped_without_counting_against_it() {
    let mut net = Net::new();
    net.add("A", vec![]);
    net.add("B", vec![key("ns", "S", "M")]);
    net.connect_to("A", "B", &["ns"]);
    net.m("B").handler = None;
    let req = net.ask("A", None, Request::Dispatch(dispatch_req("ns", "S", "M")));
    assert_eq!(net.m("B").held.len(), 1, "running on B");
    assert_eq!(net.c("A").peer("B").map(|p| p.in_flight), Some(1));
    net.input("A", Input::Cancel { req });
    let d = net.dispatched("A", req);
    assert_eq!(status(&d.status).1, "call canceled by the caller");
    assert_eq!(net.m("A").aborted.len(), 1, "the RPC was dropped");
    assert_eq!(net.c("A").peer("B").map(|p| p.in_flight), Some(0));
    // Past every deadline nothing more happens: the call is gone, B's health untouched.
    net.advance(10_000 * MS);
    assert_eq!(net.m("A").aborted.len(), 1);
    assert!(matches!(
        net.c("A").peer("B").map(|p| p.breaker),
        Some(Breaker::Closed { failures: 0 })
    ));
    assert_eq!(net.c("A").poll_timeout(), None);
}

#[test]
fn a_caller_budget_in_hints_bounds_the_attempt_instead_of_the_default() {
    let mut net = caller_and_servers(&["B"]);
    net.m("B").handler = None;
    let mut r = dispatch_req("ns", "S", "M");
    r.routing_hints
        .insert(hint::ATTEMPT.into(), (5_000 * MS).to_string());
    let t0 = net.now;
    let req = net.ask("A", Some(t0 + 5_000 * MS), Request::Dispatch(r));
    net.advance(3_000 * MS);
    assert!(
        net.answer("A", req).is_none(),
        "past the default 2 s attempt, still waiting"
    );
    net.complete("B", Ok(Some(text("slow but fine"))));
    let d = net.dispatched("A", req);
    assert_eq!(
        (status(&d.status).0, out_text(&d.output)),
        (200, "slow but fine".into())
    );
    // Without a budget the default attempt timeout applies, and the error says it timed out.
    let req = net.ask(
        "A",
        Some(net.now + 5_000 * MS),
        Request::Dispatch(dispatch_req("ns", "S", "M")),
    );
    net.advance(2_000 * MS);
    let s = net.dispatched("A", req).status.unwrap();
    assert_eq!(
        (s.code, s.message.as_str()),
        (500, "serve RPC failed: deadline exceeded")
    );
    assert_eq!(
        s.details.get(hint::TIMEOUT).map(String::as_str),
        Some("true")
    );
}
