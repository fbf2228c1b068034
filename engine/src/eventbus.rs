//! The node's event bus: one ordered, best-effort publish/subscribe bus per node (`events`
//! module, system topics). A pure state machine: the core publishes, subscribers' queues fill,
//! the owning process takes what is queued when it steps. No persistence, no replay.
//!
//! Decisions (spec says little):
//! - Every subscriber sees events in the node's publish order.
//! - A subscription belongs to a process and is removed when that process exits.
//! - Each subscription buffers at most `SUB_BUFFER` events not yet taken by its process. When
//!   the buffer is full the *new* event is dropped for that subscription only (older events
//!   are kept, other subscribers are unaffected) and the drop is counted per subscription and
//!   node-wide. Publishing never waits for a subscriber.

use crate::value::Value;
use std::collections::{BTreeMap, VecDeque};

/// Events a subscription holds before it drops new ones (Wippy's channel buffer is 64).
pub const SUB_BUFFER: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub struct BusEvent {
    pub system: String,
    pub kind: String,
    pub path: String,
    pub data: Value,
}

impl BusEvent {
    pub fn new(system: &str, kind: &str, path: &str, data: Value) -> BusEvent {
        BusEvent {
            system: system.into(),
            kind: kind.into(),
            path: path.into(),
            data,
        }
    }

    /// The table a Lua subscriber receives: `{system, kind, path, data}`.
    pub fn to_value(&self) -> Value {
        let t = crate::value::Table::default()
            .with("system", Value::from(self.system.as_str()))
            .with("kind", Value::from(self.kind.as_str()))
            .with("path", Value::from(self.path.as_str()))
            .with("data", self.data.clone());
        Value::table(t)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Exact(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: zero or more segments.
    Any,
    /// `(a|b)`: one segment equal to one of the alternatives.
    Alt(Vec<String>),
}

/// A compiled wildcard pattern over dot-separated names (Wippy's `internal/wildcard` grammar).
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    segs: Vec<Seg>,
}

impl Pattern {
    pub fn parse(s: &str) -> Pattern {
        let segs = s
            .split('.')
            .map(|p| match p {
                "*" => Seg::One,
                "**" => Seg::Any,
                _ if p.len() >= 2 && p.starts_with('(') && p.ends_with(')') => {
                    Seg::Alt(p[1..p.len() - 1].split('|').map(String::from).collect())
                }
                _ => Seg::Exact(p.to_string()),
            })
            .collect();
        Pattern { segs }
    }

    /// Whether `name` matches. Runs the pattern as an NFA over the name's segments (a set of
    /// live pattern positions per segment): O(pattern × name) whatever the `**` count, no
    /// backtracking, so a user pattern cannot make a publish slow.
    pub fn matches(&self, name: &str) -> bool {
        let segs = &self.segs;
        let n = segs.len();
        // live[i]: the segments read so far can be followed by segs[i..].
        let mut live = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        live[0] = true;
        close_any(segs, &mut live);
        for part in name.split('.') {
            next.iter_mut().for_each(|b| *b = false);
            let mut any_live = false;
            for i in 0..n {
                if !live[i] {
                    continue;
                }
                let to = match &segs[i] {
                    // `**` swallows this segment and stays; skipping it was closed over.
                    Seg::Any => Some(i),
                    Seg::One => Some(i + 1),
                    Seg::Exact(e) => (e == part).then_some(i + 1),
                    Seg::Alt(alts) => alts.iter().any(|a| a == part).then_some(i + 1),
                };
                if let Some(j) = to {
                    next[j] = true;
                    any_live = true;
                }
            }
            if !any_live {
                return false;
            }
            close_any(segs, &mut next);
            std::mem::swap(&mut live, &mut next);
        }
        live[n]
    }
}

/// Epsilon closure: a live `**` at i may match zero segments, so i + 1 is live too.
fn close_any(segs: &[Seg], live: &mut [bool]) {
    for i in 0..segs.len() {
        if live[i] && segs[i] == Seg::Any {
            live[i + 1] = true;
        }
    }
}

#[derive(Debug)]
struct Sub {
    owner: u64,
    system: Pattern,
    kind: Option<Pattern>,
    queue: VecDeque<(u64, BusEvent)>,
    dropped: u64,
}

/// The bus: subscriptions by id (ids never reused), each with its bounded queue.
#[derive(Debug, Default)]
pub struct Bus {
    subs: BTreeMap<u64, Sub>,
    next_sub: u64,
    seq: u64,
    pub published: u64,
    pub dropped: u64,
}

impl Bus {
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Subscribes `owner` to events whose system matches `system` and, when given, whose kind
    /// matches `kind`. Returns the subscription id.
    pub fn subscribe(&mut self, owner: u64, system: &str, kind: Option<&str>) -> u64 {
        self.next_sub += 1;
        self.subs.insert(
            self.next_sub,
            Sub {
                owner,
                system: Pattern::parse(system),
                kind: kind.map(Pattern::parse),
                queue: VecDeque::new(),
                dropped: 0,
            },
        );
        self.next_sub
    }

    /// Removes a subscription; false when it was already gone.
    pub fn unsubscribe(&mut self, sub: u64) -> bool {
        self.subs.remove(&sub).is_some()
    }

    /// Removes every subscription of a process (it exited); returns how many.
    pub fn remove_owner(&mut self, owner: u64) -> usize {
        let before = self.subs.len();
        self.subs.retain(|_, s| s.owner != owner);
        before - self.subs.len()
    }

    /// Queues `ev` on every matching subscription. Returns the owners that got something new
    /// (each once, in id order) so the node can wake them.
    pub fn publish(&mut self, ev: BusEvent) -> Vec<u64> {
        self.seq += 1;
        self.published += 1;
        let mut woken: Vec<u64> = Vec::new();
        for s in self.subs.values_mut() {
            if !s.system.matches(&ev.system) {
                continue;
            }
            if let Some(k) = &s.kind {
                if !k.matches(&ev.kind) {
                    continue;
                }
            }
            if s.queue.len() >= SUB_BUFFER {
                s.dropped += 1;
                self.dropped += 1;
                continue;
            }
            s.queue.push_back((self.seq, ev.clone()));
            if !woken.contains(&s.owner) {
                woken.push(s.owner);
            }
        }
        woken.sort_unstable();
        woken
    }

    /// Takes everything queued for `owner`'s subscriptions, in publish order.
    pub fn take(&mut self, owner: u64) -> Vec<(u64, BusEvent)> {
        let mut out: Vec<(u64, u64, BusEvent)> = Vec::new();
        for (id, s) in self.subs.iter_mut() {
            if s.owner == owner {
                out.extend(s.queue.drain(..).map(|(seq, e)| (seq, *id, e)));
            }
        }
        out.sort_by_key(|(seq, id, _)| (*seq, *id));
        out.into_iter().map(|(_, id, e)| (id, e)).collect()
    }

    /// Counts an event the subscriber could not accept downstream (its channel was full).
    pub fn note_drop(&mut self, sub: u64) {
        self.dropped += 1;
        if let Some(s) = self.subs.get_mut(&sub) {
            s.dropped += 1;
        }
    }

    /// Events dropped for one subscription (None when it does not exist).
    pub fn dropped_for(&self, sub: u64) -> Option<u64> {
        self.subs.get(&sub).map(|s| s.dropped)
    }
}

// ---- publishing from the node ------------------------------------------------------
mod on_node {
    use crate::node::*;
    use crate::value::Value;

    impl Core {
        /// Publishes on the node's event bus and wakes the subscribers that got it. This is the hook
        /// other parts of the node call (system topics; the registry calls it with system
        /// "registry", kind "entry.create|update|delete", path = entry id, data = the entry).
        pub fn publish(&mut self, system: &str, kind: &str, path: &str, data: Value) {
            if self.bus.is_empty() {
                return;
            }
            let owners = self
                .bus
                .publish(crate::eventbus::BusEvent::new(system, kind, path, data));
            for o in owners {
                if self.procs.contains_key(&o) {
                    self.wake(o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The old backtracking matcher, kept as the reference the NFA is checked against.
    fn reference(segs: &[Seg], parts: &[&str]) -> bool {
        let Some((first, rest)) = segs.split_first() else {
            return parts.is_empty();
        };
        match first {
            Seg::Any => (0..=parts.len()).any(|k| reference(rest, &parts[k..])),
            _ => {
                let Some((p, tail)) = parts.split_first() else {
                    return false;
                };
                let ok = match first {
                    Seg::Exact(e) => e == p,
                    Seg::One => true,
                    Seg::Alt(alts) => alts.iter().any(|a| a == p),
                    Seg::Any => unreachable!(),
                };
                ok && reference(rest, tail)
            }
        }
    }

    #[test]
    fn many_double_stars_on_a_long_name_match_fast() {
        // 10 `**` against a 24-segment name took ~2 s per match with backtracking.
        let stars = ["**"; 10].join(".");
        let pattern = Pattern::parse(&format!("{stars}.zzz"));
        let name: Vec<String> = (0..24).map(|i| format!("s{i}")).collect();
        let name = name.join(".");
        let start = std::time::Instant::now(); // det-ok: test measures the matcher's cost
        for _ in 0..20 {
            assert!(!pattern.matches(&name), "no segment is `zzz`");
        }
        let took = start.elapsed();
        assert!(took.as_millis() < 200, "20 matches took {took:?}");
        assert!(pattern.matches(&format!("{name}.zzz")));
        assert!(Pattern::parse(&format!("{stars}.s3.**.s20.**")).matches(&name));
        // Far beyond what backtracking could ever finish.
        let big = Pattern::parse(&format!("{}.zzz", vec!["**"; 200].join(".")));
        let long = vec!["x"; 2000].join(".");
        assert!(!big.matches(&long));
        assert!(big.matches(&format!("{long}.zzz")));
    }

    fn seg_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("*".to_string()),
            Just("**".to_string()),
            Just("(a|b)".to_string()),
            Just("(b|c)".to_string()),
            Just("".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn nfa_agrees_with_backtracking_reference(
            pat in prop::collection::vec(seg_text(), 1..7),
            name in prop::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c"), Just("")], 1..8),
        ) {
            let p = Pattern::parse(&pat.join("."));
            let n = name.join(".");
            let parts: Vec<&str> = n.split('.').collect();
            prop_assert_eq!(p.matches(&n), reference(&p.segs, &parts), "pattern {:?} name {:?}", pat.join("."), n);
        }
    }

    fn ev(system: &str, kind: &str, n: i64) -> BusEvent {
        BusEvent::new(system, kind, "p", Value::Int(n))
    }

    #[test]
    fn pattern_grammar() {
        let m = |p: &str, n: &str| Pattern::parse(p).matches(n);
        assert!(m("orders.*", "orders.x"));
        assert!(!m("orders.*", "orders"));
        assert!(!m("orders.*", "orders.x.y"));
        assert!(m("*", "orders"));
        assert!(!m("*", "orders.x"));
        assert!(m("orders.**", "orders"));
        assert!(m("orders.**", "orders.a.b.c"));
        assert!(m("**", "anything.at.all"));
        assert!(m("a.**.z", "a.z"));
        assert!(m("a.**.z", "a.b.c.z"));
        assert!(!m("a.**.z", "a.b.c"));
        assert!(m("entry.(accept|reject)", "entry.reject"));
        assert!(!m("entry.(accept|reject)", "entry.create"));
        assert!(m("registry", "registry"));
        assert!(!m("registry", "registryx"));
        assert!(m("(a|b).*.c", "b.x.c"));
    }

    #[test]
    fn subscribers_see_publish_order_filtered_by_system_and_kind() {
        let mut b = Bus::default();
        let all = b.subscribe(1, "**", None);
        let orders = b.subscribe(2, "orders.*", Some("created"));
        let second = b.subscribe(1, "orders.*", None);
        assert_eq!(b.publish(ev("orders.eu", "created", 1)), vec![1, 2]);
        assert_eq!(b.publish(ev("orders.eu", "deleted", 2)), vec![1]);
        assert_eq!(b.publish(ev("users", "created", 3)), vec![1]);
        let got: Vec<(u64, i64)> = b
            .take(1)
            .into_iter()
            .map(|(s, e)| (s, if let Value::Int(n) = e.data { n } else { 0 }))
            .collect();
        assert_eq!(
            got,
            vec![(all, 1), (second, 1), (all, 2), (second, 2), (all, 3)]
        );
        let got2: Vec<u64> = b.take(2).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got2, vec![orders]);
        assert!(b.take(1).is_empty(), "take drains");
    }

    #[test]
    fn slow_subscriber_drops_its_own_overflow_only() {
        let mut b = Bus::default();
        let slow = b.subscribe(1, "x", None);
        let fast = b.subscribe(2, "x", None);
        for i in 0..100 {
            b.publish(ev("x", "k", i));
            assert_eq!(b.take(2).len(), 1, "fast subscriber gets every event");
        }
        let kept = b.take(1);
        assert_eq!(kept.len(), SUB_BUFFER);
        assert_eq!(kept[0].1.data, Value::Int(0), "oldest events are kept");
        assert_eq!(b.dropped_for(slow), Some(100 - SUB_BUFFER as u64));
        assert_eq!(b.dropped_for(fast), Some(0));
        assert_eq!(b.dropped, 100 - SUB_BUFFER as u64);
        b.publish(ev("x", "k", 200));
        assert_eq!(
            b.take(1).len(),
            1,
            "room again after the owner took its queue"
        );
    }

    #[test]
    fn exit_and_unsubscribe_remove_subscriptions() {
        let mut b = Bus::default();
        let a = b.subscribe(1, "x", None);
        b.subscribe(1, "y", None);
        b.subscribe(2, "x", None);
        assert!(b.unsubscribe(a));
        assert!(!b.unsubscribe(a), "second unsubscribe is a no-op");
        assert_eq!(b.remove_owner(1), 1);
        assert_eq!(b.publish(ev("x", "k", 1)), vec![2]);
        assert_eq!(b.publish(ev("y", "k", 1)), Vec::<u64>::new());
        assert!(b.take(1).is_empty());
        assert_eq!(b.len(), 1);
    }
}
