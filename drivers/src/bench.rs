//! `weft bench`: runtime figures as `name value unit` lines, to set against
//! `../shared/bench/anchors/run.sh` (Erlang, PUC Lua) measured in the same session.

use std::time::Instant as StdInstant;
use weft_engine::command::{Command, Dest};
use weft_engine::entries::{Entry, EntryKind};
use weft_engine::node::{Factory, Level, NodeConfig, Spawning};
use weft_engine::process::{Cx, Process, Step};
use weft_engine::value::{ErrorValue, Table, Value};
use weft_engine::{Driver, Input, Instant, Node, Output, Pid, Wake, Work};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Only the benchmarks whose name contains this text.
    #[arg(long)]
    only: Option<String>,
    /// Scale every workload by this factor (use < 1 for a quick look).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
}

const PINGER: &str = r#"
local function main(n)
  local inbox = process.inbox()
  local peer = process.spawn("bench:ponger", "bench:host", process.pid())
  for i = 1, n do
    process.send(peer, "ping", i)
    inbox:receive()
  end
  process.terminate(peer)
  return 0
end
return { main = main }
"#;

pub(crate) const PONGER: &str = r#"
local function main(parent)
  local inbox = process.inbox()
  while true do
    local m = inbox:receive()
    process.send(parent, "pong", m:payload():data())
  end
end
return { main = main }
"#;

const SPAWNER: &str = r#"
local function main(n)
  local inbox = process.inbox()
  local me = process.pid()
  for i = 1, n do
    process.spawn("bench:child", "bench:host", me)
    inbox:receive()
  end
  return 0
end
return { main = main }
"#;

pub(crate) const CHILD: &str = r#"
local function main(parent)
  process.send(parent, "hi")
  return 0
end
return { main = main }
"#;

const PARKER: &str = r#"
local function main(n)
  for i = 1, n do
    process.spawn("bench:idle", "bench:host")
  end
  return 0
end
return { main = main }
"#;

const IDLE: &str = r#"
local function main()
  local inbox = process.inbox()
  inbox:receive()
  return 0
end
return { main = main }
"#;

const FANIN: &str = r#"
local function main(senders, per)
  local inbox = process.inbox()
  local me = process.pid()
  for i = 1, senders do
    process.spawn("bench:sender", "bench:host", me, per)
  end
  local total = senders * per
  for i = 1, total do
    inbox:receive()
  end
  return 0
end
return { main = main }
"#;

const SENDER: &str = r#"
local function main(parent, per)
  for i = 1, per do
    process.send(parent, "n", i)
  end
  return 0
end
return { main = main }
"#;

pub(crate) fn entry(id: &str, kind: &str, source: Option<&str>) -> Entry {
    let (ns, name) = weft_engine::entries::parse_id(id);
    let mut data = Table::default();
    if let Some(s) = source {
        data = data
            .with("source", Value::from(s))
            .with("method", Value::from("main"));
    }
    Entry {
        id: id.into(),
        namespace: ns,
        name,
        kind: kind.into(),
        data,
        file: "<bench>".into(),
        ..Default::default()
    }
}

fn bench_entries() -> Vec<Entry> {
    vec![
        entry("bench:host", "process.host", None),
        entry("bench:pinger", "process.lua", Some(PINGER)),
        entry("bench:ponger", "process.lua", Some(PONGER)),
        entry("bench:spawner", "process.lua", Some(SPAWNER)),
        entry("bench:child", "process.lua", Some(CHILD)),
        entry("bench:parker", "process.lua", Some(PARKER)),
        entry("bench:idle", "process.lua", Some(IDLE)),
        entry("bench:fanin", "process.lua", Some(FANIN)),
        entry("bench:sender", "process.lua", Some(SENDER)),
        entry("bench:sleeper", "process.lua", Some(SLEEPER)),
    ]
}

const SLEEPER: &str = r#"
local time = require("time")
local function main(n)
  for i = 1, n do
    time.sleep("1s")
  end
  return 0
end
return { main = main }
"#;

// ---- registry history: boot and commits after a long history -----------------------------------

const COMMITTER: &str = r#"
local registry = require("registry")
local function main(n)
  for i = 1, n do
    local next_id = registry.current_version():id() + 1
    local _, err = registry.snapshot():changes()
      :create({id = "dyn:v" .. next_id, kind = "registry.entry", meta = {n = next_id}, data = {n = next_id}})
      :apply()
    if err then error(tostring(err)) end
  end
  return 0
end
return { main = main }
"#;

/// A no-op app plus the committer: what boots over the long history.
fn registry_entries() -> Vec<Entry> {
    let mut committer = entry("rb:committer", "process.lua", Some(COMMITTER));
    committer.data = committer.data.with(
        "modules",
        Value::table(Table {
            array: vec![Value::from("registry")],
            map: vec![],
        }),
    );
    vec![
        entry("rb:host", "process.host", None),
        entry("rb:term", "terminal.host", None),
        committer,
    ]
}

/// Real clock; world commands answered at once by a `World` on disk, like `weft run` does.
struct WorldDriver {
    t0: StdInstant,
    world: weft_world::World,
    answers: std::collections::VecDeque<Input>,
}

impl Driver for WorldDriver {
    fn now(&mut self) -> Instant {
        self.t0.elapsed().as_nanos() as u64
    }
    fn output(&mut self, o: Output) {
        match o {
            Output::Stderr(b) => eprint!("{}", String::from_utf8_lossy(&b)),
            Output::Execute { pid, tag, cmd } => {
                let result = self.world.handle(cmd);
                self.answers
                    .push_back(Input::Completed { pid, tag, result });
            }
            _ => {}
        }
    }
    fn poll_input(&mut self) -> Option<Input> {
        self.answers.pop_front()
    }
    fn wait(&mut self, _node: &mut Node, deadline: Option<Instant>) -> Wake {
        let now = self.now();
        sleep_until(now, deadline)
    }
}

/// Boots the registry app on `root` (restoring whatever history is stored there).
fn registry_boot(root: &std::path::Path) -> (Node, weft_world::World) {
    let mut world = weft_world::World::new(weft_world::Storage::Disk {
        root: root.to_path_buf(),
    });
    let node = Node::builder(NodeConfig {
        seed: 1,
        ..Default::default()
    })
    .log_level(Level::Error)
    .entries(registry_entries())
    .build(Some(&mut world))
    .expect("registry bench app boots")
    .node;
    (node, world)
}

/// Runs the committer for `n` commits; returns the seconds taken and the world back.
fn registry_commit(node: &mut Node, world: weft_world::World, n: i64) -> (f64, weft_world::World) {
    node.spawn("rb:committer", "rb:term", vec![Value::Int(n)], true)
        .expect("spawn committer");
    let mut d = WorldDriver {
        t0: StdInstant::now(),
        world,
        answers: Default::default(),
    };
    match weft_engine::drive(node, &mut d, 4096) {
        Some(0) => (d.t0.elapsed().as_secs_f64(), d.world),
        other => panic!("committer ended with {other:?}"),
    }
}

/// A temporary project directory, removed on drop.
pub(crate) struct TempProject(pub(crate) std::path::PathBuf);

impl TempProject {
    pub(crate) fn new(tag: &str) -> TempProject {
        let p = std::env::temp_dir().join(format!("weft-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp project");
        TempProject(p)
    }
}

impl Drop for TempProject {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stores `versions` versions on `root`: the app's version 1 and one commit through a node,
/// then the rest imported in one go: with `grow`, one new entry each (as the committer makes
/// them, so the state holds one entry per version); without, updates of one counter entry.
fn registry_history(root: &std::path::Path, versions: u64, grow: bool) {
    let (mut node, world) = registry_boot(root);
    let _ = registry_commit(&mut node, world, 1);
    let storage = weft_world::Storage::Disk {
        root: root.to_path_buf(),
    };
    let mut store = weft_world::registry::RegistryStore::open(&storage).expect("registry store");
    let have = store.load().expect("load history").len() as u64;
    let more: Vec<(u64, Vec<weft_engine::registry::Op>)> = (have + 1..=versions)
        .map(|v| {
            let id = if grow {
                format!("dyn:v{v}")
            } else {
                "dyn:counter".to_string()
            };
            let (namespace, name) = weft_engine::entries::parse_id(&id);
            let n = Table::default().with("n", Value::Int(v as i64));
            let e = Entry {
                id,
                namespace,
                name,
                kind: "registry.entry".into(),
                meta: n.clone(),
                data: n,
                ..Default::default()
            };
            let op = if grow || v == have + 1 {
                weft_engine::registry::Op::Create(e)
            } else {
                weft_engine::registry::Op::Update(e)
            };
            (v, vec![op])
        })
        .collect();
    store.import(&more).expect("import history");
}

/// Set to a project directory: `weft bench` only boots the registry app there and prints
/// `<seconds> <RSS growth in bytes>` (a fresh process, so memory freed earlier hides nothing).
const BOOT_PROBE_ENV: &str = "WEFT_BENCH_BOOT_PROBE";

fn boot_probe(root: &std::path::Path) -> i32 {
    let before = rss_bytes().unwrap_or(0);
    let t0 = StdInstant::now();
    let (node, world) = registry_boot(root);
    let secs = t0.elapsed().as_secs_f64();
    let grew = rss_bytes().unwrap_or(0).saturating_sub(before);
    println!("{secs} {grew}");
    drop((node, world));
    0
}

/// Boot time (s) and RSS growth (bytes) of a boot on `root`, measured in a child process.
fn timed_boot(root: &std::path::Path) -> (f64, u64) {
    let exe = std::env::current_exe().expect("own executable");
    let out = std::process::Command::new(exe)
        .arg("bench")
        .env(BOOT_PROBE_ENV, root)
        .output()
        .expect("boot probe");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    match (
        it.next().and_then(|x| x.parse().ok()),
        it.next().and_then(|x| x.parse().ok()),
    ) {
        (Some(secs), Some(grew)) => (secs, grew),
        _ => panic!(
            "boot probe failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The same bench processes under the simulator: (seconds of wall time, simulated ns).
fn sim_run(entry: &str, args: Vec<String>) -> (f64, u64) {
    let mut entries = bench_entries();
    let mut host = self::entry("bench:host", "process.host", None);
    host.data = Table::default().with(
        "lifecycle",
        Value::table(Table::default().with("auto_start", Value::Bool(true))),
    );
    entries[0] = host;
    for e in entries
        .iter_mut()
        .filter(|e| e.kind == EntryKind::ProcessLua)
    {
        let mods = Table {
            array: vec![Value::from("time")],
            map: vec![],
        };
        e.data = e.data.clone().with("modules", Value::table(mods));
    }
    entries.push(self::entry("bench:term", "terminal.host", None));
    let mut cfg = weft_sim::SimConfig::new(1);
    cfg.exec = Some(("bench:term".into(), entry.into(), args));
    cfg.until_ns = u64::MAX / 4;
    cfg.liveness_ns = 0;
    let t0 = StdInstant::now();
    let r = weft_sim::run(&entries, &cfg).expect("sim run");
    assert_eq!(r.exit_code, Some(0), "{:?}", r.violation);
    (t0.elapsed().as_secs_f64(), r.sim_time_ns)
}

fn lua_node() -> Node {
    Node::builder(NodeConfig {
        seed: 1,
        ..Default::default()
    })
    .log_level(Level::Error)
    .preload(bench_entries())
    .host("bench:host", "process.host")
    .host("bench:term", "terminal.host")
    .lua()
    .build(None)
    .expect("bench sources compile")
    .node
}

/// Real clock, no inputs: the bench's side of the drive loop.
struct BenchDriver {
    t0: StdInstant,
}

impl Driver for BenchDriver {
    fn now(&mut self) -> Instant {
        self.t0.elapsed().as_nanos() as u64
    }
    fn output(&mut self, o: Output) {
        if let Output::Stderr(b) = o {
            eprint!("{}", String::from_utf8_lossy(&b));
        }
    }
    fn poll_input(&mut self) -> Option<Input> {
        None
    }
    fn wait(&mut self, _node: &mut Node, deadline: Option<Instant>) -> Wake {
        let now = self.now();
        sleep_until(now, deadline)
    }
}

/// Idle with no inputs to wait for: sleeps to the next timer, or stops when there is none.
fn sleep_until(now: Instant, deadline: Option<Instant>) -> Wake {
    match deadline {
        Some(at) => {
            std::thread::sleep(std::time::Duration::from_nanos(at.saturating_sub(now)));
            Wake::Again
        }
        None => Wake::Stop,
    }
}

/// Runs `entry` as the node's terminal process until it ends; returns seconds taken.
fn run_to_exit(node: &mut Node, entry: &str, args: Vec<Value>) -> f64 {
    node.spawn(entry, "bench:term", args, true).expect("spawn");
    let mut d = BenchDriver {
        t0: StdInstant::now(),
    };
    match weft_engine::drive(node, &mut d, 4096) {
        Some(0) => d.t0.elapsed().as_secs_f64(),
        other => panic!("bench process ended with {other:?}"),
    }
}

/// Runs until nothing is runnable.
fn run_to_idle(node: &mut Node) {
    while node.run(0, 4096) == Work::More {}
    while node.poll_output().is_some() {}
}

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

// ---- mailbox bound: sends to a process that never receives --------------------------------------

const FLOODER: &str = r#"
local io = require("io")
local function main(n)
  local sink = process.spawn("mb:sink", "mb:host")
  local accepted, refused, first = 0, 0, nil
  for i = 1, n do
    local ok, err = process.send(sink, "m", i)
    if ok then
      accepted = accepted + 1
    else
      refused = refused + 1
      first = first or tostring(err)
    end
  end
  io.print(accepted .. " " .. refused .. " " .. tostring(first))
  return 0
end
return { main = main }
"#;

const SINK: &str = r#"
local time = require("time")
local function main()
  while true do
    time.sleep("1h")
  end
end
return { main = main }
"#;

/// Real clock; keeps what the processes print on stdout.
pub(crate) struct StdoutDriver {
    pub t0: StdInstant,
    pub out: Vec<u8>,
}

impl Driver for StdoutDriver {
    fn now(&mut self) -> Instant {
        self.t0.elapsed().as_nanos() as u64
    }
    fn output(&mut self, o: Output) {
        match o {
            Output::Stdout(b) => self.out.extend_from_slice(&b),
            Output::Stderr(b) => eprint!("{}", String::from_utf8_lossy(&b)),
            _ => {}
        }
    }
    fn poll_input(&mut self) -> Option<Input> {
        None
    }
    fn wait(&mut self, _node: &mut Node, deadline: Option<Instant>) -> Wake {
        let now = self.now();
        sleep_until(now, deadline)
    }
}

fn granted(mut e: Entry, module: &str) -> Entry {
    let modules = Table {
        array: vec![Value::from(module)],
        map: vec![],
    };
    e.data = e.data.with("modules", Value::table(modules));
    e
}

/// `n` sends to a process that never receives, under the node's default mailbox bound:
/// (seconds, accepted, refused, the first refusal's text, RSS growth in bytes).
fn mailbox_flood(n: i64) -> (f64, u64, u64, String, u64) {
    let mut node = Node::builder(NodeConfig {
        seed: 1,
        ..Default::default()
    })
    .log_level(Level::Error)
    .preload(vec![
        granted(entry("mb:flooder", "process.lua", Some(FLOODER)), "io"),
        granted(entry("mb:sink", "process.lua", Some(SINK)), "time"),
    ])
    .host("mb:host", "process.host")
    .host("mb:term", "terminal.host")
    .lua()
    .build(None)
    .expect("mailbox bench sources compile")
    .node;
    run_to_idle(&mut node);
    let before = rss_bytes().unwrap_or(0);
    node.spawn("mb:flooder", "mb:term", vec![Value::Int(n)], true)
        .expect("spawn flooder");
    let mut d = StdoutDriver {
        t0: StdInstant::now(),
        out: Vec::new(),
    };
    let code = weft_engine::drive(&mut node, &mut d, 4096);
    let secs = d.t0.elapsed().as_secs_f64();
    let grew = rss_bytes().unwrap_or(0).saturating_sub(before);
    assert_eq!(code, Some(0), "flooder ended with {code:?}");
    let text = String::from_utf8_lossy(&d.out).into_owned();
    let mut it = text.trim().splitn(3, ' ');
    let mut num = || it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let (accepted, refused) = (num(), num());
    let first = text.trim().splitn(3, ' ').nth(2).unwrap_or("").to_string();
    (secs, accepted, refused, first, grew)
}

// ---- Rust-only processes: the core without Lua --------------------------------------------------

struct RustPinger {
    n: i64,
    peer: Option<Pid>,
    host: String,
}

impl Process for RustPinger {
    fn step(&mut self, cx: &mut Cx<'_>) -> Step {
        if self.peer.is_none() {
            let spawn = Command::Spawn {
                entry: "bench:rust_ponger".into(),
                host: self.host.clone(),
                args: vec![],
                monitor: false,
                link: false,
                name: None,
                context: None,
            };
            let peer = match cx.dispatch(spawn).into_result() {
                Ok(Value::Str(s)) => Pid::parse(&String::from_utf8_lossy(&s)).expect("pid"),
                other => panic!("spawn ponger: {other:?}"),
            };
            self.send(cx, &peer);
            self.peer = Some(peer);
            return Step::Waiting;
        }
        let mb = cx.take_mailbox();
        for _ in mb.messages {
            self.n -= 1;
            if self.n <= 0 {
                return Step::Exited(Ok(Value::Int(0)));
            }
            let peer = self.peer.clone().expect("peer");
            self.send(cx, &peer);
        }
        Step::Waiting
    }
}

impl RustPinger {
    fn send(&self, cx: &Cx<'_>, peer: &Pid) {
        let send = Command::Send {
            dest: Dest::Pid(peer.clone()),
            topic: "ping".into(),
            payload: vec![Value::Int(self.n)],
        };
        cx.dispatch(send).into_result().expect("send");
    }
}

struct RustPonger;

impl Process for RustPonger {
    fn step(&mut self, cx: &mut Cx<'_>) -> Step {
        let mb = cx.take_mailbox();
        for m in mb.messages {
            if let Some(from) = m.from {
                let _ = cx.dispatch(Command::Send {
                    dest: Dest::Pid(from),
                    topic: "pong".into(),
                    payload: m.payload,
                });
            }
        }
        Step::Waiting
    }
}

struct Native;

impl Factory for Native {
    fn create(&mut self, sp: Spawning<'_>) -> Result<Box<dyn Process>, ErrorValue> {
        Ok(match sp.entry.id.as_str() {
            "bench:rust_pinger" => Box::new(RustPinger {
                n: match sp.args.first() {
                    Some(Value::Int(n)) => *n,
                    _ => 0,
                },
                peer: None,
                host: sp.pid.host.to_string(),
            }),
            _ => Box::new(RustPonger),
        })
    }
}

fn rust_node() -> Node {
    Node::builder(NodeConfig::default())
        .preload(
            ["bench:rust_pinger", "bench:rust_ponger"]
                .iter()
                .map(|id| entry(id, "native", None))
                .collect(),
        )
        .host("bench:host", "process.host")
        .host("bench:term", "terminal.host")
        .factory("native", Box::new(Native))
        .build(None)
        .expect("bench node")
        .node
}

fn emit(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.1} {unit}");
}

pub fn bench(a: BenchArgs) -> i32 {
    if let Some(root) = std::env::var_os(BOOT_PROBE_ENV) {
        return boot_probe(std::path::Path::new(&root));
    }
    let want = |name: &str| a.only.as_deref().is_none_or(|o| name.contains(o));
    let scaled = |n: f64| ((n * a.scale).max(1.0)) as i64;

    if want("pingpong") {
        let n = scaled(200_000.0);
        let mut node = lua_node();
        let secs = run_to_exit(&mut node, "bench:pinger", vec![Value::Int(n)]);
        emit("weft_lua_pingpong", n as f64 / secs, "roundtrips/s");
    }
    if want("spawn") {
        let n = scaled(100_000.0);
        let mut node = lua_node();
        let secs = run_to_exit(&mut node, "bench:spawner", vec![Value::Int(n)]);
        emit("weft_lua_spawn_exit", n as f64 / secs, "spawns/s");
    }
    if want("fanin") {
        let (s, per) = (scaled(1000.0), 1000);
        let mut node = lua_node();
        let secs = run_to_exit(
            &mut node,
            "bench:fanin",
            vec![Value::Int(s), Value::Int(per)],
        );
        emit("weft_lua_fanin", (s * per) as f64 / secs, "msgs/s");
    }
    if want("rust_pingpong") {
        let n = scaled(1_000_000.0);
        let mut node = rust_node();
        let secs = run_to_exit(&mut node, "bench:rust_pinger", vec![Value::Int(n)]);
        emit("weft_rust_pingpong", n as f64 / secs, "roundtrips/s");
    }
    if want("sim_pingpong") {
        // Numbers reach main() as strings from the terminal's argument list; Lua coerces them.
        let n = scaled(100_000.0);
        let (secs, _) = sim_run("bench:pinger", vec![n.to_string()]);
        emit("weft_sim_lua_pingpong", n as f64 / secs, "roundtrips/s");
    }
    if want("sim_timer") {
        let n = scaled(36_000.0);
        let (secs, sim_ns) = sim_run("bench:sleeper", vec![n.to_string()]);
        emit(
            "weft_sim_time_compression",
            sim_ns as f64 / 1e9 / secs,
            "x_real_time",
        );
    }
    if want("idle_bytes") {
        let n = scaled(100_000.0);
        let mut node = lua_node();
        run_to_idle(&mut node);
        let before = rss_bytes().unwrap_or(0);
        node.spawn("bench:parker", "bench:host", vec![Value::Int(n)], false)
            .expect("spawn");
        run_to_idle(&mut node);
        let after = rss_bytes().unwrap_or(0);
        let alive = node.process_count() as f64;
        emit(
            "weft_lua_idle_process",
            (after.saturating_sub(before)) as f64 / alive.max(1.0),
            "bytes/process",
        );
    }
    // Two `weft run` processes on loopback per figure (drivers/src/cluster/bench.rs).
    if ["cluster_pingpong", "cluster_spawn", "cluster_down"]
        .iter()
        .any(|n| want(n))
    {
        crate::cluster::bench::run(&want, a.scale, &emit);
    }
    // Collective dispatch: local funcs.call, remote Dispatch over gRPC between two nodes.
    if want("dispatch_local") || want("dispatch_remote") || want("dispatch_funcs") {
        crate::cluster::dispatch::bench::run(&want, a.scale, &emit);
    }
    if want("mailbox") {
        let n = scaled(10_000_000.0);
        let (secs, accepted, refused, first, grew) = mailbox_flood(n);
        emit("weft_mailbox_flood_sends", n as f64 / secs, "sends/s");
        emit("weft_mailbox_flood_accepted", accepted as f64, "msgs");
        emit("weft_mailbox_flood_refused", refused as f64, "msgs");
        emit(
            "weft_mailbox_flood_rss",
            grew as f64 / (1 << 20) as f64,
            "MB",
        );
        eprintln!("mailbox flood: first refusal: {first}");
    }
    // Last: its large allocations would skew the RSS the idle-process figure measures.
    if want("registry") {
        let versions = scaled(10_000.0).max(3) as u64;
        let empty = TempProject::new("registry-empty");
        let (_, empty_grew) = timed_boot(&empty.0);
        let long = TempProject::new("registry-long");
        registry_history(&long.0, versions, true);
        let (secs, grew) = timed_boot(&long.0);
        emit("weft_registry_boot_10k", secs * 1e3, "ms");
        emit(
            "weft_registry_boot_10k_rss",
            grew.saturating_sub(empty_grew) as f64 / (1 << 20) as f64,
            "MB_over_empty",
        );
        // Sustained commits on top of that history (the state holds one entry per version).
        let (mut node, world) = registry_boot(&long.0);
        let n = scaled(2_000.0);
        let (secs, _world) = registry_commit(&mut node, world, n);
        emit("weft_registry_commits", n as f64 / secs, "commits/s");
        // History length alone: the same commits on an empty history and on 10k versions that
        // only update one entry should run at the same rate.
        let fresh = TempProject::new("registry-fresh");
        let (mut node, world) = registry_boot(&fresh.0);
        let (secs, _world) = registry_commit(&mut node, world, n);
        emit("weft_registry_commits_fresh", n as f64 / secs, "commits/s");
        let small = TempProject::new("registry-small");
        registry_history(&small.0, versions, false);
        let (mut node, world) = registry_boot(&small.0);
        let (secs, _world) = registry_commit(&mut node, world, n);
        emit(
            "weft_registry_commits_10k_small_state",
            n as f64 / secs,
            "commits/s",
        );
    }
    0
}
