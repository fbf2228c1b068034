//! Storage faults and crash-restart: the durability app's writers under crashes and I/O faults
//! lose no acknowledged write; a planted durability bug and a lying disk are caught.

mod common;

use common::load;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use weft_sim::storage::StorageFaults;
use weft_sim::{run, SimConfig, SimReport};

const SECOND: u64 = 1_000_000_000;

fn cfg(seed: u64, storage: StorageFaults) -> SimConfig {
    let mut c = SimConfig::new(seed);
    c.until_ns = 5 * SECOND;
    c.liveness_ns = SECOND;
    c.storage = storage;
    c
}

fn fired(r: &SimReport, kind: &str) -> u64 {
    r.faults.get(kind).copied().unwrap_or(0)
}

#[test]
fn crashes_and_io_faults_lose_no_acknowledged_write() {
    let entries = load("tests/apps/durability");
    let (mut crashes, mut io, mut acked) = (0, 0, 0);
    for seed in 0..24 {
        let storage = StorageFaults::draw(&mut ChaCha8Rng::seed_from_u64(seed), false);
        let r = run(&entries, &cfg(seed, storage)).unwrap();
        assert!(
            r.violation.is_none(),
            "seed {seed}: {:?}\n{}",
            r.violation,
            r.recent.join("\n")
        );
        // Every storage run ends with a crash and its check.
        assert!(fired(&r, "crash") >= 1, "seed {seed}: {:?}", r.faults);
        crashes += fired(&r, "crash");
        io += fired(&r, "ioerr") + fired(&r, "syncerr");
        let summary = r.recent.iter().find(|l| l.contains("acknowledged writes"));
        let n: u64 = summary
            .and_then(|l| l.split("storage: ").nth(1))
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        acked += n;
    }
    assert!(crashes > 30, "mid-run crashes fired: {crashes}");
    assert!(io > 50, "I/O faults fired: {io}");
    assert!(acked > 24 * 50, "writes acknowledged: {acked}");
}

#[test]
fn a_planted_unsynced_commit_is_found_and_replays() {
    let entries = load("tests/apps/durability");
    let mut storage = StorageFaults::parse("crash=0.002").unwrap();
    storage.nosync = true;
    let found = (0..20).find_map(|seed| {
        let r = run(&entries, &cfg(seed, storage.clone())).unwrap();
        r.violation.map(|v| (seed, v, r.trace_hash))
    });
    let (seed, v, hash) = found.expect("the planted bug is found within 20 seeds");
    assert_eq!(v.invariant, "no acknowledged write is lost");
    assert!(v.detail.contains("database app:db"), "{}", v.detail);
    let again = run(&entries, &cfg(seed, storage.clone())).unwrap();
    assert_eq!(again.trace_hash, hash, "seed {seed} replays");
    assert_eq!(again.violation.map(|v| v.detail), Some(v.detail));
    // The same seed without the plant keeps its writes.
    storage.nosync = false;
    let fixed = run(&entries, &cfg(seed, storage)).unwrap();
    assert!(fixed.violation.is_none(), "{:?}", fixed.violation);
}

#[test]
fn a_disk_that_loses_fsyncs_is_caught() {
    let entries = load("tests/apps/durability");
    let storage = StorageFaults::parse("crash=0.002,fsyncloss=0.3").unwrap();
    let caught = (0..10).any(|seed| {
        let r = run(&entries, &cfg(seed, storage.clone())).unwrap();
        r.violation
            .is_some_and(|v| v.invariant == "no acknowledged write is lost")
    });
    assert!(caught);
}

#[test]
fn storage_off_keeps_databases_in_memory_and_never_crashes() {
    let entries = load("tests/apps/durability");
    let r = run(&entries, &cfg(5, StorageFaults::none())).unwrap();
    assert!(r.violation.is_none(), "{:?}", r.violation);
    assert_eq!(fired(&r, "crash"), 0);
    assert!(!r.recent.iter().any(|l| l.contains("acknowledged writes")));
}

#[test]
fn wall_clock_skews_and_jumps_both_ways_while_monotonic_time_stays_monotonic() {
    use weft_sim::storage::ClockFaults;
    let entries = load("tests/apps/clock");
    let clock_run = |seed: u64, spec: &str| {
        let mut c = SimConfig::new(seed);
        c.exec = Some(("app:terminal".into(), "app:main".into(), vec![]));
        c.clock = ClockFaults::parse(spec).unwrap();
        let r = run(&entries, &c).unwrap();
        // The app fails (exit 1) when os.clock went back or a sleep ended early by it.
        assert_eq!(r.exit_code, Some(0), "seed {seed}: {}", r.stdout);
        assert!(r.violation.is_none(), "{:?}", r.violation);
        r
    };
    let number = |out: &str, key: &str| -> i64 {
        out.split(key)
            .nth(1)
            .and_then(|t| {
                t.trim_start()
                    .split(|c: char| !c.is_ascii_digit() && c != '-')
                    .next()
            })
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no '{key}' in {out}"))
    };
    let calm = clock_run(1, "none");
    assert_eq!(number(&calm.stdout, "offset "), 0);
    assert_eq!(number(&calm.stdout, "back "), 0);
    assert_eq!(number(&calm.stdout, "ahead "), 0);
    let (mut back, mut ahead, mut offsets) = (0, 0, std::collections::BTreeSet::new());
    for seed in 0..8 {
        let r = clock_run(seed, "skew=1h,jump=0.02");
        back += number(&r.stdout, "back ");
        ahead += number(&r.stdout, "ahead ");
        let off = number(&r.stdout, "offset ");
        assert!(off.abs() <= 3600, "seed {seed}: skew {off}s");
        offsets.insert(off);
        assert!(fired(&r, "clockjump") > 0);
        let again = clock_run(seed, "skew=1h,jump=0.02");
        assert_eq!(again.trace_hash, r.trace_hash, "seed {seed} replays");
    }
    assert!(
        back > 0 && ahead > 0,
        "jumps both ways: {back} back, {ahead} ahead"
    );
    assert!(offsets.len() > 4, "skews differ per seed: {offsets:?}");
}

#[test]
fn a_database_the_plant_corrupted_fails_the_seed_instead_of_the_sweep() {
    let entries = load("tests/apps/durability");
    let mut failed = 0;
    for seed in 0..6 {
        let storage = StorageFaults::draw(&mut ChaCha8Rng::seed_from_u64(seed), true);
        // Torn writes without syncs may leave a file SQLite no longer opens: a violation.
        let r = run(&entries, &cfg(seed, storage)).expect("a crash never makes the run an error");
        failed += u64::from(r.violation.is_some());
    }
    assert!(failed >= 3, "{failed} of 6 seeds caught the plant");
}
