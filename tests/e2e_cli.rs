//! End-to-end tests of the `weft` command itself, as a new user meets it: what it shows by
//! default, its arguments, exit codes, messages and `weft check`. One section per row of
//! issue 12, in the issue's order; help and error texts are insta snapshots.

#[path = "common/mod.rs"]
mod common;

use common::*;

/// The start of every throwaway app: a terminal host and a process host.
const HOSTS: &str = "version: \"1.0\"\nnamespace: app\nentries:\n  - name: terminal\n    kind: terminal.host\n    lifecycle:\n      auto_start: true\n  - name: procs\n    kind: process.host\n    lifecycle:\n      auto_start: true\n";

/// A CLI that spawns a worker whose entry forgot `time` in its `modules:` (line 17 of the
/// index), logs at debug and info, waits for the worker's EXIT and reports it: the user's everyday mistake.
fn forgot_time_app() -> TempDir {
    let t = TempDir::new("forgot-time");
    t.write(
        "src/_index.yaml",
        &format!(
            "{HOSTS}  - name: cli\n    kind: process.lua\n    source: file://cli.lua\n    method: main\n    modules: [io, logger]\n  - name: worker\n    kind: process.lua\n    source: file://worker.lua\n    method: main\n"
        ),
    );
    t.write(
        "src/cli.lua",
        "local io = require(\"io\")\nlocal logger = require(\"logger\")\nlocal function main(): integer\n    logger:debug(\"spawning\")\n    logger:info(\"started\")\n    local events = process.events()\n    process.spawn_monitored(\"app:worker\", \"app:procs\")\n    events:receive()\n    io.print(\"worker ended\")\n    return 0\nend\nreturn { main = main }\n",
    );
    t.write(
        "src/worker.lua",
        "local function main()\n    local time = require(\"time\")\n    time.sleep(\"1ms\")\nend\nreturn { main = main }\n",
    );
    t
}

// ---- 1. failures are visible by default ---------------------------------------------------------

#[test]
fn a_crashed_worker_is_reported_on_stderr_by_default() {
    let t = forgot_time_app();
    let r = weft(&["run", "-C", t.s(), "-x", "app:cli"], "");
    r.assert_code(0);
    r.assert_stdout_has("worker ended");
    r.assert_stderr_has("ERROR process failed");
    r.assert_stderr_has("module 'time' not found");
    // Info records stay out of the default view.
    assert!(!r.stderr.contains("INFO "), "{}", r.dump());
}

#[test]
fn silent_hides_runtime_logs_and_verbose_adds_debug_records() {
    let t = forgot_time_app();
    let r = weft(&["run", "-s", "-C", t.s(), "-x", "app:cli"], "");
    r.assert_code(0);
    assert!(r.stderr.is_empty(), "-s must print nothing\n{}", r.dump());

    let r = weft(&["run", "-v", "-C", t.s(), "-x", "app:cli"], "");
    r.assert_code(0);
    r.assert_stderr_has("ERROR process failed");
    r.assert_stderr_has("DEBUG spawning");
    r.assert_stderr_has("INFO  started");
}

// ---- 2. a missing module names the fix -----------------------------------------------------------

#[test]
fn a_missing_module_names_the_entry_to_add_it_to() {
    let t = forgot_time_app();
    let r = weft(&["run", "-C", t.s(), "-x", "app:cli"], "");
    r.assert_code(0);
    r.assert_stderr_has(
        "worker.lua:2: module 'time' not found: add `time` to the `modules:` of entry 'app:worker' (src/_index.yaml:17)",
    );
}

#[test]
fn a_name_that_is_no_module_points_at_imports() {
    let t = TempDir::new("no-such-module");
    t.write(
        "src/_index.yaml",
        &format!("{HOSTS}  - name: cli\n    kind: process.lua\n    source: file://cli.lua\n    method: main\n"),
    );
    t.write(
        "src/cli.lua",
        "local function main()\n    return require(\"helpers\")\nend\nreturn { main = main }\n",
    );
    let r = weft(&["run", "-C", t.s(), "-x", "app:cli"], "");
    r.assert_clean_failure();
    r.assert_stderr_has(
        "cli.lua:2: module 'helpers' not found: entry 'app:cli' (src/_index.yaml:12)",
    );
    r.assert_stderr_has("`imports:`");
}

// ---- 3. a typo in -x or a command name gets a suggestion ---------------------------------------

#[test]
fn a_typo_in_exec_suggests_the_entry_and_the_list() {
    let dir = example("echo-service");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "app:clii"], "");
    r.assert_clean_failure();
    insta::assert_snapshot!("exec_typo", r.stderr);

    let r = weft(&["run", "-C", dir.to_str().unwrap(), "ecoh"], "");
    r.assert_clean_failure();
    insta::assert_snapshot!("command_typo", r.stderr);

    // weft sim says the same.
    let r = weft(&["sim", dir.to_str().unwrap(), "-x", "app:clii"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("entry 'app:clii' not found; did you mean app:cli?");

    // A name far from every entry gets no guess, only the way to list them.
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "zz:qqqq"], "");
    r.assert_clean_failure();
    assert!(!r.stderr.contains("did you mean"), "{}", r.dump());
    r.assert_stderr_has("weft run list");
}

#[test]
fn exec_of_a_service_says_how_to_start_it() {
    let dir = example("echo-service");
    let r = weft(
        &[
            "run",
            "-C",
            dir.to_str().unwrap(),
            "-x",
            "app:relay-service",
        ],
        "",
    );
    r.assert_clean_failure();
    r.assert_stderr_has("-x app:relay");
}

// ---- 4. `weft run list` shows what can be run ------------------------------------------------

#[test]
fn run_list_shows_commands_processes_and_services() {
    let dir = example("echo-service");
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "list"], "");
    r.assert_code(0);
    insta::assert_snapshot!("run_list_echo", r.stdout);

    // An app without named commands still lists its processes.
    let t = TempDir::new("list-plain");
    t.write(
        "src/_index.yaml",
        &format!("{HOSTS}  - name: cli\n    kind: process.lua\n    source: \"return {{ main = function() return 0 end }}\"\n    method: main\n"),
    );
    let r = weft(&["run", "-C", t.s(), "list"], "");
    r.assert_code(0);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("app:cli") && l.contains("process.lua")),
        "{}",
        r.dump()
    );
    assert!(!r.stdout.contains("no entries define"), "{}", r.dump());
}

// ---- 5. arguments after -x ENTRY (or after --) reach the process ------------------------------

/// `weft init`'s starter app: `app:hello` greets its first argument.
fn hello_app() -> TempDir {
    let t = TempDir::new("hello");
    weft_in(t.path(), &["init"], "").assert_code(0);
    t
}

#[test]
fn arguments_after_exec_are_passed_to_the_process() {
    let t = hello_app();
    for args in [
        &["run", "-x", "app:hello", "Bob"][..],
        &["run", "-x", "app:hello", "--", "Bob"][..],
        &["run", "hello", "--", "Bob"][..],
        &["run", "hello", "Bob", "ignored"][..],
    ] {
        let r = weft_in(t.path(), args, "");
        r.assert_code(0);
        assert_eq!(r.stdout, "Hello, Bob!\n", "{args:?}\n{}", r.dump());
    }
    // weft sim passes them the same way, and its replay line keeps them.
    let r = weft_in(t.path(), &["sim", ".", "-x", "app:hello", "Bob"], "");
    r.assert_code(0);
    r.assert_stdout_has("Hello, Bob!");
    r.assert_stdout_has("replay: weft sim -C . --seed 1 -x app:hello -- Bob");
    // A folder after the entry is an argument too, not the app folder.
    let r = weft_in(t.path(), &["run", "-x", "app:hello", "."], "");
    assert_eq!(r.stdout, "Hello, .!\n", "{}", r.dump());
    // Weft's own flags may still follow the entry (as in Wippy's `run -x`); after `--`,
    // everything is the process's.
    let r = weft_in(t.path(), &["run", "-x", "app:hello", "-s", "Ada"], "");
    r.assert_code(0);
    assert_eq!(r.stdout, "Hello, Ada!\n", "{}", r.dump());
    let r = weft_in(t.path(), &["run", "-x", "app:hello", "--", "-v"], "");
    r.assert_code(0);
    assert_eq!(r.stdout, "Hello, -v!\n", "{}", r.dump());
}

// ---- 6. every command of the README runs -------------------------------------------------------

/// The README's `sh` blocks, each as (first line number, lines).
fn readme_blocks() -> Vec<(usize, Vec<String>)> {
    let text = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let mut blocks = Vec::new();
    let mut open: Option<(usize, Vec<String>)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut open {
            None if line.trim_start().starts_with("```sh") => open = Some((i + 2, Vec::new())),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(open.take()),
            Some((_, lines)) => lines.push(line.to_string()),
        }
    }
    assert!(open.is_none(), "README.md has an unterminated ```sh block");
    blocks
}

/// A README command as the test runs it: the freshly built `weft` instead of cargo builds,
/// shorter sweeps. `None` skips the line (said why); an unknown cargo line fails the test so
/// that a new kind of command cannot slip by untested.
fn readme_command(line: &str) -> Option<String> {
    let l = line.trim();
    if l == "cargo test --workspace" {
        return None; // the suite this test belongs to
    }
    if l.starts_with("cargo build --release") {
        return None; // the test puts its own build of weft first on PATH
    }
    if let Some(rest) = l.strip_prefix("cargo run --release -p weft-driver -- ") {
        return Some(format!("weft {rest}"));
    }
    assert!(
        !l.starts_with("cargo "),
        "README command {l:?} is not handled by readme_commands_all_run"
    );
    Some(
        l.replace("--seeds 0..200", "--seeds 0..3")
            .replace("--swarm 100", "--swarm 3"),
    )
}

#[test]
fn readme_commands_all_run() {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_weft"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let blocks = readme_blocks();
    assert!(blocks.len() >= 3, "README.md lost its command blocks");
    let mut ran = 0;
    for (at, lines) in blocks {
        // The fuzz targets need cargo-fuzz, libFuzzer and nightly flags: not for this suite.
        if lines.iter().any(|l| l.contains("cargo fuzz")) {
            continue;
        }
        // A scratch copy of what the README refers to, so nothing lands in the repo.
        let scratch = TempDir::new("readme");
        copy_tree(
            &repo_root().join("examples"),
            &scratch.path().join("examples"),
        );
        copy_tree(
            &repo_root().join("tests/apps"),
            &scratch.path().join("tests/apps"),
        );
        let script: Vec<String> = lines.iter().filter_map(|l| readme_command(l)).collect();
        if script.iter().all(|l| l.is_empty() || l.starts_with('#')) {
            continue;
        }
        // The tutorial block runs in a folder holding the tutorial's app (the echo service);
        // every other block must leave the folder it runs in (a copy of the repo's) as it was.
        let tutorial = script.iter().any(|l| l.contains("app:terminal/app:cli"));
        if tutorial {
            copy_tree(
                &repo_root().join("examples/echo-service/src"),
                &scratch.path().join("src"),
            );
        }
        let before = files_under(scratch.path());
        // Where the README's `scratch=${scratch:-…}` puts its files.
        let outside = TempDir::new("readme-scratch");
        let text = format!("set -euo pipefail\n{}\n", script.join("\n"));
        let mut cmd = std::process::Command::new("bash");
        cmd.args(["-c", &text])
            .current_dir(scratch.path())
            .env("PATH", &path)
            .env("scratch", outside.path());
        let r = run_piped(
            cmd,
            "hello\n\n",
            std::time::Duration::from_secs(120),
            &format!("README.md block at line {at}"),
        );
        assert_eq!(
            r.code(),
            0,
            "README.md block at line {at} failed\n{text}\n{}",
            r.dump()
        );
        assert!(!r.stderr.contains("panicked"), "{}", r.dump());
        if !tutorial {
            assert_eq!(
                files_under(scratch.path()),
                before,
                "README.md block at line {at} wrote into the repo's folder"
            );
        }
        ran += 1;
    }
    assert!(ran >= 3, "only {ran} README blocks ran");
}

// ---- 7. exit codes after SIGINT / SIGTERM ------------------------------------------------------

#[test]
fn a_signal_gives_128_plus_its_number() {
    let dir = app("shutdown");
    for (sig, code) in [("-INT", 130), ("-TERM", 143)] {
        let mut live = Live::start(&["run", "-c", "-C", dir.to_str().unwrap()]);
        live.wait_for_lines("ready", 2, std::time::Duration::from_secs(10));
        live.wait_for_signal_handlers(std::time::Duration::from_secs(10));
        live.signal(sig);
        let r = live.finish();
        assert_eq!(r.code(), code, "after kill {sig}\n{}", r.dump());
    }
}

#[test]
fn a_signal_stops_a_terminal_process_with_130_and_an_app_code_is_kept() {
    let t = TempDir::new("sleeper");
    t.write(
        "src/_index.yaml",
        &format!("{HOSTS}  - name: sleeper\n    kind: process.lua\n    source: file://sleeper.lua\n    method: main\n    modules: [io, time]\n  - name: three\n    kind: process.lua\n    source: \"return {{ main = function() return 3 end }}\"\n    method: main\n"),
    );
    t.write(
        "src/sleeper.lua",
        "local io, time = require(\"io\"), require(\"time\")\nreturn { main = function()\n    io.print(\"sleeping\")\n    time.sleep(\"30s\")\n    return 0\nend }\n",
    );
    let mut live = Live::start(&["run", "-C", t.s(), "-x", "app:sleeper"]);
    live.wait_for_stdout("sleeping", std::time::Duration::from_secs(10));
    live.wait_for_signal_handlers(std::time::Duration::from_secs(10));
    live.signal("-INT");
    let r = live.finish();
    assert_eq!(r.code(), 130, "{}", r.dump());
    assert!(
        r.elapsed < std::time::Duration::from_secs(20),
        "{}",
        r.dump()
    );

    // Without a signal the process's own code stands.
    weft(&["run", "-C", t.s(), "-x", "app:three"], "").assert_code(3);
}

// ---- 8. a bare `weft run` says what started and how to stop ------------------------------------

#[test]
fn a_bare_run_says_what_started_and_how_to_stop() {
    let dir = app("shutdown");
    let mut live = Live::start(&["run", "-C", dir.to_str().unwrap()]);
    live.wait_for_lines("Ctrl+C", 1, std::time::Duration::from_secs(10));
    live.wait_for_signal_handlers(std::time::Duration::from_secs(10));
    live.signal("-INT");
    let r = live.finish();
    r.assert_code(130);
    r.assert_stderr_has("weft: started 2 services (app:first, app:second); Ctrl+C to stop");
    assert!(
        !r.stdout.contains("Ctrl+C"),
        "the note belongs on stderr\n{}",
        r.dump()
    );

    // A new app has no services: the note says so instead of waiting in silence.
    let t = hello_app();
    let mut live = Live::start(&["run", "-C", t.s()]);
    live.wait_for_lines("Ctrl+C", 1, std::time::Duration::from_secs(10));
    live.wait_for_signal_handlers(std::time::Duration::from_secs(10));
    live.signal("-TERM");
    let r = live.finish();
    r.assert_code(143);
    r.assert_stderr_has("no services to start");
    r.assert_stderr_has("weft run list");

    // -s: nothing at all.
    let mut live = Live::start(&["run", "-s", "-C", t.s()]);
    live.wait_for_signal_handlers(std::time::Duration::from_secs(10));
    live.signal("-INT");
    let r = live.finish();
    r.assert_code(130);
    assert!(r.stderr.is_empty(), "{}", r.dump());
}

// ---- 9./10. one way to name the app folder, for every subcommand ---------------------------------

#[test]
fn every_subcommand_takes_the_app_folder_as_dash_c_or_first_argument() {
    let t = TempDir::new("lines");
    let input = t.write("lines.txt", "hi\n");
    let input = input.to_str().unwrap();
    let echo = example("echo-service");
    let echo = echo.to_str().unwrap();
    // sim: -C and a first argument give the same run.
    let a = weft(
        &[
            "sim", "-C", echo, "--seed", "4", "-x", "app:cli", "--input", input,
        ],
        "",
    );
    let b = weft(
        &[
            "sim", echo, "--seed", "4", "-x", "app:cli", "--input", input,
        ],
        "",
    );
    a.assert_code(0);
    b.assert_code(0);
    assert_eq!(sim_hash(&a), sim_hash(&b));
    assert!(a.stdout.contains("HI"), "{}", a.dump());
    // The replay line names the folder with -C too.
    assert!(
        a.stdout
            .contains(&format!("replay: weft sim -C {echo} --seed 4")),
        "{}",
        a.dump()
    );
    // run: a first argument that is an app folder, before or after the flags.
    for args in [
        &["run", echo, "-x", "app:cli"][..],
        &["run", "-x", "app:cli", "-C", echo][..],
        &["run", "-s", echo, "echo"][..],
    ] {
        let r = weft(args, "hello\n\n");
        r.assert_code(0);
        r.assert_stdout_has("HELLO");
    }
    let r = weft(&["run", echo, "list"], "");
    r.assert_code(0);
    r.assert_stdout_has("app:relay-service");
    // init: -C names the folder to set up.
    let fresh = t.path().join("fresh");
    weft(&["init", "-C", fresh.to_str().unwrap()], "").assert_code(0);
    let r = weft(&["run", fresh.to_str().unwrap(), "hello", "Ann"], "");
    r.assert_code(0);
    assert_eq!(r.stdout, "Hello, Ann!\n", "{}", r.dump());
}

#[test]
fn a_folder_that_is_no_app_is_reported_with_the_way_to_name_one() {
    let t = TempDir::new("not-an-app");
    std::fs::create_dir_all(t.path().join("empty")).unwrap();
    // In an app: the folder is taken as a command name, and the message says what it is.
    let echo = example("echo-service");
    let r = weft_in(
        &echo,
        &["run", t.path().join("empty").to_str().unwrap()],
        "",
    );
    r.assert_clean_failure();
    r.assert_stderr_has("is a folder but not an app");
    // Outside an app: the message names -C and weft init.
    let r = weft_in(t.path(), &["run", "empty"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("-C DIR");
    r.assert_stderr_has("weft init");
    let r = weft_in(t.path(), &["sim", "empty"], "");
    r.assert_clean_failure();
    r.assert_stderr_has("-C DIR");
}

// ---- 11. --log-level, WEFT_LOG, filtering by target, --json ------------------------------------

#[test]
fn log_level_filters_by_target_and_json_keeps_the_fields() {
    let t = forgot_time_app();
    // (directives, what stderr must show, what it must not)
    let cases = [
        // Only app:cli's records, down to debug: its logger lines, not the worker's failure.
        (
            "off,app:cli=debug",
            &["DEBUG spawning"][..],
            "process failed",
        ),
        // Everything but app:worker.
        (
            "debug,app:worker=off",
            &["INFO  started"][..],
            "process failed",
        ),
        // A namespace covers its entries.
        (
            "off,app=info",
            &["INFO  started", "ERROR process failed"][..],
            "DEBUG",
        ),
    ];
    for (spec, shown, hidden) in cases {
        let r = weft(
            &["run", "--log-level", spec, "-C", t.s(), "-x", "app:cli"],
            "",
        );
        r.assert_code(0);
        for s in shown {
            r.assert_stderr_has(s);
        }
        assert!(!r.stderr.contains(hidden), "{spec}\n{}", r.dump());
    }

    // JSON: one object per line with level, msg and the record's fields.
    let r = weft(&["run", "--json", "-C", t.s(), "-x", "app:cli"], "");
    r.assert_code(0);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("process failed"))
        .unwrap_or_else(|| panic!("no JSON failure record\n{}", r.dump()));
    for key in [
        "\"level\":\"error\"",
        "\"msg\":\"process failed\"",
        "\"entry\":\"app:worker\"",
    ] {
        assert!(line.contains(key), "{key} missing in {line}");
    }
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");

    // A bad directive is an error naming where it came from.
    let r = weft(
        &["run", "--log-level", "loud", "-C", t.s(), "-x", "app:cli"],
        "",
    );
    r.assert_clean_failure();
    r.assert_stderr_has("--log-level: unknown level 'loud'");
}

#[test]
fn weft_log_sets_the_default_and_flags_win_over_it() {
    let t = forgot_time_app();
    let run = |env: &str, flags: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_weft"));
        cmd.arg("run")
            .args(flags)
            .args(["-C", t.s(), "-x", "app:cli"])
            .env("WEFT_LOG", env);
        run_piped(cmd, "", DEADLINE, "weft with WEFT_LOG")
    };
    let r = run("debug", &[]);
    r.assert_code(0);
    r.assert_stderr_has("DEBUG spawning");
    let r = run("error", &[]);
    r.assert_stderr_has("ERROR process failed");
    assert!(!r.stderr.contains("INFO"), "{}", r.dump());
    let r = run("error", &["-c"]);
    r.assert_stderr_has("INFO  started");
    let r = run("debug", &["-s"]);
    assert!(r.stderr.is_empty(), "{}", r.dump());
    let r = run("bogus", &[]);
    r.assert_clean_failure();
    r.assert_stderr_has("WEFT_LOG: unknown level 'bogus'");
}

// ---- 12. weft check ----------------------------------------------------------------------------

#[test]
fn check_passes_on_every_example_and_test_app() {
    let mut apps = Vec::new();
    for parent in [repo_root().join("examples"), repo_root().join("tests/apps")] {
        for e in std::fs::read_dir(&parent).expect("apps folder") {
            apps.push(e.expect("dir entry").path());
        }
    }
    apps.sort();
    assert!(apps.len() >= 10, "{apps:?}");
    for dir in apps {
        let before = files_under(&dir);
        let r = weft(&["check", dir.to_str().unwrap()], "");
        assert_eq!(r.code(), 0, "weft check {}\n{}", dir.display(), r.dump());
        assert!(
            r.stdout.starts_with("ok: ") || r.stdout.contains("\nok: "),
            "{}",
            r.dump()
        );
        // Nothing ran: no service logged, no database or env file was written.
        assert!(r.stderr.is_empty(), "{}", r.dump());
        assert_eq!(
            files_under(&dir),
            before,
            "weft check {} wrote files",
            dir.display()
        );
    }
    let r = weft(&["check", "--help"], "");
    r.assert_code(0);
    insta::assert_snapshot!("check_help", r.stdout);
}

/// `weft check` on a broken app: exit 1, `needle` (a file:line message) among the problems.
#[track_caller]
fn check_fails_with(t: &TempDir, needle: &str) -> Run {
    let r = weft(&["check", "-C", t.s()], "");
    r.assert_clean_failure();
    r.assert_stdout_has(needle);
    r
}

#[test]
fn check_reports_each_broken_app_of_the_bad_input_tests_with_file_and_line() {
    let t = TempDir::new("check-yaml");
    t.write(
        "src/_index.yaml",
        "version: \"1.0\"\nnamespace: app\nentries:\n  - name: terminal\n    kind: terminal.host\n      lifecycle: [oops\n",
    );
    check_fails_with(&t, "error: src/_index.yaml:6");

    let t = TempDir::new("check-kind");
    t.write(
        "src/_index.yaml",
        &format!("{TERMINAL}{INLINE_CLI}  - name: thing\n    kind: frobnicator.v9\n"),
    );
    check_fails_with(
        &t,
        "src/_index.yaml:12: entry 'app:thing': unknown kind 'frobnicator.v9'",
    );

    check_fails_with(&syntax_error_app(), "src/broken.lua:2");

    for (tag, extra, needle) in bad_import_cases() {
        let t = TempDir::new(&format!("check-imports-{tag}"));
        t.write("src/_index.yaml", &format!("{TERMINAL}{LIB_CLI}{extra}"));
        let r = check_fails_with(&t, "src/_index.yaml:");
        r.assert_stdout_has(needle);
    }

    let t = TempDir::new("check-store");
    t.write(
        "src/_index.yaml",
        "version: \"1.0\"\nnamespace: app\nentries:\n  - name: terminal\n    kind: terminal.host\n  - name: kv\n    kind: store.sql\n    database: app:db\n    table_name: kv\n",
    );
    let r = check_fails_with(&t, "src/_index.yaml:6: entry 'app:kv'");
    r.assert_stdout_has("app:db");

    check_fails_with(
        &forgot_time_app(),
        "src/worker.lua:2: entry 'app:worker': require(\"time\"): add `time` to the `modules:` of entry 'app:worker' (src/_index.yaml:17)",
    );
}

#[test]
fn check_reports_all_problems_at_once_and_runs_nothing() {
    let t = TempDir::new("check-many");
    // A service that would print and write a database if anything ran.
    t.write(
        "src/_index.yaml",
        &format!(
            "{HOSTS}  - name: thing\n    kind: frobnicator.v9\n  - name: cli\n    kind: process.lua\n    source: file://cli.lua\n    method: main\n    imports:\n      util: app:nowhere\n  - name: loud\n    kind: process.lua\n    source: file://loud.lua\n    method: main\n    modules: [io]\n  - name: loud-service\n    kind: process.service\n    process: app:loud\n    host: app:procs\n    lifecycle:\n      auto_start: true\n  - name: db\n    kind: db.sql.sqlite\n    file: ./data.db\n"
        ),
    );
    t.write("src/cli.lua", "return { main = function( end }\n");
    t.write(
        "src/loud.lua",
        "local io = require(\"io\")\nreturn { main = function() io.print(\"I RAN\") return 0 end }\n",
    );
    t.write(
        "src/more/_index.yaml",
        "namespace: app\nentries:\n  - name: [broken\n",
    );
    let before = files_under(t.path());
    let r = weft(&["check", t.s()], "");
    r.assert_clean_failure();
    assert!(!r.stdout.contains("I RAN"), "{}", r.dump());
    assert_eq!(files_under(t.path()), before, "check must write nothing");
    insta::assert_snapshot!(
        "check_many_problems",
        format!(
            "{}--- stderr\n{}",
            r.stdout,
            r.stderr.replace(t.s(), "<app>")
        )
    );
}

// ---- 13. weft --version names the commit ------------------------------------------------------

#[test]
fn version_names_the_commit() {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for flag in ["--version", "-V"] {
        let r = weft(&[flag], "");
        r.assert_code(0);
        let line = r.stdout.trim_end();
        let commit = line
            .strip_prefix(&format!("weft {} (commit ", env!("CARGO_PKG_VERSION")))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("unexpected version line {line:?}"));
        match &head {
            // Built from this checkout: the commit is its HEAD.
            Some(h) => assert_eq!(commit, h, "{line}"),
            None => assert!(!commit.is_empty(), "{line}"),
        }
    }
}

// ---- 14. the first build is documented; CI's sweep does not rebuild -------------------------------

#[test]
fn readme_tells_the_first_build_cost_and_ci_sweeps_with_the_tested_binary() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    assert!(
        readme.contains("The first build is long") && readme.contains("minutes"),
        "the README must say what the first build costs"
    );
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).expect(".ci/run");
    let after_tests = ci
        .split_once("cargo test --workspace")
        .map(|(_, rest)| rest)
        .expect(".ci/run runs the tests");
    for l in after_tests
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
    {
        assert!(
            !l.contains("cargo run") && !l.contains("cargo build"),
            "CI rebuilds after the tests: {l}"
        );
    }
    // `cargo test` leaves its weft where CI looks for it.
    assert!(
        std::path::Path::new(env!("CARGO_BIN_EXE_weft")).ends_with("target/debug/weft"),
        "{}",
        env!("CARGO_BIN_EXE_weft")
    );
    // The sweep line runs as written, with the binary the tests use and fewer seeds.
    let sweep = after_tests
        .lines()
        .find(|l| l.starts_with("target/debug/weft sim"))
        .expect("CI's sweep runs target/debug/weft");
    let t = TempDir::new("ci");
    let input = t.write("target/ci-echo-input.txt", "hello world\nsecond line\n");
    copy_tree(&repo_root().join("examples"), &t.path().join("examples"));
    let args: Vec<String> = sweep
        .split_whitespace()
        .skip(1)
        .map(|a| a.replace("0..200", "0..3"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(input.exists());
    let r = weft_in(t.path(), &args, "");
    r.assert_code(0);
    r.assert_stdout_has("3 seeds in");
}
