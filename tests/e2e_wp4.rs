//! End-to-end tests of the versioned registry through the `weft` binary: durability across a
//! SIGKILL, and determinism of a registry-dynamic app under `weft sim`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("drivers/ has a parent")
        .to_path_buf()
}

/// A copy of an app under the system temp dir (so `.wippy/` is written there), removed on drop.
struct TempApp(PathBuf);

impl TempApp {
    fn copy_of(name: &str) -> TempApp {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dst = std::env::temp_dir().join(format!(
            "weft-e2e-wp4-{name}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let src = repo_root().join("tests/apps").join(name).join("src");
        fs::create_dir_all(dst.join("src")).expect("mkdir");
        for f in fs::read_dir(&src).expect("app src") {
            let f = f.expect("dir entry").path();
            fs::copy(&f, dst.join("src").join(f.file_name().expect("name"))).expect("copy");
        }
        TempApp(dst)
    }
}

impl Drop for TempApp {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn weft_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
    c.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn committed_registry_versions_survive_kill_9() {
    let app = TempApp::copy_of("registry_durable");
    let mut child = weft_cmd(&app.0, &["run", "-x", "app:printer"])
        .spawn()
        .expect("start weft");
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut committed: Vec<u64> = Vec::new();
    let start = Instant::now();
    while committed.len() < 30 && start.elapsed() < Duration::from_secs(30) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if let Some(v) = line.strip_prefix("committed ") {
                committed.push(v.trim().parse().expect("version number"));
            }
        }
    }
    // SIGKILL mid-run: the writer is still applying changes.
    child.kill().expect("kill -9");
    let _ = child.wait();
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        if let Some(v) = line.strip_prefix("committed ") {
            committed.push(v.trim().parse().expect("version number"));
        }
    }
    assert!(
        committed.len() >= 30,
        "the writer committed too few versions before the deadline: {committed:?}"
    );

    let run = weft_cmd(&app.0, &["run", "-x", "app:check"])
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let have: BTreeSet<u64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("have "))
        .map(|v| v.trim().parse().expect("version"))
        .collect();
    let lost: Vec<u64> = committed
        .iter()
        .copied()
        .filter(|v| !have.contains(v))
        .collect();
    assert!(
        lost.is_empty(),
        "versions reported committed but gone after restart: {lost:?}\nhave: {have:?}"
    );
    // Versions are contiguous from 1.
    let max = *have.iter().max().expect("some versions");
    assert_eq!(have.len() as u64, max, "gap in {have:?}");
}

/// Peak RSS (bytes) of the largest child process this test binary has waited for.
fn children_peak_rss() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    ru.ru_maxrss as u64 * 1024
}

/// Issue 11: after thousands of versions every version kept a full copy of the state, and boot
/// replayed them all (6,558 versions: ~20 s and 1.5 GB). Versions are deltas now, with
/// snapshots: a history of 6,000 versions, each adding an entry, boots in bounded time and memory.
#[test]
fn a_long_registry_history_boots_in_bounded_time_and_memory() {
    use weft_engine::registry::Op;
    use weft_engine::value::{Table, Value};
    const VERSIONS: u64 = 6_000;
    let app = TempApp::copy_of("registry_durable");
    // A first run stores version 1 (the files) and a few of the writer's versions.
    let mut child = weft_cmd(&app.0, &["run", "-x", "app:printer"])
        .spawn()
        .expect("start weft");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    for line in out.lines() {
        let Ok(line) = line else { break };
        if line.starts_with("committed 3") {
            break;
        }
    }
    child.kill().expect("kill");
    let _ = child.wait();
    // Then the history grows to VERSIONS the way the writer grows it: one new entry each.
    let storage = weft_world::Storage::Disk {
        root: app.0.clone(),
    };
    let mut store = weft_world::registry::RegistryStore::open(&storage).expect("open store");
    let have = store.load().expect("load").len() as u64;
    assert!(have >= 3, "the first run stored {have} versions");
    let more: Vec<(u64, Vec<Op>)> = (have + 1..=VERSIONS)
        .map(|v| {
            let id = format!("dyn:v{v}");
            let (namespace, name) = weft_engine::entries::parse_id(&id);
            let n = Table::default().with("n", Value::Int(v as i64));
            let e = weft_engine::entries::Entry {
                id,
                namespace,
                name,
                kind: "registry.entry".into(),
                meta: n.clone(),
                data: n,
                ..Default::default()
            };
            (v, vec![Op::Create(e)])
        })
        .collect();
    store.import(&more).expect("import");
    drop(store);

    let start = Instant::now();
    let run = weft_cmd(&app.0, &["run", "-x", "app:check"])
        .output()
        .expect("run check");
    let took = start.elapsed();
    let peak = children_peak_rss();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let listed = stdout.lines().filter(|l| l.starts_with("have ")).count() as u64;
    eprintln!(
        "boot of {listed} versions: {took:?}, peak RSS {} MB",
        peak >> 20
    );
    assert!(listed >= VERSIONS, "{listed} versions listed");
    // An old version is rebuilt from the deltas: each version after 1 added one entry.
    let at = |v: &str| -> i64 {
        let key = format!("at{v} ");
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no at{v} line in:\n{stdout}"))
    };
    assert_eq!(at("3000") - at("1"), 2_999, "{stdout}");
    // Debug build, shared machine: generous bounds that the old full-copy history missed by
    // far (tens of seconds, over a gigabyte).
    assert!(
        took < Duration::from_secs(10),
        "boot and list took {took:?}"
    );
    assert!(peak < 400 << 20, "peak RSS {} MB", peak >> 20);
}

#[test]
fn registry_dynamic_app_replays_under_sim() {
    let app = TempApp::copy_of("registry_durable");
    let run = |seed: &str| {
        let o = weft_cmd(
            &app.0,
            &[
                "sim",
                "--seed",
                seed,
                "-x",
                "app:printer",
                "--until",
                "200ms",
                "--liveness",
                "0",
            ],
        )
        .output()
        .expect("run sim");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let a = run("42");
    let b = run("42");
    let hash = |s: &str| {
        s.lines()
            .find(|l| l.contains("trace hash") || l.contains("trace_hash"))
            .map(String::from)
    };
    let ha = hash(&a.1).or_else(|| hash(&a.2));
    assert!(ha.is_some(), "no trace hash printed:\n{}\n{}", a.1, a.2);
    assert_eq!(
        ha,
        hash(&b.1).or_else(|| hash(&b.2)),
        "same seed, different trace"
    );
    assert!(
        a.1.contains("committed 2") || a.2.contains("committed 2"),
        "the writer committed versions under sim:\n{}\n{}",
        a.1,
        a.2
    );
}
