//! The simulator's executor and virtual clock: one thread, pick order drawn from the seed,
//! time that jumps to the next sleeper. Nothing here reads a real clock or spawns a thread.

use async_task::Runnable;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Virtual time: sleepers keyed by (deadline, arrival) so equal deadlines wake in a fixed order.
#[derive(Default)]
pub struct Clock {
    pub now: u64,
    sleepers: BTreeMap<(u64, u64), Waker>,
    seq: u64,
}

impl Clock {
    pub fn next_deadline(&self) -> Option<u64> {
        self.sleepers.keys().next().map(|(at, _)| *at)
    }

    /// Moves time forward to `to` and wakes every sleeper due by then.
    pub fn advance(&mut self, to: u64) {
        self.now = self.now.max(to);
        while let Some((&(at, seq), _)) = self.sleepers.iter().next() {
            if at > self.now {
                break;
            }
            if let Some(w) = self.sleepers.remove(&(at, seq)) {
                w.wake();
            }
        }
    }
}

pub type ClockRef = Rc<RefCell<Clock>>;

/// Completes once virtual time reaches `at`.
pub struct Sleep {
    at: u64,
    clock: ClockRef,
    registered: bool,
}

pub fn sleep_until(clock: &ClockRef, at: u64) -> Sleep {
    Sleep {
        at,
        clock: clock.clone(),
        registered: false,
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut c = self.clock.borrow_mut();
        if c.now >= self.at {
            return Poll::Ready(());
        }
        if !self.registered {
            c.seq += 1;
            let key = (self.at, c.seq);
            c.sleepers.insert(key, cx.waker().clone());
            drop(c);
            self.registered = true;
        }
        Poll::Pending
    }
}

/// A single-threaded executor whose next task is drawn from a seeded generator. The queue sits
/// behind a mutex only because async-task's schedule hook must be Sync; one thread ever touches it.
#[derive(Default, Clone)]
pub struct Executor {
    queue: Arc<Mutex<Vec<Runnable>>>,
}

impl Executor {
    pub fn spawn(&self, fut: impl Future<Output = ()> + 'static) {
        let q = self.queue.clone();
        let (runnable, task) =
            async_task::spawn_local(fut, move |r| q.lock().expect("sim queue").push(r));
        runnable.schedule();
        task.detach();
    }

    pub fn has_ready(&self) -> bool {
        !self.queue.lock().expect("sim queue").is_empty()
    }

    /// Runs ready tasks, in an order drawn from `rng`, until none is ready.
    pub fn run_ready(&self, rng: &mut ChaCha8Rng) -> usize {
        let mut ran = 0;
        loop {
            let next = {
                let mut q = self.queue.lock().expect("sim queue");
                if q.is_empty() {
                    break;
                }
                let i = (rng.next_u64() % q.len() as u64) as usize;
                q.swap_remove(i)
            };
            next.run();
            ran += 1;
        }
        ran
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn sleepers_wake_in_time_order_and_pick_order_follows_the_seed() {
        let order = |seed: u64| {
            let clock: ClockRef = Rc::default();
            let exec = Executor::default();
            let log = Rc::new(RefCell::new(Vec::new()));
            for (i, at) in [(1, 30u64), (2, 10), (3, 20), (4, 10)] {
                let (c, l) = (clock.clone(), log.clone());
                exec.spawn(async move {
                    sleep_until(&c, at).await;
                    l.borrow_mut().push(i);
                });
            }
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            exec.run_ready(&mut rng);
            loop {
                let next = clock.borrow().next_deadline();
                let Some(t) = next else { break };
                clock.borrow_mut().advance(t);
                exec.run_ready(&mut rng);
            }
            assert_eq!(clock.borrow().now, 30);
            let v = log.borrow().clone();
            v
        };
        let a = order(1);
        assert_eq!(a.len(), 4);
        assert_eq!(*a.last().unwrap(), 1, "the 30ns sleeper is last");
        assert_eq!(order(1), a, "same seed, same order");
    }
}
