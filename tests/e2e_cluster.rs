//! Cluster runs through the real binary on loopback: configuration errors, a node alone,
//! three nodes running examples/cluster-echo split over them, `kill -9` of the workers' node
//! and SIGINT. Every run is bounded in time; ports are picked free by the test.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn tiny_app(dir: &TempDir) {
    dir.write(
        "src/_index.yaml",
        "version: \"1.0\"\nnamespace: app\nentries:\n  - name: terminal\n    kind: terminal.host\n    \
         lifecycle: {auto_start: true}\n  - name: hello\n    kind: process.lua\n    source: \
         file://hello.lua\n    method: main\n    modules: [io]\n",
    );
    dir.write(
        "src/hello.lua",
        "local io = require('io')\nlocal function main(): integer\n    io.print('local work runs: ' .. tostring(process.pid()))\n    return 0\nend\nreturn { main = main }\n",
    );
}

#[test]
fn bad_cluster_settings_fail_clearly_naming_the_key_or_flag() {
    let dir = TempDir::new("cluster-config");
    tiny_app(&dir);
    dir.write(
        ".wippy.yaml",
        "logger: {level: info}\ncluster:\n  enabled: true\n  name: n1\n  internode:\n    bind_prt: 7000\n",
    );
    let r = weft_in(dir.path(), &["run", "-x", "app:hello"], "");
    r.assert_clean_failure();
    r.assert_stderr_has(
        ".wippy.yaml: cluster.internode.bind_prt: unknown key; did you mean bind_port?",
    );

    dir.write(".wippy.yaml", "cluster: {enabled: true, name: n1}\n");
    let r = weft_in(dir.path(), &["run", "-x", "app:hello"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("needs an address to serve its peers on");

    let r = weft_in(
        dir.path(),
        &[
            "run",
            "-x",
            "app:hello",
            "--node",
            "n1",
            "--listen",
            "127.0.0.1:notaport",
        ],
        "",
    );
    r.assert_clean_failure();
    r.assert_stderr_has("--listen '127.0.0.1:notaport': not a HOST:PORT address");

    let r = weft_in(
        dir.path(),
        &[
            "run",
            "-x",
            "app:hello",
            "--node",
            "n 1",
            "--listen",
            "127.0.0.1:7000",
        ],
        "",
    );
    r.assert_clean_failure();
    r.assert_stderr_has("--node 'n 1'");

    // A port in use: the run fails before booting, naming the flag and the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    std::fs::remove_file(dir.path().join(".wippy.yaml")).unwrap();
    let r = weft_in(
        dir.path(),
        &["run", "-x", "app:hello", "--node", "n1", "--listen", &addr],
        "",
    );
    r.assert_clean_failure();
    r.assert_stderr_has(&format!("--listen {addr}: cannot listen there"));

    // The same from the file names the key.
    let port = taken.local_addr().unwrap().port();
    dir.write(
        ".wippy.yaml",
        &format!("cluster:\n  enabled: true\n  name: n1\n  internode:\n    bind_port: {port}\n"),
    );
    let r = weft_in(dir.path(), &["run", "-x", "app:hello"], "");
    r.assert_clean_failure();
    r.assert_stderr_has(&format!(
        "cluster.internode.bind_port 127.0.0.1:{port}: cannot listen there"
    ));
}

#[test]
fn a_node_whose_peers_never_answer_still_runs_its_local_processes() {
    let dir = TempDir::new("cluster-alone");
    tiny_app(&dir);
    let (listen, dead) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{listen}");
    let dead = format!("127.0.0.1:{dead}");
    let r = weft_in(
        dir.path(),
        &[
            "run",
            "-x",
            "app:hello",
            "--node",
            "n1",
            "--listen",
            &listen,
            "--join",
            &dead,
        ],
        "",
    );
    r.assert_code(0);
    r.assert_stdout_has("local work runs: {");
    assert!(!r.stderr.contains("panicked"), "{}", r.dump());

    // A bare run waits long enough for the join attempt to fail and say so, naming the peer.
    let mut n = Node::start(
        dir.path(),
        &["run", "--node", "n1", "--listen", &listen, "--join", &dead],
    );
    n.wait_err("join address does not answer", Duration::from_secs(10));
    n.wait_err(&format!("addr={dead}"), Duration::from_secs(1));
    let code = n.interrupt(Duration::from_secs(10));
    assert_eq!(code, Some(130), "{}", n.dump());
}

/// A `weft run` in the background whose output lines the test can wait for.
struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
    out_seen: Arc<Mutex<Vec<String>>>,
    err_seen: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(cwd: &std::path::Path, args: &[&str]) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start weft");
        let stdin = child.stdin.take();
        let (tx, out) = channel();
        let out_seen = Arc::new(Mutex::new(Vec::new()));
        let err_seen = Arc::new(Mutex::new(Vec::new()));
        let (stdout, seen) = (child.stdout.take().unwrap(), out_seen.clone());
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let (stderr, seen) = (child.stderr.take().unwrap(), err_seen.clone());
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        Node {
            child,
            stdin,
            out,
            out_seen,
            err_seen,
        }
    }

    fn dump(&self) -> String {
        format!(
            "--- stdout:\n{}\n--- stderr:\n{}",
            self.out_seen.lock().unwrap().join("\n"),
            self.err_seen.lock().unwrap().join("\n")
        )
    }

    /// The first stdout line from now on that contains `part`, within `within`.
    fn wait_out(&mut self, part: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(l) if l.contains(part) => return l,
                Ok(_) => {}
                Err(_) => panic!(
                    "no stdout line with {part:?} within {within:?}\n{}",
                    self.dump()
                ),
            }
        }
    }

    fn wait_err(&mut self, part: &str, within: Duration) {
        self.wait_err_line(&[part], within)
    }

    /// Waits for a stderr line that contains every one of `parts`.
    fn wait_err_line(&mut self, parts: &[&str], within: Duration) {
        let end = Instant::now() + within;
        let has = |l: &String| parts.iter().all(|p| l.contains(p));
        while !self.err_seen.lock().unwrap().iter().any(has) {
            if Instant::now() > end {
                panic!(
                    "no stderr line with {parts:?} within {within:?}\n{}",
                    self.dump()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_line(&mut self, line: &str) {
        let s = self.stdin.as_mut().expect("stdin open");
        writeln!(s, "{line}").expect("write to weft");
        s.flush().unwrap();
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }

    /// SIGINT, then the exit code within `within` (None: killed by a signal).
    fn interrupt(&mut self, within: Duration) -> Option<i32> {
        self.signal(libc::SIGINT);
        self.wait_exit(within)
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s.code();
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("weft did not stop within {within:?}\n{}", self.dump());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The three nodes of examples/cluster-echo on free loopback ports.
struct Cluster {
    n1: Node,
    n2: Node,
    n3: Node,
}

/// `roles`: n2 runs the relay and n1 the CLI; without, all three are bare runs.
fn cluster_echo(roles: bool) -> Cluster {
    let app = example("cluster-echo");
    let ports = [free_port(), free_port(), free_port()];
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let join = |i: usize| {
        (0..3)
            .filter(|j| *j != i)
            .map(addr)
            .collect::<Vec<_>>()
            .join(",")
    };
    let args = |i: usize, cmd: Option<&str>| {
        // Flags go before the command: what follows a command is its own arguments.
        let mut a = vec!["run".to_string()];
        for (k, v) in [
            ("--node", format!("n{}", i + 1)),
            ("--listen", addr(i)),
            ("--join", join(i)),
            ("--log-level", "info".into()),
        ] {
            a.push(k.into());
            a.push(v);
        }
        a.extend(cmd.map(String::from));
        a
    };
    let start = |i: usize, cmd: Option<&str>| {
        let a = args(i, cmd);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Node::start(&app, &a)
    };
    // Each node listens before the next starts, so the join addresses of n1 (last) all answer.
    let listening = Duration::from_secs(20);
    let mut n3 = start(2, None);
    n3.wait_err("cluster node listening", listening);
    let mut n2 = start(1, roles.then_some("relay"));
    n2.wait_err("cluster node listening", listening);
    let n1 = start(0, roles.then_some("echo"));
    Cluster { n1, n2, n3 }
}

#[test]
fn three_nodes_run_cluster_echo_and_survive_kill_9_of_the_workers_node() {
    let mut c = cluster_echo(true);
    let t = Duration::from_secs(20);
    c.n1.wait_out("Echo client: type a line", t);
    // The relay's node must hold the workers' node up before it can spawn there.
    c.n2.wait_err("node up node=n3", t);
    c.n1.type_line("hello cluster");
    c.n1.wait_out("HELLO CLUSTER", t);
    let from = c.n1.wait_out("from worker:", t);
    assert!(
        from.contains("{n3@app:processes|0x"),
        "worker not on n3: {from}"
    );

    // A worker on n3 is busy for 30 s; n3 dies under it.
    c.n1.type_line("slow 30 never answered");
    thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    c.n3.signal(libc::SIGKILL);
    let failed = c.n1.wait_out("failed:", Duration::from_secs(5));
    let exit_after = killed.elapsed();
    eprintln!("kill -9 of n3 -> the relay's EXIT reached the CLI after {exit_after:?}");
    assert!(failed.contains("n3"), "the error names the node: {failed}");
    assert!(
        exit_after < Duration::from_secs(5),
        "EXIT after {exit_after:?}"
    );

    // The relay keeps serving; spawning on the dead node fails fast with a clear error.
    let asked = Instant::now();
    c.n1.type_line("after the crash");
    let line = c.n1.wait_out("failed:", Duration::from_secs(5));
    assert!(line.contains("could not start a worker"), "{line}");
    assert!(line.contains("n3"), "{line}");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );

    // SIGINT stops n2 gracefully; n1 sees it down (its next request finds no relay).
    assert_eq!(
        c.n2.interrupt(Duration::from_secs(10)),
        Some(130),
        "{}",
        c.n2.dump()
    );
    c.n1.wait_err_line(&["node down", "node=n2"], Duration::from_secs(10));
    c.n1.type_line("");
    c.n1.wait_out("bye", t);
    assert_eq!(c.n1.wait_exit(t), Some(0), "{}", c.n1.dump());
}

#[test]
fn three_cluster_nodes_start_listen_and_stop_on_sigint() {
    let mut c = cluster_echo(false);
    let t = Duration::from_secs(20);
    for n in [&mut c.n1, &mut c.n2, &mut c.n3] {
        n.wait_err("cluster node listening", t);
    }
    // n1 starts last: both its join addresses answer on their one port.
    c.n1.wait_err("join address answers", t);
    let answered = || {
        c.n1.err_seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("join address answers"))
            .count()
    };
    let end = Instant::now() + t;
    while answered() < 2 && Instant::now() < end {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(answered(), 2, "{}", c.n1.dump());
    for n in [&mut c.n1, &mut c.n2, &mut c.n3] {
        let code = n.interrupt(t);
        assert_eq!(code, Some(130), "{}", n.dump());
        assert!(!n.dump().contains("panicked"), "{}", n.dump());
    }
}
