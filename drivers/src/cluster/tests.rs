//! Transports on loopback, in one process: the stream between two nodes, who dials, datagrams,
//! a closed connection as NodeDown, and bad peers refused without harm.

use super::*;
use crate::inputs::InputRx;
use std::sync::Mutex;
use std::time::Instant;
use weft_engine::Input;

struct Node {
    t: Transport,
    rx: InputRx,
    logs: Arc<Mutex<Vec<String>>>,
    name: NodeId,
    incarnation: u64,
}

fn start_with(name: &str, secret: &str, join: Vec<String>) -> Node {
    net::drive_in_background();
    let (tx, rx) = crate::inputs::channel();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let log: Log = Arc::new(move |_l, msg, fields| {
        let mut line = msg.to_string();
        for (k, v) in fields {
            line.push_str(&format!(" {k}={v}"));
        }
        sink.lock().unwrap().push(line);
    });
    let incarnation = 1000 + name.len() as u64;
    let me = Me {
        node: NodeId::named(name),
        incarnation,
        secret: secret.as_bytes().to_vec(),
        hello: Some(format!("hello-{name}").into_bytes()),
        join,
    };
    let l = Transport::bind("127.0.0.1:0".parse().unwrap(), "--listen").unwrap();
    let t = Transport::start(l, me, tx, log).unwrap();
    Node {
        t,
        rx,
        logs,
        name: NodeId::named(name),
        incarnation,
    }
}

fn start(name: &str) -> Node {
    start_with(name, "k", Vec::new())
}

impl Node {
    fn addr(&self) -> String {
        self.t.local_addr.to_string()
    }

    fn knows(&self, other: &Node) {
        self.t
            .peer_up(other.name.clone(), other.addr(), other.incarnation);
    }

    /// The next input within 5 s.
    fn next(&self) -> Input {
        self.rx
            .recv_timeout(Duration::from_secs(5))
            .expect("an input within 5 s")
    }

    /// The inputs that arrive within `d`.
    fn drain(&self, d: Duration) -> Vec<Input> {
        let end = Instant::now() + d;
        let mut out = Vec::new();
        while let Some(i) = self
            .rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            out.push(i);
        }
        out
    }

    fn logged(&self, part: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(part))
    }
}

fn frame(from: &str, b: &str) -> Input {
    Input::Frame {
        from_node: NodeId::named(from),
        bytes: b.as_bytes().to_vec(),
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn frames_cross_one_stream_both_ways_each_side_starting_with_its_hello() {
    let (a, b) = (start("n1"), start("n2"));
    a.knows(&b);
    b.knows(&a);
    for i in 0..50 {
        a.t.transmit(b.name.clone(), format!("a{i}").into_bytes());
    }
    assert_eq!(b.next(), frame("n1", "hello-n1"));
    for i in 0..50 {
        assert_eq!(b.next(), frame("n1", &format!("a{i}")));
    }
    assert_eq!(a.next(), frame("n2", "hello-n2"));
    b.t.transmit(a.name.clone(), b"back".to_vec());
    assert_eq!(a.next(), frame("n2", "back"));
    // One stream for the pair: n2 answered on the stream n1 opened.
    assert_eq!(Stats::get(&a.t.stats.connections), 1);
    assert_eq!(Stats::get(&b.t.stats.connections), 1);
    assert!(b.drain(Duration::from_millis(200)).is_empty());
}

#[test]
fn both_ends_dialing_at_once_end_with_one_stream_and_every_frame_once() {
    for _ in 0..5 {
        let (a, b) = (start("n1"), start("n2"));
        // Each learns of the other and sends at once: both dial.
        b.knows(&a);
        b.t.transmit(a.name.clone(), b"from-b".to_vec());
        a.knows(&b);
        a.t.transmit(b.name.clone(), b"from-a".to_vec());
        // Each frame arrives (within 5 s: one stream loses and its frames go by the other,
        // which takes longer on a loaded machine), and nothing arrives twice.
        assert_eq!(
            [a.next(), a.next()],
            [frame("n2", "hello-n2"), frame("n2", "from-b")]
        );
        assert_eq!(
            [b.next(), b.next()],
            [frame("n1", "hello-n1"), frame("n1", "from-a")]
        );
        assert!(a.drain(Duration::from_millis(300)).is_empty());
        assert!(b.drain(Duration::from_millis(10)).is_empty());
    }
}

#[test]
fn datagrams_reach_the_member_at_the_address() {
    let (a, b) = (start("n1"), start("n2"));
    a.t.datagram(b.addr(), b"swim-1".to_vec());
    a.t.datagram(b.addr(), b"swim-2".to_vec());
    let got = b.drain(Duration::from_millis(500));
    let mut data: Vec<Vec<u8>> = got
        .into_iter()
        .map(|i| match i {
            Input::Datagram { bytes } => bytes,
            other => panic!("not a datagram: {other:?}"),
        })
        .collect();
    data.sort();
    assert_eq!(data, vec![b"swim-1".to_vec(), b"swim-2".to_vec()]);
}

#[test]
fn a_closed_stream_is_node_down_at_once_and_a_new_incarnation_is_dialed() {
    let (a, b) = (start("n1"), start("n2"));
    a.knows(&b);
    b.knows(&a);
    a.t.transmit(b.name.clone(), b"x".to_vec());
    assert_eq!(b.next(), frame("n1", "hello-n1"));
    assert_eq!(b.next(), frame("n1", "x"));
    assert_eq!(a.next(), frame("n2", "hello-n2"));
    let t0 = Instant::now();
    b.t.shutdown(Duration::from_secs(1));
    match a.next() {
        Input::NodeDown { node, reason } => {
            assert_eq!(node.as_str(), "n2");
            assert!(reason.contains("n2"), "{reason}");
        }
        other => panic!("expected NodeDown, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // n2 comes back as a new incarnation elsewhere: the membership says so, and n1 dials it.
    let b2 = start_with("n2", "k", Vec::new());
    a.t.peer_up(b2.name.clone(), b2.addr(), b.incarnation + 1);
    assert_eq!(b2.next(), frame("n1", "hello-n1"));
    assert_eq!(a.next(), frame("n2", "hello-n2"));
    a.t.transmit(b2.name.clone(), b"again".to_vec());
    assert_eq!(b2.next(), frame("n1", "again"));
}

#[test]
fn a_peer_without_the_secret_or_with_our_name_is_refused_and_we_keep_serving() {
    let a = start_with("n1", "right", Vec::new());
    let intruder = start_with("n0", "wrong", Vec::new());
    intruder.knows(&a);
    intruder.t.transmit(a.name.clone(), b"evil".to_vec());
    match intruder.next() {
        Input::NodeDown { node, reason } => {
            assert_eq!(node.as_str(), "n1");
            assert!(reason.contains("secret"), "{reason}");
        }
        other => panic!("expected NodeDown, got {other:?}"),
    }
    wait_for("refusal logged", || {
        a.logged("does not prove the cluster secret")
    });
    let twin = start_with("n1", "right", Vec::new());
    twin.t.peer_up(NodeId::named("n1"), a.addr(), 1);
    twin.t.transmit(NodeId::named("n1"), b"evil".to_vec());
    wait_for("twin refused", || a.logged("claims this node's own name"));
    assert_eq!(Stats::get(&a.t.stats.peers_refused), 2);
    // Nothing reached n1's engine, and an honest peer still gets through.
    let b = start_with("n2", "right", Vec::new());
    b.knows(&a);
    b.t.transmit(a.name.clone(), b"hi".to_vec());
    let got = a.drain(Duration::from_millis(700));
    assert_eq!(got, vec![frame("n2", "hello-n2"), frame("n2", "hi")]);
}

#[test]
fn garbage_on_the_port_is_logged_counted_and_dropped() {
    use std::io::{Read, Write};
    let a = start("n1");
    let mut s = std::net::TcpStream::connect(a.t.local_addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nthis is not gRPC")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    // The counter goes up just before the line is logged (on the cluster's thread).
    wait_for("garbage logged", || a.logged("does not speak gRPC"));
    assert_eq!(Stats::get(&a.t.stats.not_grpc), 1);
    let b = start("n2");
    b.knows(&a);
    b.t.transmit(a.name.clone(), b"ok".to_vec());
    assert_eq!(a.next(), frame("n2", "hello-n2"));
    assert_eq!(a.next(), frame("n2", "ok"));
}

#[test]
fn a_join_address_that_never_answers_is_a_warning_naming_it() {
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let a = start_with("n1", "k", vec![dead.clone()]);
    wait_for("join warning", || a.logged("join address does not answer"));
    assert!(a.logged(&format!("addr={dead}")));
    let b = start_with("n2", "k", vec![a.addr()]);
    wait_for("join reached", || b.logged("join address answers"));
}

#[test]
fn a_port_in_use_is_an_error_naming_the_flag_and_address() {
    let a = start("n1");
    let e = Transport::bind(a.t.local_addr, "--listen").unwrap_err();
    assert!(
        e.starts_with(&format!("--listen {}: cannot listen there", a.t.local_addr)),
        "{e}"
    );
}
#[test]
fn frames_for_an_unknown_node_or_over_the_limit_are_dropped_and_counted() {
    let a = start("n1");
    a.t.transmit(NodeId::named("ghost"), b"x".to_vec());
    wait_for("ghost frame counted", || {
        Stats::get(&a.t.stats.frames_dropped) == 1
    });
    assert!(a.logged("no address known"));
    let b = start("n2");
    a.knows(&b);
    a.t.transmit(b.name.clone(), vec![0; peers::MAX_FRAME_BYTES + 1]);
    wait_for("big frame counted", || {
        Stats::get(&a.t.stats.frames_dropped) == 2
    });
    assert!(a.logged("frame too big"));
}

#[test]
fn a_frame_over_the_limit_from_a_peer_drops_its_stream_and_the_node_serves_on() {
    let a = start("n1");
    // A hand-made client that allows itself a bigger message than any node takes.
    let got = smol::block_on(async {
        let addr = a.addr();
        let ch = net::connect(&addr).await.unwrap();
        let mut client = weft_wire::relay::relay_client::RelayClient::with_origin(
            ch,
            net::origin(&addr).unwrap(),
        )
        .max_encoding_message_size(usize::MAX);
        let (out, rx) = async_channel::unbounded();
        out.try_send(weft_wire::relay::Chunk {
            data: b"hello-n7".to_vec(),
            more: vec![],
        })
        .unwrap();
        out.try_send(weft_wire::relay::Chunk {
            data: vec![1; peers::MAX_FRAME_BYTES + 1000],
            more: vec![],
        })
        .unwrap();
        let mut req = tonic::Request::new(rx);
        let md = req.metadata_mut();
        md.insert(peers::META_NODE, "n7".parse().unwrap());
        md.insert(peers::META_INCARNATION, "5".parse().unwrap());
        md.insert(
            peers::META_AUTH,
            peers::auth_tag(b"k", "n7", 5).parse().unwrap(),
        );
        let resp = client.stream(req).await.unwrap();
        let mut stream = resp.into_inner();
        let mut got = Vec::new();
        while let Ok(Some(c)) = stream.message().await {
            got.push(c.data);
        }
        drop(out);
        got
    });
    // n1 answered with its hello, then ended the stream.
    assert_eq!(got, vec![b"hello-n1".to_vec()]);
    assert_eq!(a.next(), frame("n7", "hello-n7"));
    match a.next() {
        Input::NodeDown { node, .. } => assert_eq!(node.as_str(), "n7"),
        other => panic!("expected NodeDown, got {other:?}"),
    }
    assert_eq!(Stats::get(&a.t.stats.frames_too_big), 1);
    assert!(a.logged("frame that is too big"));
    let b = start("n2");
    b.knows(&a);
    b.t.transmit(a.name.clone(), b"still here".to_vec());
    assert_eq!(a.next(), frame("n2", "hello-n2"));
    assert_eq!(a.next(), frame("n2", "still here"));
}
