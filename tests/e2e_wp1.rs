//! End-to-end tests for functions, context and the event bus: the real `weft` binary on
//! tests/apps/funcs-events, under `weft run` and under `weft sim`.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single `weft` run may take before the test kills it and fails.
const DEADLINE: Duration = Duration::from_secs(30);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("drivers/ has a parent")
        .to_path_buf()
}

fn app(name: &str) -> PathBuf {
    repo_root().join("tests/apps").join(name)
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn dump(&self) -> String {
        format!(
            "--- exit: {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs `weft args...` from the repo root with stdin closed, under `DEADLINE`.
fn weft(args: &[&str]) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft");
    let out = reader(child.stdout.take().expect("stdout"));
    let err = reader(child.stderr.take().expect("stderr"));
    let status = loop {
        match child.try_wait().expect("wait for weft") {
            Some(s) => break s,
            None if start.elapsed() > DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("weft {args:?} did not finish within {DEADLINE:?}");
            }
            None => thread::sleep(Duration::from_millis(10)),
        }
    };
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
    }
}

const CHECKS: &[&str] = &[
    "call",
    "call_error",
    "call_bad_target",
    "async",
    "async_cancel",
    "ctx_call",
    "ctx_spawn",
    "process_topics",
    "events",
    "supervisor_topic",
];

fn assert_all_ok(r: &Run) {
    let fails: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(fails.is_empty(), "failed checks: {fails:#?}\n{}", r.dump());
    let ok: BTreeSet<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ok "))
        .collect();
    let missing: Vec<&str> = CHECKS.iter().copied().filter(|c| !ok.contains(c)).collect();
    assert!(
        missing.is_empty(),
        "checks not ok: {missing:?}\n{}",
        r.dump()
    );
    assert!(r.stdout.contains("done"), "{}", r.dump());
    assert_eq!(r.code, Some(0), "{}", r.dump());
}

#[test]
fn funcs_ctx_events_app_runs() {
    let dir = app("funcs-events");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "app:cli"]);
    assert_all_ok(&r);
}

fn sim_hash(r: &Run) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace hash "))
        .unwrap_or_else(|| panic!("no trace hash\n{}", r.dump()))
        .to_string()
}

#[test]
fn funcs_ctx_events_app_under_sim_replays_its_seed() {
    let dir = app("funcs-events");
    let args = [
        "sim",
        dir.to_str().unwrap(),
        "--seed",
        "11",
        "-x",
        "app:cli",
    ];
    let a = weft(&args);
    let b = weft(&args);
    assert_eq!(a.code, Some(0), "{}", a.dump());
    assert!(
        a.stdout.contains("done") && !a.stdout.contains("FAIL"),
        "{}",
        a.dump()
    );
    assert_eq!(sim_hash(&a), sim_hash(&b), "one seed, one hash");
}
