//! Helpers shared by the end-to-end test files: run the real `weft` binary with piped stdin
//! and a deadline, and make throwaway project folders. Each test file includes this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long any single `weft` run may take before the test kills it and fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("drivers/ has a parent")
        .to_path_buf()
}

/// `../shared/<rel>` beside the repo (the project's seeds and specs), which a fresh clone does not
/// have. Absent: `None` after printing why the test is skipped, unless `CI` is set, where a
/// missing file is a failure (CI keeps `../shared` beside the clone; `.ci/run` sets `CI`).
pub fn shared_file(rel: &str) -> Option<PathBuf> {
    let path = repo_root().join("../shared").join(rel);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing and CI is set: tests that need ../shared must run in CI",
            path.display()
        );
    }
    eprintln!(
        "skipped: {} is missing (this test needs ../shared beside the repo; .ci/run runs it)",
        path.display()
    );
    None
}

pub fn app(name: &str) -> PathBuf {
    repo_root().join("tests/apps").join(name)
}

pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// What one `weft` run did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Exit code, failing the test (with the output) if the process was killed by a signal.
    pub fn code(&self) -> i32 {
        match self.code {
            Some(c) => c,
            None => panic!("weft was killed by a signal\n{}", self.dump()),
        }
    }

    pub fn dump(&self) -> String {
        format!(
            "--- exit: {:?} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }

    pub fn assert_code(&self, want: i32) {
        assert_eq!(self.code(), want, "unexpected exit code\n{}", self.dump());
    }

    pub fn assert_stdout_has(&self, needle: &str) {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{}",
            self.dump()
        );
    }

    pub fn assert_stderr_has(&self, needle: &str) {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.dump()
        );
    }

    /// A failed run that reported the problem instead of crashing.
    pub fn assert_clean_failure(&self) {
        self.assert_code(1);
        assert!(
            !self.stderr.contains("panicked"),
            "weft panicked\n{}",
            self.dump()
        );
        assert!(
            self.stderr.contains("error"),
            "no error message on stderr\n{}",
            self.dump()
        );
    }
}

pub fn reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs `weft args...` in `cwd` with `stdin` piped in (then closed), under `DEADLINE`.
pub fn weft_in(cwd: &Path, args: &[&str], stdin: &str) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.args(args).current_dir(cwd);
    run_piped(cmd, stdin, DEADLINE, &format!("weft {args:?}"))
}

/// Runs `cmd` with `stdin` piped in (then closed) and its output collected; kills it and
/// fails the test after `deadline`.
pub fn run_piped(mut cmd: Command, stdin: &str, deadline: Duration, what: &str) -> Run {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
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
        match child.try_wait().expect("wait for the child") {
            Some(s) => break s,
            None if start.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
                let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
                panic!(
                    "{what} did not finish within {deadline:?}; killed it\n\
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

pub fn weft(args: &[&str], stdin: &str) -> Run {
    weft_in(&repo_root(), args, stdin)
}

/// A fresh folder under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
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

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn s(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }

    /// Writes `rel` (creating folders) and returns its full path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
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

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).expect("read dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root");
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

pub fn sim_hash(r: &Run) -> String {
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix("trace hash "))
        .unwrap_or_else(|| panic!("no trace hash\n{}", r.dump()))
        .to_string()
}

/// Copies the folder `from` (recursively) to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read dir") {
        let p = e.expect("dir entry").path();
        let dest = to.join(p.file_name().expect("file name"));
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            fs::copy(&p, &dest).expect("copy file");
        }
    }
}

/// A pipe read into a shared buffer as the data arrives.
struct Tee {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    done: Option<thread::JoinHandle<()>>,
}

impl Tee {
    fn new<R: Read + Send + 'static>(mut pipe: R) -> Tee {
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = text.clone();
        let done = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("pipe buffer")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Tee {
            text,
            done: Some(done),
        }
    }

    fn now(&self) -> String {
        self.text.lock().expect("pipe buffer").clone()
    }

    /// Everything, once the writer closed the pipe.
    fn all(&mut self) -> String {
        if let Some(h) = self.done.take() {
            let _ = h.join();
        }
        self.now()
    }
}

/// A `weft` run in the background whose output the test can watch while it runs.
pub struct Live {
    child: std::process::Child,
    start: Instant,
    stdout: Tee,
    stderr: Tee,
}

impl Live {
    pub fn start(args: &[&str]) -> Live {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weft");
        Live {
            stdout: Tee::new(child.stdout.take().expect("stdout")),
            stderr: Tee::new(child.stderr.take().expect("stderr")),
            child,
            start: Instant::now(),
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.now()
    }

    /// Waits until stderr has `count` lines containing `needle`; kills the run and fails if not.
    pub fn wait_for_lines(&mut self, needle: &str, count: usize, within: Duration) {
        self.wait_until(
            within,
            &format!("{count} stderr lines with {needle:?}"),
            |l| {
                l.stderr
                    .now()
                    .lines()
                    .filter(|x| x.contains(needle))
                    .count()
                    >= count
            },
        );
    }

    /// Waits until stdout contains `needle`; kills the run and fails if not.
    pub fn wait_for_stdout(&mut self, needle: &str, within: Duration) {
        self.wait_until(within, &format!("{needle:?} on stdout"), |l| {
            l.stdout.now().contains(needle)
        });
    }

    /// Waits until weft catches SIGINT and SIGTERM (Linux: the SigCgt mask of
    /// /proc/PID/status), so a signal sent next is handled rather than fatal.
    pub fn wait_for_signal_handlers(&mut self, within: Duration) {
        let status = format!("/proc/{}/status", self.child.id());
        self.wait_until(within, "SIGINT and SIGTERM handlers", |_| {
            let text = fs::read_to_string(&status).unwrap_or_default();
            let caught = text
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                .unwrap_or(0);
            // Bit n-1 stands for signal n: SIGINT is 2, SIGTERM 15.
            caught & (1 << 1) != 0 && caught & (1 << 14) != 0
        });
    }

    fn wait_until(&mut self, within: Duration, what: &str, done: impl Fn(&Live) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let run = self.finish();
                panic!("no {what} within {within:?}\n{}", run.dump());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let st = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill {sig} {pid} failed");
    }

    /// Waits for the exit (killing the run after `DEADLINE`) and collects what it wrote.
    pub fn finish(&mut self) -> Run {
        let status = loop {
            match self.child.try_wait().expect("wait for weft") {
                Some(s) => break s,
                None if self.start.elapsed() > DEADLINE => {
                    let _ = self.child.kill();
                }
                None => thread::sleep(Duration::from_millis(10)),
            }
        };
        Run {
            code: status.code(),
            elapsed: self.start.elapsed(),
            stdout: self.stdout.all(),
            stderr: self.stderr.all(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- small broken apps shared by the bad-input tests -----------------------------------------

pub const TERMINAL: &str = "version: \"1.0\"\nnamespace: app\nentries:\n  - name: terminal\n    kind: terminal.host\n    lifecycle:\n      auto_start: true\n";

pub const INLINE_CLI: &str = "  - name: cli\n    kind: process.lua\n    source: \"return { main = function() return 0 end }\"\n    method: main\n";

pub const LIB_CLI: &str = "  - name: cli\n    kind: process.lua\n    source: \"return { main = function() return 0 end }\"\n    method: main\n    imports:\n      util: app:util\n";

/// Broken `imports:` of the bad-input tests: (tag, entries after TERMINAL + LIB_CLI, what the
/// error must say).
pub fn bad_import_cases() -> Vec<(&'static str, String, &'static str)> {
    vec![
        // The imported entry does not exist.
        ("missing", String::new(), "app:util"),
        // The imported entry is not a library.
        (
            "kind",
            "  - name: util\n    kind: process.lua\n    source: \"return {}\"\n".to_string(),
            "not a library.lua",
        ),
        // Libraries importing each other.
        (
            "cycle",
            "  - name: util\n    kind: library.lua\n    source: \"return {}\"\n    imports:\n      other: app:other\n  - name: other\n    kind: library.lua\n    source: \"return {}\"\n    imports:\n      util: app:util\n"
                .to_string(),
            "import cycle",
        ),
    ]
}

pub fn syntax_error_app() -> TempDir {
    let tmp = TempDir::new("syntax");
    tmp.write(
        "src/_index.yaml",
        &format!(
            "{TERMINAL}  - name: cli\n    kind: process.lua\n    source: file://broken.lua\n    method: main\n"
        ),
    );
    // Line 2 has the error.
    tmp.write(
        "src/broken.lua",
        "local function main()\n    local x = = 1\n    return x\nend\n\nreturn { main = main }\n",
    );
    tmp
}
