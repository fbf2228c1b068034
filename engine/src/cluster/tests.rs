//! Cluster tests: two or three `Node`s with Lua apps on an in-memory network and virtual time.
//! `Transmit` becomes the peer's `Frame` (each new connection starting with the sender's
//! `Hello`, as a transport does), `Datagram` the member's `Datagram` by address.

use crate::entries::Entry;
use crate::node::{ClusterConfig, Level, NodeConfig};
use crate::pid::NodeId;
use crate::trace::TraceEvent;
use crate::value::{Table, Value};
use crate::{Input, Node, Output, Work};
use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;

pub(crate) const MS: u64 = 1_000_000;
pub(crate) const SECRET: &[u8] = b"cluster secret";

pub(crate) fn lua_entry(id: &str, source: &str) -> Entry {
    let (namespace, name) = crate::entries::parse_id(id);
    let modules = Table {
        array: ["io", "time", "events"].map(Value::from).to_vec(),
        map: vec![],
    };
    let data = Table::default()
        .with("source", Value::from(source))
        .with("method", Value::from("main"))
        .with("modules", Value::table(modules));
    Entry {
        id: id.into(),
        namespace,
        name,
        kind: "process.lua".into(),
        data,
        file: "<test>".into(),
        ..Default::default()
    }
}

/// Answers every message with a `pong` carrying the same payload; `stop` ends it normally,
/// `fail` with an error.
pub(crate) const ECHO: &str = r#"return { main = function()
    local inbox = process.inbox()
    while true do
        local m = inbox:receive()
        if m:topic() == "stop" then return "stopped" end
        if m:topic() == "fail" then error("asked to fail") end
        process.send(m:from(), "pong", m:payload():data())
    end
end }"#;

/// Waits for ever (until canceled or its node dies).
pub(crate) const IDLE: &str = r#"return { main = function() process.inbox():receive() end }"#;

pub(crate) struct Member {
    pub(crate) name: NodeId,
    pub(crate) addr: String,
    pub(crate) node: Node,
    pub(crate) out: String,
    pub(crate) exit: Option<i32>,
    pub(crate) alive: bool,
    pub(crate) trace: Rc<RefCell<Vec<String>>>,
    pub(crate) logs: Vec<String>,
    pub(crate) peer_up: Vec<String>,
    pub(crate) peer_down: Vec<String>,
    /// `DispatchRespond` outputs: (request id, response).
    pub(crate) responses: Vec<(u64, crate::dispatch::Response)>,
}

pub(crate) struct Net {
    pub(crate) m: Vec<Member>,
    pub(crate) now: u64,
    pub(crate) inbox: Vec<VecDeque<Input>>,
    /// (from, to) pairs whose connection has sent its Hello.
    pub(crate) connected: BTreeSet<(usize, usize)>,
    /// (from, to) pairs whose traffic is lost (a partition).
    pub(crate) cut: BTreeSet<(usize, usize)>,
    /// Every relay frame is delivered twice (a duplicating network).
    pub(crate) duplicate: bool,
}

pub(crate) fn config(name: &str, incarnation: u64, join: &[&str]) -> NodeConfig {
    NodeConfig {
        seed: 11,
        step_budget: 1000,
        cluster: Some(ClusterConfig {
            node: NodeId::named(name),
            addr: format!("{name}:7000"),
            incarnation,
            secret: SECRET.to_vec(),
            join: join.iter().map(|s| s.to_string()).collect(),
        }),
        ..Default::default()
    }
}

pub(crate) fn build(
    cfg: NodeConfig,
    apps: &[(&str, &str)],
    planted: crate::node::Planted,
) -> Member {
    let entries: Vec<Entry> = apps.iter().map(|(id, src)| lua_entry(id, src)).collect();
    build_entries(cfg, entries, planted)
}

/// As `build`, with entries of any kind.
pub(crate) fn build_entries(
    cfg: NodeConfig,
    entries: Vec<Entry>,
    planted: crate::node::Planted,
) -> Member {
    let trace = Rc::new(RefCell::new(Vec::new()));
    let t = trace.clone();
    let c = cfg.cluster.clone().expect("cluster config");
    let node = Node::builder(cfg)
        .log_level(Level::Debug)
        .preload(entries)
        .host("t:term", "terminal.host")
        .host("t:host", "process.host")
        .lua()
        .planted(planted)
        .observer(Box::new(move |e: &TraceEvent<'_>| {
            t.borrow_mut().push(e.line())
        }))
        .build(None)
        .expect("test entries compile")
        .node;
    Member {
        name: c.node,
        addr: c.addr,
        node,
        out: String::new(),
        exit: None,
        alive: true,
        trace,
        logs: Vec::new(),
        peer_up: Vec::new(),
        peer_down: Vec::new(),
        responses: Vec::new(),
    }
}

impl Net {
    /// `names[0]` is the seed every other node joins through.
    pub(crate) fn new(names: &[&str], apps: &[(&str, &str)]) -> Net {
        Net::with(names, apps, crate::node::Planted::default())
    }

    pub(crate) fn with(
        names: &[&str],
        apps: &[(&str, &str)],
        planted: crate::node::Planted,
    ) -> Net {
        let seed = format!("{}:7000", names[0]);
        let m: Vec<Member> = names
            .iter()
            .map(|n| build(config(n, 1, &[&seed]), apps, planted))
            .collect();
        Net::of_members(m)
    }

    fn of_members(m: Vec<Member>) -> Net {
        Net {
            inbox: m.iter().map(|_| VecDeque::new()).collect(),
            m,
            now: 0,
            connected: BTreeSet::new(),
            cut: BTreeSet::new(),
            duplicate: false,
        }
    }

    /// One node per `(name, entries)`; the first is the seed every other node joins through.
    pub(crate) fn of(nodes: Vec<(&str, Vec<Entry>)>) -> Net {
        let seed = format!("{}:7000", nodes[0].0);
        let m: Vec<Member> = nodes
            .into_iter()
            .map(|(n, e)| build_entries(config(n, 1, &[&seed]), e, Default::default()))
            .collect();
        Net::of_members(m)
    }

    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.m.iter().position(|m| m.name.as_str() == name)
    }

    pub(crate) fn route(&mut self, i: usize, o: Output) {
        match o {
            Output::Transmit { to_node, bytes } => {
                let Some(j) = self.index(to_node.as_str()) else {
                    return;
                };
                if !self.m[j].alive || self.cut.contains(&(i, j)) {
                    return;
                }
                let from_node = self.m[i].name.clone();
                if self.connected.insert((i, j)) {
                    let hello = self.m[i].node.hello().expect("a cluster node has a hello");
                    self.inbox[j].push_back(Input::Frame {
                        from_node: from_node.clone(),
                        bytes: hello,
                    });
                }
                let copies = if self.duplicate { 2 } else { 1 };
                for _ in 0..copies {
                    self.inbox[j].push_back(Input::Frame {
                        from_node: from_node.clone(),
                        bytes: bytes.clone(),
                    });
                }
            }
            Output::Datagram { addr, bytes } => {
                if let Some(j) = self.m.iter().position(|m| m.addr == addr) {
                    if self.m[j].alive && !self.cut.contains(&(i, j)) {
                        self.inbox[j].push_back(Input::Datagram { bytes });
                    }
                }
            }
            Output::PeerUp { node, .. } => self.m[i].peer_up.push(node.to_string()),
            Output::PeerDown { node } => {
                // The driver closes the connection: both directions start again with a Hello.
                self.m[i].peer_down.push(node.to_string());
                if let Some(j) = self.index(node.as_str()) {
                    self.connected.remove(&(i, j));
                    self.connected.remove(&(j, i));
                }
            }
            Output::DispatchRespond { req, response } => self.m[i].responses.push((req, response)),
            // The world stores registry versions at once.
            Output::Execute {
                pid,
                tag,
                cmd:
                    crate::world::WorldCommand::RegistryCommit { .. }
                    | crate::world::WorldCommand::RegistryHead { .. },
            } => self.inbox[i].push_back(Input::Completed {
                pid,
                tag,
                result: Ok(Value::Nil),
            }),
            Output::Stdout(b) => self.m[i].out.push_str(&String::from_utf8_lossy(&b)),
            Output::Exit(code) => self.m[i].exit = Some(code),
            Output::Log {
                level,
                message,
                fields,
            } => self.m[i]
                .logs
                .push(format!("{} {message} {fields:?}", level.as_str())),
            _ => {}
        }
    }

    pub(crate) fn step(&mut self) {
        let now = self.now;
        let mut busy = false;
        for i in 0..self.m.len() {
            if !self.m[i].alive {
                self.inbox[i].clear();
                continue;
            }
            while let Some(input) = self.inbox[i].pop_front() {
                self.m[i].node.handle(now, input);
            }
            busy |= self.m[i].node.run(now, 256) == Work::More;
            while let Some(o) = self.m[i].node.poll_output() {
                self.route(i, o);
            }
        }
        if busy || self.inbox.iter().any(|q| !q.is_empty()) {
            self.now += MS / 10;
        } else {
            let next = self
                .m
                .iter()
                .filter(|m| m.alive)
                .filter_map(|m| m.node.poll_timeout())
                .min()
                .unwrap_or(now + 50 * MS);
            self.now = next.clamp(now + 1, now + 50 * MS);
        }
    }

    /// Steps until `done` holds or `within` ns of virtual time passed; whether it held.
    pub(crate) fn run_until(&mut self, within: u64, done: impl Fn(&Net) -> bool) -> bool {
        let end = self.now + within;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    pub(crate) fn up(&self, i: usize) -> Vec<String> {
        self.m[i]
            .node
            .cluster_peers()
            .into_iter()
            .filter(|p| p.up)
            .map(|p| p.node.to_string())
            .collect()
    }

    pub(crate) fn all_up(&self) -> bool {
        (0..self.m.len()).all(|i| !self.m[i].alive || self.up(i).len() == self.live() - 1)
    }

    pub(crate) fn live(&self) -> usize {
        self.m.iter().filter(|m| m.alive).count()
    }

    /// Whether every live node's membership told it (`PeerUp`) of every other live node: a node
    /// can hold a peer up from its `Hello` before the membership says so.
    pub(crate) fn all_told(&self) -> bool {
        (0..self.m.len()).all(|i| {
            let mut told = self.m[i].peer_up.clone();
            told.sort();
            told.dedup();
            !self.m[i].alive || told.len() >= self.live() - 1
        })
    }

    /// Boots the cluster and waits until every node holds every other up, and its membership
    /// said so.
    pub(crate) fn converge(&mut self) {
        assert!(
            self.run_until(20_000 * MS, |n| n.all_up() && n.all_told()),
            "cluster did not form"
        );
    }

    /// Starts `entry` as node `i`'s terminal process.
    pub(crate) fn main(&mut self, i: usize, entry: &str) -> u64 {
        self.m[i]
            .node
            .spawn(entry, "t:term", vec![], true)
            .unwrap()
            .uniq
    }

    pub(crate) fn spawn(&mut self, i: usize, entry: &str) -> String {
        self.m[i]
            .node
            .spawn(entry, "t:host", vec![], false)
            .unwrap()
            .to_string()
    }

    /// Runs until node `i` exits; its output.
    pub(crate) fn finish(&mut self, i: usize, within: u64) -> String {
        let ok = self.run_until(within, |n| n.m[i].exit.is_some());
        assert!(
            ok,
            "node {i} did not finish; output:\n{}\nlogs:\n{}",
            self.m[i].out,
            self.m[i].logs.join("\n")
        );
        self.m[i].out.clone()
    }

    /// The node crashes: nothing more in or out, connections to it gone.
    pub(crate) fn crash(&mut self, i: usize) {
        self.m[i].alive = false;
        self.connected.retain(|(a, b)| *a != i && *b != i);
    }

    pub(crate) fn trace(&self, i: usize, prefix: &str) -> Vec<String> {
        self.m[i]
            .trace
            .borrow()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// Two nodes with `apps`; `t:main` runs as n1's terminal process until it ends. The network
/// duplicates every relay frame when `duplicate`.
fn run_main(apps: &[(&str, &str)], duplicate: bool, within: u64) -> (Net, String) {
    let mut net = Net::new(&["n1", "n2"], apps);
    net.converge();
    net.duplicate = duplicate;
    net.main(0, "t:main");
    let out = net.finish(0, within);
    (net, out)
}

#[test]
fn nodes_join_see_each_other_up_and_print_their_name_in_pids() {
    let mut net = Net::new(&["n1", "n2", "n3"], &[("t:idle", IDLE)]);
    net.converge();
    for i in 0..3 {
        let mut up = net.up(i);
        up.sort();
        let want: Vec<String> = ["n1", "n2", "n3"]
            .iter()
            .filter(|n| **n != net.m[i].name.as_str())
            .map(|n| n.to_string())
            .collect();
        assert_eq!(up, want, "node {i}");
        let mut told = net.m[i].peer_up.clone();
        told.sort();
        told.dedup();
        assert_eq!(told, want, "PeerUp outputs of node {i}");
        assert_eq!(
            net.trace(i, "node up").len(),
            2,
            "{:?}",
            net.trace(i, "node")
        );
    }
    let pid = net.spawn(1, "t:idle");
    assert!(pid.starts_with("{n2@t:host|0x"), "{pid}");
    assert_eq!(
        crate::pid::Pid::parse(&pid).unwrap().uniq >> super::peers::EPOCH_SHIFT,
        super::peers::pid_epoch(1)
    );
}

#[test]
fn a_standalone_node_prints_pids_as_before_and_has_no_hello() {
    let mut node = Node::bare(NodeConfig::default());
    assert!(node.hello().is_none());
    node.handle(0, Input::Datagram { bytes: vec![1] });
    assert_eq!(node.stats().frames_dropped, 1);
    assert!(node.poll_timeout().is_none());
}

const REMOTE_MAIN: &str = r#"
local io = require("io")
return { main = function()
    local echo, err = process.spawn_monitored("t:echo", "n2@t:host")
    if not echo then io.print("spawn failed", tostring(err)) return 1 end
    io.print("spawned", echo)
    for i = 1, 20 do process.send(echo, "ping", i) end
    local inbox = process.inbox()
    local order = {}
    for i = 1, 20 do
        local m = inbox:receive()
        order[#order + 1] = tostring(m:payload():data())
        if m:from() ~= echo then io.print("wrong sender", m:from()) end
    end
    io.print("order", table.concat(order, ","))
    process.send(echo, "stop")
    local ev = process.events():receive()
    io.print("event", ev.kind, ev.from == echo, tostring(ev.result.value))
    local _, e2 = process.spawn("t:echo", "n9@t:host")
    io.print("down node", tostring(e2))
    return 0
end }"#;

#[test]
fn remote_spawn_send_in_order_and_monitor_exit_once() {
    let (net, out) = run_main(
        &[("t:echo", ECHO), ("t:main", REMOTE_MAIN)],
        false,
        5_000 * MS,
    );
    assert!(out.contains("spawned\t{n2@t:host|0x"), "{out}");
    let order: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    assert!(
        out.contains(&format!("order\t{}", order.join(","))),
        "{out}"
    );
    assert!(!out.contains("wrong sender"), "{out}");
    assert!(out.contains("event\tpid.exit\ttrue\tstopped"), "{out}");
    assert!(out.contains("down node\tnode down: n9"), "{out}");
    assert_eq!(net.m[0].exit, Some(0));
    // n2 took every message once, in sequence order.
    let seqs: Vec<u64> = net
        .trace(1, "remote deliver")
        .iter()
        .map(|l| {
            l["remote deliver #".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), 21, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(net.trace(0, "remote pid.exit").len(), 1);
}

const WATCH_MAIN: &str = r#"
local io = require("io")
return { main = function()
    local a = process.spawn_monitored("t:idle", "n2@t:host")
    local b = process.spawn("t:idle", "n2@t:host")
    process.monitor(b)
    process.send(process.pid(), "ready")
    process.inbox():receive()
    io.print("watching", a ~= nil, b ~= nil)
    local events = process.events()
    local seen = {}
    for i = 1, 2 do
        local ev = events:receive()
        seen[#seen + 1] = ev.kind .. " " .. ev.result.error:message()
    end
    table.sort(seen)
    io.print(table.concat(seen, "|"))
    local _, e = process.spawn("t:idle", "n2@t:host")
    io.print("after", tostring(e))
    process.inbox():receive()
    return 0
end }"#;

fn node_down_fires_each_monitor_once(via_transport: bool) {
    let mut net = Net::new(&["n1", "n2"], &[("t:idle", IDLE), ("t:main", WATCH_MAIN)]);
    net.converge();
    let main = net.main(0, "t:main");
    assert!(net.run_until(2_000 * MS, |n| n.m[0].out.contains("watching")));
    net.crash(1);
    let node_down = Input::NodeDown {
        node: NodeId::named("n2"),
        reason: "connection closed".into(),
    };
    if via_transport {
        net.inbox[0].push_back(node_down.clone());
        net.inbox[0].push_back(node_down.clone());
    }
    let within = if via_transport { 1_000 } else { 30_000 } * MS;
    assert!(net.run_until(within, |n| n.m[0].out.contains("after")));
    let out = net.m[0].out.clone();
    let reason = if via_transport {
        "connection closed"
    } else {
        "confirmed by SWIM"
    };
    let line = out
        .lines()
        .find(|l| l.starts_with("pid.exit"))
        .unwrap_or("");
    assert_eq!(line.matches("pid.exit node down: n2").count(), 2, "{out}");
    assert!(line.contains(reason), "{out}");
    assert!(out.contains("after\tnode down: n2"), "{out}");
    // The other way of learning it comes too: nothing fires twice.
    if via_transport {
        let swim = |n: &Net| n.m[0].peer_down.contains(&"n2".to_string());
        assert!(
            net.run_until(30_000 * MS, swim),
            "membership never saw n2 down"
        );
    } else {
        net.inbox[0].push_back(node_down);
        net.run_until(100 * MS, |_| false);
    }
    assert_eq!(net.trace(0, "remote pid.exit").len(), 2);
    let downs = net.trace(0, "node down");
    assert_eq!(downs.len(), 1, "{downs:?}");
    net.m[0].node.sim_control().noise(main, "quit");
    net.finish(0, 100 * MS);
}

#[test]
fn node_down_from_the_transport_fires_each_monitor_once() {
    node_down_fires_each_monitor_once(true);
}

#[test]
fn node_down_from_membership_fires_each_monitor_once() {
    node_down_fires_each_monitor_once(false);
}

#[test]
fn planted_forget_remote_exit_loses_one_exit() {
    let planted = crate::node::Planted {
        forget_remote_exit: true,
        ..Default::default()
    };
    let mut net = Net::with(
        &["n1", "n2"],
        &[("t:idle", IDLE), ("t:main", WATCH_MAIN)],
        planted,
    );
    net.converge();
    net.main(0, "t:main");
    assert!(net.run_until(2_000 * MS, |n| n.m[0].out.contains("watching")));
    net.crash(1);
    net.inbox[0].push_back(Input::NodeDown {
        node: NodeId::named("n2"),
        reason: "gone".into(),
    });
    net.run_until(1_000 * MS, |n| n.m[0].exit.is_some());
    assert_eq!(
        net.m[0].exit, None,
        "the watcher waits for the EXIT it never gets"
    );
    assert_eq!(net.trace(0, "remote pid.exit").len(), 1);
}

const LINK_MAIN: &str = r#"
local io = require("io")
return { main = function()
    process.set_options({ trap_links = true })
    local w = process.spawn_linked("t:echo", "n2@t:host")
    process.send(w, "fail")
    local ev = process.events():receive()
    io.print("link", ev.kind, ev.from == w, ev.result.error:message())
    return 0
end }"#;

#[test]
fn remote_link_reports_a_failure_as_link_down() {
    let (_, out) = run_main(
        &[("t:echo", ECHO), ("t:main", LINK_MAIN)],
        false,
        3_000 * MS,
    );
    assert!(out.contains("link\tpid.link.down\ttrue\t"), "{out}");
    assert!(out.contains("asked to fail"), "{out}");
}

const NAMES_OWNER: &str = r#"
local io = require("io")
return { main = function()
    local ok, err = process.registry.register("svc", nil, process.registry.EVENTUAL)
    io.print("claimed", tostring(ok), tostring(err))
    process.registry.register("mine", nil, process.registry.LOCAL)
    local inbox = process.inbox()
    while true do
        local m = inbox:receive()
        if m:topic() == "cluster.name.lost" then
            io.print("lost", m:payload():data().name)
        else
            process.send(m:from(), "hi", "from " .. process.pid())
        end
    end
end }"#;

const NAMES_MAIN: &str = r#"
local io = require("io")
return { main = function()
    local owner = process.registry.lookup("svc")
    io.print("lookup", owner)
    process.send("svc", "hello")
    local m = process.inbox():receive()
    io.print("answer", m:payload():data())
    local _, e = process.registry.lookup("mine")
    io.print("local stays local", tostring(e))
    local ok, e2 = process.registry.register("x", owner, process.registry.EVENTUAL)
    io.print("foreign", tostring(ok), tostring(e2))
    local _, e3 = process.registry.register("svc", nil, process.registry.EVENTUAL)
    io.print("taken", tostring(e3))
    process.registry.register("tmp", nil, process.registry.EVENTUAL)
    io.print("tmp", process.registry.lookup("tmp") == process.pid())
    io.print("released", process.registry.unregister("tmp", process.registry.EVENTUAL))
    local gone, e4 = process.registry.lookup("tmp")
    io.print("after release", tostring(gone), tostring(e4))
    return 0
end }"#;

#[test]
fn cluster_names_gossip_resolve_and_local_names_stay_local() {
    let mut net = Net::new(
        &["n1", "n2"],
        &[("t:owner", NAMES_OWNER), ("t:main", NAMES_MAIN)],
    );
    net.converge();
    let owner = net.spawn(1, "t:owner");
    assert!(net.run_until(1_000 * MS, |n| n.m[0].node.cluster_names().len() == 1));
    assert_eq!(
        net.m[0].node.cluster_names(),
        vec![("svc".to_string(), owner.clone())]
    );
    net.main(0, "t:main");
    let out = net.finish(0, 2_000 * MS);
    assert!(out.contains(&format!("lookup\t{owner}")), "{out}");
    assert!(out.contains(&format!("answer\tfrom {owner}")), "{out}");
    assert!(
        out.contains("local stays local\tname not registered"),
        "{out}"
    );
    assert!(out.contains("foreign\tnil\t"), "{out}");
    assert!(out.contains("is a process of node n2"), "{out}");
    assert!(out.contains("taken\tname already registered: svc"), "{out}");
    assert!(out.contains("tmp\ttrue"), "{out}");
    assert!(out.contains("released\ttrue"), "{out}");
    assert!(
        out.contains("after release\tnil\tname not registered"),
        "{out}"
    );
    // n2 heard the claim and the release of "tmp": only "svc" is left there.
    let names = |n: &Net| n.m[1].node.cluster_names();
    let released = |n: &Net| !n.trace(1, "frame in name_release").is_empty();
    assert!(net.run_until(100 * MS, |n| released(n) && names(n).len() == 1));
    assert_eq!(names(&net), vec![("svc".to_string(), owner)]);
}

#[test]
fn conflicting_claims_resolve_to_one_owner_everywhere_and_the_loser_is_told() {
    let mut net = Net::new(&["n1", "n2"], &[("t:owner", NAMES_OWNER)]);
    net.converge();
    // A partition: both sides claim the same name.
    net.cut.insert((0, 1));
    net.cut.insert((1, 0));
    let a = net.spawn(0, "t:owner");
    let b = net.spawn(1, "t:owner");
    net.run_until(200 * MS, |_| false);
    assert_eq!(net.m[0].node.cluster_names()[0].1, a);
    assert_eq!(net.m[1].node.cluster_names()[0].1, b);
    // Heal: the transport reconnects (a node heard from again is up again).
    net.cut.clear();
    for (i, j) in [(0usize, 1usize), (1, 0)] {
        let peer = net.m[j].name.clone();
        net.inbox[i].push_back(Input::NodeDown {
            node: peer,
            reason: "partition".into(),
        });
        net.connected.remove(&(j, i));
    }
    // Each side talks again, starting with its Hello.
    for (i, j) in [(0usize, 1usize), (1, 0)] {
        let hello = net.m[i].node.hello().unwrap();
        net.connected.insert((i, j));
        let from_node = net.m[i].name.clone();
        net.inbox[j].push_back(Input::Frame {
            from_node,
            bytes: hello,
        });
    }
    assert!(net.run_until(2_000 * MS, |n| {
        let x = n.m[0].node.cluster_names();
        !x.is_empty() && x == n.m[1].node.cluster_names()
    }));
    let winner = net.m[0].node.cluster_names()[0].1.clone();
    assert!(winner == a || winner == b);
    let loser = if winner == a { 1 } else { 0 };
    // The losing owner gets a message on the documented topic; the winner's owner does not.
    let told = |n: &Net, i: usize| {
        n.trace(i, "send")
            .iter()
            .any(|l| l.ends_with(" cluster.name.lost"))
    };
    assert!(
        net.run_until(500 * MS, |n| told(n, loser)),
        "{:?}",
        net.trace(loser, "")
    );
    assert!(net.m[loser].logs.iter().any(|l| l.contains("name lost")));
    assert!(!told(&net, 1 - loser));
}

#[test]
fn duplicate_frames_are_dropped_and_counted() {
    let (net, out) = run_main(
        &[("t:echo", ECHO), ("t:main", REMOTE_MAIN)],
        true,
        5_000 * MS,
    );
    let order: Vec<String> = (1..=20).map(|i| i.to_string()).collect();
    assert!(
        out.contains(&format!("order\t{}", order.join(","))),
        "{out}"
    );
    assert!(net.m[1].node.stats().frames_duplicate >= 20);
    assert!(net.m[0].node.stats().frames_duplicate >= 20);
}

#[test]
fn bad_frames_are_counted_and_logged_never_a_panic() {
    let mut net = Net::new(&["n1", "n2"], &[("t:idle", IDLE)]);
    net.converge();
    let n2 = NodeId::named("n2");
    let n3 = NodeId::named("n3");
    let before = net.m[0].node.stats();
    let send = super::frame::Frame::Terminate {
        from: crate::pid::Pid::on(n3.clone(), "t:host".into(), 1),
        to: crate::pid::Pid::on(NodeId::named("n1"), "t:host".into(), 1),
    }
    .encode()
    .unwrap();
    let wrong_secret =
        super::frame::Frame::Hello(super::frame::Hello::new(b"other", n3.clone(), 1))
            .encode()
            .unwrap();
    let other_name = super::frame::Frame::Hello(super::frame::Hello::new(SECRET, n2.clone(), 1))
        .encode()
        .unwrap();
    let node = &mut net.m[0].node;
    let now = net.now;
    node.handle(
        now,
        Input::Frame {
            from_node: n3.clone(),
            bytes: vec![0xde, 0xad],
        },
    );
    node.handle(
        now,
        Input::Frame {
            from_node: n3.clone(),
            bytes: send,
        },
    );
    node.handle(
        now,
        Input::Frame {
            from_node: n3.clone(),
            bytes: wrong_secret,
        },
    );
    node.handle(
        now,
        Input::Frame {
            from_node: n3.clone(),
            bytes: other_name,
        },
    );
    node.handle(now, Input::Datagram { bytes: vec![7; 40] });
    let s = node.stats();
    assert_eq!(s.frames_invalid - before.frames_invalid, 1);
    assert_eq!(s.frames_unauthenticated - before.frames_unauthenticated, 3);
    assert_eq!(s.frames_dropped - before.frames_dropped, 4);
    assert!(!node.cluster_peers().iter().any(|p| p.node == n3 && p.up));
    while let Some(o) = net.m[0].node.poll_output() {
        net.route(0, o);
    }
    let drops = net.m[0]
        .logs
        .iter()
        .filter(|l| l.contains("frame dropped"))
        .count();
    assert_eq!(drops, 4, "{:?}", net.m[0].logs);
    assert!(net.m[0]
        .logs
        .iter()
        .any(|l| l.contains("another cluster secret")));
    assert!(net.m[0]
        .logs
        .iter()
        .any(|l| l.contains("membership datagram refused")));
}

#[test]
fn graceful_leave_is_seen_by_peers_quickly() {
    let mut net = Net::new(&["n1", "n2", "n3"], &[("t:idle", IDLE)]);
    net.converge();
    let t0 = net.now;
    net.m[2]
        .node
        .handle(t0, Input::Signal(crate::node::SignalKind::Interrupt));
    let mut outs = Vec::new();
    while let Some(o) = net.m[2].node.poll_output() {
        outs.push(o);
    }
    let exit = outs
        .iter()
        .position(|o| matches!(o, Output::Exit(_)))
        .expect("exits");
    let datagram = outs
        .iter()
        .position(|o| matches!(o, Output::Datagram { .. }));
    assert!(
        datagram.is_some_and(|d| d < exit),
        "leave datagrams before Exit: {outs:?}"
    );
    for o in outs {
        net.route(2, o);
    }
    net.crash(2);
    assert!(net.run_until(500 * MS, |n| n.up(0).len() == 1 && n.up(1).len() == 1));
    assert!(net.trace(0, "node down n3").len() == 1);
}

#[test]
fn a_restarted_node_is_a_new_incarnation_and_old_pids_are_dropped() {
    let mut net = Net::new(&["n1", "n2"], &[("t:echo", ECHO), ("t:idle", IDLE)]);
    net.converge();
    let old = net.spawn(1, "t:echo");
    // n2 restarts: a new incarnation at the same address.
    net.crash(1);
    let cfg = config("n2", 2, &["n1:7000"]);
    net.m[1] = build(
        cfg,
        &[("t:echo", ECHO), ("t:idle", IDLE)],
        Default::default(),
    );
    let fresh = net.spawn(1, "t:echo");
    assert_ne!(old, fresh, "a new run never reuses a PID");
    assert!(net.run_until(30_000 * MS, |n| n.up(0).len() == 1 && n.up(1).len() == 1));
    // A message from n1 for the old PID reaches nobody and is counted on n2.
    let waiter = net.spawn(0, "t:idle");
    let waiter_id = crate::pid::Pid::parse(&waiter).unwrap().uniq;
    net.m[0]
        .node
        .core
        .borrow_mut()
        .send(Some(waiter_id), &old, "ping".into(), vec![])
        .unwrap();
    assert!(net.run_until(500 * MS, |n| n.m[1].node.stats().frames_stale == 1));
    assert!(
        net.trace(0, "node down n2/1").len() == 1,
        "{:?}",
        net.trace(0, "node")
    );
}

const CONTROL_MAIN: &str = r#"
local io = require("io")
local events = require("events")
return { main = function()
    local sub = events.subscribe("cluster")
    local a = process.spawn_monitored("t:waiter", "n2@t:host")
    local b = process.spawn_monitored("t:idle", "n2@t:host")
    process.cancel(a, "enough")
    process.terminate(b)
    local seen = {}
    for i = 1, 2 do
        local ev = process.events():receive()
        local r = ev.result.error and ev.result.error:message() or tostring(ev.result.value)
        seen[ev.from == a and "a" or "b"] = r
    end
    io.print("canceled", seen.a)
    io.print("terminated", seen.b)
    process.send(process.pid(), "ready")
    process.inbox():receive()
    io.print("ready")
    local e = sub:channel():receive()
    io.print("bus", e.system, e.kind, e.path, e.data.node, e.data.reason)
    return 0
end }"#;

/// Ends when canceled, returning the CANCEL's reason.
const WAITER: &str = r#"return { main = function()
    local ev = process.events():receive()
    return ev.kind .. ": " .. ev.reason
end }"#;

#[test]
fn remote_cancel_and_terminate_and_node_down_on_the_bus() {
    let apps = [
        ("t:idle", IDLE),
        ("t:waiter", WAITER),
        ("t:main", CONTROL_MAIN),
    ];
    let mut net = Net::new(&["n1", "n2"], &apps);
    net.converge();
    net.main(0, "t:main");
    assert!(net.run_until(2_000 * MS, |n| n.m[0].out.contains("ready")));
    net.crash(1);
    net.inbox[0].push_back(Input::NodeDown {
        node: NodeId::named("n2"),
        reason: "connection reset".into(),
    });
    let out = net.finish(0, 1_000 * MS);
    assert!(out.contains("canceled\tpid.cancel: enough"), "{out}");
    assert!(out.contains("terminated\tterminated"), "{out}");
    assert!(
        out.contains("bus\tcluster\tnode.down\tn2\tn2\tconnection reset"),
        "{out}"
    );
}

#[test]
fn frames_speaking_for_another_nodes_processes_are_refused() {
    let mut net = Net::new(&["n1", "n2", "n3"], &[("t:idle", IDLE)]);
    net.converge();
    let victim = net.spawn(0, "t:idle");
    let victim = crate::pid::Pid::parse(&victim).unwrap();
    // n2, after its Hello, asks n1 to end a process in the name of a process of n3.
    let forged = super::frame::Frame::Terminate {
        from: crate::pid::Pid::on(NodeId::named("n3"), "t:host".into(), 5),
        to: victim.clone(),
    }
    .encode()
    .unwrap();
    let hello = net.m[1].node.hello().unwrap();
    let now = net.now;
    let n2 = NodeId::named("n2");
    let node = &mut net.m[0].node;
    node.handle(
        now,
        Input::Frame {
            from_node: n2.clone(),
            bytes: hello,
        },
    );
    node.handle(
        now,
        Input::Frame {
            from_node: n2,
            bytes: forged,
        },
    );
    assert_eq!(node.stats().frames_unauthenticated, 1);
    assert!(node.core.borrow().is_alive(victim.uniq));
}

const PENDING_MAIN: &str = r#"
local io = require("io")
return { main = function()
    local pid, err = process.spawn_monitored("t:idle", "n2@t:host")
    io.print("spawn", tostring(pid), tostring(err))
    return 0
end }"#;

#[test]
fn a_spawn_waiting_on_a_node_that_goes_down_fails() {
    let mut net = Net::new(&["n1", "n2"], &[("t:idle", IDLE), ("t:main", PENDING_MAIN)]);
    net.converge();
    // n2's answers are lost: the spawn waits.
    net.cut.insert((1, 0));
    net.main(0, "t:main");
    net.run_until(100 * MS, |_| false);
    assert_eq!(net.m[0].exit, None, "{}", net.m[0].out);
    net.inbox[0].push_back(Input::NodeDown {
        node: NodeId::named("n2"),
        reason: "stream reset".into(),
    });
    let out = net.finish(0, 100 * MS);
    assert!(
        out.contains("spawn\tnil\tnode down: n2 (stream reset)"),
        "{out}"
    );
}

#[test]
fn a_pid_without_a_node_is_this_nodes_own() {
    let mut net = Net::new(&["n1"], &[("t:idle", IDLE)]);
    let pid = crate::pid::Pid::parse(&net.spawn(0, "t:idle")).unwrap();
    let core = net.m[0].node.core.borrow();
    for text in [
        format!("{{t:host|0x{:x}}}", pid.uniq),
        format!("{{local@t:host|0x{:x}}}", pid.uniq),
        pid.to_string(),
    ] {
        assert_eq!(
            core.route(&text).unwrap(),
            crate::relay::Route::Local(pid.uniq),
            "{text}"
        );
    }
    assert_eq!(core.route_host("local@t:host").unwrap(), "t:host");
    assert_eq!(core.route_host("n1@t:host").unwrap(), "t:host");
}

const WATCHER: &str = r#"return { main = function()
    process.spawn_monitored("t:idle", "n2@t:host")
    process.inbox():receive()
end }"#;

#[test]
fn a_watcher_that_ends_drops_its_monitor_on_the_other_node() {
    use crate::topology::ProcRef;
    let mut net = Net::new(&["n1", "n2"], &[("t:idle", IDLE), ("t:watcher", WATCHER)]);
    net.converge();
    let watcher = crate::pid::Pid::parse(&net.spawn(0, "t:watcher")).unwrap();
    assert!(net.run_until(1_000 * MS, |n| n.m[1].node.process_count() == 1));
    let target = net.m[1].node.sim_control().live_processes()[0];
    let watched = |n: &Net| {
        n.m[1]
            .node
            .core
            .borrow()
            .topology
            .is_monitoring(&ProcRef::Remote(watcher.clone()), &ProcRef::Local(target))
    };
    assert!(net.run_until(100 * MS, watched));
    net.m[0].node.sim_control().kill(watcher.uniq, "test");
    assert!(net.run_until(100 * MS, |n| !watched(n)));
    // A message for a process of n2 that has ended reaches nobody and is counted there.
    let target_pid = net.m[1]
        .node
        .core
        .borrow()
        .pid_of(target)
        .unwrap()
        .to_string();
    net.m[1].node.sim_control().kill(target, "test");
    let sent = net.m[0]
        .node
        .core
        .borrow_mut()
        .send(None, &target_pid, "late".into(), vec![]);
    assert!(sent.is_ok(), "the sender cannot know: {sent:?}");
    assert!(net.run_until(100 * MS, |n| n.m[1].node.stats().frames_dead == 1));
}

/// Random kills, a node crash learnt through the transport or only through SWIM, and a
/// duplicating network: every monitor of a remote process that died fires exactly once, and
/// no monitor of a live process fires.
#[test]
fn remote_monitors_fire_exactly_once_under_random_deaths() {
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};
    for seed in 0..12u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut net = Net::new(&["n1", "n2", "n3"], &[("t:idle", IDLE)]);
        net.converge();
        net.duplicate = rng.next_u64() % 2 == 0;
        let watchers: Vec<u64> = (0..4)
            .map(|_| {
                crate::pid::Pid::parse(&net.spawn(0, "t:idle"))
                    .unwrap()
                    .uniq
            })
            .collect();
        let targets: Vec<(usize, String)> = (0..6)
            .map(|k| (1 + k % 2, net.spawn(1 + k % 2, "t:idle")))
            .collect();
        let mut pairs = BTreeSet::new();
        for w in &watchers {
            for (_, t) in &targets {
                if rng.next_u64() % 2 == 0 {
                    net.m[0].node.core.borrow_mut().monitor(*w, t).unwrap();
                    pairs.insert((*w, t.clone()));
                }
            }
        }
        net.run_until(50 * MS, |_| false);
        let mut dead: BTreeSet<String> = BTreeSet::new();
        for (i, t) in &targets {
            if rng.next_u64() % 3 == 0 {
                let id = crate::pid::Pid::parse(t).unwrap().uniq;
                net.m[*i].node.sim_control().kill(id, "killed");
                dead.insert(t.clone());
            }
        }
        let crash = rng.next_u64() % 2 == 0;
        if crash {
            net.run_until(rng.next_u64() % (20 * MS), |_| false);
            net.crash(2);
            dead.extend(
                targets
                    .iter()
                    .filter(|(i, _)| *i == 2)
                    .map(|(_, t)| t.clone()),
            );
            if rng.next_u64() % 2 == 0 {
                net.inbox[0].push_back(Input::NodeDown {
                    node: NodeId::named("n3"),
                    reason: "closed".into(),
                });
            }
        }
        net.run_until(30_000 * MS, |_| false);
        let fired = net.trace(0, "remote pid.exit");
        for (w, t) in &pairs {
            let n = fired
                .iter()
                .filter(|l| l.starts_with(&format!("remote pid.exit {t} -> {w}:")))
                .count();
            let want = usize::from(dead.contains(t));
            assert_eq!(n, want, "seed {seed}: watcher {w} of {t}: {fired:?}");
        }
        assert_eq!(
            fired.len(),
            pairs.iter().filter(|(_, t)| dead.contains(t)).count()
        );
    }
}

/// A step that sends a frame to a peer while nothing else on its node is ready ends the slice
/// there: the frame reaches the driver before the rest of the step runs (the peer may be
/// waiting for it), and the process goes on in the next slice. Only once per wake-up: a process
/// that goes on sending is streaming, and the rest of its frames leave together.
#[test]
fn a_remote_send_leaves_the_slice_when_nothing_else_is_ready() {
    const MAIN: &str = r#"
local io = require("io")
return { main = function()
    local pid = process.spawn("t:idle", "n2@t:host")
    io.print("spawned")
    process.send(pid, "x", 1)
    io.print("sent")
    for i = 2, 50 do process.send(pid, "x", i) end
    io.print("streamed")
    return 0
end }"#;
    let mut net = Net::new(&["n1", "n2"], &[("t:idle", IDLE), ("t:main", MAIN)]);
    net.converge();
    net.main(0, "t:main");
    // For each run of n1: what it printed and how many frames it transmitted.
    let mut runs: Vec<(String, usize)> = Vec::new();
    while net.m[0].exit.is_none() && net.now < 5_000 * MS {
        let now = net.now;
        while let Some(input) = net.inbox[0].pop_front() {
            net.m[0].node.handle(now, input);
        }
        net.m[0].node.run(now, 256);
        let (mut printed, mut frames) = (String::new(), 0);
        while let Some(o) = net.m[0].node.poll_output() {
            match &o {
                Output::Stdout(b) => printed.push_str(&String::from_utf8_lossy(b)),
                Output::Transmit { .. } => frames += 1,
                _ => {}
            }
            net.route(0, o);
        }
        runs.push((printed, frames));
        // n2 runs as usual (the spawn's reply comes from it).
        while let Some(input) = net.inbox[1].pop_front() {
            net.m[1].node.handle(now, input);
        }
        net.m[1].node.run(now, 256);
        while let Some(o) = net.m[1].node.poll_output() {
            net.route(1, o);
        }
        net.now += MS / 10;
    }
    assert_eq!(net.m[0].exit, Some(0), "{runs:?}");
    let at = |text: &str| {
        runs.iter()
            .position(|(p, _)| p.contains(text))
            .unwrap_or_else(|| panic!("printed {text}: {runs:?}"))
    };
    let (spawned, sent, streamed) = (at("spawned"), at("sent"), at("streamed"));
    assert!(
        runs[spawned].1 >= 1,
        "the send's frame left with its slice: {runs:?}"
    );
    assert!(
        sent > spawned,
        "the rest of the step ran in a later slice: {runs:?}"
    );
    assert_eq!(sent, streamed, "the stream ran on in one slice: {runs:?}");
    assert!(runs[sent].1 >= 49, "and its frames left together: {runs:?}");
}
