//! The one drive loop every driver runs: step the node a slice at a time, carry out its outputs,
//! feed it the inputs that arrived, and wait only when nothing is runnable. Inputs are read
//! between every slice, so a process that never stops computing cannot starve signals,
//! completions or terminal input. The loop owns no clock and no I/O: the `Driver` does.

use crate::node::{Input, Instant, Node, Output, Work};
use crate::value::{ErrorValue, Value};
use crate::world::WorldCommand;

/// A stand-in for the world: answers a command now (Some) or never (None).
pub type WorldFn<'a> = dyn FnMut(WorldCommand) -> Option<Result<Value, ErrorValue>> + 'a;

/// What a wait ended with.
#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // moved once per wait; boxing the input buys nothing
pub enum Wake {
    /// An input arrived.
    Input(Input),
    /// The deadline passed (or the driver has more of its own work): run again.
    Again,
    /// Nothing will ever happen again (or the driver ends the run): stop.
    Stop,
}

/// The world around a node: its clock, where outputs go and where inputs come from.
pub trait Driver {
    /// The driver's clock (real or virtual), in Weft's monotonic nanoseconds.
    fn now(&mut self) -> Instant;
    /// Carries out one output. `Output::Exit` ends the loop after this call.
    fn output(&mut self, o: Output);
    /// An input that has already arrived; never waits.
    fn poll_input(&mut self) -> Option<Input>;
    /// Nothing is runnable: wait for an input, at most until `deadline` (the node's next timer).
    fn wait(&mut self, node: &mut Node, deadline: Option<Instant>) -> Wake;
    /// Called after each slice, before inputs are read, with whether runnable work remains
    /// (the simulator injects faults, checks invariants and charges virtual time for work here).
    /// Returning false stops the loop.
    fn between(&mut self, _node: &mut Node, _work: Work) -> bool {
        true
    }
}

/// Runs `node` until it exits (returns its exit code) or the driver stops it (None).
/// `slice` is how many process steps run between two reads of the inputs.
pub fn drive(node: &mut Node, d: &mut impl Driver, slice: usize) -> Option<i32> {
    loop {
        match turn(node, d, slice) {
            Turn::Exited(code) => return Some(code),
            Turn::Stopped => return None,
            Turn::Busy => {}
            Turn::Idle(deadline) => {
                let wake = d.wait(node, deadline);
                if !woke(node, d, wake) {
                    return None;
                }
            }
        }
    }
}

/// What one turn of the drive loop left to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// The node exited with this code.
    Exited(i32),
    /// The driver stopped the run (`between` returned false).
    Stopped,
    /// Work remains, or inputs arrived: turn again.
    Busy,
    /// Nothing is runnable: wait for an input, at most until this instant (the next timer),
    /// then hand what ended the wait to `woke`.
    Idle(Option<Instant>),
}

/// One turn of `drive`'s loop without its wait: a slice of work, its outputs, the inputs that
/// arrived. A driver that waits in its own way (inside an async executor) loops on this.
pub fn turn(node: &mut Node, d: &mut impl Driver, slice: usize) -> Turn {
    let now = d.now();
    let work = node.run(now, slice);
    while let Some(o) = node.poll_output() {
        if let Output::Exit(code) = o {
            d.output(Output::Exit(code));
            return Turn::Exited(code);
        }
        d.output(o);
    }
    if !d.between(node, work) {
        return Turn::Stopped;
    }
    let mut got = false;
    while let Some(i) = d.poll_input() {
        let now = d.now();
        node.handle(now, i);
        got = true;
    }
    if work == Work::Idle && !got {
        Turn::Idle(node.poll_timeout())
    } else {
        Turn::Busy
    }
}

/// Feeds the node what ended a wait; false when the run should stop.
pub fn woke(node: &mut Node, d: &mut impl Driver, wake: Wake) -> bool {
    match wake {
        Wake::Input(i) => {
            let now = d.now();
            node.handle(now, i);
            true
        }
        Wake::Again => true,
        Wake::Stop => false,
    }
}

/// A driver on virtual time for tests and tools: the clock moves 0.1 ms per busy slice and jumps
/// to the next timer when idle; world commands are answered by a closure (None: never).
pub struct Scripted<'a> {
    pub now: Instant,
    pub out: String,
    world: &'a mut WorldFn<'a>,
    answers: std::collections::VecDeque<Input>,
    rounds: u64,
    max_rounds: u64,
}

impl<'a> Scripted<'a> {
    /// `world` sees every command of `Output::Execute` and may answer it.
    pub fn new(world: &'a mut WorldFn<'a>) -> Scripted<'a> {
        Scripted {
            now: 0,
            out: String::new(),
            world,
            answers: Default::default(),
            rounds: 0,
            max_rounds: 1_000_000,
        }
    }
}

impl Driver for Scripted<'_> {
    fn now(&mut self) -> Instant {
        self.now
    }

    fn output(&mut self, o: Output) {
        match o {
            Output::Stdout(b) | Output::Stderr(b) => {
                self.out.push_str(&String::from_utf8_lossy(&b))
            }
            Output::Execute { pid, tag, cmd } => {
                if let Some(result) = (self.world)(cmd) {
                    self.answers
                        .push_back(Input::Completed { pid, tag, result });
                }
            }
            _ => {}
        }
    }

    fn poll_input(&mut self) -> Option<Input> {
        self.answers.pop_front()
    }

    fn between(&mut self, _node: &mut Node, work: Work) -> bool {
        self.rounds += 1;
        // Busy slices move virtual time a little, so timers still come due.
        if work == Work::More {
            self.now += 100_000;
        }
        self.rounds < self.max_rounds
    }

    fn wait(&mut self, _node: &mut Node, deadline: Option<Instant>) -> Wake {
        match deadline {
            Some(t) => {
                self.now = self.now.max(t);
                Wake::Again
            }
            None => Wake::Stop,
        }
    }
}
