//! `weft sim`: run an app under the deterministic simulator, one seed or a sweep/swarm.
//! Loads the project from disk and prints; the simulation itself is `weft_sim::run`.

use crate::project;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use std::io::Write;
use std::path::PathBuf;
use weft_engine::entries::{Entry, EntryKind};
use weft_engine::node::Planted;
use weft_sim::cluster::NodeSpec;
use weft_sim::explore::Explore;
use weft_sim::faults::{Faults, KINDS};
use weft_sim::net::{NetConfig, NetFaults, NET_KINDS};
use weft_sim::storage::{ClockFaults, StorageFaults, CLOCK_KINDS, STORAGE_KINDS};
use weft_sim::{SimConfig, SimReport};

#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    #[command(flatten)]
    app: project::AppDir,
    /// The seed; every run prints it and the same seed replays the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run this process on the terminal host: `ns:entry` or `host/ns:entry`.
    #[arg(short = 'x', long = "exec", value_name = "ENTRY")]
    exec: Option<String>,
    /// Arguments of the -x process (as with `weft run -x ENTRY ARGS...`).
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        requires = "exec"
    )]
    args: Vec<String>,
    /// File whose lines the terminal process reads (then end of input).
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Simulated time limit, e.g. 10m, 2h.
    #[arg(long, default_value = "10m")]
    until: String,
    /// Faults: none, all, or e.g. kill=0.001,late=0.1,jitter=0.2,fail=0.05,noise=0.01,buggify
    #[arg(long, default_value = "none")]
    faults: String,
    /// Run seeds A..B (B excluded).
    #[arg(long, value_name = "A..B")]
    seeds: Option<String>,
    /// Run N seeds from --seed on, each with its own fault mix.
    #[arg(long, value_name = "N")]
    swarm: Option<u64>,
    /// Run every seed twice and fail if the trace hashes differ.
    #[arg(long)]
    twice: bool,
    /// Write the full trace of a single-seed run to FILE.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Fault-free simulated time after the run in which services must be back up.
    #[arg(long, default_value = "5m")]
    liveness: String,
    /// Messages between processes arrive after a seeded delay below this (per-sender order
    /// kept); 0 delivers at once. A swarm draws it per seed.
    #[arg(long, default_value = "1ms")]
    delay: String,
    /// Plant a known bug (for testing the simulator itself): double-exit, forget-remote-exit,
    /// nosync (SQL commits answered ok without a sync; turns --storage on).
    #[arg(long, hide = true)]
    plant: Option<String>,
    /// A node of a simulated cluster: `NAME=APP_DIR[:ENTRY]` (ENTRY as for -x runs on that
    /// node's terminal host). Repeat for each node; the first is everyone's join address.
    #[arg(
        long = "node",
        value_name = "NAME=DIR[:ENTRY]",
        conflicts_with = "exec"
    )]
    nodes: Vec<String>,
    /// A sim file (YAML) naming the cluster's nodes: `app: DIR` and `nodes: [{name, app?,
    /// exec?, args?}]`, paths relative to the file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["exec", "nodes"])]
    cluster: Option<PathBuf>,
    /// Network faults of a cluster run: none, all, or e.g.
    /// loss=0.01,dup=0.01,reorder=0.05,stale=0.5,reset=0.02,clog=0.05,partition=0.02,oneway=0.02,isolate=0.02,crash=0.01,skew=0.5
    #[arg(long, default_value = "none")]
    net: String,
    /// Mean one-way network latency of a cluster run (each frame and datagram draws its own).
    #[arg(long, default_value = "1ms")]
    latency: String,
    /// What seeds reorder besides delivery: all, none, or e.g. pick=2,ties,coroutines (any
    /// ready process runs next one step in N; timers due at one instant fire in seeded order;
    /// ready coroutines resume in seeded order). A swarm draws it per seed.
    #[arg(long, default_value = "all")]
    explore: String,
    /// In a sweep, run every seed again from its printed replay line and fail the seed if
    /// that gives another trace hash (checks that replay lines carry every setting).
    #[arg(long)]
    check_replay: bool,
    /// A failing seed: find a smallest fault schedule that still fails the same way (fault
    /// types switched off, then delta debugging over the faults drawn) and print its replay line.
    #[arg(long)]
    shrink: bool,
    /// Only these of the faults drawn fire, by index in the run's order (`none` or e.g.
    /// 3,17); replay lines of shrunk runs carry it.
    #[arg(long, value_name = "LIST")]
    keep_faults: Option<String>,
    /// Storage faults and crash-restart (one node): none, disk, all, or e.g.
    /// crash=0.002,ioerr=0.005,syncerr=0.01,fsyncloss=0.01,torn=0.5. Databases, stores and the
    /// registry history live on a simulated disk; the node crashes and restarts from what was
    /// durably written, and a seed fails when a write answered ok is lost. A swarm draws the
    /// rates per seed (crashes always on, fsyncloss off).
    #[arg(long, default_value = "none")]
    storage: String,
    /// Wall clock faults the app sees (time.now, os.time; one node): none, or e.g.
    /// skew=1h,jump=0.001 (a skew drawn per seed up to 1h either way; per step, a jump of up
    /// to 5m forward or back). Monotonic time (os.clock, timers) is never affected.
    #[arg(long, default_value = "none")]
    clock: String,
}

/// A replay line read back as arguments of `weft sim`.
#[derive(clap::Parser, Debug)]
#[command(no_binary_name = true)]
struct ReplayCli {
    #[command(flatten)]
    sim: SimArgs,
}

/// A sim file: the nodes of a cluster run.
#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct SimFile {
    /// The app every node runs unless it names its own.
    #[serde(default)]
    app: Option<PathBuf>,
    nodes: Vec<SimFileNode>,
}

#[derive(serde::Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct SimFileNode {
    name: String,
    #[serde(default)]
    app: Option<PathBuf>,
    #[serde(default)]
    exec: Option<String>,
    #[serde(default)]
    args: Vec<String>,
}

fn duration(s: &str, flag: &str) -> Result<u64, String> {
    weft_engine::duration::parse(s)
        .map(|n| n.max(0) as u64)
        .map_err(|e| format!("{flag}: {e}"))
}

struct Plan {
    entries: Vec<Entry>,
    base: SimConfig,
    /// The nodes of a cluster run (none: one node, `entries`).
    nodes: Vec<NodeSpec>,
}

impl Plan {
    fn run(&self, cfg: &SimConfig) -> Result<SimReport, String> {
        if self.nodes.is_empty() {
            weft_sim::run(&self.entries, cfg)
        } else {
            weft_sim::cluster::run(&self.nodes, cfg)
        }
    }
}

/// `-x`/`ENTRY` text to (terminal host, entry), checked against the app's entries.
fn resolve_exec(x: &str, entries: &[Entry]) -> Result<(String, String), String> {
    let (host, entry) = match x.split_once('/') {
        Some((h, e)) => (h.to_string(), e.to_string()),
        None => {
            let hosts: Vec<&Entry> = entries
                .iter()
                .filter(|e| e.kind == EntryKind::TerminalHost)
                .collect();
            match hosts.as_slice() {
                [one] => (one.id.clone(), x.to_string()),
                [] => return Err("no terminal.host entry to run -x on".into()),
                _ => return Err("more than one terminal.host: use -x host/entry".into()),
            }
        }
    };
    if !entry.contains(':') {
        return Err(format!("-x {x}: use namespace:entry"));
    }
    if !entries.iter().any(|e| e.id == entry) {
        return Err(project::entry_not_found(&entry, entries));
    }
    Ok((host, entry))
}

/// The nodes of a cluster run, from `--node` flags or a `--cluster` file.
fn cluster_nodes(a: &SimArgs) -> Result<Vec<NodeSpec>, String> {
    let mut wanted: Vec<(String, PathBuf, Option<String>, Vec<String>)> = Vec::new();
    if let Some(f) = &a.cluster {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let file: SimFile =
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        let base = f.parent().unwrap_or(std::path::Path::new("."));
        if file.nodes.is_empty() {
            return Err(format!("{}: 'nodes' lists no node", f.display()));
        }
        for n in file.nodes {
            let Some(app) = n.app.or_else(|| file.app.clone()) else {
                return Err(format!(
                    "{}: node {} names no app (set 'app' for it or for the file)",
                    f.display(),
                    n.name
                ));
            };
            wanted.push((n.name, base.join(app), n.exec, n.args));
        }
    }
    for spec in &a.nodes {
        let Some((name, rest)) = spec.split_once('=') else {
            return Err(format!("--node {spec}: use NAME=APP_DIR[:ENTRY]"));
        };
        let (dir, exec) = match rest.split_once(':') {
            Some((d, e)) => (d, Some(e.to_string())),
            None => (rest, None),
        };
        wanted.push((name.to_string(), PathBuf::from(dir), exec, Vec::new()));
    }
    let mut nodes = Vec::new();
    for (name, dir, exec, args) in wanted {
        let root = dir
            .canonicalize()
            .map_err(|e| format!("node {name}: {}: {e}", dir.display()))?;
        let entries = project::load(&root).map_err(|e| format!("node {name}: {e}"))?;
        let exec = match exec {
            Some(x) => {
                let (host, entry) =
                    resolve_exec(&x, &entries).map_err(|e| format!("node {name}: {e}"))?;
                Some((host, entry, args))
            }
            None => None,
        };
        nodes.push(NodeSpec {
            name,
            entries,
            exec,
        });
    }
    Ok(nodes)
}

fn plan(a: &SimArgs) -> Result<Plan, String> {
    let nodes = cluster_nodes(a)?;
    let entries = if nodes.is_empty() {
        project::load(&a.app.root()?)?
    } else {
        Vec::new()
    };
    let mut base = SimConfig::new(a.seed);
    base.net = NetConfig {
        latency_ns: duration(&a.latency, "--latency")?,
        faults: NetFaults::parse(&a.net)?,
    };
    base.until_ns = duration(&a.until, "--until")?;
    base.liveness_ns = duration(&a.liveness, "--liveness")?;
    base.delivery_delay_ns = duration(&a.delay, "--delay")?;
    base.faults = Faults::parse(&a.faults)?;
    base.explore = Explore::parse(&a.explore)?;
    if let Some(k) = &a.keep_faults {
        base.keep_faults = Some(weft_sim::shrink::parse_keep(k)?);
    }
    if (a.shrink || a.keep_faults.is_some()) && !nodes.is_empty() {
        return Err("--shrink and --keep-faults work on runs alone, not clusters yet".into());
    }
    base.keep_trace = a.trace.is_some();
    base.storage = StorageFaults::parse(&a.storage)?;
    base.clock = ClockFaults::parse(&a.clock)?;
    if (base.storage.on || !base.clock.is_none()) && !nodes.is_empty() {
        return Err("--storage and --clock run one node (not --node or --cluster)".into());
    }
    if let Some(p) = &a.plant {
        match p.as_str() {
            "nosync" => {
                // SQL databases answer commits ok without syncing them.
                base.storage.on = true;
                base.storage.nosync = true;
            }
            "double-exit" => {
                base.planted = Planted {
                    double_exit: true,
                    ..Default::default()
                }
            }
            "forget-remote-exit" => {
                base.planted = Planted {
                    forget_remote_exit: true,
                    ..Default::default()
                }
            }
            other => return Err(format!("--plant: unknown bug '{other}'")),
        }
    }
    if let Some(f) = &a.input {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        base.input = text.lines().map(String::from).collect();
    }
    if let Some(x) = &a.exec {
        let (host, entry) = resolve_exec(x, &entries)?;
        base.exec = Some((host, entry, a.args.clone()));
    }
    Ok(Plan {
        entries,
        base,
        nodes,
    })
}

/// `s` as one shell word: as it is when it holds only characters no shell treats specially,
/// else in single quotes.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The words of a replay line, as a POSIX shell splits them (spaces, single quotes, and
/// backslashes outside quotes).
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut cur, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

fn replay_line(a: &SimArgs, seed: u64, cfg: &SimConfig) -> String {
    let (faults, delay_ns) = (&cfg.faults, cfg.delivery_delay_ns);
    let path = |p: &std::path::Path| shell_word(&p.display().to_string());
    let mut s = if let Some(f) = &a.cluster {
        format!("weft sim --cluster {} --seed {seed}", path(f))
    } else if !a.nodes.is_empty() {
        let nodes: Vec<String> = a
            .nodes
            .iter()
            .map(|n| format!("--node {}", shell_word(n)))
            .collect();
        format!("weft sim {} --seed {seed}", nodes.join(" "))
    } else {
        format!("weft sim -C {} --seed {seed}", path(&a.app.dir))
    };
    if a.cluster.is_some() || !a.nodes.is_empty() {
        if cfg.net.latency_ns != weft_sim::net::DEFAULT_LATENCY_NS {
            s.push_str(&format!(" --latency {}", fmt_ns(cfg.net.latency_ns)));
        }
        if !cfg.net.faults.is_none() {
            s.push_str(&format!(" --net {}", cfg.net.faults.describe()));
        }
    }
    if let Some(x) = &a.exec {
        s.push_str(&format!(" -x {}", shell_word(x)));
    }
    if let Some(i) = &a.input {
        s.push_str(&format!(" --input {}", path(i)));
    }
    if cfg.until_ns != 600 * SECOND_NS {
        s.push_str(&format!(" --until {}", fmt_ns(cfg.until_ns)));
    }
    if cfg.liveness_ns != 300 * SECOND_NS {
        s.push_str(&format!(" --liveness {}", fmt_ns(cfg.liveness_ns)));
    }
    if delay_ns != weft_sim::DEFAULT_DELIVERY_DELAY_NS {
        s.push_str(&format!(" --delay {}", fmt_ns(delay_ns)));
    }
    if !faults.is_none() {
        s.push_str(&format!(" --faults {}", faults.describe()));
    }
    if cfg.storage.on {
        s.push_str(&format!(" --storage {}", cfg.storage.describe()));
    }
    if !cfg.clock.is_none() {
        s.push_str(&format!(" --clock {}", cfg.clock.describe()));
    }
    if cfg.explore != Explore::all() {
        s.push_str(&format!(" --explore {}", cfg.explore.describe()));
    }
    if let Some(k) = &cfg.keep_faults {
        s.push_str(&format!(
            " --keep-faults {}",
            weft_sim::shrink::describe_keep(k)
        ));
    }
    if let Some(p) = &a.plant {
        s.push_str(&format!(" --plant {}", shell_word(p)));
    }
    if !a.args.is_empty() {
        let args: Vec<String> = a.args.iter().map(|w| shell_word(w)).collect();
        s.push_str(&format!(" -- {}", args.join(" ")));
    }
    s
}

const SECOND_NS: u64 = 1_000_000_000;

/// Runs a replay line as `weft sim` would (one seed) and returns its trace hash.
fn replay_hash(line: &str) -> Result<u64, String> {
    let words = shell_words(line);
    let rest = match words.as_slice() {
        [weft, sim, rest @ ..] if weft == "weft" && sim == "sim" => rest,
        _ => return Err(format!("not a replay line: {line}")),
    };
    let cli = <ReplayCli as clap::Parser>::try_parse_from(rest)
        .map_err(|e| format!("replay line does not parse: {e}"))?;
    let p = plan(&cli.sim)?;
    Ok(p.run(&p.base)?.trace_hash)
}

fn fmt_ns(ns: u64) -> String {
    weft_engine::duration::format(ns as i64)
}

fn fault_summary(r: &SimReport) -> String {
    if r.faults.is_empty() {
        return "none".into();
    }
    r.faults
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_violation(a: &SimArgs, r: &SimReport, cfg: &SimConfig) {
    if let Some(v) = &r.violation {
        eprintln!("VIOLATION at seed {}: {}", r.seed, v.invariant);
        eprintln!("  {}", v.detail);
        eprintln!("  last trace lines:");
        for l in &r.recent {
            eprintln!("    {l}");
        }
        eprintln!("  replay: {}", replay_line(a, r.seed, cfg));
    }
}

fn single(a: &SimArgs, p: &Plan) -> i32 {
    if a.shrink {
        return shrink(a, p);
    }
    println!("seed {}", a.seed);
    let r = match p.run(&p.base) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    print!("{}", r.stdout);
    if !r.stdout.is_empty() && !r.stdout.ends_with('\n') {
        println!();
    }
    eprint!("{}", r.stderr);
    println!(
        "sim time {} | steps {} | processes {} | messages {} | restarts {} | faults {}",
        fmt_ns(r.sim_time_ns),
        r.steps,
        r.processes,
        r.messages,
        r.restarts,
        fault_summary(&r)
    );
    println!("trace hash {:016x}", r.trace_hash);
    println!("replay: {}", replay_line(a, a.seed, &p.base));
    if let Some(t) = &a.trace {
        let text = r.trace.join("\n") + "\n";
        if let Err(e) = std::fs::write(t, text) {
            eprintln!("error: {}: {e}", t.display());
            return 1;
        }
    }
    if a.twice {
        match p.run(&p.base) {
            Ok(r2) if r2.trace_hash == r.trace_hash => println!("second run: same trace hash"),
            Ok(r2) => {
                eprintln!(
                    "NONDETERMINISM: seed {} gave {:016x} then {:016x}",
                    a.seed, r.trace_hash, r2.trace_hash
                );
                return 1;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    }
    if r.violation.is_some() {
        print_violation(a, &r, &p.base);
        return 1;
    }
    r.exit_code.unwrap_or(0)
}

/// Runs at most this many times to shrink one seed.
const SHRINK_BUDGET: u64 = 400;

/// `--shrink`: the seed's run, and if it fails, the smallest failing schedule found.
fn shrink(a: &SimArgs, p: &Plan) -> i32 {
    println!("seed {}", a.seed);
    let out = weft_sim::shrink::shrink(&p.base, SHRINK_BUDGET, |c| p.run(c));
    let s = match out {
        Ok(Some(s)) => s,
        Ok(None) => {
            println!("the seed passes: nothing to shrink");
            println!("replay: {}", replay_line(a, a.seed, &p.base));
            return 0;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let r = &s.report;
    println!("fails: {}", s.failure);
    println!(
        "shrunk in {} runs: {} faults fired before, {} now ({})",
        s.runs,
        s.fired_before,
        weft_sim::shrink::fired(r),
        fault_summary(r)
    );
    if let Some(v) = &r.violation {
        println!("  {}", v.detail);
    } else if let Some(why) = r.stderr.lines().next() {
        println!("  {}", why.trim());
    }
    println!("trace hash {:016x}", r.trace_hash);
    println!("replay: {}", replay_line(a, a.seed, &s.cfg));
    1
}

/// What a swarm seed runs with: its fault mix and its delivery delay, drawn from the seed.
fn swarm_draw(seed: u64) -> (Faults, u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let faults = Faults::draw(&mut rng);
    let pick = rand_core::RngCore::next_u64(&mut rng) as usize;
    let delay = weft_sim::SWARM_DELAYS_NS[pick % weft_sim::SWARM_DELAYS_NS.len()];
    (faults, delay)
}

/// A cluster swarm seed's network: its fault mix and mean latency, drawn from the seed (a
/// stream of its own, so the process-level draw stays as it was).
fn swarm_net(seed: u64) -> NetConfig {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4E45_5457_4F52_4B00);
    let faults = NetFaults::draw(&mut rng);
    let pick = rand_core::RngCore::next_u64(&mut rng) as usize;
    let latency_ns =
        weft_sim::net::SWARM_LATENCIES_NS[pick % weft_sim::net::SWARM_LATENCIES_NS.len()];
    NetConfig { latency_ns, faults }
}

/// A storage swarm seed's disk faults and crash rate, drawn from a stream of its own.
fn swarm_storage(seed: u64, nosync: bool) -> StorageFaults {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5707_A6E0_0000_0000);
    StorageFaults::draw(&mut rng, nosync)
}

fn sweep(a: &SimArgs, p: &Plan, seeds: Vec<u64>, swarm: bool) -> i32 {
    let total = seeds.len();
    let mut failures: Vec<(u64, String, SimConfig)> = Vec::new();
    let mut fired: std::collections::BTreeMap<String, u64> = Default::default();
    // How many seeds each fault type fired in.
    let mut seeds_with: std::collections::BTreeMap<String, u64> = Default::default();
    let mut schedules: std::collections::BTreeSet<u64> = Default::default();
    let started = std::time::Instant::now();
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for (i, seed) in seeds.iter().copied().enumerate() {
        let mut cfg = p.base.clone();
        cfg.seed = seed;
        if swarm {
            (cfg.faults, cfg.delivery_delay_ns) = swarm_draw(seed);
            cfg.explore = Explore::draw(seed);
            if !p.nodes.is_empty() {
                cfg.net = swarm_net(seed);
            }
            if p.base.storage.on {
                cfg.storage = swarm_storage(seed, p.base.storage.nosync);
            }
        }
        let r = match p.run(&cfg) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("\nerror: {e}");
                return 1;
            }
        };
        for (k, v) in &r.faults {
            *fired.entry(k.clone()).or_insert(0) += v;
            *seeds_with.entry(k.clone()).or_insert(0) += 1;
        }
        schedules.insert(r.schedule_hash);
        if let Some(v) = &r.violation {
            failures.push((seed, format!("{}: {}", v.invariant, v.detail), cfg.clone()));
        } else if let Some(code) = r.exit_code.filter(|c| *c != 0) {
            // A seed whose terminal process failed is a failed seed, with its error.
            let why = r.stderr.lines().next().unwrap_or("").trim().to_string();
            failures.push((
                seed,
                format!("the terminal process exited with {code}: {why}"),
                cfg.clone(),
            ));
        } else if let Some(why) = a
            .check_replay
            .then(|| replay_differs(a, &cfg, r.trace_hash))
            .flatten()
        {
            failures.push((seed, why, cfg.clone()));
        } else if a.twice {
            match p.run(&cfg) {
                Ok(r2) if r2.trace_hash != r.trace_hash => failures.push((
                    seed,
                    format!(
                        "nondeterminism: {:016x} then {:016x}",
                        r.trace_hash, r2.trace_hash
                    ),
                    cfg.clone(),
                )),
                Err(e) => failures.push((seed, e, cfg.clone())),
                _ => {}
            }
        }
        let done = i + 1;
        if tty {
            eprint!(
                "\r[{done:>5}/{total}] seed {seed:<8} failures {}",
                failures.len()
            );
            let _ = std::io::stderr().flush();
        } else if done * 10 / total != (done - 1) * 10 / total || done == total {
            eprintln!(
                "[{done:>5}/{total}] seed {seed:<8} failures {}",
                failures.len()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if tty {
        eprintln!();
    }
    println!(
        "{total} seeds in {secs:.1}s ({:.1} seeds/s), {} failed{}",
        total as f64 / secs.max(1e-9),
        failures.len(),
        if a.twice { ", each run twice" } else { "" }
    );
    if a.check_replay {
        println!("replay lines checked: each seed's line run again gave its trace hash, unless listed below");
    }
    println!(
        "distinct schedules: {} of {total} seeds (traces compared without timestamps)",
        schedules.len()
    );
    let cluster = !p.nodes.is_empty();
    let stored = p.base.storage.on;
    if swarm
        || stored
        || !p.base.clock.is_none()
        || !p.base.faults.is_none()
        || (cluster && !p.base.net.faults.is_none())
    {
        let kinds: Vec<&str> = if cluster {
            KINDS.iter().chain(NET_KINDS).copied().collect()
        } else if stored {
            KINDS.iter().chain(STORAGE_KINDS).copied().collect()
        } else if !p.base.clock.is_none() {
            KINDS.iter().chain(CLOCK_KINDS).copied().collect()
        } else {
            KINDS.to_vec()
        };
        let never: Vec<&str> = kinds
            .iter()
            .copied()
            .filter(|k| !fired.contains_key(*k))
            .collect();
        let counts: Vec<String> = fired.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "faults fired: {}",
            if counts.is_empty() {
                "none".into()
            } else {
                counts.join(" ")
            }
        );
        if cluster || stored {
            // The share of seeds each fault type fired in (a swarm should reach every type).
            let shares: Vec<String> = kinds
                .iter()
                .map(|k| {
                    let n = seeds_with.get(*k).copied().unwrap_or(0);
                    format!("{k} {:.1}%", 100.0 * n as f64 / total.max(1) as f64)
                })
                .collect();
            println!("seeds per fault type: {}", shares.join(", "));
        }
        if !never.is_empty() {
            println!("fault types that never fired: {}", never.join(", "));
        }
    }
    for (seed, why, cfg) in &failures {
        println!("FAILED seed {seed}: {why}");
        println!("  replay: {}", replay_line(a, *seed, cfg));
    }
    i32::from(!failures.is_empty())
}

/// Why the replay line of `cfg`'s seed does not reproduce `hash`, if it does not.
fn replay_differs(a: &SimArgs, cfg: &SimConfig, hash: u64) -> Option<String> {
    match replay_hash(&replay_line(a, cfg.seed, cfg)) {
        Ok(h) if h == hash => None,
        Ok(h) => Some(format!(
            "the replay line gives trace hash {h:016x}, the sweep gave {hash:016x}"
        )),
        Err(e) => Some(format!("the replay line does not run: {e}")),
    }
}

pub fn sim(a: SimArgs) -> i32 {
    let p = match plan(&a) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if let Some(range) = &a.seeds {
        let parsed = range
            .split_once("..")
            .and_then(|(l, h)| Some((l.parse::<u64>().ok()?, h.parse::<u64>().ok()?)));
        let Some((lo, hi)) = parsed else {
            eprintln!("error: --seeds takes A..B, e.g. 1..200");
            return 1;
        };
        return sweep(&a, &p, (lo..hi).collect(), false);
    }
    if let Some(n) = a.swarm {
        return sweep(&a, &p, (a.seed..a.seed + n).collect(), true);
    }
    single(&a, &p)
}

/// Re-executes this program once with address-space randomisation off, so Lua tables keyed by
/// pointers iterate the same way in every run of a seed. Returns only if re-exec is not possible.
pub fn reexec_without_aslr() {
    const MARK: &str = "WEFT_SIM_ASLR_OFF";
    if std::env::var_os(MARK).is_some() {
        return;
    }
    // SAFETY: personality() only reads or sets this process's execution-domain flags.
    let cur = unsafe { libc::personality(0xffff_ffff) };
    if cur == -1 {
        return;
    }
    // SAFETY: as above; ADDR_NO_RANDOMIZE takes effect at the next exec.
    if unsafe { libc::personality((cur | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong) } == -1 {
        return;
    }
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(MARK, "1")
        .exec();
    eprintln!("weft sim: could not re-exec without ASLR ({err}); continuing");
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    fn args(words: &[&str]) -> SimArgs {
        <ReplayCli as clap::Parser>::try_parse_from(words)
            .expect("parses")
            .sim
    }

    #[test]
    fn replay_words_survive_the_shell() {
        for w in [
            "plain",
            "a b",
            "it's",
            "",
            "x\\y",
            "--",
            "$HOME",
            "tab\there",
        ] {
            let line = format!("weft sim -x {} -- {}", shell_word(w), shell_word(w));
            assert_eq!(
                shell_words(&line),
                ["weft", "sim", "-x", w, "--", w],
                "{w:?}"
            );
        }
    }

    #[test]
    fn a_swarm_seeds_replay_line_gives_its_trace_hash() {
        let a = args(&[
            "-C",
            "../tests/apps/supervised",
            "--until",
            "20s",
            "--liveness",
            "7s",
        ]);
        let p = plan(&a).unwrap();
        for seed in 0..12u64 {
            let mut cfg = p.base.clone();
            cfg.seed = seed;
            (cfg.faults, cfg.delivery_delay_ns) = swarm_draw(seed);
            cfg.explore = Explore::draw(seed);
            let r = p.run(&cfg).unwrap();
            assert_eq!(replay_differs(&a, &cfg, r.trace_hash), None, "seed {seed}");
            // A line that would give another run is caught.
            let why = replay_differs(&a, &cfg, r.trace_hash ^ 1).expect("differs");
            assert!(why.contains("the sweep gave"), "{why}");
        }
        let line = replay_line(&a, 3, &p.base);
        assert!(line.contains("--until 20s --liveness 7s"), "{line}");
    }

    #[test]
    fn a_swarm_seeds_delay_and_faults_read_back_from_its_replay_line() {
        for seed in 0..300u64 {
            let (faults, delay) = swarm_draw(seed);
            assert_eq!(Faults::parse(&faults.describe()).unwrap(), faults);
            assert_eq!(duration(&fmt_ns(delay), "--delay").unwrap(), delay);
            let net = swarm_net(seed);
            assert_eq!(
                NetFaults::parse(&net.faults.describe()).unwrap(),
                net.faults
            );
            assert_eq!(
                duration(&fmt_ns(net.latency_ns), "--latency").unwrap(),
                net.latency_ns
            );
        }
    }
}
