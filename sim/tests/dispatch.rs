//! Collective dispatch under the simulator: three nodes, each serving the namespace named after
//! it and calling the others' through funcs.call, with the network's faults (partitions, clogged
//! links); the dispatch invariants are checked after every step.

mod common;

use common::load;
use weft_sim::cluster::{run, NodeSpec};
use weft_sim::net::{NetConfig, NetFaults};
use weft_sim::SimConfig;

fn nodes() -> Vec<NodeSpec> {
    let entries = load("tests/apps/dispatch");
    ["n1", "n2", "n3"]
        .iter()
        .map(|n| NodeSpec {
            name: n.to_string(),
            entries: entries.clone(),
            exec: None,
        })
        .collect()
}

fn cfg(seed: u64, net: &str) -> SimConfig {
    let mut c = SimConfig::new(seed);
    c.until_ns = 10_000_000_000;
    c.liveness_ns = 5_000_000_000;
    c.keep_trace = true;
    c.net = NetConfig {
        faults: NetFaults::parse(net).unwrap(),
        ..Default::default()
    };
    c
}

#[test]
fn nodes_call_each_others_functions_under_partitions_and_replay_exactly() {
    let nodes = nodes();
    let c = cfg(3, "partition=0.05,clog=0.1,loss=0.02");
    let a = run(&nodes, &c).unwrap();
    assert!(a.violation.is_none(), "{:?}", a.violation);
    let b = run(&nodes, &c).unwrap();
    assert_eq!(a.trace_hash, b.trace_hash, "same seed, same run");
    // Calls crossed nodes: n2 ran calls n1 asked, and so on around.
    for (runner, asker) in [("n2", "n1"), ("n3", "n2"), ("n1", "n3")] {
        let pat = format!(" {runner} dispatch invoked {asker}/");
        let n = a.trace.iter().filter(|l| l.contains(&pat)).count();
        assert!(n > 10, "{runner} ran {n} calls of {asker}");
    }
    let answered = a
        .trace
        .iter()
        .filter(|l| l.contains("dispatch answered"))
        .count();
    assert!(answered > 100, "{answered}");
}
