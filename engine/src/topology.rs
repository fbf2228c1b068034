//! Monitors and links between processes: who hears about whose death. Relations key on a
//! process reference that can name a process of another node, so a node's death can owe each
//! of its processes' watchers exactly one event. It holds relations only; turning a death into
//! EXIT / LINK_DOWN events is the node's job.

use crate::pid::{NodeId, Pid};
use std::collections::{BTreeMap, BTreeSet};

/// A process as the topology knows it: one of this node's (by number) or another node's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProcRef {
    Local(u64),
    Remote(Pid),
}

impl ProcRef {
    pub fn local(&self) -> Option<u64> {
        match self {
            ProcRef::Local(id) => Some(*id),
            ProcRef::Remote(_) => None,
        }
    }
}

#[derive(Debug)]
pub struct Topology<K: Ord + Clone = ProcRef> {
    /// target → watchers
    monitors: BTreeMap<K, BTreeSet<K>>,
    /// watcher → targets, so a dead watcher's monitors are dropped too
    watching: BTreeMap<K, BTreeSet<K>>,
    links: BTreeMap<K, BTreeSet<K>>,
}

impl<K: Ord + Clone> Default for Topology<K> {
    fn default() -> Self {
        Topology {
            monitors: BTreeMap::new(),
            watching: BTreeMap::new(),
            links: BTreeMap::new(),
        }
    }
}

/// Who must be told that a process died.
#[derive(Debug, PartialEq, Eq)]
pub struct Fallout<K = ProcRef> {
    pub monitors: Vec<K>,
    pub links: Vec<K>,
}

impl<K> Default for Fallout<K> {
    fn default() -> Self {
        Fallout {
            monitors: Vec::new(),
            links: Vec::new(),
        }
    }
}

impl Topology<ProcRef> {
    /// Another node is gone (or cut off): every process of it counts as dead, once. Returns
    /// each of its processes that anyone here watched or linked, with who is owed an event.
    pub fn on_node_down(&mut self, node: &NodeId) -> Vec<(Pid, Fallout<ProcRef>)> {
        let on_node = |r: &ProcRef| matches!(r, ProcRef::Remote(p) if p.node == *node);
        let mut gone: BTreeSet<ProcRef> = BTreeSet::new();
        gone.extend(self.monitors.keys().filter(|r| on_node(r)).cloned());
        gone.extend(self.watching.keys().filter(|r| on_node(r)).cloned());
        gone.extend(self.links.keys().filter(|r| on_node(r)).cloned());
        gone.into_iter()
            .filter_map(|r| {
                let f = self.on_exit(r.clone());
                match r {
                    ProcRef::Remote(p) => Some((p, f)),
                    ProcRef::Local(_) => None,
                }
            })
            .filter(|(_, f)| !f.monitors.is_empty() || !f.links.is_empty())
            .collect()
    }
}

impl<K: Ord + Clone> Topology<K> {
    pub fn monitor(&mut self, watcher: K, target: K) {
        self.monitors
            .entry(target.clone())
            .or_default()
            .insert(watcher.clone());
        self.watching.entry(watcher).or_default().insert(target);
    }

    pub fn unmonitor(&mut self, watcher: K, target: K) -> bool {
        let removed = self
            .monitors
            .get_mut(&target)
            .is_some_and(|w| w.remove(&watcher));
        if let Some(t) = self.watching.get_mut(&watcher) {
            t.remove(&target);
        }
        removed
    }

    pub fn link(&mut self, a: K, b: K) {
        if a == b {
            return;
        }
        self.links.entry(a.clone()).or_default().insert(b.clone());
        self.links.entry(b).or_default().insert(a);
    }

    pub fn unlink(&mut self, a: K, b: K) -> bool {
        let r = self.links.get_mut(&a).is_some_and(|s| s.remove(&b));
        if let Some(s) = self.links.get_mut(&b) {
            s.remove(&a);
        }
        r
    }

    pub fn is_monitoring(&self, watcher: &K, target: &K) -> bool {
        self.monitors
            .get(target)
            .is_some_and(|w| w.contains(watcher))
    }

    pub fn is_linked(&self, a: &K, b: &K) -> bool {
        self.links.get(a).is_some_and(|s| s.contains(b))
    }

    /// The processes `watcher` monitors, in order.
    pub fn watched_by(&self, watcher: &K) -> Vec<K> {
        self.watching
            .get(watcher)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes every relation of `dead` and says who is owed an event, in id order.
    pub fn on_exit(&mut self, dead: K) -> Fallout<K> {
        let monitors: Vec<K> = self
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
        let links: Vec<K> = self
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
    fn a_node_down_owes_each_watcher_of_its_processes_one_event() {
        let n2 = NodeId::named("n2");
        let remote = |u| ProcRef::Remote(Pid::on(n2.clone(), "h".into(), u));
        let other = ProcRef::Remote(Pid::on(NodeId::named("n3"), "h".into(), 1));
        let mut t: Topology = Topology::default();
        t.monitor(ProcRef::Local(1), remote(7));
        t.monitor(ProcRef::Local(2), remote(7));
        t.link(ProcRef::Local(1), remote(8));
        t.monitor(ProcRef::Local(1), other.clone());
        // A process of n2 watching one of ours: its node's death drops that watch.
        t.monitor(remote(9), ProcRef::Local(3));
        let down = t.on_node_down(&n2);
        let got: Vec<(u64, Vec<ProcRef>, Vec<ProcRef>)> = down
            .into_iter()
            .map(|(p, f)| (p.uniq, f.monitors, f.links))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, vec![ProcRef::Local(1), ProcRef::Local(2)], vec![]),
                (8, vec![], vec![ProcRef::Local(1)]),
            ]
        );
        assert!(t.on_node_down(&n2).is_empty(), "a node dies once");
        assert!(t.on_exit(ProcRef::Local(3)).monitors.is_empty());
        assert!(t.is_monitoring(&ProcRef::Local(1), &other), "n3 untouched");
    }

    #[test]
    fn exit_reports_watchers_and_links_once() {
        let mut t: Topology<u64> = Topology::default();
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
        let mut t: Topology<u64> = Topology::default();
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
            let mut t: Topology<u64> = Topology::default();
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
