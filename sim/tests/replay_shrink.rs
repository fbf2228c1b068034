//! Exact replay whatever ran before in the same OS process (an app iterating tables keyed by
//! tables and functions), and shrinking a failing seed's fault schedule.

mod common;

use common::load;
use std::collections::BTreeSet;
use weft_sim::faults::Faults;
use weft_sim::shrink::{failure, fired, shrink};
use weft_sim::{run, SimConfig};

fn cli(seed: u64) -> SimConfig {
    let mut c = SimConfig::new(seed);
    c.exec = Some(("app:terminal".into(), "app:cli".into(), vec![]));
    c
}

#[test]
fn pointer_keyed_tables_replay_whatever_ran_before() {
    let pointers = load("tests/apps/pointers");
    let echo = load("examples/echo-service");
    let mut outputs = BTreeSet::new();
    for seed in 0..200 {
        let a = run(&pointers, &cli(seed)).unwrap();
        assert_eq!(a.exit_code, Some(0), "seed {seed}: {:?}", a.violation);
        // Other work in this OS process before the second run: another app now and then,
        // Rust heap churn, and every other seed with the full trace kept (`--trace`).
        if seed % 8 == 0 {
            let mut e = cli(seed);
            e.input = vec!["hello".into()];
            run(&echo, &e).unwrap();
        }
        let junk: Vec<String> = (0..seed % 40)
            .map(|i| "x".repeat(i as usize * 13))
            .collect();
        let mut c = cli(seed);
        c.keep_trace = seed % 2 == 0;
        let b = run(&pointers, &c).unwrap();
        drop(junk);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed} does not replay");
        assert_eq!(a.stdout, b.stdout, "seed {seed}");
        outputs.insert(a.stdout);
    }
    // The app prints its `pairs()` orders: they follow the keys' hashes, not the order the
    // keys were inserted in, so the runs above really went through pointer-keyed iteration.
    let inserted: Vec<String> = (1..=12)
        .flat_map(|i| [format!("t{i}"), format!("f{i}")])
        .collect();
    let inserted = inserted.join(",");
    for out in &outputs {
        assert!(out.contains("t1") && !out.contains(&inserted), "{out}");
    }
}

#[test]
fn shrink_brings_failing_seeds_with_many_faults_down_to_a_few() {
    // tests/apps/fragile fails when one of its workers is killed; noise, jitter, late world
    // answers and buggify add many faults that have nothing to do with it.
    let app = load("tests/apps/fragile");
    let mix = Faults::parse("kill=0.006,noise=0.2,jitter=0.8,late=0.5,buggify").unwrap();
    let clean = run(&app, &cli(7)).unwrap();
    assert_eq!(clean.exit_code, Some(0), "without faults the app passes");
    let mut shrunk = 0;
    for seed in 0..60 {
        let mut cfg = cli(seed);
        cfg.faults = mix.clone();
        let first = run(&app, &cfg).unwrap();
        if failure(&first).is_none() || fired(&first) <= 10 {
            continue;
        }
        let s = shrink(&cfg, 400, |c| run(&app, c)).unwrap().expect("fails");
        assert_eq!(s.fired_before, fired(&first));
        assert_eq!(Some(s.failure.clone()), failure(&first));
        let n = fired(&s.report);
        assert!(
            n <= 10,
            "seed {seed}: {} faults fired before, still {n} after {} runs: {:?}",
            s.fired_before,
            s.runs,
            s.report.faults
        );
        assert!(
            s.report.faults.contains_key("kill"),
            "{:?}",
            s.report.faults
        );
        // The shrunk configuration replays: same failure, same trace.
        let again = run(&app, &s.cfg).unwrap();
        assert_eq!(again.trace_hash, s.report.trace_hash, "seed {seed}");
        assert_eq!(failure(&again), failure(&first));
        shrunk += 1;
        if shrunk == 4 {
            break;
        }
    }
    assert!(
        shrunk >= 3,
        "only {shrunk} seeds failed with more than 10 faults"
    );
}
