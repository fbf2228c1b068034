//! `weft bench` cluster figures: two real `weft run` processes on loopback (this executable),
//! timed from outside by the lines their terminal process prints. Set against
//! `../shared/bench/anchors/run_dist.sh` (two Erlang nodes): `erlang_dist_pingpong`,
//! `erlang_dist_rpc`, `erlang_dist_down_ms`.

use crate::bench::{TempProject, CHILD, PONGER};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// How long a node pair may take to form and to finish one figure.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

const INDEX: &str = r#"version: "1.0"
namespace: bench
entries:
  - name: terminal
    kind: terminal.host
    lifecycle: {auto_start: true}
  - name: host
    kind: process.host
    lifecycle: {auto_start: true}
  - name: pinger
    kind: process.lua
    source: file://pinger.lua
    method: main
    modules: [io, time]
  - name: ponger
    kind: process.lua
    source: file://ponger.lua
    method: main
  - name: spawner
    kind: process.lua
    source: file://spawner.lua
    method: main
    modules: [io, time]
  - name: child
    kind: process.lua
    source: file://child.lua
    method: main
  - name: watcher
    kind: process.lua
    source: file://watcher.lua
    method: main
    modules: [io, time]
  - name: idle
    kind: process.lua
    source: file://idle.lua
    method: main
"#;

/// Spawns on the peer until it works (the cluster is forming), then runs the figure.
const FIRST_SPAWN: &str = r#"
local time = require("time")
local function first_spawn(entry, host, ...)
  local pid, err
  for _ = 1, 1500 do
    pid, err = process.spawn(entry, host, ...)
    if pid then return pid end
    time.sleep("20ms")
  end
  error("no spawn on " .. host .. ": " .. tostring(err))
end
"#;

const PINGER: &str = r#"
local io = require("io")
local function main(host, n)
  n = tonumber(n)
  local inbox = process.inbox()
  local peer = first_spawn("bench:ponger", host, process.pid())
  process.send(peer, "ping", 0)
  inbox:receive()
  io.print("start")
  for i = 1, n do
    process.send(peer, "ping", i)
    inbox:receive()
  end
  io.print("done")
  return 0
end
return { main = main }
"#;

const SPAWNER: &str = r#"
local io = require("io")
local function main(host, n)
  n = tonumber(n)
  local inbox = process.inbox()
  local me = process.pid()
  first_spawn("bench:child", host, me)
  inbox:receive()
  io.print("start")
  for i = 1, n do
    process.spawn("bench:child", host, me)
    inbox:receive()
  end
  io.print("done")
  return 0
end
return { main = main }
"#;

const WATCHER: &str = r#"
local io = require("io")
local time = require("time")
local function main(host)
  local events = process.events()
  local pid, err
  for _ = 1, 1500 do
    pid, err = process.spawn_monitored("bench:idle", host)
    if pid then break end
    time.sleep("20ms")
  end
  if not pid then error("no spawn on " .. host .. ": " .. tostring(err)) end
  io.print("ready")
  while true do
    local ev = events:receive()
    if ev.kind == process.event.EXIT then
      io.print("exit " .. tostring(ev.result and ev.result.error))
      return 0
    end
  end
end
return { main = main }
"#;

const IDLE: &str = r#"
local function main()
  process.inbox():receive()
  return 0
end
return { main = main }
"#;

/// A throwaway app with the bench entries, removed on drop.
struct App(TempProject);

impl App {
    fn new() -> std::io::Result<App> {
        let root = TempProject::new("cluster");
        let src = root.0.join("src");
        std::fs::create_dir_all(&src)?;
        let with_spawn = |body: &str| format!("{FIRST_SPAWN}{body}");
        for (name, text) in [
            ("_index.yaml", INDEX.to_string()),
            ("pinger.lua", with_spawn(PINGER)),
            ("ponger.lua", PONGER.to_string()),
            ("spawner.lua", with_spawn(SPAWNER)),
            ("child.lua", CHILD.to_string()),
            ("watcher.lua", WATCHER.to_string()),
            ("idle.lua", IDLE.to_string()),
        ] {
            std::fs::write(src.join(name), text)?;
        }
        Ok(App(root))
    }

    fn dir(&self) -> &Path {
        &self.0 .0
    }
}

/// A `weft run` child whose stdout lines arrive on a channel; killed on drop.
pub(crate) struct Proc {
    child: Child,
    lines: Receiver<String>,
}

impl Proc {
    pub(crate) fn start(app: &Path, args: &[String]) -> Result<Proc, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("run")
            .arg("-s")
            .args(args)
            .current_dir(app)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start weft: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        Ok(Proc { child, lines })
    }

    /// Waits for a line starting with `prefix`; the time it arrived and the line.
    pub(crate) fn expect(
        &self,
        prefix: &str,
        within: Duration,
    ) -> Result<(Instant, String), String> {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Ok((Instant::now(), l)),
                Ok(l) if l.starts_with("error") => return Err(l),
                Ok(_) => {}
                Err(_) => return Err(format!("no '{prefix}' within {within:?}")),
            }
        }
    }

    fn kill9(&mut self) {
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> Result<String, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .map_err(|e| e.to_string())
}

/// The `weft run` arguments of node `name` listening on `listen` and joining `join`.
pub(crate) fn node_args(name: &str, listen: &str, join: &str) -> Vec<String> {
    ["--node", name, "--listen", listen, "--join", join]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Node `b` (bare, hosting `bench:host`) and node `a` running `entry` with `args` on its
/// terminal, joined through each other.
fn pair(app: &App, entry: &str, args: &[String]) -> Result<(Proc, Proc), String> {
    let (pa, pb) = (free_port()?, free_port()?);
    let b = Proc::start(app.dir(), &node_args("b", &pb, &pa))?;
    let mut a_args = node_args("a", &pa, &pb);
    a_args.push("-x".into());
    a_args.push(entry.into());
    a_args.extend(args.iter().cloned());
    let a = Proc::start(app.dir(), &a_args)?;
    Ok((a, b))
}

/// CPU time (user + system) a child has used so far, from /proc (None elsewhere).
pub(crate) fn cpu_secs(p: &Proc) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", p.child.id())).ok()?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// Operations per second of `entry` between its "start" and "done" lines, and the CPU time
/// both nodes spent per operation meanwhile (µs; a figure a busy machine hardly changes).
fn rate(app: &App, entry: &str, n: i64) -> Result<(f64, Option<f64>), String> {
    let (a, b) = pair(app, entry, &["b@bench:host".into(), n.to_string()])?;
    let cpu = || Some(cpu_secs(&a)? + cpu_secs(&b)?);
    let (t0, _) = a.expect("start", FORM_TIMEOUT)?;
    let c0 = cpu();
    let (t1, _) = a.expect("done", RUN_TIMEOUT)?;
    let c1 = cpu();
    let per_op = c0.zip(c1).map(|(c0, c1)| (c1 - c0) * 1e6 / n as f64);
    Ok((n as f64 / (t1 - t0).as_secs_f64(), per_op))
}

fn down_ms(app: &App) -> Result<f64, String> {
    let (a, mut b) = pair(app, "bench:watcher", &["b@bench:host".into()])?;
    a.expect("ready", FORM_TIMEOUT)?;
    let killed = Instant::now();
    b.kill9();
    let (t, _) = a.expect("exit", Duration::from_secs(30))?;
    Ok((t - killed).as_secs_f64() * 1e3)
}

/// Runs the cluster figures `want` selects, printing each as `name value unit` with `emit`.
pub fn run(want: &dyn Fn(&str) -> bool, scale: f64, emit: &dyn Fn(&str, f64, &str)) {
    let scaled = |n: f64| ((n * scale).max(1.0)) as i64;
    let app = match App::new() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cluster bench: cannot write the app: {e}");
            return;
        }
    };
    let report = |name: &str, r: Result<f64, String>, unit: &str| match r {
        Ok(v) => emit(name, v, unit),
        Err(e) => eprintln!("{name}: failed: {e}"),
    };
    let rate_and_cpu = |name: &str, r: Result<(f64, Option<f64>), String>, unit: &str| {
        let cpu = r.as_ref().ok().and_then(|(_, c)| *c);
        report(name, r.map(|(v, _)| v), unit);
        if let Some(c) = cpu {
            emit(&format!("{name}_cpu"), c, "us/op");
        }
    };
    if want("cluster_pingpong") {
        rate_and_cpu(
            "weft_cluster_pingpong",
            // As many round trips as `erlang_dist_pingpong` makes: this machine's speed
            // swings from second to second, and a run as long as the anchor's averages the same.
            rate(&app, "bench:pinger", scaled(200_000.0)),
            "roundtrips/s",
        );
    }
    if want("cluster_spawn") {
        rate_and_cpu(
            "weft_cluster_remote_spawn",
            rate(&app, "bench:spawner", scaled(5_000.0)),
            "spawns/s",
        );
    }
    if want("cluster_down") {
        report("weft_cluster_down_ms", down_ms(&app), "ms");
    }
}
