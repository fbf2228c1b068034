//! The dispatch service and clients on loopback, in one process, with a fake node: a thread
//! that reads the inputs the transport hands over and answers them as a test says.

use super::super::{Log, Me, Transport};
use super::health::{NOT_SERVING, SERVING};
use super::*;
use crate::inputs::InputRx;
use weft_engine::dispatch::types as t;
use weft_engine::pid::NodeId;
use weft_engine::Input;
use weft_wire::collector as pb;
use weft_wire::collector::collective_dispatcher_client::CollectiveDispatcherClient;
use weft_wire::health::health_client::HealthClient;
use weft_wire::health::HealthCheckRequest;

fn quiet() -> Log {
    Arc::new(|_, _, _| {})
}

struct Node {
    t: Transport,
    rx: InputRx,
}

fn node(name: &str) -> Node {
    super::super::net::drive_in_background();
    let (tx, rx) = crate::inputs::channel();
    let me = Me {
        node: NodeId::named(name),
        incarnation: 1,
        secret: b"k".to_vec(),
        hello: None,
        join: Vec::new(),
    };
    let l = Transport::bind("127.0.0.1:0".parse().unwrap(), "--listen").unwrap();
    let t = Transport::start(l, me, tx, quiet()).unwrap();
    Node { t, rx }
}

impl Node {
    fn addr(&self) -> String {
        self.t.local_addr.to_string()
    }

    /// The next dispatch input within 5 s (other inputs, membership noise, are skipped).
    fn next_dispatch(&self) -> Input {
        let end = StdInstant::now() + Duration::from_secs(5);
        loop {
            let left = end.saturating_duration_since(StdInstant::now());
            match self
                .rx
                .recv_timeout(left)
                .expect("a dispatch input within 5 s")
            {
                i @ (Input::Dispatch { .. }
                | Input::DispatchReply { .. }
                | Input::DispatchCancel { .. }) => return i,
                _ => continue,
            }
        }
    }
}

async fn dispatcher(addr: &str) -> CollectiveDispatcherClient<super::super::net::Channel> {
    let ch = super::super::net::connect(addr).await.unwrap();
    CollectiveDispatcherClient::with_origin(ch, super::super::net::origin(addr).unwrap())
}

async fn health(addr: &str) -> HealthClient<super::super::net::Channel> {
    let ch = super::super::net::connect(addr).await.unwrap();
    HealthClient::with_origin(ch, super::super::net::origin(addr).unwrap())
}

#[test]
fn a_dispatch_rpc_reaches_the_node_converted_and_gets_its_answer_with_the_raw_code() {
    let n = node("a");
    let addr = n.addr();
    let client = std::thread::spawn(move || {
        super::super::net::block_on(async {
            let mut c = dispatcher(&addr).await;
            let mut req = tonic::Request::new(pb::DispatchRequest {
                namespace: "orders".into(),
                service: Some(pb::ServiceTypeRef {
                    namespace: String::new(),
                    service_name: "orders".into(),
                }),
                method_name: "create".into(),
                input: None,
                target_collector_id: "b".into(),
                routing_hints: Default::default(),
            });
            req.set_timeout(Duration::from_millis(1500));
            req.metadata_mut().insert(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                    .parse()
                    .unwrap(),
            );
            c.dispatch(req).await.map(|r| r.into_inner())
        })
    });
    let Input::Dispatch {
        req,
        deadline,
        request,
    } = n.next_dispatch()
    else {
        panic!("not a dispatch")
    };
    let now = n.t.dispatch.now();
    let deadline = deadline.expect("grpc-timeout became a deadline");
    assert!(
        deadline > now && deadline <= now + 1_500_000_000,
        "deadline {deadline} vs now {now}"
    );
    let Request::Dispatch(r) = request else {
        panic!("not a Dispatch: {request:?}")
    };
    assert_eq!(r.namespace, "orders");
    assert_eq!(r.service.unwrap().service_name, "orders");
    assert_eq!(r.target_collector_id, "b");
    assert_eq!(
        r.routing_hints["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    n.t.dispatch.respond(
        req,
        Response::Dispatch(t::DispatchResponse {
            status: Some(t::Status::new(404, "no connection to collector 'b'")),
            output: None,
            handled_by_collector_id: String::new(),
        }),
    );
    let got = client.join().unwrap().expect("gRPC OK");
    let s = got.status.expect("status present");
    assert_eq!(s.code, 404);
    assert_eq!(s.message, "no connection to collector 'b'");
    assert_eq!(Stats::get(&n.t.dispatch.counters.requests), 1);
}

use super::super::Stats;

#[test]
fn serve_and_connect_keep_their_kind_and_a_hint_already_set_is_kept() {
    let n = node("a");
    let addr = n.addr();
    let client = std::thread::spawn(move || {
        super::super::net::block_on(async {
            let mut c = dispatcher(&addr).await;
            let mut ctx = std::collections::HashMap::new();
            ctx.insert("traceparent".to_string(), "mine".to_string());
            let mut req = tonic::Request::new(pb::ServeRequest {
                namespace: "ns".into(),
                service: None,
                method_name: "m".into(),
                input: Some(weft_wire::prost_types::Any {
                    type_url: "type.googleapis.com/google.protobuf.Value".into(),
                    value: vec![0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f],
                }),
                execution_context: ctx,
            });
            req.metadata_mut()
                .insert("traceparent", "theirs".parse().unwrap());
            let serve = c.serve(req).await.map(|r| r.into_inner());
            let connect = c
                .connect(pb::ConnectRequest {
                    address: "127.0.0.1:1".into(),
                    namespaces: vec!["x".into()],
                    metadata: Default::default(),
                })
                .await
                .map(|r| r.into_inner());
            (serve, connect)
        })
    });
    let Input::Dispatch {
        req,
        deadline,
        request,
    } = n.next_dispatch()
    else {
        panic!()
    };
    assert_eq!(deadline, None, "no grpc-timeout, no deadline");
    let Request::Serve(r) = request else { panic!() };
    assert_eq!(r.execution_context["traceparent"], "mine");
    assert_eq!(
        r.input.unwrap().value,
        vec![0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]
    );
    n.t.dispatch.respond(
        req,
        Response::Serve(t::ServeResponse {
            status: Some(t::Status::ok()),
            output: Some(t::Any {
                type_url: "u".into(),
                value: vec![7],
            }),
            executor_id: "a".into(),
        }),
    );
    let Input::Dispatch { req, request, .. } = n.next_dispatch() else {
        panic!()
    };
    assert!(matches!(request, Request::Connect(ref c) if c.address == "127.0.0.1:1"));
    // The node answers with a response of another kind: the caller still gets a Connect reply.
    n.t.dispatch.respond(
        req,
        Response::Dispatch(t::DispatchResponse {
            status: Some(t::Status::new(400, "address is required")),
            ..Default::default()
        }),
    );
    let (serve, connect) = client.join().unwrap();
    let serve = serve.unwrap();
    assert_eq!(serve.status.unwrap().code, 200);
    assert_eq!(serve.executor_id, "a");
    assert_eq!(serve.output.unwrap().value, vec![7]);
    let connect = connect.unwrap();
    assert_eq!(connect.status.unwrap().code, 400);
}

#[test]
fn health_is_serving_then_not_serving_and_a_stopped_node_refuses_requests() {
    let n = node("a");
    let addr = n.addr();
    let (statuses, codes) = super::super::net::block_on(async {
        let mut h = health(&addr).await;
        let mut statuses = Vec::new();
        let r = h
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        statuses.push(r.into_inner().status);
        let r = h
            .check(HealthCheckRequest {
                service: DISPATCHER.into(),
            })
            .await
            .unwrap();
        statuses.push(r.into_inner().status);
        let unknown = h
            .check(HealthCheckRequest {
                service: "no.Such".into(),
            })
            .await
            .unwrap_err();
        let mut w = h
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        statuses.push(w.message().await.unwrap().unwrap().status);
        n.t.dispatch.draining();
        statuses.push(w.message().await.unwrap().unwrap().status);
        n.t.dispatch.stopping();
        let mut d = dispatcher(&addr).await;
        let refused = d
            .dispatch(pb::DispatchRequest::default())
            .await
            .unwrap_err();
        statuses.push(
            h.check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status,
        );
        (statuses, (unknown.code(), refused.code()))
    });
    assert_eq!(
        statuses,
        vec![SERVING, SERVING, SERVING, NOT_SERVING, NOT_SERVING]
    );
    assert_eq!(codes, (tonic::Code::NotFound, tonic::Code::Unavailable));
}

/// A client that gives up before the answer (here its own deadline) makes the node withdraw
/// the request: the handler it started stops instead of running on for nobody.
#[test]
fn a_client_that_gives_up_withdraws_its_request_from_the_node() {
    let n = node("a");
    let addr = n.addr();
    let client = std::thread::spawn(move || {
        super::super::net::block_on(async {
            let mut c = dispatcher(&addr).await;
            let call = async { Some(c.dispatch(pb::DispatchRequest::default()).await) };
            let give_up = async {
                smol::Timer::after(Duration::from_millis(300)).await;
                None
            };
            // Dropping the call resets its HTTP/2 stream.
            futures_lite::future::or(call, give_up).await.is_none()
        })
    });
    let Input::Dispatch { req, .. } = n.next_dispatch() else {
        panic!()
    };
    assert!(client.join().unwrap(), "the client gave up");
    match n.next_dispatch() {
        Input::DispatchCancel { req: r } => assert_eq!(r, req),
        other => panic!("expected the request withdrawn, got {other:?}"),
    }
    assert_eq!(Stats::get(&n.t.dispatch.counters.cancelled), 1);
    // The node's answer that still comes finds nobody waiting.
    n.t.dispatch
        .respond(req, Response::Dispatch(t::DispatchResponse::default()));
    assert_eq!(Stats::get(&n.t.dispatch.counters.responses), 0);
}

#[test]
fn a_waiting_request_ends_unavailable_when_the_node_stops() {
    let n = node("a");
    let addr = n.addr();
    let client = std::thread::spawn(move || {
        super::super::net::block_on(async {
            dispatcher(&addr)
                .await
                .dispatch(pb::DispatchRequest::default())
                .await
                .map(|r| r.into_inner())
        })
    });
    let Input::Dispatch { req, .. } = n.next_dispatch() else {
        panic!()
    };
    n.t.dispatch.stopping();
    let err = client.join().unwrap().unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    // A late answer finds nobody waiting and is dropped.
    n.t.dispatch
        .respond(req, Response::Dispatch(t::DispatchResponse::default()));
    assert_eq!(Stats::get(&n.t.dispatch.counters.responses), 0);
}

fn serve_request() -> Request {
    Request::Serve(t::ServeRequest {
        namespace: "ns".into(),
        service: t::ServiceRef::named("S"),
        method_name: "M".into(),
        input: None,
        execution_context: Default::default(),
    })
}

#[test]
fn the_client_reports_a_refused_dial_as_unsent_and_backs_off() {
    let n = node("a");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let deadline = n.t.dispatch.now() + 5_000_000_000;
    n.t.dispatch
        .send(1, "b".into(), dead_addr.clone(), serve_request(), deadline);
    let Input::DispatchReply { call, result } = n.next_dispatch() else {
        panic!()
    };
    assert_eq!(call, 1);
    let e = result.unwrap_err();
    assert!(!e.sent, "{e:?}");
    // Within the backoff the next call fails at once, without a dial.
    n.t.dispatch
        .send(2, "b".into(), dead_addr, serve_request(), deadline);
    let Input::DispatchReply { call, result } = n.next_dispatch() else {
        panic!()
    };
    assert_eq!(call, 2);
    let e = result.unwrap_err();
    assert!(!e.sent && e.message.contains("not redialled yet"), "{e:?}");
    assert_eq!(Stats::get(&n.t.dispatch.counters.dials), 1);
    assert_eq!(Stats::get(&n.t.dispatch.counters.dial_failures), 1);
}

/// `abort` drops a call in flight: the collector it went to sees its caller gone (here a Weft
/// node's gRPC service, which withdraws the request), and no reply is reported.
#[test]
fn an_aborted_call_resets_its_rpc_and_reports_nothing() {
    let a = node("a");
    let b = node("b");
    let deadline = a.t.dispatch.now() + 5_000_000_000;
    a.t.dispatch
        .send(7, "b".into(), b.addr(), serve_request(), deadline);
    let Input::Dispatch { req, .. } = b.next_dispatch() else {
        panic!()
    };
    a.t.dispatch.abort(7);
    match b.next_dispatch() {
        Input::DispatchCancel { req: r } => assert_eq!(r, req),
        other => panic!("expected the request withdrawn on b, got {other:?}"),
    }
    assert_eq!(Stats::get(&a.t.dispatch.counters.calls_aborted), 1);
    // Nothing comes back to a for the dropped call (a reply would have come at once).
    std::thread::sleep(Duration::from_millis(200));
    while let Some(i) = a.rx.try_recv() {
        assert!(
            !matches!(i, Input::DispatchReply { .. }),
            "no reply for an aborted call: {i:?}"
        );
    }
}

#[test]
fn the_client_carries_a_call_to_another_node_and_a_dropped_request_is_lost() {
    let a = node("a");
    let b = node("b");
    let deadline = a.t.dispatch.now() + 5_000_000_000;
    a.t.dispatch
        .send(7, "b".into(), b.addr(), serve_request(), deadline);
    let Input::Dispatch {
        req,
        deadline: theirs,
        request,
    } = b.next_dispatch()
    else {
        panic!()
    };
    assert_eq!(request, serve_request());
    assert!(theirs.is_some(), "the deadline travels as grpc-timeout");
    b.t.dispatch.respond(
        req,
        Response::Serve(t::ServeResponse {
            status: Some(t::Status::ok()),
            output: None,
            executor_id: "b".into(),
        }),
    );
    let Input::DispatchReply { call, result } = a.next_dispatch() else {
        panic!()
    };
    assert_eq!(call, 7);
    let Ok(Response::Serve(r)) = result else {
        panic!("{result:?}")
    };
    assert_eq!((r.status.unwrap().code, r.executor_id.as_str()), (200, "b"));

    // b takes the next request and stops before answering: the request was written, so lost.
    a.t.dispatch
        .send(8, "b".into(), b.addr(), serve_request(), deadline);
    let Input::Dispatch { .. } = b.next_dispatch() else {
        panic!()
    };
    b.t.dispatch.stopping();
    let Input::DispatchReply { call, result } = a.next_dispatch() else {
        panic!()
    };
    assert_eq!(call, 8);
    let e = result.unwrap_err();
    assert!(e.sent, "{e:?}");
}

#[test]
fn the_backoff_schedule_grows_by_1_6_up_to_120_s_with_20_percent_jitter() {
    assert_eq!(client::backoff(1), Duration::from_secs(1));
    assert_eq!(client::backoff(2), Duration::from_millis(1600));
    assert_eq!(client::backoff(3).as_millis(), 2560);
    assert_eq!(client::backoff(30), Duration::from_secs(120));
    assert_eq!(client::backoff(u32::MAX), Duration::from_secs(120));
    let d = Duration::from_secs(10);
    assert_eq!(client::jittered(d, 0.0), Duration::from_secs(8));
    assert_eq!(client::jittered(d, 1.0), Duration::from_secs(12));
    assert_eq!(client::jittered(d, 0.5), d);
}
