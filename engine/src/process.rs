//! The Process trait: what the node steps. Lua processes implement it in `lua::process`;
//! plain Rust processes implement it for tests and benchmarks. It must not own scheduling.

use crate::node::CoreRef;
use crate::pid::Pid;
use crate::relay::ExitResult;

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

/// Handed to a process for one step.
pub struct Cx<'a> {
    pub core: &'a CoreRef,
    pub pid: &'a Pid,
    /// Instruction budget for this step (interrupt checks for Lua; messages for Rust processes).
    pub budget: u32,
}

pub trait Process {
    /// Runs until blocked, preempted or finished. The first step runs the process's init.
    fn step(&mut self, cx: &mut Cx<'_>) -> Step;

    /// Called once when the process is removed (exited, terminated, node stopping).
    fn close(&mut self) {}
}
