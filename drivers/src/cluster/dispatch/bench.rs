//! `weft bench` dispatch figures. Local: `funcs.call` of a `function.lua` entry in one node,
//! each call timed inside Lua (the node stepped one process step at a time, so the node's clock
//! is read afresh at every step). Remote: a gRPC client (this module's transport) calling
//! `Dispatch` on node `a` for a namespace only node `b` serves, two `weft run` processes on
//! loopback, with 1 and 16 concurrent callers. Set against `../shared/bench/anchors/run_dist.sh`
//! (`erlang_dist_rpc`, `erlang_dist_rpc_c16`).

use super::super::net;
use crate::cluster::bench::{free_port, node_args, Proc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};
use weft_engine::entries::Entry;
use weft_engine::node::{Level, NodeConfig};
use weft_engine::value::{Table, Value};
use weft_engine::Node;
use weft_wire::collector as pb;
use weft_wire::collector::collective_dispatcher_client::CollectiveDispatcherClient;
use weft_wire::prost::Message as _;
use weft_wire::prost_types;

const INC: &str = r#"
local function main(x)
  return x + 1
end
return { main = main }
"#;

/// Calls `dbench:inc` `n` times, prints `lat <p50_ns> <p99_ns>`.
const CALLER: &str = r#"
local funcs = require("funcs")
local time = require("time")
local io = require("io")
local function main(n)
  n = tonumber(n)
  local lat = {}
  for i = 1, n do
    local t0 = time.now():unix_nano()
    local v, err = funcs.call("dbench:inc", i)
    local t1 = time.now():unix_nano()
    if err or v ~= i + 1 then error("funcs.call: " .. tostring(err)) end
    lat[i] = t1 - t0
  end
  table.sort(lat)
  io.print("lat " .. lat[math.max(1, math.floor(n * 0.5))] .. " " .. lat[math.max(1, math.floor(n * 0.99))])
  return 0
end
return { main = main }
"#;

/// A bench entry (source, method `main`) that may use `funcs`, `time` and `io`.
fn entry(id: &str, kind: &str, source: &str) -> Entry {
    let mut e = crate::bench::entry(id, kind, Some(source));
    let modules = Table {
        array: ["funcs", "time", "io"].map(Value::from).to_vec(),
        map: vec![],
    };
    e.data = std::mem::take(&mut e.data).with("modules", Value::table(modules));
    e
}

/// Local `funcs.call`: (p50, p99) in microseconds.
fn local_call(n: i64) -> Result<(f64, f64), String> {
    let mut node = Node::builder(NodeConfig {
        seed: 1,
        ..Default::default()
    })
    .log_level(Level::Error)
    .preload(vec![
        entry("dbench:inc", "function.lua", INC),
        entry("dbench:caller", "process.lua", CALLER),
    ])
    .host("dbench:host", "process.host")
    .host("dbench:term", "terminal.host")
    .lua()
    .build(None)
    .map_err(|e| e.to_string())?
    .node;
    node.spawn("dbench:caller", "dbench:term", vec![Value::Int(n)], true)
        .map_err(|e| e.message.to_string())?;
    let mut d = crate::bench::StdoutDriver {
        t0: StdInstant::now(),
        out: Vec::new(),
    };
    let code = weft_engine::drive(&mut node, &mut d, 1);
    let out = String::from_utf8_lossy(&d.out).to_string();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("lat "))
        .ok_or_else(|| format!("no latency line (exit {code:?}): {out}"))?;
    let mut it = line.split_whitespace().map(|x| x.parse::<f64>());
    match (it.next(), it.next()) {
        (Some(Ok(p50)), Some(Ok(p99))) => Ok((p50 / 1e3, p99 / 1e3)),
        _ => Err(format!("bad latency line: {line}")),
    }
}

const SERVER_INDEX: &str = r#"version: "1.0"
namespace: dbench
entries:
  - name: host
    kind: process.host
    lifecycle: {auto_start: true}
  - name: inc
    kind: function.lua
    source: file://inc.lua
    method: main
"#;

const FRONT_INDEX: &str = r#"version: "1.0"
namespace: front
entries:
  - name: host
    kind: process.host
    lifecycle: {auto_start: true}
"#;

/// Node `a`'s app for the `funcs.call` figures: a terminal process that waits until `a` routes
/// `dbench:inc` to `b`, then runs `callers` worker processes making `per` calls each.
const CALLER_INDEX: &str = r#"version: "1.0"
namespace: front
entries:
  - name: terminal
    kind: terminal.host
    lifecycle: {auto_start: true}
  - name: host
    kind: process.host
    lifecycle: {auto_start: true}
  - name: caller
    kind: process.lua
    source: file://caller.lua
    method: main
    modules: [funcs, io, time]
  - name: worker
    kind: process.lua
    source: file://worker.lua
    method: main
    modules: [funcs, time]
"#;

/// One caller of `dbench:inc`: `per` sequential calls, then its latencies (ns) to `parent`.
const FUNCS_WORKER: &str = r#"
local funcs = require("funcs")
local time = require("time")
-- Every 8th call is timed (the clock costs about a microsecond a call; erlang_dist_rpc_c16,
-- the anchor, times none): its latencies give p50 and p99.
local function main(parent, base, per)
  local lat = {}
  for i = 1, per do
    local timed = i % 8 == 1
    local t0 = timed and time.now():unix_nano()
    local v, err = funcs.call("dbench:inc", base + i)
    if err or v ~= base + i + 1 then
      process.send(parent, "done", { err = tostring(err) })
      return 1
    end
    if timed then lat[#lat + 1] = time.now():unix_nano() - t0 end
  end
  process.send(parent, "done", { lat = lat })
  return 0
end
return { main = main }
"#;

/// Waits for the route, then for each concurrency prints `rate <callers> <calls/s> <p50 ns> <p99 ns>`.
const FUNCS_CALLER: &str = r#"
local funcs = require("funcs")
local time = require("time")
local io = require("io")
local function main(total)
  total = tonumber(total)
  local inbox = process.inbox()
  local ok = false
  for _ = 1, 1500 do
    local v = funcs.call("dbench:inc", 0)
    if v == 1 then ok = true break end
    time.sleep("20ms")
  end
  if not ok then error("dbench:inc never answered from node b") end
  for _, callers in ipairs({ 1, 16 }) do
    local per = math.max(1, total // callers)
    local t0 = time.now():unix_nano()
    for k = 1, callers do
      process.spawn("front:worker", "front:host", process.pid(), k * per, per)
    end
    local lat = {}
    for _ = 1, callers do
      local m = inbox:receive():payload():data()
      if m.err then error("funcs.call: " .. m.err) end
      for _, x in ipairs(m.lat) do lat[#lat + 1] = x end
    end
    local secs = (time.now():unix_nano() - t0) / 1e9
    table.sort(lat)
    io.print(string.format("rate %d %.1f %d %d", callers, callers * per / secs,
      lat[math.max(1, #lat // 2)], lat[math.max(1, math.floor(#lat * 0.99))]))
  end
  return 0
end
return { main = main }
"#;

/// `funcs.call` from Lua processes on node `a` into `dbench`, served only by node `b`: the
/// same shape as `erlang_dist_rpc` (`erpc:call` from one node to another, two OS processes).
/// Per concurrency: (callers, calls/s, p50 µs, p99 µs, CPU both nodes spent per call in µs).
#[allow(clippy::type_complexity)]
fn funcs_remote(
    root: &std::path::Path,
    total: i64,
) -> Result<Vec<(usize, f64, f64, f64, Option<f64>)>, String> {
    use crate::cluster::bench::cpu_secs;
    let server = root.join("fb");
    let front = root.join("fa");
    for (dir, files) in [
        (
            &server,
            vec![("_index.yaml", SERVER_INDEX), ("inc.lua", INC)],
        ),
        (
            &front,
            vec![
                ("_index.yaml", CALLER_INDEX),
                ("caller.lua", FUNCS_CALLER),
                ("worker.lua", FUNCS_WORKER),
            ],
        ),
    ] {
        std::fs::create_dir_all(dir.join("src")).map_err(|e| e.to_string())?;
        for (name, text) in files {
            std::fs::write(dir.join("src").join(name), text).map_err(|e| e.to_string())?;
        }
    }
    let (pa, pb) = (free_port()?, free_port()?);
    let b = Proc::start(&server, &node_args("b", &pb, &pa))?;
    let mut a_args = node_args("a", &pa, &pb);
    a_args.extend(["-x".into(), "front:caller".into(), total.to_string()]);
    let a = Proc::start(&front, &a_args)?;
    let cpu = || Some(cpu_secs(&a)? + cpu_secs(&b)?);
    // The first phase's CPU is counted from the node's start (boot and forming included).
    let mut c0 = Some(0.0);
    let mut out = Vec::new();
    for _ in 0..2 {
        let (_, line) = a.expect("rate ", Duration::from_secs(300))?;
        let c1 = cpu();
        let f: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        match f[..] {
            [c, r, p50, p99] => {
                let per = (total as f64).max(1.0);
                let used = c0.zip(c1).map(|(c0, c1)| (c1 - c0) * 1e6 / per);
                out.push((c as usize, r, p50 / 1e3, p99 / 1e3, used));
                c0 = c1;
            }
            _ => return Err(format!("bad rate line: {line}")),
        }
    }
    Ok(out)
}

fn request(i: i64) -> pb::DispatchRequest {
    let v = prost_types::Value {
        kind: Some(prost_types::value::Kind::NumberValue(i as f64)),
    };
    pb::DispatchRequest {
        namespace: "dbench".into(),
        service: Some(pb::ServiceTypeRef {
            namespace: String::new(),
            service_name: "dbench".into(),
        }),
        method_name: "inc".into(),
        input: Some(prost_types::Any {
            type_url: "type.googleapis.com/google.protobuf.Value".into(),
            value: v.encode_to_vec(),
        }),
        target_collector_id: String::new(),
        routing_hints: HashMap::new(),
    }
}

type Client = CollectiveDispatcherClient<net::Channel>;

async fn one(c: &mut Client, i: i64) -> Result<(), String> {
    let r = c
        .dispatch(request(i))
        .await
        .map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message()))?
        .into_inner();
    match r.status {
        Some(s) if s.code == 200 && r.handled_by_collector_id == "b" => Ok(()),
        Some(s) => Err(format!(
            "status {} {} (handled by '{}')",
            s.code, s.message, r.handled_by_collector_id
        )),
        None => Err("no status".into()),
    }
}

/// `callers` tasks each making `per` sequential calls: (calls/s, p50 µs, p99 µs).
async fn remote(addr: &str, callers: usize, per: usize) -> Result<(f64, f64, f64), String> {
    let ch = net::connect(addr).await?;
    let c = Client::with_origin(ch, net::origin(addr)?);
    let lat = Arc::new(Mutex::new(Vec::with_capacity(callers * per)));
    let t0 = StdInstant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|k| {
            let (mut c, lat) = (c.clone(), lat.clone());
            super::super::net::spawn(async move {
                for i in 0..per {
                    let t = StdInstant::now();
                    one(&mut c, (k * per + i) as i64).await?;
                    let ns = t.elapsed().as_nanos() as f64;
                    if let Ok(mut l) = lat.lock() {
                        l.push(ns);
                    }
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut l = lat.lock().map_err(|_| "poisoned")?.clone();
    l.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)] / 1e3;
    Ok(((callers * per) as f64 / secs, at(0.5), at(0.99)))
}

/// Two nodes: `b` serves `dbench`, `a` serves nothing; waits until `a` routes to `b`.
fn pair(root: &std::path::Path) -> Result<(Proc, Proc, String), String> {
    let server = root.join("b");
    let front = root.join("a");
    for (dir, index) in [(&server, SERVER_INDEX), (&front, FRONT_INDEX)] {
        std::fs::create_dir_all(dir.join("src")).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("src/_index.yaml"), index).map_err(|e| e.to_string())?;
    }
    std::fs::write(server.join("src/inc.lua"), INC).map_err(|e| e.to_string())?;
    let (pa, pb) = (free_port()?, free_port()?);
    let b = Proc::start(&server, &node_args("b", &pb, &pa))?;
    let a = Proc::start(&front, &node_args("a", &pa, &pb))?;
    let end = StdInstant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while StdInstant::now() < end {
        let ok = super::super::net::block_on(async {
            let ch = net::connect(&pa).await?;
            let mut c = Client::with_origin(ch, net::origin(&pa)?);
            one(&mut c, 0).await
        });
        match ok {
            Ok(()) => return Ok((a, b, pa)),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("a never routed to b within 30 s: {last}"))
}

/// Runs the dispatch figures `want` selects, printing each with `emit`.
pub fn run(want: &dyn Fn(&str) -> bool, scale: f64, emit: &dyn Fn(&str, f64, &str)) {
    let scaled = |n: f64| ((n * scale).max(1.0)) as i64;
    if want("dispatch_local") {
        match local_call(scaled(20_000.0)) {
            Ok((p50, p99)) => {
                emit("weft_funcs_call_local_p50", p50, "us");
                emit("weft_funcs_call_local_p99", p99, "us");
            }
            Err(e) => eprintln!("weft_funcs_call_local: failed: {e}"),
        }
    }
    let root = crate::bench::TempProject::new("dispatch");
    if want("dispatch_funcs") {
        // As many calls as `erlang_dist_rpc` and `erlang_dist_rpc_c16` make (a run as long
        // as the anchor's averages the same swings of this machine's speed).
        match funcs_remote(&root.0, scaled(100_000.0)) {
            Ok(rows) => {
                for (callers, rate, p50, p99, cpu) in rows {
                    let name = match callers {
                        1 => "weft_dispatch_funcs_remote".to_string(),
                        c => format!("weft_dispatch_funcs_remote_c{c}"),
                    };
                    emit(&name, rate, "calls/s");
                    emit(&format!("{name}_p50"), p50, "us");
                    emit(&format!("{name}_p99"), p99, "us");
                    // The first phase includes boot; only the second is a clean figure.
                    if let (Some(c), true) = (cpu, callers > 1) {
                        emit(&format!("{name}_cpu"), c, "us/op");
                    }
                }
            }
            Err(e) => eprintln!("weft_dispatch_funcs_remote: failed: {e}"),
        }
    }
    if !want("dispatch_remote") {
        return;
    }
    let (_a, _b, addr) = match pair(&root.0) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("weft_dispatch_remote: failed: {e}");
            return;
        }
    };
    for (callers, name) in [
        (1usize, "weft_dispatch_remote"),
        (16, "weft_dispatch_remote_c16"),
    ] {
        let per = (scaled(10_000.0) as usize / callers).max(1);
        match super::super::net::block_on(remote(&addr, callers, per)) {
            Ok((rate, p50, p99)) => {
                emit(name, rate, "calls/s");
                emit(&format!("{name}_p50"), p50, "us");
                emit(&format!("{name}_p99"), p99, "us");
            }
            Err(e) => eprintln!("{name}: failed: {e}"),
        }
    }
}
