//! End-to-end tests: the real `weft` binary on real apps, with piped stdin, a deadline on every
//! run and throwaway project folders under the system temp dir.
//!
//! The apps these tests run live in `tests/apps/`; small broken apps are written on the fly.

#[path = "common/mod.rs"]
mod common;

use common::*;
use std::fs;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

// ---- 1. the echo example ---------------------------------------------------------------------

#[test]
fn echo_example_upper_cases_a_line() {
    let dir = example("echo-service");
    let r = weft(
        &["run", "-C", dir.to_str().unwrap(), "-x", "app:cli"],
        "hello world\n\n",
    );
    r.assert_code(0);
    r.assert_stdout_has("HELLO WORLD");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("from worker: {app:processes|0x")),
        "no `from worker: {{app:processes|0x...` line\n{}",
        r.dump()
    );
    assert!(!r.stdout.contains("no answer"), "{}", r.dump());
}

#[test]
fn echo_example_eof_without_input_exits_0() {
    let dir = example("echo-service");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "app:cli"], "");
    r.assert_code(0);
    assert!(!r.stdout.contains("HELLO"), "{}", r.dump());
    r.assert_stdout_has("bye");
}

#[test]
fn echo_example_named_command() {
    let dir = example("echo-service");
    let r = weft(
        &["run", "-C", dir.to_str().unwrap(), "echo"],
        "hello world\nsecond line\n\n",
    );
    r.assert_code(0);
    r.assert_stdout_has("HELLO WORLD");
    r.assert_stdout_has("SECOND LINE");
    assert_eq!(
        r.stdout.matches("from worker: {app:processes|0x").count(),
        2,
        "expected one worker answer per line\n{}",
        r.dump()
    );
}

#[test]
fn echo_example_lists_commands() {
    let dir = example("echo-service");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "list"], "");
    r.assert_code(0);
    let line = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("echo "))
        .unwrap_or_else(|| panic!("no `echo` command listed\n{}", r.dump()));
    assert!(line.contains("app:cli"), "{}", r.dump());
}

// ---- 2. the Wippy tutorial, unchanged ----------------------------------------------------------

/// The fenced block that follows `marker` in the tutorial text.
fn fenced_after(doc: &str, marker: &str) -> String {
    let mut lines = doc.lines();
    lines
        .by_ref()
        .find(|l| l.trim() == marker)
        .unwrap_or_else(|| panic!("tutorial has no line {marker:?}"));
    let open = lines
        .by_ref()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("nothing after {marker:?}"));
    assert!(
        open.starts_with("```"),
        "after {marker:?} expected a fenced block, found {open:?}"
    );
    let mut body = String::new();
    for l in lines.by_ref() {
        if l.trim_end() == "```" {
            return body;
        }
        body.push_str(l);
        body.push('\n');
    }
    panic!("unterminated fenced block after {marker:?}");
}

#[test]
fn wippy_tutorial_runs_unchanged() {
    // The tutorial text is a seed document in ../shared: skipped without it, except under CI.
    let Some(seed) = shared_file("seeds/004_6a15f14ed060fbae.txt") else {
        return;
    };
    let doc = fs::read_to_string(&seed)
        .unwrap_or_else(|e| panic!("tutorial seed {} not readable: {e}", seed.display()));
    let tmp = TempDir::new("tutorial");
    let mut written = Vec::new();
    for file in ["_index.yaml", "relay.lua", "worker.lua", "cli.lua"] {
        let body = fenced_after(&doc, &format!("Cree `src/{file}`:"));
        assert!(!body.trim().is_empty(), "empty block for {file}");
        tmp.write(&format!("src/{file}"), &body);
        written.push((format!("src/{file}"), body));
    }
    let before = files_under(tmp.path());

    let init = weft_in(tmp.path(), &["init"], "");
    init.assert_code(0);
    let after = files_under(tmp.path());
    let mut expected = before.clone();
    expected.insert("wippy.lock".into());
    assert_eq!(
        after, expected,
        "weft init must add wippy.lock and nothing else"
    );
    for (rel, body) in &written {
        let now = fs::read(tmp.path().join(rel)).expect("read back");
        assert_eq!(now, body.as_bytes(), "weft init changed {rel}");
    }

    let r = weft_in(
        tmp.path(),
        &["run", "-x", "app:terminal/app:cli"],
        "hello world\n\n",
    );
    r.assert_code(0);
    r.assert_stdout_has("HELLO WORLD");
    r.assert_stdout_has("from worker: {app:processes|0x00004}");
    r.assert_stdout_has("Echo Client");
    assert!(!r.stdout.contains("timeout"), "{}", r.dump());
    assert!(!r.stdout.contains("no disponible"), "{}", r.dump());
}

// ---- 3. bad input: exit 1, a message naming the problem, no panic ------------------------------

#[test]
fn missing_src_dir_is_reported() {
    let tmp = TempDir::new("nosrc");
    let r = weft(&["run", "-C", tmp.s(), "-x", "app:cli"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("source directory");
    r.assert_stderr_has("src");
}

#[test]
fn missing_project_dir_is_reported() {
    let tmp = TempDir::new("nodir");
    let gone = tmp.path().join("does-not-exist");
    let r = weft(&["run", "-C", gone.to_str().unwrap(), "-x", "app:cli"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("does-not-exist");
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let tmp = TempDir::new("yaml");
    // Line 6 is indented under a scalar: invalid YAML.
    tmp.write(
        "src/_index.yaml",
        "version: \"1.0\"\nnamespace: app\nentries:\n  - name: terminal\n    kind: terminal.host\n      lifecycle: [oops\n",
    );
    let r = weft(&["run", "-C", tmp.s(), "-x", "app:cli"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("_index.yaml:6");
}

#[test]
fn unknown_kind_names_entry_and_kind() {
    let tmp = TempDir::new("kind");
    tmp.write(
        "src/_index.yaml",
        &format!("{TERMINAL}{INLINE_CLI}  - name: thing\n    kind: frobnicator.v9\n"),
    );
    let r = weft(&["run", "-C", tmp.s(), "-x", "app:cli"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("app:thing");
    r.assert_stderr_has("frobnicator.v9");
}

#[test]
fn lua_syntax_error_is_reported() {
    let tmp = syntax_error_app();
    let r = weft(&["run", "-C", tmp.s(), "-x", "app:cli"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("broken.lua");
    r.assert_stderr_has("app:cli");
}

#[test]
fn lua_syntax_error_has_file_colon_line() {
    let tmp = syntax_error_app();
    let r = weft(&["run", "-C", tmp.s(), "-x", "app:cli"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("broken.lua:2");
}

#[test]
fn exec_of_missing_entry_is_reported() {
    let dir = example("echo-service");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "app:nope"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("app:nope");
    r.assert_stderr_has("not found");
}

#[test]
fn exec_without_separator_is_reported() {
    let dir = example("echo-service");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "nocolon"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("nocolon");
    r.assert_stderr_has("separator");
}

#[test]
fn unknown_command_name_is_reported() {
    let dir = example("echo-service");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "no-such-command"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("no-such-command");
}

#[test]
fn terminal_process_runtime_error_exits_1() {
    let dir = app("exitcodes");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "app:boom"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("boom");
    r.assert_stderr_has("codes.lua:5");
}

// ---- 4. a failing process does not stop the others ---------------------------------------------

#[test]
fn failing_worker_does_not_stop_the_cli() {
    let dir = app("resilience");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "app:cli"], "");
    r.assert_code(0);
    r.assert_stdout_has("crasher failed:");
    r.assert_stdout_has("crasher went down");
    r.assert_stdout_has("adder: 5");
    r.assert_stdout_has("still alive");
}

// ---- 5. weft init scaffolds a runnable app -----------------------------------------------------

#[test]
fn init_scaffolds_a_hello_app() {
    let tmp = TempDir::new("init");
    let init = weft_in(tmp.path(), &["init"], "");
    init.assert_code(0);
    let files = files_under(tmp.path());
    for f in ["wippy.lock", "src/_index.yaml", "src/hello.lua"] {
        assert!(files.contains(f), "weft init did not create {f}: {files:?}");
    }

    let r = weft_in(tmp.path(), &["run", "hello"], "");
    r.assert_code(0);
    assert_eq!(r.stdout.trim_end(), "Hello, world!", "{}", r.dump());

    let r = weft_in(tmp.path(), &["run", "hello", "Ada"], "");
    r.assert_code(0);
    assert_eq!(r.stdout.trim_end(), "Hello, Ada!", "{}", r.dump());

    // A second init leaves everything as it was.
    let lock = fs::read(tmp.path().join("wippy.lock")).unwrap();
    let hello = fs::read(tmp.path().join("src/hello.lua")).unwrap();
    weft_in(tmp.path(), &["init"], "").assert_code(0);
    assert_eq!(files_under(tmp.path()), files);
    assert_eq!(fs::read(tmp.path().join("wippy.lock")).unwrap(), lock);
    assert_eq!(fs::read(tmp.path().join("src/hello.lua")).unwrap(), hello);
}

// ---- 6. exit codes -----------------------------------------------------------------------------

#[test]
fn terminal_result_becomes_exit_code() {
    let dir = app("exitcodes");
    for (entry, code) in [
        ("app:three", 3),
        ("app:yes", 0),
        ("app:no", 1),
        ("app:nothing", 0),
    ] {
        let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", entry], "");
        assert_eq!(r.code(), code, "{entry}\n{}", r.dump());
        assert!(!r.stderr.contains("panicked"), "{entry}\n{}", r.dump());
    }
}

// ---- 7. help text ------------------------------------------------------------------------------

#[test]
fn help_text() {
    let r = weft(&["--help"], "");
    r.assert_code(0);
    insta::assert_snapshot!("weft_help", r.stdout);
    let r = weft(&["run", "--help"], "");
    r.assert_code(0);
    insta::assert_snapshot!("weft_run_help", r.stdout);
}

// ---- 8. Lua behaviour ------------------------------------------------------------------------

/// The names the semantics app registers, in order, read from its source (`check("name", ...)`).
fn semantics_checks_in_app() -> Vec<String> {
    let src = fs::read_to_string(app("semantics").join("src/cli.lua")).expect("read cli.lua");
    src.lines()
        .filter_map(|l| l.strip_prefix("check(\""))
        .map(|rest| {
            let end = rest.find('"').expect("check name ends with a quote");
            rest[..end].to_string()
        })
        .collect()
}

#[test]
fn lua_semantics() {
    let dir = app("semantics");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "app:cli"], "");
    r.assert_code(0);
    let fails: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(fails.is_empty(), "failed checks: {fails:#?}\n{}", r.dump());
    // The checks this test was written for: none may disappear from the app unnoticed.
    let known = [
        "unbuffered_handoff",
        "buffered_close_drain",
        "select_list_order",
        "select_default",
        "time_after_order",
        "ticker",
        "monitor_exit_value",
        "monitor_exit_error",
        "send_unknown_name",
        "registry",
        "link_kills_parent",
        "trap_links_link_down",
        "cancel_event",
        "json_round_trip",
        "typed_lua",
        "globals_per_process",
        "math_random",
        "send_order",
    ];
    let registered = semantics_checks_in_app();
    let missing: Vec<&str> = known
        .iter()
        .copied()
        .filter(|k| !registered.iter().any(|c| c == k))
        .collect();
    assert!(
        missing.is_empty(),
        "checks gone from tests/apps/semantics: {missing:?}"
    );
    // Every registered check reports `ok`, once, in registration order.
    let ok: Vec<&str> = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ok "))
        .collect();
    assert_eq!(
        ok.len(),
        registered.len(),
        "expected {} `ok` lines, one per check in cli.lua\n{}",
        registered.len(),
        r.dump()
    );
    assert_eq!(ok, registered, "`ok` lines out of order\n{}", r.dump());
    assert_eq!(
        r.stdout.lines().last(),
        Some("done"),
        "the last line must be `done`\n{}",
        r.dump()
    );
}

// ---- 9. library imports ------------------------------------------------------------------------

#[test]
fn library_import_is_a_global_and_requireable() {
    let dir = app("imports");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "app:cli"], "");
    r.assert_code(0);
    r.assert_stdout_has("global: HI!");
    r.assert_stdout_has("require: X!");
    r.assert_stdout_has("same table: true");
    r.assert_stdout_has("encoded: [1,2]");
    r.assert_stdout_has("cli sees json: false");
    r.assert_stdout_has("cli sees marks: false");
    r.assert_stdout_has("calls: 2");
}

#[test]
fn bad_imports_fail_boot_naming_the_entry() {
    let cases = bad_import_cases();
    for (tag, extra, needle) in cases {
        let tmp = TempDir::new(&format!("imports-{tag}"));
        tmp.write("src/_index.yaml", &format!("{TERMINAL}{LIB_CLI}{extra}"));
        let r = weft(&["run", "-C", tmp.s(), "-x", "app:cli"], "");
        r.assert_clean_failure();
        r.assert_stderr_has(needle);
        r.assert_stderr_has("_index.yaml:");
        if tag != "cycle" {
            r.assert_stderr_has("entry 'app:cli'");
        }
    }
}

// ---- 10. signals -------------------------------------------------------------------------------

#[test]
fn sigint_stops_services_in_reverse_order() {
    let dir = app("shutdown");
    let mut live = Live::start(&["run", "-c", "-C", dir.to_str().unwrap()]);
    live.wait_for_lines("ready", 2, Duration::from_secs(10));
    let signalled = Instant::now();
    live.signal("-INT");
    let r = live.finish();
    let took = signalled.elapsed();
    r.assert_code(130);
    let lines: Vec<&str> = r.stderr.lines().collect();
    let at = |svc: &str| {
        lines
            .iter()
            .position(|l| l.contains("stopped") && l.contains(&format!("service={svc}")))
            .unwrap_or_else(|| panic!("service {svc} did not log its stop\n{}", r.dump()))
    };
    assert!(
        at("second") < at("first"),
        "second must stop before first (it requires it)\n{}",
        r.dump()
    );
    // stop_timeout is 20s; services that answer CANCEL end the run right away.
    assert!(
        took < Duration::from_secs(5),
        "stop took {took:?}\n{}",
        r.dump()
    );
}

#[test]
fn second_sigint_exits_at_once_with_130() {
    let dir = app("stubborn");
    let mut live = Live::start(&["run", "-c", "-C", dir.to_str().unwrap()]);
    live.wait_for_lines("ready", 1, Duration::from_secs(10));
    let signalled = Instant::now();
    live.signal("-INT");
    thread::sleep(Duration::from_millis(200));
    live.signal("-INT");
    let r = live.finish();
    let took = signalled.elapsed();
    r.assert_code(130);
    // stop_timeout is 30s: only the second signal can have ended the run this soon.
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?}\n{}",
        r.dump()
    );
    assert!(!r.stderr.contains("panicked"), "{}", r.dump());
}

// ---- weft sim ----------------------------------------------------------------------------------

#[test]
fn sim_replays_a_seed_across_processes_and_its_replay_line_works() {
    let t = TempDir::new("sim");
    let input = t.write("lines.txt", "hello world\nsecond line\n");
    let dir = example("echo-service");
    let dir = dir.to_str().unwrap();
    let args = [
        "sim",
        dir,
        "--seed",
        "7",
        "-x",
        "app:cli",
        "--input",
        input.to_str().unwrap(),
    ];
    let a = weft(&args, "");
    let b = weft(&args, "");
    a.assert_code(0);
    assert!(
        a.stdout.starts_with("seed 7\n"),
        "the seed comes first\n{}",
        a.dump()
    );
    assert!(
        a.stdout.contains("HELLO WORLD") && a.stdout.contains("SECOND LINE"),
        "{}",
        a.dump()
    );
    assert_eq!(
        sim_hash(&a),
        sim_hash(&b),
        "two OS processes, one seed, one hash"
    );

    // The printed replay line reproduces the run.
    let replay = a
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("replay: weft "))
        .expect("replay line")
        .to_string();
    let replay_args: Vec<&str> = replay.split(' ').collect();
    let c = weft(&replay_args, "");
    assert_eq!(sim_hash(&c), sim_hash(&a), "{}", c.dump());

    // Another seed: the same lines come out, whatever the interleaving.
    let mut other = args;
    other[3] = "8";
    let d = weft(&other, "");
    let body = |r: &Run| -> Vec<String> {
        r.stdout
            .lines()
            .filter(|l| l.contains("HELLO") || l.contains("SECOND") || l.contains("bye"))
            .map(String::from)
            .collect()
    };
    assert_eq!(body(&a), body(&d));
}

#[test]
fn sim_sweep_reports_a_planted_bug_with_its_replay_line() {
    let t = TempDir::new("simbug");
    let input = t.write("lines.txt", "a\nb\nc\n");
    let dir = example("echo-service");
    let r = weft(
        &[
            "sim",
            dir.to_str().unwrap(),
            "-x",
            "app:cli",
            "--input",
            input.to_str().unwrap(),
            "--seeds",
            "0..40",
            "--plant",
            "double-exit",
        ],
        "",
    );
    r.assert_code(1);
    assert!(r.stdout.contains("FAILED seed "), "{}", r.dump());
    assert!(
        r.stdout.contains("exactly one EXIT per monitor per death"),
        "{}",
        r.dump()
    );
    assert!(
        r.stdout.contains("replay: weft sim ") && r.stdout.contains("--plant double-exit"),
        "{}",
        r.dump()
    );
}

#[test]
fn sim_storage_sweep_finds_an_unsynced_commit_and_its_replay_line_reproduces_it() {
    let dir = app("durability");
    let d = dir.to_str().unwrap();
    let common = ["--until", "5s", "--liveness", "1s"];
    let mut args = vec!["sim", "-C", d, "--seeds", "0..20", "--plant", "nosync"];
    args.extend(common);
    let r = weft(&args, "");
    r.assert_code(1);
    assert!(
        r.stdout.contains("no acknowledged write is lost"),
        "{}",
        r.dump()
    );
    let line = r
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("replay: weft "))
        .unwrap_or_else(|| panic!("no replay line: {}", r.dump()));
    assert!(
        line.contains("--plant nosync") && line.contains("--storage"),
        "{line}"
    );
    let words: Vec<&str> = line.split_whitespace().collect();
    let again = weft(&words, "");
    again.assert_code(1);
    assert!(
        again.stderr.contains("VIOLATION") && again.stderr.contains("is lost"),
        "{}",
        again.dump()
    );
    // Without the plant the same seeds keep every acknowledged write.
    let mut args = vec!["sim", "-C", d, "--seeds", "0..5", "--storage", "all"];
    args.extend(common);
    weft(&args, "").assert_code(0);
}

#[test]
fn loader_skips_dirs_named_by_skip_variables_and_missing_modules_fail_late() {
    let t = TempDir::new("skips");
    t.write(
        "src/_index.yaml",
        "namespace: app\nentries:\n  - {name: terminal, kind: terminal.host, lifecycle: {auto_start: true}}\n  - {name: main, kind: process.lua, source: file://main.lua, method: main, modules: [io, notyet]}\n  - {name: runner, kind: exec.native, command: ls}\n",
    );
    t.write(
        "src/main.lua",
        "local io = require('io')\nreturn { main = function() io.print('ran', pcall(require, 'notyet')) return 0 end }\n",
    );
    // A folder the skip list names may hold anything, even broken YAML.
    t.write("src/temporal/_index.yaml", "namespace: [broken\n");
    t.write("src/extra/_index.yaml", "namespace: [broken\n");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.args(["run", "-C", t.s(), "-x", "app:main"])
        .env("SKIP_TEST_DIRS", "extra,other")
        .env("SKIP_TEMPORAL_TESTS", "1");
    let out = cmd.output().expect("run weft");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ran\tfalse\tmodule 'notyet' not found"),
        "{stdout}"
    );

    // Without the skips the broken files are reported with their path.
    let r = weft(&["run", "-C", t.s(), "-x", "app:main"], "");
    r.assert_code(1);
    assert!(r.stderr.contains("_index.yaml"), "{}", r.dump());
}

#[test]
fn an_import_alias_may_shadow_a_builtin_global() {
    let t = TempDir::new("shadow");
    t.write(
        "src/_index.yaml",
        "namespace: app\nentries:\n  - {name: terminal, kind: terminal.host, lifecycle: {auto_start: true}}\n  - {name: asserts, kind: library.lua, source: file://asserts.lua}\n  - {name: main, kind: process.lua, source: file://main.lua, method: main, modules: [io], imports: {assert: app:asserts}}\n",
    );
    t.write(
        "src/asserts.lua",
        "return { eq = function(a, b) if a ~= b then error('not equal', 2) end return true end }\n",
    );
    t.write(
        "src/main.lua",
        "local io = require('io')\nreturn { main = function() io.print('eq', assert.eq(1, 1), require('assert') == assert) return 0 end }\n",
    );
    let r = weft(&["run", "-C", t.s(), "-x", "app:main"], "");
    r.assert_code(0);
    assert!(r.stdout.contains("eq\ttrue\ttrue"), "{}", r.dump());
}

#[test]
fn apply_version_moves_the_current_version_and_it_survives_a_restart() {
    let t = TempDir::new("head");
    t.write(
        "src/_index.yaml",
        "namespace: app\nentries:\n  - {name: terminal, kind: terminal.host, lifecycle: {auto_start: true}}\n  - {name: main, kind: process.lua, source: file://main.lua, method: main, modules: [io, registry], meta: {command: {name: go}}}\n",
    );
    t.write(
        "src/main.lua",
        r#"local io, registry = require("io"), require("registry")
return { main = function(mode)
  if mode == "write" then
    registry.snapshot():changes():create({id = "app:note", kind = "registry.entry"}):apply()
    registry.snapshot():changes():create({id = "app:note2", kind = "registry.entry"}):apply()
    registry.apply_version(2)
  end
  io.print("current", registry.current_version():id(), registry.get("app:note") ~= nil, registry.get("app:note2") ~= nil, #registry.versions())
  return 0
end }
"#,
    );
    let first = weft(&["run", "-C", t.s(), "go", "write"], "");
    first.assert_code(0);
    assert!(
        first.stdout.contains("current\t2\ttrue\tfalse\t3"),
        "{}",
        first.dump()
    );
    let second = weft(&["run", "-C", t.s(), "go"], "");
    second.assert_code(0);
    assert!(
        second.stdout.contains("current\t2\ttrue\tfalse\t3"),
        "{}",
        second.dump()
    );
}

#[test]
fn scheduler_app_finds_jobs_in_the_registry_and_calls_them_on_tickers() {
    let dir = app("scheduler");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "app:cli"], "");
    r.assert_code(0);
    assert!(r.stdout.contains("jobs\t2"), "{}", r.dump());
    assert!(r.stdout.contains("app:job.count\t3\t30"), "{}", r.dump());
    assert!(r.stdout.contains("app:job.ping\t3\tpong 3"), "{}", r.dump());
    // The same app under the simulator: same lines, a stable hash per seed.
    let args = ["sim", dir.to_str().unwrap(), "-x", "app:cli", "--seed", "5"];
    let a = weft(&args, "");
    let b = weft(&args, "");
    a.assert_code(0);
    assert!(a.stdout.contains("app:job.ping\t3\tpong 3"), "{}", a.dump());
    assert_eq!(sim_hash(&a), sim_hash(&b));
}

#[test]
fn sim_sweeps_fail_on_exit_codes_deadlocks_and_dead_services_with_replay_lines() {
    // A terminal process that fails: every seed counts as failed, with its error.
    let r = weft(
        &[
            "sim",
            "-C",
            "tests/apps/exitcodes",
            "-x",
            "app:boom",
            "--seeds",
            "0..3",
        ],
        "",
    );
    r.assert_code(1);
    r.assert_stdout_has("3 failed");
    r.assert_stdout_has("the terminal process exited with 1: error:");
    r.assert_stdout_has("replay: weft sim -C tests/apps/exitcodes --seed 0 -x app:boom");
    // A terminal process waiting for a message nobody sends.
    let r = weft(
        &[
            "sim",
            "-C",
            "tests/apps/stuck",
            "-x",
            "app:waiter",
            "--seed",
            "4",
        ],
        "",
    );
    r.assert_code(1);
    assert!(
        r.stderr.contains("VIOLATION at seed 4: no deadlock") && r.stderr.contains("app:waiter"),
        "{}",
        r.dump()
    );
    assert!(r.stderr.contains("replay: weft sim"), "{}", r.dump());
    // A service that ran out of restarts, and a non-default liveness kept in the replay line.
    let r = weft(
        &[
            "sim",
            "-C",
            "tests/apps/stuck",
            "--seeds",
            "0..2",
            "--liveness",
            "1m",
        ],
        "",
    );
    r.assert_code(1);
    r.assert_stdout_has("failed for good");
    r.assert_stdout_has("--liveness 1m");
}

#[test]
fn sim_swarm_replay_lines_reproduce_every_seeds_trace_hash() {
    // Every seed of a swarm (its fault rates and delay drawn, non-default liveness and until)
    // is run again from its printed replay line, parsed as the shell would.
    let r = weft(
        &[
            "sim",
            "-C",
            "tests/apps/supervised",
            "--swarm",
            "25",
            "--until",
            "20s",
            "--liveness",
            "10s",
            "--check-replay",
        ],
        "",
    );
    r.assert_code(0);
    r.assert_stdout_has("25 seeds in");
    r.assert_stdout_has("0 failed");
    r.assert_stdout_has("replay lines checked");
}

#[test]
fn sim_replays_pointer_keyed_tables_alone_traced_and_in_a_sweep() {
    // tests/apps/pointers iterates with pairs() tables keyed by tables and functions.
    let t = TempDir::new("sim-pointers");
    let trace = t.path().join("trace.txt");
    let alone = weft(
        &["sim", "tests/apps/pointers", "-x", "app:cli", "--seed", "5"],
        "",
    );
    alone.assert_code(0);
    let traced = weft(
        &[
            "sim",
            "tests/apps/pointers",
            "-x",
            "app:cli",
            "--seed",
            "5",
            "--twice",
            "--trace",
            trace.to_str().unwrap(),
        ],
        "",
    );
    traced.assert_code(0);
    traced.assert_stdout_has("second run: same trace hash");
    assert_eq!(sim_hash(&alone), sim_hash(&traced));
    // A sweep: every seed twice and once more from its replay line, in one OS process.
    let r = weft(
        &[
            "sim",
            "tests/apps/pointers",
            "-x",
            "app:cli",
            "--seeds",
            "0..60",
            "--twice",
            "--check-replay",
        ],
        "",
    );
    r.assert_code(0);
    r.assert_stdout_has("60 seeds in");
    r.assert_stdout_has("0 failed");
}

#[test]
fn sim_shrink_turns_a_seed_with_many_faults_into_a_small_failing_schedule() {
    // tests/apps/fragile fails when a worker is killed; the mix adds many unrelated faults.
    let r = weft(
        &[
            "sim",
            "-C",
            "tests/apps/fragile",
            "-x",
            "app:cli",
            "--seed",
            "3",
            "--faults",
            "kill=0.006,noise=0.2,jitter=0.8,late=0.5,buggify",
            "--shrink",
        ],
        "",
    );
    r.assert_code(1);
    r.assert_stdout_has("fails: the terminal process exited with 1");
    let counts = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("shrunk in "))
        .unwrap_or_else(|| panic!("no shrink summary\n{}", r.dump()));
    let n: Vec<u64> = counts
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (before, after) = (n[1], n[2]);
    assert!(before > 10, "seed 3 should fire many faults\n{}", r.dump());
    assert!(after <= 10, "{}", r.dump());
    // Its replay line fails the same way.
    let line = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("replay: weft "))
        .unwrap_or_else(|| panic!("no replay line\n{}", r.dump()));
    let words: Vec<&str> = line.split_whitespace().collect();
    let again = weft(&words, "");
    again.assert_code(1);
    again.assert_stdout_has("worker died");
}

#[test]
fn malformed_definitions_fail_boot_naming_file_line_and_field() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "modules",
            "namespace: app\nentries:\n  - name: cli\n    kind: process.lua\n    source: \"return {}\"\n    modules: 5\n".into(),
            "src/_index.yaml:6: entry 'app:cli': 'modules' must be a list of module names",
        ),
        (
            "method",
            "namespace: app\nentries:\n  - name: cli\n    kind: process.lua\n    source: \"return {}\"\n    method: 7\n".into(),
            "src/_index.yaml:6: entry 'app:cli': 'method' must be the name of a function",
        ),
        ("empty", String::new(), "src/_index.yaml:1: missing required field 'namespace'"),
        (
            "no-namespace",
            "version: \"1.0\"\nentries:\n  - name: cli\n    kind: process.lua\n".into(),
            "src/_index.yaml:1: missing required field 'namespace'",
        ),
        (
            "huge",
            format!(
                "namespace: app\nentries:\n  - name: x\n    kind: registry.entry\n    big: [{}]\n",
                vec!["1"; 260_000].join(",")
            ),
            "too large for the YAML reader: too many nodes (more than 250000)",
        ),
    ];
    for (tag, text, want) in cases {
        let dir = TempDir::new(tag);
        dir.write("src/_index.yaml", &text);
        let r = weft(&["run", "-C", dir.s(), "-x", "app:cli"], "");
        r.assert_clean_failure();
        r.assert_stderr_has(want);
        assert!(
            !r.stderr.contains("budget breached") && !r.stderr.contains(" { "),
            "Rust debug text leaked to the user ({tag})\n{}",
            r.dump()
        );
        let c = weft(&["check", "-C", dir.s()], "");
        c.assert_code(1);
        assert!(
            c.stdout.contains(want) || c.stderr.contains(want),
            "weft check ({tag})\n{}",
            c.dump()
        );
    }
}

#[test]
fn symlinks_cannot_reach_outside_the_project_or_loop() {
    use std::os::unix::fs::symlink;
    let app = "namespace: app\nentries:\n  - name: t\n    kind: terminal.host\n    lifecycle:\n      auto_start: true\n  - name: cli\n    kind: process.lua\n    source: file://evil.lua\n    method: main\n";
    let outside = TempDir::new("outside");
    let secret = outside.write("secret.lua", "return { main = function() return 42 end }");
    // A source that is a link to a file outside the project.
    let dir = TempDir::new("evil-link");
    dir.write("src/_index.yaml", app);
    symlink(&secret, dir.path().join("src/evil.lua")).unwrap();
    let r = weft(&["run", "-C", dir.s(), "-x", "app:cli"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("leads outside the project");
    // Folder links: a loop, and a link to the root of the filesystem; both end at once.
    for (tag, target) in [("loop", "."), ("root", "/")] {
        let dir = TempDir::new(tag);
        dir.write("src/_index.yaml", "namespace: app\nentries: []\n");
        std::fs::create_dir_all(dir.path().join("src/d")).unwrap();
        symlink(target, dir.path().join("src/d/p")).unwrap();
        let r = weft(&["run", "-C", dir.s(), "-x", "app:cli"], "");
        r.assert_clean_failure();
        assert!(
            r.elapsed < std::time::Duration::from_secs(5),
            "{tag}: took {:?}",
            r.elapsed
        );
        let want = if tag == "loop" {
            "symlink loop"
        } else {
            "leads outside the project"
        };
        r.assert_stderr_has(want);
    }
}

#[test]
fn spawning_past_the_process_limit_is_an_error_value_and_the_node_keeps_running() {
    let dir = TempDir::new("limit");
    dir.write(
        "src/_index.yaml",
        "namespace: app\nentries:\n  - name: t\n    kind: terminal.host\n    lifecycle:\n      auto_start: true\n  - name: procs\n    kind: process.host\n    lifecycle:\n      auto_start: true\n  - name: idle\n    kind: process.lua\n    source: \"return { main = function() process.inbox():receive() end }\"\n    method: main\n  - name: cli\n    kind: process.lua\n    modules: [io]\n    method: main\n    source: |\n      local io = require(\"io\")\n      return { main = function()\n        local n = 0\n        while true do\n          local pid, err = process.spawn(\"app:idle\", \"app:procs\")\n          if not pid then\n            io.print(\"spawned \" .. n .. \": \" .. tostring(err))\n            return 0\n          end\n          n = n + 1\n        end\n      end }\n",
    );
    let run = |limit: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["run", "-C", dir.s(), "-x", "app:cli"])
            .env("WEFT_MAX_PROCESSES", limit)
            .output()
            .expect("run weft")
    };
    let out = run("50");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // The terminal process is one of the 50.
    assert!(
        stdout.contains("spawned 49: process limit reached: 50 live processes"),
        "{stdout}"
    );
    let bad = run("lots");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("WEFT_MAX_PROCESSES=lots"));
}
