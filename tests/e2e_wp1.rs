//! End-to-end tests for functions, context and the event bus: the real `weft` binary on
//! tests/apps/funcs-events, under `weft run` and under `weft sim`.

#[path = "common/mod.rs"]
mod common;

use common::*;
use std::collections::BTreeSet;

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
    let r = weft(&["run", "-C", dir.to_str().unwrap(), "-x", "app:cli"], "");
    assert_all_ok(&r);
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
    let a = weft(&args, "");
    let b = weft(&args, "");
    assert_eq!(a.code, Some(0), "{}", a.dump());
    assert!(
        a.stdout.contains("done") && !a.stdout.contains("FAIL"),
        "{}",
        a.dump()
    );
    assert_eq!(sim_hash(&a), sim_hash(&b), "one seed, one hash");
}
