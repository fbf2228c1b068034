//! The CollectiveDispatcher over the real wire: a Rust gRPC client (tonic's generated client on
//! hyper and smol, as a foreign collector would be) against one `weft run` node. The parity
//! scenarios P1-P6 of `shared/spec/dispatch.md` with their exact codes and messages, the
//! health service, and a dial back to a collector that went away (P5). Every run is bounded.

mod common;
use common::*;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use weft_wire::collector as pb;
use weft_wire::collector::collective_dispatcher_client::CollectiveDispatcherClient;
use weft_wire::health::health_client::HealthClient;
use weft_wire::health::HealthCheckRequest;
use weft_wire::prost::Message as _;
use weft_wire::prost_types;

/// One HTTP/2 connection as the tower service tonic's clients call.
#[derive(Clone)]
struct Conn(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower_service::Service<http::Request<tonic::body::Body>> for Conn {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

#[derive(Clone, Copy)]
struct Exec;

impl<F: Future + Send + 'static> hyper::rt::Executor<F> for Exec
where
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        smol::spawn(fut).detach();
    }
}

async fn conn(addr: &str) -> Result<Conn, String> {
    let tcp = smol::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (send, c) =
        hyper::client::conn::http2::handshake(Exec, smol_hyper::rt::FuturesIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
    smol::spawn(async move {
        let _ = c.await;
    })
    .detach();
    Ok(Conn(send))
}

fn origin(addr: &str) -> http::Uri {
    format!("http://{addr}").parse().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Namespace `test`: `echo` returns its argument, `boom` raises a Lua error; namespace `other`
/// has `ServiceA.Method1` and `ServiceB.Method1` (S4) through `meta.service`/`meta.method`.
fn app(dir: &TempDir) {
    dir.write(
        "src/_index.yaml",
        "version: \"1.0\"\nnamespace: test\nentries:\n  - name: procs\n    kind: process.host\n    lifecycle: {auto_start: true}\n  \
         - name: echo\n    kind: function.lua\n    source: file://fns.lua\n    method: echo\n  \
         - name: boom\n    kind: function.lua\n    source: file://fns.lua\n    method: boom\n",
    );
    dir.write(
        "src/other/_index.yaml",
        "version: \"1.0\"\nnamespace: other\nentries:\n  \
         - name: a1\n    kind: function.lua\n    source: file://../fns.lua\n    method: a1\n    meta: {service: ServiceA, method: Method1}\n  \
         - name: b1\n    kind: function.lua\n    source: file://../fns.lua\n    method: b1\n    meta: {service: ServiceB, method: Method1}\n",
    );
    dir.write(
        "src/fns.lua",
        "local function echo(x) return x end\nlocal function boom(x) error('kaboom: ' .. tostring(x)) end\n\
         local function a1() return 'from A' end\nlocal function b1() return 'from B' end\n\
         return { echo = echo, boom = boom, a1 = a1, b1 = b1 }\n",
    );
}

struct Node {
    live: Live,
    addr: String,
    _dir: TempDir,
}

/// One node `n1` of the test app, once its health service says SERVING.
fn node() -> Node {
    let dir = TempDir::new("dispatch");
    app(&dir);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut live = Live::start(&[
        "run",
        "-C",
        dir.s(),
        "--node",
        "n1",
        "--listen",
        &addr,
        "--cluster-secret",
        "e2e",
    ]);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if smol::block_on(health(&addr, "")) == Ok(1) {
            break;
        }
        if Instant::now() > end {
            let run = live.finish();
            panic!("node never SERVING\n{}", run.dump());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Node {
        live,
        addr,
        _dir: dir,
    }
}

async fn health(addr: &str, service: &str) -> Result<i32, String> {
    let c = conn(addr).await?;
    let mut h = HealthClient::with_origin(c, origin(addr));
    h.check(HealthCheckRequest {
        service: service.into(),
    })
    .await
    .map(|r| r.into_inner().status)
    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

fn client(addr: &str) -> CollectiveDispatcherClient<Conn> {
    let c = smol::block_on(conn(addr)).expect("connect to the node");
    CollectiveDispatcherClient::with_origin(c, origin(addr))
}

fn value_any(v: prost_types::value::Kind) -> prost_types::Any {
    prost_types::Any {
        type_url: "type.googleapis.com/google.protobuf.Value".into(),
        value: prost_types::Value { kind: Some(v) }.encode_to_vec(),
    }
}

fn decode_value(a: &Option<prost_types::Any>) -> Option<prost_types::value::Kind> {
    let a = a.as_ref()?;
    assert_eq!(a.type_url, "type.googleapis.com/google.protobuf.Value");
    prost_types::Value::decode(&a.value[..]).ok()?.kind
}

fn svc(name: &str) -> Option<pb::ServiceTypeRef> {
    Some(pb::ServiceTypeRef {
        namespace: String::new(),
        service_name: name.into(),
    })
}

fn serve(ns: &str, service: Option<&str>, method: &str) -> pb::ServeRequest {
    pb::ServeRequest {
        namespace: ns.into(),
        service: service.and_then(svc),
        method_name: method.into(),
        input: Some(value_any(prost_types::value::Kind::StringValue(
            "hi".into(),
        ))),
        execution_context: Default::default(),
    }
}

fn dispatch(ns: &str, service: Option<&str>, method: &str, target: &str) -> pb::DispatchRequest {
    pb::DispatchRequest {
        namespace: ns.into(),
        service: service.and_then(svc),
        method_name: method.into(),
        input: Some(value_any(prost_types::value::Kind::NumberValue(7.0))),
        target_collector_id: target.into(),
        routing_hints: Default::default(),
    }
}

/// The status (present: P6) as (code, message).
fn st(s: &Option<pb::Status>) -> (i32, String) {
    let s = s.as_ref().expect("every response carries a status (P6)");
    (s.code, s.message.clone())
}

fn call<T>(f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>) -> T {
    smol::block_on(f)
        .expect("gRPC OK (application errors travel in status)")
        .into_inner()
}

#[test]
fn health_is_served_on_the_cluster_port_and_unknown_services_are_not_found() {
    let n = node();
    assert_eq!(smol::block_on(health(&n.addr, "")), Ok(1));
    assert_eq!(
        smol::block_on(health(&n.addr, "collector.CollectiveDispatcher")),
        Ok(1)
    );
    let e = smol::block_on(health(&n.addr, "no.Such")).unwrap_err();
    assert!(e.starts_with("NotFound"), "{e}");
}

#[test]
fn p3_serve_checks_in_order_with_the_collectors_exact_messages() {
    let n = node();
    let mut c = client(&n.addr);
    let cases: Vec<(pb::ServeRequest, i32, &str)> = vec![
        (
            serve("", Some("test"), "echo"),
            400,
            "namespace is required",
        ),
        (serve("test", None, "echo"), 400, "service is required"),
        (serve("test", Some(""), "echo"), 400, "service is required"),
        (
            serve("test", Some("test"), ""),
            400,
            "method_name is required",
        ),
        // The order: an empty method with an empty namespace is about the namespace.
        (serve("", None, ""), 400, "namespace is required"),
        (
            serve("nonexistent", Some("test"), "echo"),
            404,
            "namespace 'nonexistent' not found",
        ),
        (
            serve("test", Some("TestService"), "NonexistentMethod"),
            404,
            "method 'TestService.NonexistentMethod' not found in namespace 'test'",
        ),
    ];
    for (req, code, msg) in cases {
        let what = format!("{req:?}");
        let r = call(c.serve(req));
        assert_eq!(st(&r.status), (code, msg.to_string()), "{what}");
        assert_eq!(r.executor_id, "", "executor_id only on success: {what}");
        assert!(r.output.is_none(), "{what}");
    }
    // S1: the handler runs, 200 OK, executor = this node, the output is the result.
    let r = call(c.serve(serve("test", Some("test"), "echo")));
    assert_eq!(st(&r.status), (200, "OK".to_string()));
    assert_eq!(r.executor_id, "n1");
    assert_eq!(
        decode_value(&r.output),
        Some(prost_types::value::Kind::StringValue("hi".into()))
    );
    // S3: a Lua error is a 500 whose message carries the error's text.
    let r = call(c.serve(serve("test", Some("test"), "boom")));
    let (code, msg) = st(&r.status);
    assert_eq!(code, 500);
    assert!(
        msg.starts_with("handler error: ") && msg.contains("kaboom: hi"),
        "{msg}"
    );
    assert_eq!(r.executor_id, "");
    // S4: two services with the same method name in one namespace are two methods.
    let a = call(c.serve(serve("other", Some("ServiceA"), "Method1")));
    let b = call(c.serve(serve("other", Some("ServiceB"), "Method1")));
    assert_eq!((st(&a.status).0, st(&b.status).0), (200, 200));
    assert_eq!(
        decode_value(&a.output),
        Some(prost_types::value::Kind::StringValue("from A".into()))
    );
    assert_eq!(
        decode_value(&b.output),
        Some(prost_types::value::Kind::StringValue("from B".into()))
    );
    drop(n);
}

#[test]
fn p4_dispatch_checks_local_preference_and_the_404s() {
    let n = node();
    let mut c = client(&n.addr);
    for (req, code, msg) in [
        (
            dispatch("", Some("test"), "echo", ""),
            400,
            "namespace is required".to_string(),
        ),
        (
            dispatch("test", None, "echo", ""),
            400,
            "service is required".to_string(),
        ),
        (
            dispatch("test", Some("test"), "", ""),
            400,
            "method_name is required".to_string(),
        ),
        (
            dispatch("test", Some("test"), "echo", "nonexistent"),
            404,
            "no connection to collector 'nonexistent'".to_string(),
        ),
        (
            dispatch("nowhere", Some("nowhere"), "x", ""),
            404,
            "no collector found for namespace 'nowhere'".to_string(),
        ),
    ] {
        let what = format!("{req:?}");
        let r = call(c.dispatch(req));
        assert_eq!(st(&r.status), (code, msg), "{what}");
        assert_eq!(r.handled_by_collector_id, "", "{what}");
    }
    // D2: auto-route runs locally; H2: a target of our own id runs locally too.
    for target in ["", "n1"] {
        let r = call(c.dispatch(dispatch("test", Some("test"), "echo", target)));
        assert_eq!(st(&r.status), (200, "OK".to_string()), "target {target:?}");
        assert_eq!(r.handled_by_collector_id, "n1");
        assert_eq!(
            decode_value(&r.output),
            Some(prost_types::value::Kind::NumberValue(7.0))
        );
    }
    // A local handler error is returned as is (no fallback to peers).
    let r = call(c.dispatch(dispatch("test", Some("test"), "boom", "")));
    assert_eq!(st(&r.status).0, 500);
    drop(n);
}

#[test]
fn p1_connect_replies_as_the_collector_does() {
    let n = node();
    let mut c = client(&n.addr);
    let connect =
        |c: &mut CollectiveDispatcherClient<Conn>, address: &str, ns: &[&str], id: Option<&str>| {
            let mut metadata = std::collections::HashMap::new();
            if let Some(id) = id {
                metadata.insert("collector_id".to_string(), id.to_string());
            }
            call(c.connect(pb::ConnectRequest {
                address: address.into(),
                namespaces: ns.iter().map(|s| s.to_string()).collect(),
                metadata,
            }))
        };
    let r = connect(&mut c, "", &["test"], Some("g1"));
    assert_eq!(st(&r.status), (400, "address is required".to_string()));
    // Shared = the requester's list filtered by ours, in the requester's order, duplicates kept.
    let r = connect(
        &mut c,
        "127.0.0.1:1",
        &["zz", "other", "test", "other"],
        Some("g1"),
    );
    assert_eq!(
        st(&r.status),
        (200, "Connected with 3 shared namespaces".to_string())
    );
    assert_eq!(r.shared_namespaces, vec!["other", "test", "other"]);
    assert_eq!(r.target_collector_id, "n1");
    assert!(!r.connection_id.is_empty());
    // No overlap is still a success (C4), from an anonymous requester.
    let r2 = connect(&mut c, "127.0.0.1:2", &["zz"], None);
    assert_eq!(
        st(&r2.status),
        (200, "Connected with 0 shared namespaces".to_string())
    );
    assert!(r2.shared_namespaces.is_empty());
    assert_ne!(r2.connection_id, r.connection_id);
    drop(n);
}

#[test]
fn p5_a_target_dispatch_to_a_collector_that_went_away_is_a_500_serve_rpc_failed() {
    let n = node();
    let mut c = client(&n.addr);
    // A foreign collector "ghost" connects (H1: the node may route back to it), then is gone:
    // nothing listens at its address.
    let gone = format!("127.0.0.1:{}", free_port());
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("collector_id".to_string(), "ghost".to_string());
    let r = call(c.connect(pb::ConnectRequest {
        address: gone,
        namespaces: vec!["spooky".into()],
        metadata,
    }));
    assert_eq!(st(&r.status).0, 200);
    let t0 = Instant::now();
    let mut req = tonic::Request::new(dispatch("spooky", Some("spooky"), "boo", "ghost"));
    req.set_timeout(Duration::from_secs(10));
    let r = call(c.dispatch(req));
    let (code, msg) = st(&r.status);
    assert_eq!(code, 500, "{msg}");
    assert!(msg.starts_with("serve RPC failed: "), "{msg}");
    assert_eq!(r.handled_by_collector_id, "");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // The node still answers afterwards.
    let r = call(c.dispatch(dispatch("test", Some("test"), "echo", "")));
    assert_eq!(st(&r.status).0, 200);
    drop(n);
}

#[test]
fn p6_every_answer_carries_a_status_and_the_node_survives_hostile_requests() {
    let n = node();
    let mut c = client(&n.addr);
    let big = "x".repeat(100_000);
    let hostile = vec![
        pb::DispatchRequest::default(),
        dispatch(&big, Some(&big), &big, &big),
        pb::DispatchRequest {
            input: Some(prost_types::Any {
                type_url: "type.googleapis.com/google.protobuf.Value".into(),
                value: vec![0xff; 64],
            }),
            ..dispatch("test", Some("test"), "echo", "")
        },
        pb::DispatchRequest {
            input: Some(prost_types::Any {
                type_url: String::new(),
                value: Vec::new(),
            }),
            ..dispatch("test", Some("test"), "echo", "")
        },
    ];
    for req in hostile {
        let r = call(c.dispatch(req));
        assert!(r.status.is_some(), "a Dispatch answer without status");
    }
    let r = call(c.serve(pb::ServeRequest::default()));
    assert!(r.status.is_some());
    let r = call(c.connect(pb::ConnectRequest::default()));
    assert!(r.status.is_some());
    // A grpc-timeout that has passed before the node looks at it is answered, not dropped.
    let mut req = tonic::Request::new(dispatch("test", Some("test"), "echo", ""));
    req.set_timeout(Duration::from_nanos(1));
    let r = smol::block_on(c.dispatch(req));
    match r {
        Ok(r) => assert!(r.into_inner().status.is_some()),
        Err(s) => assert_eq!(s.code(), tonic::Code::DeadlineExceeded, "{s:?}"),
    }
    assert_eq!(smol::block_on(health(&n.addr, "")), Ok(1), "still serving");
    let mut n = n;
    n.live.signal("-INT");
    let run = n.live.finish();
    assert!(!run.stderr.contains("panicked"), "{}", run.dump());
}

// ------------------------------------------------------------------ funcs.call across two nodes

/// Node `b` serves namespace `slow`: `nap(ms)` sleeps, then logs "nap done <ms>" and returns
/// `ms`; `add(...)` sums its arguments. Node `a` serves `alpha`, whose functions call into
/// `slow` with the funcs options.
fn two_node_apps(a: &TempDir, b: &TempDir) {
    b.write(
        "src/_index.yaml",
        "version: \"1.0\"\nnamespace: slow\nentries:\n  - name: procs\n    kind: process.host\n    lifecycle: {auto_start: true}\n  \
         - name: nap\n    kind: function.lua\n    source: file://fns.lua\n    method: nap\n    modules: [time]\n  \
         - name: add\n    kind: function.lua\n    source: file://fns.lua\n    method: add\n",
    );
    b.write(
        "src/fns.lua",
        "local function nap(ms)\n  time.sleep(tostring(ms) .. 'ms')\n  print('nap done ' .. tostring(ms))\n  return ms\nend\n\
         local function add(...)\n  local s = 0\n  for i = 1, select('#', ...) do s = s + select(i, ...) end\n  \
         return { n = select('#', ...), sum = s }\nend\nreturn { nap = nap, add = add }\n",
    );
    a.write(
        "src/_index.yaml",
        "version: \"1.0\"\nnamespace: alpha\nentries:\n  - name: procs\n    kind: process.host\n    lifecycle: {auto_start: true}\n  \
         - name: short\n    kind: function.lua\n    source: file://fns.lua\n    method: short\n    modules: [funcs]\n  \
         - name: sum\n    kind: function.lua\n    source: file://fns.lua\n    method: sum\n    modules: [funcs]\n",
    );
    a.write(
        "src/fns.lua",
        "local function short(ms)\n  local r, err = funcs.new():with_options({timeout = 400}):call('slow:nap', ms)\n  \
         return { got = r, kind = err and err:kind() or 'none' }\nend\n\
         local function sum()\n  local r, err = funcs.call('slow:add', 1, 2, 3)\n  if err then error(err) end\n  return r\nend\n\
         return { short = short, sum = sum }\n",
    );
}

fn start_node(dir: &TempDir, name: &str, addr: &str, join: Option<&str>) -> Live {
    let mut args = vec![
        "run",
        "-C",
        dir.s(),
        "--node",
        name,
        "--listen",
        addr,
        "--cluster-secret",
        "e2e",
    ];
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    let mut live = Live::start(&args);
    let end = Instant::now() + Duration::from_secs(20);
    while smol::block_on(health(addr, "")) != Ok(1) {
        if Instant::now() > end {
            panic!("{name} never SERVING\n{}", live.finish().dump());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    live
}

fn number(v: f64) -> Option<prost_types::Any> {
    Some(value_any(prost_types::value::Kind::NumberValue(v)))
}

/// A Dispatch of `ns.method(arg)` with an optional `grpc-timeout`; the answer and its time.
fn timed(
    addr: &str,
    ns: &str,
    method: &str,
    arg: f64,
    timeout: Option<Duration>,
) -> (Result<pb::DispatchResponse, tonic::Status>, Duration) {
    let mut r = dispatch(ns, Some(ns), method, "");
    r.input = number(arg);
    let mut req = tonic::Request::new(r);
    if let Some(t) = timeout {
        req.set_timeout(t);
    }
    let t0 = Instant::now();
    let got = smol::block_on(client(addr).dispatch(req)).map(|r| r.into_inner());
    (got, t0.elapsed())
}

#[test]
fn across_two_nodes_attempt_timeout_late_reply_funcs_options_and_grpc_timeout() {
    let (da, db) = (TempDir::new("dispatch-a"), TempDir::new("dispatch-b"));
    two_node_apps(&da, &db);
    let (aa, ab) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut b = start_node(&db, "b", &ab, None);
    let mut a = start_node(&da, "a", &aa, Some(&ab));
    // Routed once a reaches b's namespace.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (r, _) = timed(&aa, "slow", "nap", 0.0, Some(Duration::from_secs(5)));
        if let Ok(r) = &r {
            if st(&r.status).0 == 200 {
                assert_eq!(r.handled_by_collector_id, "b");
                break;
            }
        }
        if Instant::now() > end {
            panic!("a never routed slow to b: {r:?}\n{}", a.finish().dump());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // B's function outlasts the 2 s attempt timeout: A's caller gets a timeout within the
    // bound, A tells B to stop, and B's answer, when it comes, is dropped and counted.
    let (r, took) = timed(&aa, "slow", "nap", 3000.0, Some(Duration::from_secs(20)));
    let r = r.expect("gRPC OK");
    let s = r.status.clone().expect("status");
    assert_eq!(
        (s.code, s.message.as_str()),
        (500, "serve RPC failed: deadline exceeded"),
        "{r:?}"
    );
    assert_eq!(s.details.get("timeout").map(String::as_str), Some("true"));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3000),
        "answered after {took:?}"
    );
    a.wait_for_lines("dispatch late reply dropped", 1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !b.stderr().contains("nap done 3000"),
        "b's run was stopped:\n{}",
        b.stderr()
    );

    // funcs.call with {timeout = 400} from a function on A: kind Timeout within the budget.
    let (r, took) = timed(&aa, "alpha", "short", 3000.0, Some(Duration::from_secs(20)));
    let r = r.expect("gRPC OK");
    assert_eq!(st(&r.status).0, 200, "{r:?}");
    let kind = match decode_value(&r.output) {
        Some(prost_types::value::Kind::StructValue(s)) => s.fields.get("kind").cloned(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        kind.and_then(|v| v.kind),
        Some(prost_types::value::Kind::StringValue("Timeout".into()))
    );
    assert!(
        took < Duration::from_millis(1500),
        "answered after {took:?}"
    );

    // Several arguments cross as several arguments.
    let (r, _) = timed(&aa, "alpha", "sum", 0.0, Some(Duration::from_secs(10)));
    let r = r.expect("gRPC OK");
    let fields = match decode_value(&r.output) {
        Some(prost_types::value::Kind::StructValue(s)) => s.fields,
        other => panic!("{other:?} {r:?}"),
    };
    let num = |k: &str| match fields.get(k).and_then(|v| v.kind.clone()) {
        Some(prost_types::value::Kind::NumberValue(n)) => n,
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!((num("n"), num("sum")), (3.0, 6.0));

    // An inbound grpc-timeout is B's deadline: its run is cut there, not at 30 s.
    let (r, took) = timed(&ab, "slow", "nap", 1500.0, Some(Duration::from_millis(300)));
    assert!(
        took < Duration::from_millis(1200),
        "answered after {took:?}: {r:?}"
    );
    let (r, _) = timed(&ab, "slow", "nap", 200.0, None);
    assert_eq!(st(&r.expect("gRPC OK").status).0, 200);
    b.wait_for_lines("nap done 200", 1, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !b.stderr().contains("nap done 1500"),
        "the run outlived its grpc-timeout:\n{}",
        b.stderr()
    );
}
