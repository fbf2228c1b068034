//! Cluster runs of the simulator: several nodes on one virtual clock over the simulated
//! network, with node crashes, restarts, partitions and clock skew.

mod common;

use common::load;
use weft_sim::cluster::{run, NodeSpec};
use weft_sim::faults::Faults;
use weft_sim::net::{NetConfig, NetFaults};
use weft_sim::SimConfig;

fn three(app: &str, exec_on_first: Option<&str>) -> Vec<NodeSpec> {
    let entries = load(app);
    ["n1", "n2", "n3"]
        .iter()
        .enumerate()
        .map(|(i, n)| NodeSpec {
            name: n.to_string(),
            entries: entries.clone(),
            exec: match (i, exec_on_first) {
                (0, Some(e)) => Some(("app:terminal".into(), e.into(), vec![])),
                _ => None,
            },
        })
        .collect()
}

fn cfg(seed: u64) -> SimConfig {
    let mut c = SimConfig::new(seed);
    c.until_ns = 30_000_000_000;
    c.liveness_ns = 30_000_000_000;
    c
}

fn with_net(mut c: SimConfig, spec: &str) -> SimConfig {
    c.net = NetConfig {
        faults: NetFaults::parse(spec).unwrap(),
        ..Default::default()
    };
    c
}

#[test]
fn three_nodes_run_their_services_and_replay_exactly() {
    let nodes = three("tests/apps/supervised", None);
    let a = run(&nodes, &with_net(cfg(5), "none")).unwrap();
    let b = run(&nodes, &with_net(cfg(5), "none")).unwrap();
    assert!(a.violation.is_none(), "{:?}", a.violation);
    assert_eq!(a.trace_hash, b.trace_hash, "same seed, same run");
    assert!(
        a.restarts >= 3,
        "each node restarts its flaky service: {}",
        a.restarts
    );
    let c = run(&nodes, &with_net(cfg(6), "none")).unwrap();
    assert_ne!(a.trace_hash, c.trace_hash, "the seed matters");
}

#[test]
fn the_terminal_node_ends_the_run_with_its_exit_code_and_output() {
    let nodes = three("tests/apps/senders", Some("app:cli"));
    let r = run(&nodes, &with_net(cfg(1), "none")).unwrap();
    assert!(r.violation.is_none(), "{:?}", r.violation);
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.stdout.split_whitespace().count(), 6, "{}", r.stdout);
}

#[test]
fn crashed_nodes_restart_as_new_incarnations_and_services_recover() {
    let nodes = three("tests/apps/supervised", None);
    let mut crashed = 0;
    for seed in 0..20 {
        let mut c = cfg(seed);
        c.keep_trace = true;
        let r = run(
            &nodes,
            &with_net(c.clone(), "crash=0.2,partition=0.1,clog=0.1,skew=1"),
        )
        .unwrap();
        assert!(
            r.violation.is_none(),
            "seed {seed}: {:?}\n{}",
            r.violation,
            r.recent.join("\n")
        );
        let crashes = r.faults.get("crash").copied().unwrap_or(0);
        assert_eq!(
            crashes,
            r.faults.get("restart").copied().unwrap_or(0),
            "every crash restarts by the end"
        );
        if crashes > 0 {
            crashed += 1;
            assert!(
                r.trace
                    .iter()
                    .any(|l| l.contains("boot n") && l.contains("incarnation 2")),
                "seed {seed}: a restart boots incarnation 2"
            );
        }
        let skews = r.faults.get("skew").copied().unwrap_or(0);
        // Every boot while faults are on draws a skewed clock (restarts in the liveness
        // window run on a true one).
        assert!(
            (3..=3 + crashes).contains(&skews),
            "seed {seed}: {skews} skews"
        );
    }
    assert!(crashed > 10, "crashes happen on most seeds: {crashed}");
}

#[test]
fn process_faults_apply_on_every_node() {
    let nodes = three("tests/apps/supervised", None);
    let mut c = cfg(3);
    c.faults = Faults::parse("kill=0.01,noise=0.01").unwrap();
    let r = run(&nodes, &with_net(c.clone(), "none")).unwrap();
    assert!(r.violation.is_none(), "{:?}", r.violation);
    assert!(
        r.faults.get("kill").copied().unwrap_or(0) > 0,
        "{:?}",
        r.faults
    );
}

#[test]
fn bad_node_lists_are_errors() {
    let mut nodes = three("tests/apps/supervised", None);
    nodes[1].name = "n1".into();
    assert!(run(&nodes, &with_net(cfg(1), "none"))
        .unwrap_err()
        .contains("used twice"));
    assert!(run(&[], &cfg(1)).is_err());
}
