//! Who runs next: FIFO ready queues with one entry per runnable process and a wake-while-running flag.
//! It never runs anything itself and knows nothing of Lua; `Node::run` asks it for the next id.
//! Processes that were woken (a message, a timer, a completion) run before new ones and those that
//! were preempted, so a hundred processes computing forever cannot delay a ticker by a hundred steps;
//! one pick in `SPUN_EVERY` still goes to a preempted process, so those never starve.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::{BTreeMap, VecDeque};

/// The simulator's seeded choices inside a node: which of several timers due at the same
/// instant fires first, and which ready coroutine of a process resumes first. Off in
/// production (no generator: every choice is the first, the order things were queued in).
#[derive(Debug, Default)]
pub struct Explore {
    rng: Option<ChaCha8Rng>,
    ties: bool,
    coroutines: bool,
}

impl Explore {
    /// Seeded choices from a stream of their own (the node's other draws stay as they were).
    pub fn new(seed: u64, ties: bool, coroutines: bool) -> Explore {
        Explore {
            rng: (ties || coroutines)
                .then(|| ChaCha8Rng::seed_from_u64(seed ^ 0xE8B1_0DE5_0DE5_7A11)),
            ties,
            coroutines,
        }
    }

    fn pick(&mut self, on: bool, n: usize) -> usize {
        match &mut self.rng {
            Some(r) if on && n > 1 => (r.next_u64() % n as u64) as usize,
            _ => 0,
        }
    }

    /// Which of `n` timers due at the same instant fires next.
    pub fn tie(&mut self, n: usize) -> usize {
        self.pick(self.ties, n)
    }

    /// Which of `n` ready coroutines of a process resumes next.
    pub fn coroutine(&mut self, n: usize) -> usize {
        self.pick(self.coroutines, n)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// In the ready queue exactly once.
    Ready,
    Running,
    /// Waiting for a delivery (message, event, timer, completion).
    Idle,
}

/// What a step ended with, from the scheduler's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Preempted or still has runnable work: goes to the back of the queue.
    Yielded,
    /// Blocked: runs again only after a wake.
    Waiting,
    Exited,
}

#[derive(Debug, Default)]
pub struct Scheduler {
    /// Woken processes.
    ready: VecDeque<u64>,
    /// New processes and those preempted with work left (they run when `ready` is empty, or
    /// every `SPUN_EVERY`th pick).
    spun: VecDeque<u64>,
    procs: BTreeMap<u64, (State, bool)>,
    steps: u64,
    /// Picks from `ready` in a row while `spun` waited.
    streak: u32,
    /// The simulator's seeded choices (timer ties, coroutine order); off in production.
    pub explore: Explore,
}

/// A preempted process runs at least once every this many picks.
const SPUN_EVERY: u32 = 8;

impl Scheduler {
    /// A new process starts ready: its first step runs its init. It queues with the preempted
    /// ones: a burst of spawns must not hold back processes that were woken.
    pub fn add(&mut self, id: u64) {
        debug_assert!(!self.procs.contains_key(&id), "process {id} added twice");
        self.procs.insert(id, (State::Ready, false));
        self.spun.push_back(id);
    }

    /// A delivery arrived. Idle → Ready; Running → remember it so a Waiting outcome re-queues.
    pub fn wake(&mut self, id: u64) {
        if let Some((state, woken)) = self.procs.get_mut(&id) {
            match state {
                State::Idle => {
                    *state = State::Ready;
                    self.ready.push_back(id);
                }
                State::Running => *woken = true,
                State::Ready => {}
            }
        }
    }

    /// Takes the next ready process and marks it Running.
    pub fn pick(&mut self) -> Option<u64> {
        loop {
            let from_spun =
                !self.spun.is_empty() && (self.ready.is_empty() || self.streak >= SPUN_EVERY);
            let id = if from_spun {
                self.spun.pop_front()
            } else {
                self.ready.pop_front()
            }?;
            if let Some((state, woken)) = self.procs.get_mut(&id) {
                if *state == State::Ready {
                    *state = State::Running;
                    *woken = false;
                    self.steps += 1;
                    if from_spun {
                        self.streak = 0;
                    } else if !self.spun.is_empty() {
                        self.streak += 1;
                    }
                    return Some(id);
                }
            }
        }
    }

    pub fn finish(&mut self, id: u64, outcome: Outcome) {
        let Some((state, woken)) = self.procs.get_mut(&id) else {
            return;
        };
        debug_assert_eq!(
            *state,
            State::Running,
            "finish of a process that was not running"
        );
        match outcome {
            Outcome::Exited => {
                self.procs.remove(&id);
            }
            Outcome::Yielded => {
                *state = State::Ready;
                self.spun.push_back(id);
            }
            Outcome::Waiting if *woken => {
                *state = State::Ready;
                self.ready.push_back(id);
            }
            Outcome::Waiting => *state = State::Idle,
        }
    }

    /// Moves the process at position `k` of the ready queue to its front, the others keeping
    /// their order: the simulator's seeded choice of who runs next. Production never calls it.
    /// Positions count the woken queue first, then the preempted one.
    pub fn promote(&mut self, k: usize) {
        let id = if k < self.ready.len() {
            self.ready.remove(k)
        } else {
            self.spun.remove(k - self.ready.len())
        };
        if let Some(id) = id {
            self.ready.push_front(id);
        }
    }

    /// How many processes are queued to run.
    pub fn ready_len(&self) -> usize {
        self.ready.len() + self.spun.len()
    }

    /// Forget a process killed while not running (terminate, link cascade, shutdown).
    pub fn remove(&mut self, id: u64) {
        self.procs.remove(&id);
    }

    pub fn state(&self, id: u64) -> Option<State> {
        self.procs.get(&id).map(|(s, _)| *s)
    }

    pub fn has_ready(&self) -> bool {
        self.ready
            .iter()
            .chain(&self.spun)
            .any(|id| matches!(self.procs.get(id), Some((State::Ready, _))))
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn explore_choices_follow_the_seed_and_are_first_when_off() {
        let mut off = Explore::default();
        assert!((0..50).all(|_| off.tie(5) == 0 && off.coroutine(5) == 0));
        let draws = |seed| {
            let mut e = Explore::new(seed, true, false);
            let v: Vec<usize> = (0..50).map(|_| e.tie(4)).collect();
            assert!((0..50).all(|_| e.coroutine(4) == 0), "coroutines stay off");
            v
        };
        let a = draws(1);
        assert_eq!(a, draws(1), "same seed, same choices");
        assert!(a.iter().all(|k| *k < 4));
        assert!(a.iter().any(|k| *k != a[0]), "choices vary: {a:?}");
        assert!((2..10).any(|s| draws(s) != a), "and depend on the seed");
    }

    #[test]
    fn wake_while_running_requeues_after_waiting() {
        let mut s = Scheduler::default();
        s.add(1);
        assert_eq!(s.pick(), Some(1));
        s.wake(1);
        s.finish(1, Outcome::Waiting);
        assert_eq!(s.state(1), Some(State::Ready));
        assert_eq!(s.pick(), Some(1));
        s.finish(1, Outcome::Waiting);
        assert_eq!(s.state(1), Some(State::Idle));
        assert_eq!(s.pick(), None);
    }

    #[test]
    fn yielded_process_goes_behind_others() {
        let mut s = Scheduler::default();
        s.add(1);
        s.add(2);
        assert_eq!(s.pick(), Some(1));
        s.finish(1, Outcome::Yielded);
        assert_eq!(s.pick(), Some(2));
        s.finish(2, Outcome::Waiting);
        assert_eq!(s.pick(), Some(1));
    }

    #[test]
    fn woken_processes_run_before_preempted_ones_which_still_get_turns() {
        let mut s = Scheduler::default();
        for id in 1..=4 {
            s.add(id);
        }
        assert_eq!(s.pick(), Some(1));
        s.finish(1, Outcome::Waiting);
        for id in 2..=3 {
            assert_eq!(s.pick(), Some(id));
            s.finish(id, Outcome::Yielded);
        }
        // 4 (new), 2 and 3 (preempted) are queued; 1, woken, goes ahead of them.
        s.wake(1);
        assert_eq!(s.pick(), Some(1));
        s.finish(1, Outcome::Waiting);
        assert_eq!(s.pick(), Some(4));
        s.finish(4, Outcome::Yielded);
        // A stream of woken processes cannot starve the preempted ones.
        let mut spun_picks = 0;
        for _ in 0..(SPUN_EVERY * 3) {
            s.wake(1);
            let id = s.pick().expect("runnable");
            if id == 1 {
                s.finish(1, Outcome::Waiting);
            } else {
                spun_picks += 1;
                s.finish(id, Outcome::Yielded);
            }
        }
        assert!(
            spun_picks >= 2,
            "preempted processes ran {spun_picks} times in {} picks",
            SPUN_EVERY * 3
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add,
        Wake(u8),
        Step(u8),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Add),
            any::<u8>().prop_map(Op::Wake),
            (0u8..3).prop_map(Op::Step),
            any::<u8>().prop_map(Op::Remove),
        ]
    }

    /// The reference model: who is runnable, and for each runnable process the number of
    /// picks made when it became runnable and how many others were runnable then.
    #[derive(Default)]
    struct Model {
        picks: u64,
        runnable: BTreeMap<u64, (u64, usize)>,
    }

    impl Model {
        /// Added, woken or yielded. A process already runnable keeps its place.
        fn became_runnable(&mut self, id: u64) {
            if !self.runnable.contains_key(&id) {
                let ahead = self.runnable.len();
                self.runnable.insert(id, (self.picks, ahead));
            }
        }

        /// `id` was picked: it must have been runnable, and it waited a bounded number of picks:
        /// each queue is FIFO and a preempted process gets one pick in `SPUN_EVERY + 1`, so at
        /// most `SPUN_EVERY + 1` picks per process runnable before it (and one more round).
        fn picked(&mut self, id: u64) -> Result<(), TestCaseError> {
            let Some((since, ahead)) = self.runnable.remove(&id) else {
                return Err(TestCaseError::fail(format!(
                    "ran {id} which was not runnable"
                )));
            };
            let waited = self.picks - since;
            prop_assert!(
                waited <= (ahead as u64 + 1) * (u64::from(SPUN_EVERY) + 1),
                "{} waited {} picks with only {} runnable ahead of it",
                id,
                waited,
                ahead
            );
            self.picks += 1;
            Ok(())
        }

        fn set(&self) -> std::collections::BTreeSet<u64> {
            self.runnable.keys().copied().collect()
        }
    }

    proptest! {
        /// Reference model: a process is runnable iff it was added or woken since its last
        /// Waiting step; the queue never holds one twice; every runnable process runs within
        /// `len` picks (no starvation: before it run at most the processes that were already
        /// runnable when it became runnable); removed and exited processes never run.
        #[test]
        fn matches_reference_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut s = Scheduler::default();
            let mut next_id = 0u64;
            let mut live: Vec<u64> = Vec::new();
            let mut m = Model::default();
            for o in ops {
                match o {
                    Op::Add => { next_id += 1; s.add(next_id); live.push(next_id); m.became_runnable(next_id); }
                    Op::Wake(i) if !live.is_empty() => {
                        let id = live[i as usize % live.len()];
                        s.wake(id); m.became_runnable(id);
                    }
                    Op::Remove(i) if !live.is_empty() => {
                        let id = live.remove(i as usize % live.len());
                        s.remove(id); m.runnable.remove(&id);
                    }
                    Op::Step(kind) => {
                        match s.pick() {
                            None => prop_assert!(m.runnable.is_empty(), "idle scheduler with runnable {:?}", m.set()),
                            Some(id) => {
                                m.picked(id)?;
                                prop_assert!(live.contains(&id));
                                let out = match kind { 0 => Outcome::Yielded, 1 => Outcome::Waiting, _ => Outcome::Exited };
                                if out == Outcome::Yielded { m.became_runnable(id); }
                                if out == Outcome::Exited { live.retain(|x| *x != id); }
                                s.finish(id, out);
                            }
                        }
                    }
                    _ => {}
                }
                let queued: Vec<u64> = s.ready.iter().chain(&s.spun).copied().filter(|id| s.state(*id) == Some(State::Ready)).collect();
                let mut dedup = queued.clone(); dedup.sort(); dedup.dedup();
                prop_assert_eq!(dedup.len(), queued.len(), "a process is queued twice");
                prop_assert_eq!(dedup.into_iter().collect::<std::collections::BTreeSet<_>>(), m.set());
            }
            // Drain: every runnable process runs exactly once when all wait, within the bound.
            let want = m.set();
            let mut ran = std::collections::BTreeSet::new();
            while let Some(id) = s.pick() {
                m.picked(id)?;
                prop_assert!(ran.insert(id));
                s.finish(id, Outcome::Waiting);
            }
            prop_assert_eq!(ran, want);
        }
    }
}
