//! End-to-end tests of storage (sql, store, db.sql.sqlite) through the real `weft` binary:
//! durable across runs under `weft run`, in memory and reproducible under `weft sim`.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any single `weft` run may take before the test kills it and fails.
const DEADLINE: Duration = Duration::from_secs(30);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("drivers/ has a parent")
        .to_path_buf()
}

/// What one `weft` run did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    /// Exit code, failing the test (with the output) if the process was killed by a signal.
    fn code(&self) -> i32 {
        match self.code {
            Some(c) => c,
            None => panic!("weft was killed by a signal\n{}", self.dump()),
        }
    }

    fn dump(&self) -> String {
        format!(
            "--- exit: {:?} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }

    fn assert_code(&self, want: i32) {
        assert_eq!(self.code(), want, "unexpected exit code\n{}", self.dump());
    }

    fn assert_stdout_has(&self, needle: &str) {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.dump()
        );
    }
}

fn reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs `weft args...` in `cwd` with `stdin` piped in (then closed), under `DEADLINE`.
fn weft_in(cwd: &Path, args: &[&str], stdin: &str) -> Run {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft");
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.as_bytes().to_vec();
    // Writing on a thread: a process that never reads must not block the test.
    let writer = thread::spawn(move || {
        let _ = input.write_all(&text);
        // Dropping `input` closes the pipe: the app sees EOF after the given text.
    });
    let out = reader(child.stdout.take().expect("stdout"));
    let err = reader(child.stderr.take().expect("stderr"));
    let status = loop {
        match child.try_wait().expect("wait for weft") {
            Some(s) => break s,
            None if start.elapsed() > DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
                let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
                panic!(
                    "weft {args:?} did not finish within {DEADLINE:?}; killed it\n\
                     --- stdout:\n{stdout}\n--- stderr:\n{stderr}"
                );
            }
            None => thread::sleep(Duration::from_millis(10)),
        }
    };
    let elapsed = start.elapsed();
    let _ = writer.join();
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
        elapsed,
    }
}

fn weft(args: &[&str], stdin: &str) -> Run {
    weft_in(&repo_root(), args, stdin)
}

/// A fresh folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "weft-e2e-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn s(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }

    /// Writes `rel` (creating folders) and returns its full path.
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, text).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copies `tests/apps/<name>` into a fresh temp project.
fn copy_app(name: &str) -> TempDir {
    let t = TempDir::new(name);
    let src = repo_root().join("tests/apps").join(name).join("src");
    for e in fs::read_dir(&src).expect("app src") {
        let p = e.expect("entry").path();
        let rel = format!("src/{}", p.file_name().unwrap().to_str().unwrap());
        t.write(&rel, &fs::read_to_string(&p).expect("read app file"));
    }
    t
}

fn sim_hash(r: &Run) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace hash "))
        .unwrap_or_else(|| panic!("no trace hash\n{}", r.dump()))
        .to_string()
}

#[test]
fn storage_app_is_durable_across_runs() {
    let t = copy_app("storage");
    let first = weft(&["run", "-C", t.s(), "-x", "app:cli"], "");
    first.assert_code(0);
    first.assert_stdout_has("runs=1 notes=1\nnote 1: run 1\n");
    first.assert_stdout_has("cache abc then NotFound");
    assert!(!first.stdout.contains("never"), "{}", first.dump());
    assert!(t.path().join("data/app.db").is_file(), "{}", first.dump());

    let second = weft(&["run", "-C", t.s(), "-x", "app:cli"], "");
    second.assert_code(0);
    second.assert_stdout_has("runs=2 notes=2\nnote 1: run 1\nnote 2: run 2\n");
}

#[test]
fn storage_app_under_sim_is_in_memory_and_reproducible() {
    let t = copy_app("storage");
    let args = ["sim", t.s(), "--seed", "11", "-x", "app:cli"];
    let a = weft(&args, "");
    a.assert_code(0);
    // In memory: every run starts empty, and no file appears in the project.
    a.assert_stdout_has("runs=1 notes=1\nnote 1: run 1\n");
    a.assert_stdout_has("cache abc then NotFound");
    assert!(!t.path().join("data").exists(), "{}", a.dump());
    let b = weft(&args, "");
    b.assert_stdout_has("runs=1 notes=1");
    assert_eq!(sim_hash(&a), sim_hash(&b), "one seed, one hash");
}

#[test]
fn bad_storage_config_names_file_line_and_entry() {
    let t = TempDir::new("badstore");
    t.write(
        "src/_index.yaml",
        "version: \"1.0\"\nnamespace: app\nentries:\n  - name: terminal\n    kind: terminal.host\n  - name: kv\n    kind: store.sql\n    database: app:db\n    table_name: kv\n  - name: cli\n    kind: process.lua\n    source: \"return { main = function() return 0 end }\"\n    method: main\n",
    );
    let r = weft(&["run", "-C", t.s(), "-x", "app:cli"], "");
    assert_eq!(r.code(), 1, "{}", r.dump());
    assert!(
        r.stderr.contains("_index.yaml:6")
            && r.stderr.contains("app:kv")
            && r.stderr.contains("app:db"),
        "{}",
        r.dump()
    );
}
