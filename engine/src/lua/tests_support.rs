//! Test support: builds a node whose terminal process runs the test and drives it with the
//! engine's one drive loop (`crate::drive`) on virtual time, answering world commands with a
//! stand-in.

use crate::drive::{Driver, Scripted, Wake};
use crate::entries::Entry;
use crate::node::{Level, NodeConfig};
use crate::value::{ErrorValue, Value};
use crate::world::WorldCommand;
use crate::{Input, Instant, Node, Output};

/// A node with `entries` registered as they are (no boot), the test hosts `t:term` (terminal)
/// and `t:host`, the Lua runtime, and `t:main` started as the terminal process.
pub(crate) fn launch(cfg: NodeConfig, entries: &[Entry]) -> Node {
    let mut node = Node::builder(cfg)
        .log_level(Level::Error)
        .preload(entries.to_vec())
        .host("t:term", "terminal.host")
        .host("t:host", "process.host")
        .lua()
        .build(None)
        .expect("test entries compile")
        .node;
    node.spawn("t:main", "t:term", vec![], true).unwrap();
    node
}

/// A node booted from `entries` (kinds checked, services started) with `t:main` started on
/// the terminal host `t:term`, which `entries` must declare.
pub(crate) fn boot(cfg: NodeConfig, entries: Vec<Entry>) -> (Node, crate::boot::BootReport) {
    let built = Node::builder(cfg)
        .log_level(Level::Error)
        .entries(entries)
        .build(None)
        .expect("boot");
    let mut node = built.node;
    node.spawn("t:main", "t:term", vec![], true).unwrap();
    (node, built.report)
}

/// What a test's stand-in world answers for a command (`None` leaves it unanswered).
pub(crate) type World<'a> = &'a mut dyn FnMut(WorldCommand) -> Option<Result<Value, ErrorValue>>;

struct Probed<'a, 'b> {
    inner: Scripted<'a>,
    probe: &'b mut dyn FnMut(&Node, u64),
}

impl Driver for Probed<'_, '_> {
    fn now(&mut self) -> Instant {
        self.inner.now()
    }
    fn output(&mut self, o: Output) {
        self.inner.output(o)
    }
    fn poll_input(&mut self) -> Option<Input> {
        self.inner.poll_input()
    }
    fn wait(&mut self, node: &mut Node, deadline: Option<Instant>) -> Wake {
        self.inner.wait(node, deadline)
    }
    fn between(&mut self, node: &mut Node, work: crate::Work) -> bool {
        (self.probe)(node, self.inner.now);
        self.inner.between(node, work)
    }
}

/// Runs until the terminal process exits; returns its exit code and everything it printed.
pub(crate) fn drive(
    node: &mut Node,
    world: World<'_>,
    probe: &mut dyn FnMut(&Node, u64),
) -> (i32, String) {
    let mut d = Probed {
        inner: Scripted::new(world),
        probe,
    };
    match crate::drive::drive(node, &mut d, 64) {
        Some(code) => (code, d.inner.out),
        None => panic!("did not finish; output so far:\n{}", d.inner.out),
    }
}

/// A world that answers nothing (the tests that need none).
pub(crate) fn no_world(_: WorldCommand) -> Option<Result<Value, ErrorValue>> {
    None
}
