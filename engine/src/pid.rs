//! Process identifiers: `{host|0x00004}` on a standalone node, `{node@host|0x00004}` in a
//! cluster. Owns formatting and parsing only; which processes exist is the process table's
//! business, and where a PID lives is the relay's.

use std::fmt;
use std::sync::Arc;

/// A node's identity, interned: PIDs of one node share one allocation. The standalone node is
/// Wippy's `"local"`, left out when a PID is printed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub const LOCAL: &'static str = "local";

    /// The standalone node.
    pub fn local() -> NodeId {
        static LOCAL: std::sync::OnceLock<NodeId> = std::sync::OnceLock::new();
        LOCAL
            .get_or_init(|| NodeId(Arc::from(NodeId::LOCAL)))
            .clone()
    }

    pub fn named(name: &str) -> NodeId {
        if name == NodeId::LOCAL {
            return NodeId::local();
        }
        NodeId(intern(name))
    }

    pub fn is_local(&self) -> bool {
        &*self.0 == NodeId::LOCAL
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Names met recently (node names, host ids), so that the PIDs a frame or a PID string brings
/// share their allocations: a cluster node reads two PIDs per message, and it meets few names.
/// Only allocation changes; equal names compare equal either way.
const INTERNED: usize = 64;

thread_local! {
    static NAMES: std::cell::RefCell<(Vec<Arc<str>>, usize)> =
        const { std::cell::RefCell::new((Vec::new(), 0)) };
}

/// `name` as a shared string: one already held if it was met recently, else a new one.
pub fn intern(name: &str) -> Arc<str> {
    NAMES.with(|n| {
        let (names, next) = &mut *n.borrow_mut();
        if let Some(a) = names.iter().find(|a| &***a == name) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(name);
        if names.len() < INTERNED {
            names.push(a.clone());
        } else {
            // Full: the oldest entry makes room.
            names[*next] = a.clone();
            *next = (*next + 1) % INTERNED;
        }
        a
    })
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A process identifier. `uniq` is unique per node (one counter shared by every host); `node`
/// names the node the process runs on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid {
    pub node: NodeId,
    pub host: Arc<str>,
    pub uniq: u64,
}

impl Pid {
    /// A PID on the standalone node.
    pub fn new(host: Arc<str>, uniq: u64) -> Pid {
        Pid::on(NodeId::local(), host, uniq)
    }

    pub fn on(node: NodeId, host: Arc<str>, uniq: u64) -> Pid {
        Pid { node, host, uniq }
    }

    /// Parses `{host|0x..}` or `{node@host|0x..}`.
    pub fn parse(s: &str) -> Option<Pid> {
        // A process sends to the same few PIDs again and again: the last one parsed is kept
        // (parsing and interning its names cost about 1,000 instructions; a hit costs a compare).
        thread_local! {
            static LAST: std::cell::RefCell<Option<(Box<str>, Pid)>> =
                const { std::cell::RefCell::new(None) };
        }
        let hit = LAST.with(|l| {
            l.borrow()
                .as_ref()
                .filter(|(text, _)| &**text == s)
                .map(|(_, pid)| pid.clone())
        });
        if hit.is_some() {
            return hit;
        }
        let (node, host, uniq) = Pid::parse_parts(s)?;
        let pid = Pid {
            node: node.map(NodeId::named).unwrap_or_else(NodeId::local),
            host: intern(host),
            uniq,
        };
        LAST.with(|l| *l.borrow_mut() = Some((s.into(), pid.clone())));
        Some(pid)
    }

    /// The parts of a PID string without allocating: `(node, host, uniq)`; node `local` is None.
    pub fn parse_parts(s: &str) -> Option<(Option<&str>, &str, u64)> {
        let inner = s.strip_prefix('{')?.strip_suffix('}')?;
        let (left, uniq) = inner.rsplit_once('|')?;
        let hex = uniq.strip_prefix("0x")?;
        if hex.is_empty() || hex.len() > 16 {
            return None;
        }
        let uniq = u64::from_str_radix(hex, 16).ok()?;
        let (node, host) = match left.split_once('@') {
            Some((n, h)) => (Some(n), h),
            None => (None, left),
        };
        if host.is_empty() {
            return None;
        }
        Some((node.filter(|n| *n != "local"), host, uniq))
    }
}

/// Wippy pads the counter to 5 hex digits, then widens to 6, 8 and 16.
fn write_uniq(f: &mut fmt::Formatter<'_>, u: u64) -> fmt::Result {
    if u <= 0xf_ffff {
        write!(f, "0x{:05x}", u)
    } else if u <= 0xff_ffff {
        write!(f, "0x{:06x}", u)
    } else if u <= 0xffff_ffff {
        write!(f, "0x{:08x}", u)
    } else {
        write!(f, "0x{:016x}", u)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        if !self.node.is_local() {
            write!(f, "{}@", self.node)?;
        }
        write!(f, "{}|", self.host)?;
        write_uniq(f, self.uniq)?;
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_wippy() {
        let p = Pid::new(Arc::from("app:processes"), 4);
        assert_eq!(p.to_string(), "{app:processes|0x00004}");
        let wide = Pid::new(Arc::from("h"), 0x123456);
        assert_eq!(wide.to_string(), "{h|0x123456}");
        let wider = Pid::new(Arc::from("h"), 0x1234567);
        assert_eq!(wider.to_string(), "{h|0x01234567}");
        let widest = Pid::new(Arc::from("h"), 0x1_0000_0000);
        assert_eq!(widest.to_string(), "{h|0x0000000100000000}");
        let remote = Pid {
            node: NodeId::named("n2"),
            ..p.clone()
        };
        assert_eq!(remote.to_string(), "{n2@app:processes|0x00004}");
    }

    #[test]
    fn parse_round_trips() {
        for s in [
            "{app:processes|0x00004}",
            "{n2@app:processes|0x00004}",
            "{h|0x123456}",
        ] {
            assert_eq!(Pid::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Pid::parse("{local@app:t|0x00001}").unwrap().to_string(),
            "{app:t|0x00001}"
        );
        for bad in [
            "",
            "{}",
            "app|0x1",
            "{app|1}",
            "{app|0x}",
            "{|0x1}",
            "{a|0xzz}",
            "{a|0x11111111111111111}",
        ] {
            assert!(Pid::parse(bad).is_none(), "{bad}");
        }
    }

    /// The last PID parsed is kept: the same text again gives the same PID, other text (valid
    /// or not, even text the kept one starts with) is parsed on its own.
    #[test]
    fn a_pid_parsed_again_is_the_same_and_other_text_is_parsed_afresh() {
        let text = "{n3@app:pool|0x0002a}";
        let a = Pid::parse(text).unwrap();
        assert_eq!(Pid::parse(text), Some(a.clone()));
        assert_eq!(a.to_string(), text);
        let b = Pid::parse("{n3@app:pool|0x0002b}").unwrap();
        assert_eq!(
            (b.uniq, &*b.host, b.node.as_str()),
            (0x2b, "app:pool", "n3")
        );
        assert_eq!(Pid::parse("{n3@app:pool|0x0002"), None);
        assert_eq!(
            Pid::parse("{app:pool|0x0002b}").unwrap().node,
            NodeId::local()
        );
        assert_eq!(Pid::parse(text), Some(a));
    }

    #[test]
    fn names_met_again_share_one_allocation_and_any_number_of_names_still_parse() {
        let a = Pid::parse("{n2@app:host|0x00007}").unwrap();
        let b = Pid::parse("{n2@app:host|0x00009}").unwrap();
        assert!(std::sync::Arc::ptr_eq(&a.host, &b.host));
        assert_eq!(a.node.as_str(), "n2");
        // More names than the cache holds: each still comes back as itself.
        for i in 0..(3 * INTERNED) {
            let name = format!("node{i}");
            assert_eq!(&*intern(&name), name.as_str());
        }
        let c = Pid::parse("{n2@app:host|0x00001}").unwrap();
        assert_eq!(c.host, a.host);
        assert_eq!(c.node, a.node);
    }
}
