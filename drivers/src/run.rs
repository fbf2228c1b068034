//! `weft run`: the production driver. Real clock, stdin/stdout, signals, on a smol executor;
//! it feeds the node inputs and carries out its outputs, nothing more.

use crate::cluster::{self, config::ClusterArgs, Transport};
use crate::inputs::{InputRx, InputTx};
use crate::logs::{self, LogFilter};
use crate::project;
use std::io::{BufRead, Read, Write};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};
use weft_engine::entries::{Entry, EntryKind};
use weft_engine::node::{Level, NodeConfig, SignalKind};
use weft_engine::supervisor::Lifecycle;
use weft_engine::value::{kind, ErrorValue, Value};
use weft_engine::world::WorldCommand;
use weft_engine::{Driver, Input, Instant, Node, Output, Pid, Turn, Wake};
use weft_world::{Storage, World};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// A named command (an entry's meta.command.name) and its arguments; `list` shows what can
    /// be run. With -x, the arguments of the process (also after `--`).
    #[arg(
        value_name = "COMMAND|ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
    /// Run this process on the terminal host: `ns:entry` or `host/ns:entry`; the arguments
    /// that follow are passed to it.
    #[arg(short = 'x', long = "exec", value_name = "ENTRY")]
    exec: Option<String>,
    /// Terminal host to use when the app defines more than one.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    #[command(flatten)]
    app: project::AppDir,
    /// Which runtime logs to show: a level (debug, info, warn, error, off) and per-target
    /// levels, e.g. `warn,app:worker=debug`; a target is an entry, service or logger name or a
    /// prefix of one (`app`). Default: warn (info for a bare run), or the WEFT_LOG variable.
    #[arg(long, value_name = "LEVEL[,TARGET=LEVEL]")]
    log_level: Option<String>,
    /// Show the runtime's logs down to debug records (--log-level debug).
    #[arg(short, long)]
    verbose: bool,
    /// Show the runtime's logs down to info records (--log-level info).
    #[arg(short = 'c', long)]
    console: bool,
    /// No logs at all (as Wippy's -s); wins over the other log flags.
    #[arg(short = 's', long)]
    silent: bool,
    /// Logs as JSON lines ({"level", "msg", fields...}) instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

enum LogMode {
    Off,
    Text(LogFilter),
    Json(LogFilter),
}

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {msg}");
    1
}

fn command_name(e: &Entry) -> Option<String> {
    match e.meta.get("command") {
        Some(Value::Table(t)) => t.get("name").and_then(|v| v.as_str()).map(String::from),
        _ => None,
    }
}

fn command_short(e: &Entry) -> String {
    match e.meta.get("command") {
        Some(Value::Table(t)) => t
            .get("short")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

/// `weft run list`: everything the app can run, and how.
fn list_runnable(entries: &[Entry]) -> i32 {
    let mut commands: Vec<(String, String, String)> = entries
        .iter()
        .filter(|e| project::runnable(e))
        .filter_map(|e| Some((command_name(e)?, e.id.clone(), command_short(e))))
        .collect();
    commands.sort();
    println!("Commands (weft run NAME [ARGS...]):");
    if commands.is_empty() {
        println!("  (none: give a process.lua entry meta.command.name to add one)");
    }
    for (n, id, short) in commands {
        println!("  {n:<20} {id:<30} {short}");
    }
    let mut procs: Vec<&Entry> = entries.iter().filter(|e| project::runnable(e)).collect();
    procs.sort_by(|x, y| x.id.cmp(&y.id));
    println!("Processes (weft run -x ENTRY [ARGS...]):");
    if procs.is_empty() {
        println!("  (none)");
    }
    for e in procs {
        println!("  {:<30} {}", e.id, e.kind);
    }
    let mut services: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::ProcessService)
        .collect();
    services.sort_by(|x, y| x.id.cmp(&y.id));
    println!("Services (a bare `weft run` starts the auto_start ones):");
    if services.is_empty() {
        println!("  (none)");
    }
    for e in services {
        let field = |k: &str| e.data.get(k).and_then(|v| v.as_str()).unwrap_or("?");
        let auto = Lifecycle::from_data(&e.data).is_ok_and(|l| l.auto_start);
        let run = format!("runs {} on {}", field("process"), field("host"));
        let start = if auto { "auto_start" } else { "manual" };
        println!("  {:<30} {run:<40} {start}", e.id);
    }
    0
}

pub fn run(a: RunArgs) -> i32 {
    // Errors and warnings of the runtime are shown by default (a crashed worker must not be
    // silent); a bare `weft run` (services only) also shows info, as a server's console does.
    let bare = a.exec.is_none() && a.command.is_empty();
    let fallback = if bare { Level::Info } else { Level::Warn };
    let (spec, from) = match (&a.log_level, a.verbose, a.console) {
        (Some(l), _, _) => (Some(l.clone()), "--log-level"),
        (None, true, _) => (Some("debug".into()), "-v"),
        (None, false, true) => (Some("info".into()), "-c"),
        _ => (std::env::var(logs::ENV).ok(), logs::ENV),
    };
    let filter = match spec.map(|s| LogFilter::parse(&s, fallback)) {
        None => LogFilter::level(fallback),
        Some(Ok(f)) => f,
        Some(Err(e)) => return fail(format!("{from}: {e}")),
    };
    let log_mode = if a.silent {
        LogMode::Off
    } else if a.json {
        LogMode::Json(filter)
    } else {
        LogMode::Text(filter)
    };
    let root = match a.app.root() {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let entries = match project::load(&root) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let settings = match cluster::config::resolve(
        &root,
        &a.cluster,
        std::env::var(cluster::config::SECRET_ENV).ok(),
    ) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };

    // What to run on the terminal: -x ENTRY with the arguments that follow it (as Wippy's
    // `run -x`), or a named command with its arguments.
    let mut positional = a.command.clone();
    if positional.first().is_some_and(|p| p == "--") {
        positional.remove(0);
    }
    let mut target: Option<(Option<String>, String, Vec<String>)> = None;
    if let Some(x) = &a.exec {
        let (h, e) = match x.split_once('/') {
            Some((h, e)) => (Some(h.to_string()), e.to_string()),
            None => (None, x.clone()),
        };
        if !e.contains(':') {
            return fail(format!(
                "-x {x}: missing separator; use namespace:entry (for example app:cli)"
            ));
        }
        target = Some((h, e, positional));
    } else if let Some(cmd) = positional.first() {
        if cmd == "list" {
            return list_runnable(&entries);
        }
        let named: Vec<(String, &Entry)> = entries
            .iter()
            .filter(|e| project::runnable(e))
            .filter_map(|e| Some((command_name(e)?, e)))
            .collect();
        match named.iter().find(|(n, _)| n == cmd) {
            Some((_, e)) => {
                let mut args = positional[1..].to_vec();
                if args.first().is_some_and(|p| p == "--") {
                    args.remove(0);
                }
                target = Some((None, e.id.clone(), args))
            }
            None => {
                let mut hint = project::did_you_mean(cmd, named.iter().map(|(n, _)| n.as_str()));
                if std::path::Path::new(cmd).is_dir() {
                    hint.push_str(&format!(
                        "; '{cmd}' is a folder but not an app (an app folder holds src/ or {})",
                        project::LOCK_FILE
                    ));
                }
                return fail(format!(
                    "no command named '{cmd}'{hint} (`weft run list` shows what can be run)"
                ));
            }
        }
    }
    if let Some((_, id, _)) = &target {
        match entries.iter().find(|e| &e.id == id) {
            None => return fail(project::entry_not_found(id, &entries)),
            Some(e) if e.kind == EntryKind::ProcessService => {
                let p = e
                    .data
                    .get("process")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?");
                return fail(format!(
                    "entry '{id}' is a process.service: a bare `weft run` starts it, or run its process with -x {p}"
                ));
            }
            Some(e) if !project::runnable(e) => {
                return fail(format!("entry '{id}' is a {}, not a process.lua", e.kind))
            }
            _ => {}
        }
    }
    let terminal_host =
        match &target {
            None => None,
            Some((Some(h), _, _)) => Some(h.clone()),
            Some((None, _, _)) => match &a.host {
                Some(h) => Some(h.clone()),
                None => {
                    let hosts: Vec<&Entry> = entries
                        .iter()
                        .filter(|e| e.kind == EntryKind::TerminalHost)
                        .collect();
                    match hosts.as_slice() {
                        [one] => Some(one.id.clone()),
                        [] => {
                            return fail(
                                "no terminal.host entry: add one to run a process on the terminal",
                            )
                        }
                        _ => return fail(
                            "more than one terminal.host: pick one with --host or -x host/entry",
                        ),
                    }
                }
            },
        };
    if let Some(h) = &terminal_host {
        if !entries
            .iter()
            .any(|e| &e.id == h && e.kind == EntryKind::TerminalHost)
        {
            return fail(format!(
                "terminal host '{h}' not found (it must be a terminal.host entry)"
            ));
        }
    }

    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let seed = (wall as u64) ^ (u64::from(std::process::id()) << 32);
    // The cluster port is taken before the node boots: a port in use fails the run at once.
    let listener = match &settings {
        Some(s) => match Transport::bind(s.listen_addr, s.listen_from) {
            Ok(l) => Some(l),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let cluster_cfg = settings.as_ref().map(|s| weft_engine::node::ClusterConfig {
        node: weft_engine::pid::NodeId::named(&s.node),
        // Peers reach us where we listen (port 0 becomes the port the system chose).
        addr: listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_else(|| s.listen.clone()),
        // This run's start time: a restarted node is a larger incarnation.
        incarnation: wall.max(1) as u64,
        secret: s.secret.clone(),
        join: s.join.clone(),
    });
    let mut world = World::new(Storage::Disk { root: root.clone() });
    if let Err(e) = world.configure(&entries) {
        return fail(e);
    }
    let auto_services: Vec<String> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::ProcessService)
        .filter(|e| Lifecycle::from_data(&e.data).is_ok_and(|l| l.auto_start))
        .map(|e| e.id.clone())
        .collect();
    let env_files = world.env_files(&entries);
    let built = Node::builder(NodeConfig {
        seed,
        wall_epoch_ns: wall,
        env_os: std::env::vars().collect(),
        max_processes: match max_processes() {
            Ok(n) => n,
            Err(e) => return fail(e),
        },
        limits: match limits() {
            Ok(l) => l,
            Err(e) => return fail(e),
        },
        cluster: cluster_cfg.clone(),
        busy_step_cost: BUSY_STEP_COST,
        ..Default::default()
    })
    .log_level(match &log_mode {
        LogMode::Off => Level::Error,
        LogMode::Text(f) | LogMode::Json(f) => f.min().unwrap_or(Level::Error),
    })
    .env_files(env_files)
    .entries(entries)
    .build(Some(&mut world));
    let mut node = match built {
        Ok(b) => {
            tracing::debug!(services = b.report.services, "booted");
            b.node
        }
        Err(e) => return fail(e),
    };
    if let (Some((_, id, args)), Some(h)) = (target, terminal_host) {
        let args = args.into_iter().map(Value::from).collect();
        if let Err(e) = node.spawn(&id, &h, args, true) {
            return fail(format!("cannot start {id} on {h}: {}", e.message));
        }
    }
    let world = Arc::new(Mutex::new(world));
    // Signal handlers go in before the note that says Ctrl+C stops the node.
    let (tx, rx) = crate::inputs::channel();
    signal_thread(tx.clone());
    let log_mode = Arc::new(log_mode);
    // The node's clock starts here; the transport's dispatch deadlines are on the same clock.
    let epoch = StdInstant::now();
    let transport = match (listener, cluster_cfg) {
        (Some(l), Some(c)) => {
            let mode = log_mode.clone();
            let log: cluster::Log = Arc::new(move |level, msg, mut fields| {
                fields.insert(0, ("logger".into(), "cluster".into()));
                print_log(&mode, level, msg, &fields)
            });
            let me = cluster::Me {
                hello: node.hello(),
                node: c.node.clone(),
                incarnation: c.incarnation,
                secret: c.secret,
                join: c.join,
            };
            match Transport::start_with(l, me, tx.clone(), log, epoch) {
                Ok(t) => {
                    print_log(
                        &log_mode,
                        Level::Info,
                        "cluster node listening",
                        &[
                            ("node".into(), c.node.to_string()),
                            ("addr".into(), t.local_addr.to_string()),
                        ],
                    );
                    Some(t)
                }
                Err(e) => return fail(e),
            }
        }
        _ => None,
    };
    if bare {
        startup_note(&log_mode, &auto_services);
    }
    let code = drive(
        node,
        log_mode.clone(),
        world,
        transport.as_ref(),
        (tx, rx),
        epoch,
    );
    if let Some(t) = &transport {
        t.dispatch.stopping();
        t.shutdown(Duration::from_millis(500));
        let mut fields = t.stats.fields();
        fields.insert(0, ("logger".into(), "cluster".into()));
        print_log(
            &log_mode,
            Level::Debug,
            "cluster transport counters",
            &fields,
        );
    }
    exit_code(code)
}

/// `WEFT_MAX_PROCESSES`: live processes the node allows (default 200,000).
fn max_processes() -> Result<usize, String> {
    match std::env::var("WEFT_MAX_PROCESSES") {
        Err(_) => Ok(weft_engine::node::DEFAULT_MAX_PROCESSES),
        Ok(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                format!("WEFT_MAX_PROCESSES={v}: expected a positive whole number of processes")
            }),
    }
}

/// The resource limits from `WEFT_STEP_CEILING`, `WEFT_PROCESS_MEMORY`, `WEFT_NODE_MEMORY` and
/// `WEFT_MAILBOX` (README "Limits"); sizes take a `K`, `M` or `G` suffix (binary), 0 turns one off.
fn limits() -> Result<weft_engine::node::Limits, String> {
    let mut l = weft_engine::node::Limits::default();
    if let Some(n) = limit_var("WEFT_STEP_CEILING", "instructions")? {
        l.step_ceiling =
            u32::try_from(n).map_err(|_| format!("WEFT_STEP_CEILING={n}: at most {}", u32::MAX))?;
    }
    if let Some(n) = limit_var("WEFT_PROCESS_MEMORY", "bytes (e.g. 64M)")? {
        l.process_memory = n;
    }
    if let Some(n) = limit_var("WEFT_NODE_MEMORY", "bytes (e.g. 2G)")? {
        l.node_memory = n;
    }
    if let Some(n) = limit_var("WEFT_MAILBOX", "messages")? {
        l.mailbox = n;
    }
    Ok(l)
}

fn limit_var(name: &str, what: &str) -> Result<Option<usize>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => weft_engine::node::parse_size(&v)
            .map(Some)
            .ok_or_else(|| format!("{name}={v}: expected a whole number of {what}")),
    }
}

/// What a bare `weft run` started and how to stop it, on stderr (stdout is the app's).
fn startup_note(mode: &LogMode, services: &[String]) {
    let msg = match services {
        [] => "no services to start (none has lifecycle.auto_start); running until Ctrl+C. \
               `weft run list` shows what can be run"
            .to_string(),
        _ => format!(
            "started {} service{} ({}); Ctrl+C to stop",
            services.len(),
            if services.len() == 1 { "" } else { "s" },
            services.join(", ")
        ),
    };
    match mode {
        LogMode::Off => {}
        LogMode::Text(_) => eprintln!("weft: {msg}"),
        LogMode::Json(_) => print_log(mode, Level::Info, &msg, &[]),
    }
}

enum StdinReq {
    Line(Pid, u64),
    Bytes(Pid, u64, usize),
}

/// Reads stdin on its own thread, only when a process asked for input.
fn stdin_thread(rx: Receiver<StdinReq>, tx: InputTx) {
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for req in rx {
            let mut lock = stdin.lock();
            let (pid, tag, result) = match req {
                StdinReq::Line(pid, tag) => {
                    let mut buf = Vec::new();
                    let r = match lock.read_until(b'\n', &mut buf) {
                        Ok(0) => Err(ErrorValue::new(kind::UNKNOWN, "EOF")),
                        Ok(_) => {
                            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                                buf.pop();
                            }
                            Ok(Value::Str(buf))
                        }
                        Err(e) => Err(ErrorValue::new(kind::INTERNAL, e.to_string())),
                    };
                    (pid, tag, r)
                }
                StdinReq::Bytes(pid, tag, n) => {
                    let mut buf = vec![0u8; n];
                    let r = match lock.read(&mut buf) {
                        Ok(0) => Err(ErrorValue::new(kind::UNKNOWN, "EOF")),
                        Ok(k) => {
                            buf.truncate(k);
                            Ok(Value::Str(buf))
                        }
                        Err(e) => Err(ErrorValue::new(kind::INTERNAL, e.to_string())),
                    };
                    (pid, tag, r)
                }
            };
            if tx.send(Input::Completed { pid, tag, result }).is_err() {
                return;
            }
        }
    });
}

/// The first SIGINT/SIGTERM that arrived (0: none) and how many did, for the exit code.
static FIRST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// The exit code after the node ended with `code`: 128 + the signal's number when a signal
/// stopped the run (as shells expect: 130 for SIGINT, 143 for SIGTERM), the node's own code
/// otherwise, so a code the app's terminal process decided is kept.
fn exit_code(code: i32) -> i32 {
    let first = FIRST_SIGNAL.load(Ordering::SeqCst);
    let count = SIGNALS.load(Ordering::SeqCst);
    match code {
        _ if first == 0 => code,
        0 => 128 + first,
        // The engine ends a stop cut short by a second signal with 1.
        1 if count >= 2 => 128 + first,
        _ => code,
    }
}

fn signal_thread(tx: InputTx) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        for s in signals.forever() {
            let _ = FIRST_SIGNAL.compare_exchange(0, s, Ordering::SeqCst, Ordering::SeqCst);
            if SIGNALS.fetch_add(1, Ordering::SeqCst) == 1 {
                // The second signal ends the run at once; the node does that between steps.
                // Should a step never end (a C call Luau cannot interrupt), exit from here.
                std::thread::spawn(|| {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    std::process::exit(128 + FIRST_SIGNAL.load(Ordering::SeqCst));
                });
            }
            let k = if s == SIGINT {
                SignalKind::Interrupt
            } else {
                SignalKind::Terminate
            };
            if tx.send(Input::Signal(k)).is_err() {
                return;
            }
        }
    });
}

fn print_log(mode: &LogMode, level: Level, message: &str, fields: &[(String, String)]) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    match mode {
        LogMode::Off => {}
        LogMode::Text(f) | LogMode::Json(f) if !f.allows(level, fields) => {}
        LogMode::Text(_) => {
            let mut line = format!("{:<5} {message}", level.as_str().to_uppercase());
            for (k, v) in fields {
                line.push_str(&format!(" {k}={v}"));
            }
            let _ = writeln!(err, "{line}");
        }
        LogMode::Json(_) => {
            let mut t = weft_engine::value::Table::default()
                .with("level", Value::from(level.as_str()))
                .with("msg", Value::from(message));
            for (k, v) in fields {
                t = t.with(k, Value::from(v.as_str()));
            }
            let _ = writeln!(
                err,
                "{}",
                weft_engine::json::encode(&Value::table(t)).unwrap_or_default()
            );
        }
    }
}

/// The production side of the drive loop: real clock, stdout/stderr, stdin and signals on
/// threads of their own, world commands on smol's blocking pool.
struct RealDriver<'t> {
    start: StdInstant,
    log_mode: Arc<LogMode>,
    transport: Option<&'t Transport>,
    world: Arc<Mutex<World>>,
    tx: InputTx,
    rx: InputRx,
    stdin_tx: Sender<StdinReq>,
    wrote: bool,
    /// The timer the last wait armed, kept while the node's next deadline stays the same:
    /// arming a timer wakes the reactor, which costs every wait a few system calls.
    timer: Option<(Instant, smol::Timer)>,
    /// When the last input from a peer (or any input, on a cluster node) arrived: a wait soon
    /// after one spins before it sleeps (see `SPIN`).
    last_input: Option<StdInstant>,
    /// How long a wait spins (`SPIN`, or `WEFT_BUSY_WAIT_US`).
    spin: Duration,
    /// When this thread last had the reactor take the sockets' and timers' events.
    reacted: StdInstant,
    /// When a busy node last looked for data on its sockets.
    looked: StdInstant,
}

/// A cluster node that has just had input polls its sockets for this long before it sleeps, as
/// Erlang's schedulers busy-wait: on a request/reply exchange the answer usually comes back
/// within this time, and catching it awake saves the wake-up of a sleeping thread (tens of µs,
/// more in a VM). Each poll is a non-blocking look at the sockets.
/// `WEFT_BUSY_WAIT_US` sets it (0 turns it off).
const SPIN: Duration = Duration::from_micros(150);
/// A spinning wait gives its core away once in this many rounds.
const SPIN_YIELD_EVERY: u32 = 4;
/// A busy cluster node has the reactor take its events at least this often.
const REACT_BUSY: Duration = Duration::from_micros(500);
/// A busy cluster node looks for data on its sockets at least this often.
const LOOK_BUSY: Duration = Duration::from_micros(50);
/// Only this soon after an input: an idle node sleeps at once and costs no CPU.
const SPIN_AFTER_INPUT: Duration = Duration::from_millis(2);

impl Driver for RealDriver<'_> {
    fn now(&mut self) -> Instant {
        self.start.elapsed().as_nanos() as u64
    }

    fn output(&mut self, o: Output) {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        match o {
            Output::Stdout(b) => {
                let _ = out.write_all(&b);
                self.wrote = true;
            }
            Output::Stderr(b) => {
                let _ = out.flush();
                let _ = std::io::stderr().write_all(&b);
            }
            Output::Log {
                level,
                message,
                fields,
            } => print_log(&self.log_mode, level, &message, &fields),
            Output::Execute { pid, tag, cmd } => {
                let req = match cmd {
                    WorldCommand::TerminalReadLine => Some(StdinReq::Line(pid.clone(), tag)),
                    WorldCommand::TerminalRead { max_bytes } => {
                        Some(StdinReq::Bytes(pid.clone(), tag, max_bytes))
                    }
                    _ => None,
                };
                match req {
                    Some(r) => {
                        let _ = out.flush();
                        let _ = self.stdin_tx.send(r);
                    }
                    None => {
                        // World commands (SQL, stores, …) run on the blocking pool; the task that
                        // waits for one runs on this thread's executor (no hop through another).
                        let (w, tx) = (self.world.clone(), self.tx.clone());
                        cluster::net::spawn(async move {
                            let result = smol::unblock(move || match w.lock() {
                                Ok(mut w) => w.handle(cmd),
                                Err(_) => {
                                    Err(ErrorValue::new(kind::INTERNAL, "world handlers poisoned"))
                                }
                            })
                            .await;
                            let _ = tx.send(Input::Completed { pid, tag, result });
                        })
                        .detach();
                    }
                }
            }
            Output::Exit(_) => {
                let _ = out.flush();
            }
            Output::Transmit { to_node, bytes } => match self.transport {
                Some(t) => t.transmit(to_node, bytes),
                None => print_log(
                    &self.log_mode,
                    Level::Warn,
                    "frame not sent: this node is not in a cluster",
                    &[("to".into(), to_node.to_string())],
                ),
            },
            Output::Datagram { addr, bytes } => {
                if let Some(t) = self.transport {
                    t.datagram(addr, bytes);
                }
            }
            Output::PeerUp {
                node,
                addr,
                incarnation,
            } => {
                if let Some(t) = self.transport {
                    t.peer_up(node, addr, incarnation);
                }
            }
            Output::PeerDown { node } => {
                if let Some(t) = self.transport {
                    t.peer_down(node);
                }
            }
            Output::DispatchSend {
                call,
                peer,
                address,
                request,
                deadline,
            } => match self.transport {
                Some(t) => t.dispatch.send(call, peer, address, request, deadline),
                None => {
                    let result = Err(weft_engine::dispatch::TransportError::unsent(
                        "this node is not in a cluster",
                    ));
                    let _ = self.tx.send(Input::DispatchReply { call, result });
                }
            },
            Output::DispatchAbort { call } => {
                if let Some(t) = self.transport {
                    t.dispatch.abort(call);
                }
            }
            Output::DispatchRespond { req, response } => {
                if let Some(t) = self.transport {
                    t.dispatch.respond(req, response);
                }
            }
        }
    }

    fn between(&mut self, _node: &mut Node, _work: weft_engine::Work) -> bool {
        if std::mem::take(&mut self.wrote) {
            let _ = std::io::stdout().flush();
        }
        // Frames the slice sent go out now; frames that arrived and finished world commands
        // reach the inputs. A busy cluster node looks at its sockets itself, with one `poll(2)`
        // every `LOOK_BUSY` (the drive loop also lets the reactor pass every `REACT_BUSY`).
        // The frames go out before the look: a peer waiting for one of them should not wait
        // for our `poll(2)` as well.
        cluster::net::tick(CLUSTER_TICKS);
        if self.transport.is_some() {
            let now = StdInstant::now();
            if now.duration_since(self.looked) >= LOOK_BUSY {
                self.looked = now;
                if cluster::net::wake_ready_sockets() > 0 {
                    cluster::net::tick(CLUSTER_TICKS);
                }
            }
        }
        true
    }

    fn poll_input(&mut self) -> Option<Input> {
        let i = self.rx.try_recv();
        if i.is_some() {
            self.last_input = Some(StdInstant::now());
        }
        self.seen(i.as_ref());
        i
    }

    fn wait(&mut self, _node: &mut Node, deadline: Option<Instant>) -> Wake {
        smol::block_on(cluster::net::run_until(self.next_wake(deadline)))
    }
}

impl RealDriver<'_> {
    /// The next input, or `Wake::Again` at `deadline`.
    async fn next_wake(&mut self, deadline: Option<Instant>) -> Wake {
        let wake = self.wait_input(deadline).await;
        if let Wake::Input(i) = &wake {
            self.last_input = Some(StdInstant::now());
            self.seen(Some(i));
        }
        wake
    }

    async fn wait_input(&mut self, deadline: Option<Instant>) -> Wake {
        if let Some(wake) = self.spin(deadline).await {
            return wake;
        }
        // Blocking: the reactor takes the events on this thread while it waits.
        self.reacted = StdInstant::now();
        let Some(at) = deadline else {
            // Every sender gone cannot happen while the driver holds one.
            return self.rx.recv().await.map_or(Wake::Again, Wake::Input);
        };
        let start = self.start;
        if !matches!(&self.timer, Some((t, _)) if *t == at) {
            self.timer = Some((at, smol::Timer::at(start + Duration::from_nanos(at))));
        }
        let timer = &mut self.timer.as_mut().expect("armed above").1;
        let rx = &self.rx;
        let input = async { rx.recv().await.map_or(Wake::Again, Wake::Input) };
        let fired = async {
            timer.await;
            Wake::Again
        };
        let wake = futures_lite::future::or(input, fired).await;
        if wake == Wake::Again {
            // A fired timer is spent.
            self.timer = None;
        }
        wake
    }

    /// Spins for `SPIN` on a cluster node that had input within `SPIN_AFTER_INPUT`: each round
    /// yields to the executor, which runs ready cluster tasks and takes the sockets' events
    /// without blocking. Returns the input that came, `Wake::Again` if the deadline passed, or
    /// None (sleep as usual).
    async fn spin(&mut self, deadline: Option<Instant>) -> Option<Wake> {
        self.transport?;
        if self.spin.is_zero() {
            return None;
        }
        let now = StdInstant::now();
        if self
            .last_input
            .is_none_or(|t| now.duration_since(t) >= SPIN_AFTER_INPUT)
        {
            return None;
        }
        let until = now + self.spin;
        let due = deadline.map(|at| self.start + Duration::from_nanos(at));
        let mut round = 0u32;
        loop {
            round = round.wrapping_add(1);
            if let Some(i) = self.rx.try_recv() {
                return Some(Wake::Input(i));
            }
            let t = StdInstant::now();
            if due.is_some_and(|d| t >= d) {
                return Some(Wake::Again);
            }
            if t >= until {
                return None;
            }
            // Give the core away when another thread wants it (a busy machine): spinning
            // must not slow the peer that is computing the answer. Not every round: a yield
            // costs about as much as the look at the sockets, and data that comes in during it
            // waits for it.
            if round.is_multiple_of(SPIN_YIELD_EVERY) {
                std::thread::yield_now();
            }
            // Tasks woken meanwhile (a world command done, a frame read) run here.
            if cluster::net::tick(CLUSTER_TICKS) {
                continue;
            }
            // A pass of the reactor costs about five system calls; one `poll(2)` finds the
            // connections with data and wakes their readers. Every `REACT_BUSY` the reactor
            // looks anyway (timers, a new connection on the listener, datagrams).
            if t.duration_since(self.reacted) >= REACT_BUSY {
                self.reacted = t;
                futures_lite::future::yield_now().await;
            } else if cluster::net::wake_ready_sockets() > 0 {
                cluster::net::tick(CLUSTER_TICKS);
            }
        }
    }

    /// A stop signal makes the node's health NOT_SERVING at once (its services are stopping).
    fn seen(&self, input: Option<&Input>) {
        if let (Some(Input::Signal(_)), Some(t)) = (input, self.transport) {
            t.dispatch.draining();
        }
    }
}

/// Work between two reads of the inputs and the clock, in steps: a short step (a message in, a
/// message out) costs 1, and a step that ran its whole budget costs 1 + `BUSY_STEP_COST`. So up
/// to 16 short steps share one look at the sockets and one flush of the frames they sent (with
/// 16 concurrent callers, 10-40% more calls/s than 4), while at most two long steps run before
/// timers, signals and completions are read again (a ticker stays within a few ms).
const SLICE_STEPS: usize = 16;
const BUSY_STEP_COST: u32 = 8;
/// Cluster tasks run between two slices at most (the rest run at the next chance).
const CLUSTER_TICKS: usize = 64;

/// Runs the node until it exits; `inputs` is the channel signals already feed.
fn drive(
    mut node: Node,
    log_mode: Arc<LogMode>,
    world: Arc<Mutex<World>>,
    transport: Option<&Transport>,
    inputs: (InputTx, InputRx),
    start: StdInstant,
) -> i32 {
    let (tx, rx) = inputs;
    let (stdin_tx, stdin_rx) = channel();
    stdin_thread(stdin_rx, tx.clone());
    let mut d = RealDriver {
        start,
        log_mode,
        transport,
        world,
        tx,
        rx,
        stdin_tx,
        wrote: false,
        timer: None,
        last_input: None,
        reacted: StdInstant::now(),
        looked: StdInstant::now(),
        spin: std::env::var("WEFT_BUSY_WAIT_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(SPIN, Duration::from_micros),
    };
    // One `block_on` for the whole run: this thread runs the cluster's tasks and polls the
    // sockets itself whenever the node waits, so a frame goes between the engine and the socket
    // without a thread switch (waiting in a fresh `block_on` each time hands the sockets to
    // async-io's own thread, and every frame pays a switch to it and back).
    let run = async {
        loop {
            match weft_engine::turn(&mut node, &mut d, SLICE_STEPS) {
                Turn::Exited(code) => return code,
                Turn::Stopped => return 0,
                Turn::Busy => {
                    // A busy node still has the reactor pass on this thread now and then:
                    // left alone, the reactor goes to async-io's own thread, and every frame
                    // then costs a wake-up of that thread and a switch to it.
                    if d.transport.is_some() && d.reacted.elapsed() >= REACT_BUSY {
                        d.reacted = StdInstant::now();
                        futures_lite::future::yield_now().await;
                    }
                }
                Turn::Idle(deadline) => {
                    let wake = d.next_wake(deadline).await;
                    if !weft_engine::woke(&mut node, &mut d, wake) {
                        return 0;
                    }
                }
            }
        }
    };
    smol::block_on(cluster::net::run_until(run))
}
