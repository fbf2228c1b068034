//! Test support: drives a node whose terminal process runs the test, answering world commands
//! with a stand-in. One loop for every Lua-level test module.

use super::LuaRuntime;
use crate::entries::Entry;
use crate::node::SpawnOptions;
use crate::value::{ErrorValue, Value};
use crate::world::WorldCommand;
use crate::{Input, Node, Output, Work};
use std::rc::Rc;

/// Registers and compiles `entries` on a node with the test hosts `t:term` (terminal) and
/// `t:host`, starts `t:main` as the terminal process and installs the Lua runtime.
pub(crate) fn launch(node: &mut Node, mut lua: LuaRuntime, entries: &[Entry]) {
    {
        let mut c = node.core().borrow_mut();
        for e in entries {
            c.entries.insert(e.id.clone(), Rc::new(e.clone()));
            lua.prepare(e).unwrap();
        }
        c.hosts.insert("t:term".into(), "terminal.host".into());
        c.hosts.insert("t:host".into(), "process.host".into());
        c.spawn(
            "t:main",
            "t:term",
            vec![],
            SpawnOptions {
                terminal: true,
                ..Default::default()
            },
        )
        .unwrap();
    }
    node.add_factory("process.lua", Box::new(lua));
}

/// What a test's stand-in world answers for a command (`None` leaves it unanswered).
pub(crate) type World<'a> = &'a mut dyn FnMut(WorldCommand) -> Option<Result<Value, ErrorValue>>;

/// Runs until the terminal process exits; returns its exit code and everything it printed.
/// Virtual time moves 0.1 ms per busy round and jumps to the next timer when idle.
pub(crate) fn drive(
    node: &mut Node,
    world: World<'_>,
    probe: &mut dyn FnMut(&Node, u64),
) -> (i32, String) {
    let mut now = 0;
    let mut out = String::new();
    for _ in 0..100_000 {
        let work = node.run(now, 64);
        probe(node, now);
        let mut answers = Vec::new();
        while let Some(o) = node.poll_output() {
            match o {
                Output::Stdout(b) | Output::Stderr(b) => out.push_str(&String::from_utf8_lossy(&b)),
                Output::Exit(code) => return (code, out),
                Output::Execute { pid, tag, cmd } => {
                    if let Some(result) = world(cmd) {
                        answers.push(Input::Completed { pid, tag, result });
                    }
                }
                _ => {}
            }
        }
        let answered = !answers.is_empty();
        for a in answers {
            node.handle(now, a);
        }
        match work {
            Work::More => now += 100_000,
            Work::Idle if answered => {}
            Work::Idle => match node.poll_timeout() {
                Some(t) => now = now.max(t),
                None => now += 1_000_000,
            },
        }
    }
    panic!("did not finish; output so far:\n{out}");
}

/// A world that answers nothing (the tests that need none).
pub(crate) fn no_world(_: WorldCommand) -> Option<Result<Value, ErrorValue>> {
    None
}
