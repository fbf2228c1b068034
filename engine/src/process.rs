//! The Process trait: what the node steps. Lua processes implement it in `lua::process`;
//! plain Rust processes implement it for tests and benchmarks. It must not own scheduling.

use crate::command::{Command, Reply};
use crate::node::Port;
use crate::pid::Pid;
use crate::relay::{ExitResult, Mailbox};

/// What one step ended with.
#[derive(Debug)]
pub enum Step {
    /// Preempted or still runnable: step again after the others had their turn.
    Yielded,
    /// Nothing to do until something is delivered.
    Waiting,
    /// Finished with its result.
    Exited(ExitResult),
}

/// Handed to a process for one step: its identity, its budget, and its port to the node.
pub struct Cx<'a> {
    pub(crate) port: &'a Port,
    pub pid: &'a Pid,
    /// Instruction budget for this step (interrupt checks for Lua; messages for Rust processes).
    pub budget: u32,
    /// What the step used of it, set by the process (0: no more than its budget); a step that
    /// ran far past its budget where it could not yield ends the node's slice early.
    pub spent: u32,
    /// Messages the process took from its mailbox but has not received yet, set by the process
    /// (they count against its mailbox bound).
    pub backlog: usize,
}

impl Cx<'_> {
    /// Yields `cmd` to the node: its handler answers now or completes a tag later.
    pub fn dispatch(&self, cmd: Command) -> Reply {
        self.port.dispatch(self.pid.uniq, cmd)
    }

    /// Everything delivered to this process since its last step.
    pub fn take_mailbox(&self) -> Mailbox {
        self.port.take_mailbox(self.pid.uniq)
    }

    /// An event-bus item found this process's subscription buffer full and was dropped.
    pub fn note_bus_drop(&self, sub: u64) {
        self.port.note_bus_drop(sub);
    }
}

pub trait Process {
    /// Runs until blocked, preempted or finished. The first step runs the process's init.
    fn step(&mut self, cx: &mut Cx<'_>) -> Step;

    /// Called once when the process is removed (exited, terminated, node stopping).
    fn close(&mut self) {}
}
