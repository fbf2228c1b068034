//! End-to-end tests of storage (sql, store, db.sql.sqlite) through the real `weft` binary:
//! durable across runs under `weft run`, in memory and reproducible under `weft sim`.

#[path = "common/mod.rs"]
mod common;

use common::*;
use std::fs;

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
