//! Members on an in-memory network with a virtual clock: datagrams take 1 ms, a partition
//! drops what crosses it, a stopped member's datagrams go nowhere.

use super::*;
use std::collections::BTreeSet;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000 * MS;
const LATENCY: u64 = MS;

/// Everything that happened, in order: (time, observer, event).
type Trace = Vec<(u64, String, Event)>;
/// Every datagram sent: (time, from, to, bytes).
type Wire = Vec<(u64, String, String, Vec<u8>)>;

struct Net {
    now: u64,
    members: BTreeMap<String, Membership>,
    /// (delivery time, order) → (to address, bytes).
    flight: BTreeMap<(u64, u64), (String, Vec<u8>)>,
    order: u64,
    /// Address pairs whose datagrams are dropped (both directions).
    cut: BTreeSet<(String, String)>,
    trace: Trace,
    /// For the determinism check.
    wire: Wire,
}

fn addr(i: usize) -> String {
    format!("10.0.0.{i}:7946")
}

impl Net {
    fn new() -> Net {
        Net {
            now: 0,
            members: BTreeMap::new(),
            flight: BTreeMap::new(),
            order: 0,
            cut: BTreeSet::new(),
            trace: Vec::new(),
            wire: Vec::new(),
        }
    }

    fn start(&mut self, i: usize, incarnation: u64, seed: u64, secret: &[u8]) {
        let cfg = MembershipConfig::new(
            NodeId::named(&format!("n{i}")),
            addr(i),
            incarnation,
            secret,
            seed,
        );
        self.members.insert(addr(i), Membership::new(cfg).unwrap());
    }

    fn join(&mut self, i: usize, seed: usize) {
        let now = self.now;
        self.members
            .get_mut(&addr(i))
            .unwrap()
            .join(now, &addr(seed))
            .unwrap();
        self.collect();
    }

    fn stop(&mut self, i: usize) {
        self.members.remove(&addr(i));
    }

    fn partition(&mut self, side_a: &[usize], side_b: &[usize]) {
        for a in side_a {
            for b in side_b {
                self.cut.insert((addr(*a), addr(*b)));
                self.cut.insert((addr(*b), addr(*a)));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// Takes every member's outputs: datagrams into flight, events into the trace.
    fn collect(&mut self) {
        for (from, m) in self.members.iter_mut() {
            while let Some(o) = m.poll_output() {
                match o {
                    Output::Datagram { addr, bytes, .. } => {
                        self.wire
                            .push((self.now, from.clone(), addr.clone(), bytes.clone()));
                        if self.cut.contains(&(from.clone(), addr.clone())) {
                            continue;
                        }
                        self.order += 1;
                        self.flight
                            .insert((self.now + LATENCY, self.order), (addr, bytes));
                    }
                    Output::Event(e) => self.trace.push((self.now, from.clone(), e)),
                }
            }
        }
    }

    /// Runs until `until` (virtual), stepping to each next datagram or timer.
    fn run_until(&mut self, until: u64) {
        loop {
            let next_msg = self.flight.keys().next().map(|k| k.0);
            let next_timer = self.members.values().filter_map(|m| m.poll_timeout()).min();
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = next;
            while let Some(e) = self.flight.first_entry() {
                if e.key().0 > self.now {
                    break;
                }
                let (to, bytes) = e.remove();
                if let Some(m) = self.members.get_mut(&to) {
                    // Refusals are counted by the member; the run goes on.
                    let _ = m.handle_datagram(self.now, &bytes);
                }
            }
            let now = self.now;
            for m in self.members.values_mut() {
                if m.poll_timeout().is_some_and(|t| t <= now) {
                    m.handle_timeout(now);
                }
            }
            self.collect();
        }
        self.now = until;
    }

    /// The node names each live member holds as up.
    fn views(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.members
            .iter()
            .map(|(a, m)| {
                (
                    a.clone(),
                    m.members_up().map(|id| id.node.to_string()).collect(),
                )
            })
            .collect()
    }

    /// The first time, after `from`, at which `observer` saw `node` go down.
    fn down_at(&self, from: u64, observer: usize, node: &str) -> Option<(u64, DownReason)> {
        self.trace.iter().find_map(|(t, who, e)| match e {
            Event::Down {
                node: n, reason, ..
            } if *t >= from && *who == addr(observer) && n.as_str() == node => {
                Some((*t, reason.clone()))
            }
            _ => None,
        })
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Three members join through member 1 and settle.
fn three(seed: u64) -> Net {
    let mut net = Net::new();
    for i in 1..=3 {
        net.start(i, 1, seed * 10 + i as u64, b"key");
    }
    net.join(2, 1);
    net.join(3, 1);
    net.run_until(10 * SEC);
    net
}

#[test]
fn three_members_join_through_one_seed() {
    let net = three(1);
    let views = net.views();
    assert_eq!(views[&addr(1)], set(&["n2", "n3"]));
    assert_eq!(views[&addr(2)], set(&["n1", "n3"]));
    assert_eq!(views[&addr(3)], set(&["n1", "n2"]));
    // n3 learned of n2 from the seed, not by being told n2's address.
    let ups: Vec<_> = net
        .trace
        .iter()
        .filter(|(_, who, e)| *who == addr(3) && matches!(e, Event::Up { .. }))
        .collect();
    assert_eq!(ups.len(), 2, "each peer up exactly once: {ups:?}");
    assert!(net
        .trace
        .iter()
        .all(|(_, _, e)| matches!(e, Event::Up { .. })));
}

#[test]
fn a_stopped_member_is_seen_down_within_bounded_time() {
    let mut net = three(2);
    let stopped_at = net.now;
    net.stop(3);
    net.run_until(stopped_at + 60 * SEC);
    for observer in [1, 2] {
        let (t, reason) = net
            .down_at(stopped_at, observer, "n3")
            .unwrap_or_else(|| panic!("n{observer} never saw n3 down: {:?}", net.trace));
        assert_eq!(reason, DownReason::Confirmed);
        // Probing every second, 500 ms round trips, suspicion of 4 s: well under 15 s.
        assert!(
            t - stopped_at < 15 * SEC,
            "n{observer} saw n3 down after {} ms",
            (t - stopped_at) / MS
        );
    }
    let views = net.views();
    assert_eq!(views[&addr(1)], set(&["n2"]));
    assert_eq!(views[&addr(2)], set(&["n1"]));
    // Down once per observer, not again.
    let downs = net
        .trace
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::Down { .. }))
        .count();
    assert_eq!(downs, 2);
}

#[test]
fn a_healed_partition_converges_again() {
    let mut net = three(3);
    let cut_at = net.now;
    net.partition(&[3], &[1, 2]);
    net.run_until(cut_at + 30 * SEC);
    let views = net.views();
    assert_eq!(views[&addr(1)], set(&["n2"]), "{views:?}");
    assert_eq!(views[&addr(2)], set(&["n1"]));
    assert_eq!(
        views[&addr(3)],
        set(&[]),
        "the cut-off member sees everyone down"
    );
    assert!(net.down_at(cut_at, 1, "n3").is_some());
    assert!(net.down_at(cut_at, 3, "n1").is_some());

    let healed_at = net.now;
    net.heal();
    net.run_until(healed_at + 30 * SEC);
    let views = net.views();
    assert_eq!(views[&addr(1)], set(&["n2", "n3"]), "{views:?}");
    assert_eq!(views[&addr(2)], set(&["n1", "n3"]));
    assert_eq!(views[&addr(3)], set(&["n1", "n2"]));
    // It came back as the same run of the node (same incarnation), under a rejoin counter.
    let back_up: Vec<_> = net
        .trace
        .iter()
        .filter(|(t, who, e)| {
            *t >= healed_at
                && *who == addr(1)
                && matches!(e, Event::Up { node, incarnation: 1, .. } if node.as_str() == "n3")
        })
        .collect();
    assert_eq!(back_up.len(), 1, "{:?}", net.trace);
    let n3 = net.members[&addr(1)]
        .members_up()
        .find(|id| id.node.as_str() == "n3")
        .unwrap()
        .clone();
    assert!(n3.rejoin > 0, "{n3:?}");
}

#[test]
fn a_restarted_member_is_a_new_incarnation() {
    let mut net = three(4);
    net.stop(3);
    net.start(3, 2, 99, b"key");
    let restarted_at = net.now;
    net.join(3, 1);
    net.run_until(restarted_at + 10 * SEC);
    let (_, reason) = net
        .down_at(restarted_at, 1, "n3")
        .expect("the old incarnation goes down");
    assert_eq!(reason, DownReason::Restarted { incarnation: 2 });
    let up: Vec<u64> = net.members[&addr(2)]
        .members_up()
        .filter(|id| id.node.as_str() == "n3")
        .map(|id| id.incarnation)
        .collect();
    assert_eq!(up, vec![2]);
}

#[test]
fn a_member_with_another_key_never_joins() {
    let mut net = Net::new();
    net.start(1, 1, 1, b"key");
    net.start(2, 1, 2, b"not the key");
    net.join(2, 1);
    net.run_until(10 * SEC);
    assert!(
        net.views().values().all(|v| v.is_empty()),
        "{:?}",
        net.views()
    );
    assert!(net.members[&addr(1)].stats().rejected >= 1);
    assert!(net.trace.is_empty());
}

#[test]
fn a_member_that_leaves_is_down_at_once() {
    let mut net = three(5);
    let left_at = net.now;
    net.members
        .get_mut(&addr(3))
        .unwrap()
        .leave(left_at)
        .unwrap();
    net.collect();
    net.run_until(left_at + 3 * SEC);
    for observer in [1, 2] {
        let (t, _) = net.down_at(left_at, observer, "n3").unwrap();
        assert!(t - left_at < SEC, "a leave is not waited out as a failure");
    }
}

#[test]
fn garbage_datagrams_are_refused_and_counted() {
    let mut m = Membership::new(MembershipConfig::new(
        NodeId::named("n1"),
        addr(1),
        1,
        b"key",
        1,
    ))
    .unwrap();
    for bytes in [
        &b""[..],
        b"WS",
        b"WS\x01xxxxxxxx",
        b"GET / HTTP/1.1\r\n\r\n",
        &[0xff; 2000],
    ] {
        assert!(matches!(
            m.handle_datagram(0, bytes),
            Err(MembershipError::Rejected(_))
        ));
    }
    assert_eq!(m.stats().rejected, 5);
    assert!(m.poll_output().is_none());
    let long = "x".repeat(256);
    assert!(matches!(
        Membership::new(MembershipConfig::new(
            NodeId::named(&long),
            addr(1),
            1,
            b"k",
            1
        )),
        Err(MembershipError::BadIdentity(_))
    ));
}

/// The same seeds give the same events at the same virtual times and the same bytes on the
/// wire; other seeds change the probing order.
#[test]
fn same_seed_same_run() {
    fn run(seed: u64) -> (Trace, Wire) {
        let mut net = three(seed);
        net.partition(&[2], &[1, 3]);
        net.run_until(net.now + 20 * SEC);
        net.heal();
        net.run_until(net.now + 20 * SEC);
        net.stop(1);
        net.run_until(net.now + 20 * SEC);
        (net.trace, net.wire)
    }
    let (trace_a, wire_a) = run(7);
    let (trace_b, wire_b) = run(7);
    assert!(trace_a.len() >= 6, "the run did something: {trace_a:?}");
    assert_eq!(trace_a, trace_b);
    assert_eq!(wire_a, wire_b);
    let (_, wire_c) = run(8);
    assert_ne!(wire_a, wire_c, "the seed drives probe targets and gossip");
}

/// Real datagrams of a settled cluster, each with one byte changed or cut short, never panic
/// a member; what it refuses is counted.
mod garbled {
    use super::*;
    use proptest::prelude::*;

    fn captured() -> Wire {
        let mut net = three(11);
        net.run_until(net.now + 3 * SEC);
        net.wire
    }

    proptest! {
        #[test]
        fn garbled_datagrams_never_panic(
            pick in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<bool>(),
        ) {
            let wire = captured();
            let (_, _, to, bytes) = &wire[pick.index(wire.len())];
            let mut bytes = bytes.clone();
            let i = at.index(bytes.len());
            if cut {
                bytes.truncate(i);
            } else {
                bytes[i] = byte;
            }
            let mut net = three(11);
            net.run_until(net.now + 3 * SEC);
            let m = net.members.get_mut(to).unwrap();
            let before = m.stats().rejected;
            match m.handle_datagram(net.now, &bytes) {
                Ok(()) => prop_assert_eq!(m.stats().rejected, before),
                Err(MembershipError::Rejected(_)) => prop_assert_eq!(m.stats().rejected, before + 1),
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
        }
    }
}
