//! A process that computes forever must not starve the rest of the node: terminal input, SQL
//! results of another process and SIGINT are served within 100 ms of real time while four
//! processes spin, two of them inside a coroutine of their own (`tests/apps/busy`). Real time,
//! through the `weft` binary.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SERVED_WITHIN: Duration = Duration::from_millis(100);

fn copy_app(name: &str, to: &TempDir) {
    for f in ["_index.yaml", "spinner.lua", "cli.lua"] {
        let text = std::fs::read_to_string(app(name).join("src").join(f)).expect("app file");
        to.write(&format!("src/{f}"), &text);
    }
}

#[test]
fn a_busy_process_does_not_starve_input_sql_or_signals() {
    let dir = TempDir::new("busy");
    copy_app("busy", &dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["run", "-C", dir.s(), "-x", "app:cli"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weft");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let err = reader(child.stderr.take().expect("stderr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    let next_line = |what: &str| -> (Instant, String) {
        rx.recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no output line ({what}) within {DEADLINE:?}"))
    };
    let (_, first) = next_line("ready");
    assert_eq!(first, "ready");
    // Let the spinners get going before measuring.
    std::thread::sleep(Duration::from_millis(200));
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let sent = Instant::now();
        writeln!(stdin, "line{i}").expect("write line");
        stdin.flush().expect("flush");
        let (at, got) = next_line("answer");
        assert_eq!(got, format!("ok LINE{i}"), "answer to line {i}");
        worst = worst.max(at - sent);
    }
    eprintln!("worst stdin + SQL round trip with 4 spinning processes: {worst:?}");
    assert!(
        worst < SERVED_WITHIN,
        "a line and its SQL query took {worst:?} (more than {SERVED_WITHIN:?}) while processes spun"
    );
    // SIGINT while the terminal process waits for input and the spinners spin.
    std::thread::sleep(Duration::from_millis(50));
    let sent = Instant::now();
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(rc, 0, "send SIGINT");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if sent.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("weft did not stop after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let took = sent.elapsed();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    eprintln!("SIGINT to exit with 4 spinning processes: {took:?}");
    assert!(!stderr.contains("panicked"), "weft panicked:\n{stderr}");
    assert!(
        status.code().is_some(),
        "weft died of the signal instead of stopping: {status:?}\n{stderr}"
    );
    assert!(
        took < SERVED_WITHIN,
        "SIGINT took {took:?} to stop the node (more than {SERVED_WITHIN:?})\n{stderr}"
    );
}
