//! Monitors and links between processes: who hears about whose death.
//! It holds relations only; turning a death into EXIT / LINK_DOWN events is the node's job.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Topology {
    /// target → watchers
    monitors: BTreeMap<u64, BTreeSet<u64>>,
    /// watcher → targets, so a dead watcher's monitors are dropped too
    watching: BTreeMap<u64, BTreeSet<u64>>,
    links: BTreeMap<u64, BTreeSet<u64>>,
}

/// Who must be told that a process died.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fallout {
    pub monitors: Vec<u64>,
    pub links: Vec<u64>,
}

impl Topology {
    pub fn monitor(&mut self, watcher: u64, target: u64) {
        self.monitors.entry(target).or_default().insert(watcher);
        self.watching.entry(watcher).or_default().insert(target);
    }

    pub fn unmonitor(&mut self, watcher: u64, target: u64) -> bool {
        let removed = self
            .monitors
            .get_mut(&target)
            .is_some_and(|w| w.remove(&watcher));
        if let Some(t) = self.watching.get_mut(&watcher) {
            t.remove(&target);
        }
        removed
    }

    pub fn link(&mut self, a: u64, b: u64) {
        if a == b {
            return;
        }
        self.links.entry(a).or_default().insert(b);
        self.links.entry(b).or_default().insert(a);
    }

    pub fn unlink(&mut self, a: u64, b: u64) -> bool {
        let r = self.links.get_mut(&a).is_some_and(|s| s.remove(&b));
        if let Some(s) = self.links.get_mut(&b) {
            s.remove(&a);
        }
        r
    }

    pub fn is_monitoring(&self, watcher: u64, target: u64) -> bool {
        self.monitors
            .get(&target)
            .is_some_and(|w| w.contains(&watcher))
    }

    pub fn is_linked(&self, a: u64, b: u64) -> bool {
        self.links.get(&a).is_some_and(|s| s.contains(&b))
    }

    /// Removes every relation of `dead` and says who is owed an event, in id order.
    pub fn on_exit(&mut self, dead: u64) -> Fallout {
        let monitors: Vec<u64> = self
            .monitors
            .remove(&dead)
            .map(|w| w.into_iter().collect())
            .unwrap_or_default();
        for w in &monitors {
            if let Some(t) = self.watching.get_mut(w) {
                t.remove(&dead);
            }
        }
        if let Some(targets) = self.watching.remove(&dead) {
            for t in targets {
                if let Some(w) = self.monitors.get_mut(&t) {
                    w.remove(&dead);
                }
            }
        }
        let links: Vec<u64> = self
            .links
            .remove(&dead)
            .map(|l| l.into_iter().collect())
            .unwrap_or_default();
        for l in &links {
            if let Some(s) = self.links.get_mut(l) {
                s.remove(&dead);
            }
        }
        Fallout { monitors, links }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exit_reports_watchers_and_links_once() {
        let mut t = Topology::default();
        t.monitor(1, 3);
        t.monitor(1, 3);
        t.monitor(2, 3);
        t.link(3, 4);
        let f = t.on_exit(3);
        assert_eq!(f.monitors, vec![1, 2]);
        assert_eq!(f.links, vec![4]);
        assert_eq!(
            t.on_exit(3),
            Fallout::default(),
            "a second death owes nothing"
        );
    }

    #[test]
    fn dead_watcher_is_not_told_later() {
        let mut t = Topology::default();
        t.monitor(1, 2);
        t.on_exit(1);
        assert!(t.on_exit(2).monitors.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Monitor(u8, u8),
        Unmonitor(u8, u8),
        Link(u8, u8),
        Unlink(u8, u8),
        Exit(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        let p = 0u8..6;
        prop_oneof![
            (p.clone(), p.clone()).prop_map(|(a, b)| Op::Monitor(a, b)),
            (p.clone(), p.clone()).prop_map(|(a, b)| Op::Unmonitor(a, b)),
            (p.clone(), p.clone()).prop_map(|(a, b)| Op::Link(a, b)),
            (p.clone(), p.clone()).prop_map(|(a, b)| Op::Unlink(a, b)),
            p.prop_map(Op::Exit),
        ]
    }

    proptest! {
        /// Against a model of plain pair sets: each death reports each live monitor exactly once
        /// and each live link exactly once, and a dead process takes its relations with it.
        #[test]
        fn matches_pair_set_model(ops in proptest::collection::vec(op(), 1..150)) {
            let mut t = Topology::default();
            let mut mons: BTreeSet<(u64, u64)> = BTreeSet::new();
            let mut links: BTreeSet<(u64, u64)> = BTreeSet::new();
            let mut dead: BTreeSet<u64> = BTreeSet::new();
            for o in ops {
                match o {
                    Op::Monitor(a, b) => { let (a, b) = (a as u64, b as u64); if dead.contains(&a) || dead.contains(&b) { continue; } t.monitor(a, b); mons.insert((a, b)); }
                    Op::Unmonitor(a, b) => { let (a, b) = (a as u64, b as u64); prop_assert_eq!(t.unmonitor(a, b), mons.remove(&(a, b))); }
                    Op::Link(a, b) => { let (a, b) = (a as u64, b as u64); if a == b || dead.contains(&a) || dead.contains(&b) { continue; } t.link(a, b); links.insert((a.min(b), a.max(b))); }
                    Op::Unlink(a, b) => { let (a, b) = (a as u64, b as u64); prop_assert_eq!(t.unlink(a, b), links.remove(&(a.min(b), a.max(b)))); }
                    Op::Exit(d) => {
                        let d = d as u64;
                        let f = t.on_exit(d);
                        let want_m: Vec<u64> = mons.iter().filter(|(_, tg)| *tg == d).map(|(w, _)| *w).collect();
                        let want_l: Vec<u64> = links.iter().filter(|(a, b)| *a == d || *b == d).map(|(a, b)| if *a == d { *b } else { *a }).collect::<BTreeSet<_>>().into_iter().collect();
                        prop_assert_eq!(f.monitors, want_m);
                        prop_assert_eq!(f.links, want_l);
                        mons.retain(|(w, tg)| *w != d && *tg != d);
                        links.retain(|(a, b)| *a != d && *b != d);
                        dead.insert(d);
                    }
                }
            }
        }
    }
}
