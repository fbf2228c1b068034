//! Shrinking a failing seed: the faults a run injects form a schedule (each fault drawn gets
//! the next index), a run can be told which indices may fire (`SimConfig::keep_faults`), and
//! delta debugging over that list finds a small schedule that still fails the same way.
//!
//! Indices count the faults drawn, fired or held back, so a kept list replays exactly: the
//! run with the same seed and the same list draws the same faults and fires the same ones.
//! Each fault type draws from a stream of its own (in runs alone), and a fault held back
//! draws its details all the same, so holding one back moves no other type's draws; it still
//! changes what happens after it, so an index past it may name another fault than in the
//! first run. Every candidate is a real run, and only a run that fails the same way is kept.

use crate::faults::Faults;
use crate::{SimConfig, SimReport};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

/// Which of the faults drawn in a run may fire. Shared by the clones of a run's `Faults`;
/// the default lets every fault fire and counts nothing.
#[derive(Clone, Default)]
pub struct Gate(Option<Rc<RefCell<GateState>>>);

struct GateState {
    keep: Option<BTreeSet<u64>>,
    drawn: u64,
    seed: u64,
    /// Per fault type, the stream its draws come from.
    streams: BTreeMap<&'static str, ChaCha8Rng>,
}

impl GateState {
    fn stream(&mut self, kind: &'static str) -> &mut ChaCha8Rng {
        let seed = self.seed;
        self.streams.entry(kind).or_insert_with(|| {
            let salt = kind
                .bytes()
                .fold(0xFA17_5EED_u64, |h, b| h.rotate_left(8) ^ u64::from(b));
            ChaCha8Rng::seed_from_u64(seed ^ salt)
        })
    }
}

impl Gate {
    /// A fresh gate for one run of `seed`: only `keep` fire (every fault when None).
    pub fn new(keep: Option<BTreeSet<u64>>, seed: u64) -> Gate {
        Gate(Some(Rc::new(RefCell::new(GateState {
            keep,
            drawn: 0,
            seed,
            streams: BTreeMap::new(),
        }))))
    }

    /// A fault was drawn: whether it fires.
    fn admit(&self) -> bool {
        let Some(s) = &self.0 else { return true };
        let mut s = s.borrow_mut();
        let i = s.drawn;
        s.drawn += 1;
        s.keep.as_ref().is_none_or(|k| k.contains(&i))
    }

    /// Faults drawn so far in the run.
    pub fn drawn(&self) -> u64 {
        self.0.as_ref().map_or(0, |s| s.borrow().drawn)
    }
}

/// The gate is the run's state, not a setting: fault mixes compare by their rates.
impl PartialEq for Gate {
    fn eq(&self, _: &Gate) -> bool {
        true
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate({} drawn)", self.drawn())
    }
}

impl Faults {
    /// Draws a fault of type `kind` and probability `rate`: None when it did not come up,
    /// else whether it fires (the gate may hold it back; the caller then draws its details
    /// all the same with `detail`). Draws nothing when the rate is 0. With a gate the draws
    /// come from the type's own stream, else from `rng`.
    pub(crate) fn roll(&self, kind: &'static str, rate: f64, rng: &mut ChaCha8Rng) -> Option<bool> {
        if rate <= 0.0 {
            return None;
        }
        let up = match &self.gate.0 {
            Some(s) => crate::unit(s.borrow_mut().stream(kind)) < rate,
            None => crate::unit(rng) < rate,
        };
        up.then(|| self.gate.admit())
    }

    /// A number for the details of a fault of type `kind` (victim, delay), from the stream
    /// `roll` drew it from.
    pub(crate) fn detail(&self, kind: &'static str, rng: &mut ChaCha8Rng) -> u64 {
        match &self.gate.0 {
            Some(s) => s.borrow_mut().stream(kind).next_u64(),
            None => rng.next_u64(),
        }
    }
}

/// `--keep-faults`: `none` or indices `3,17,40`.
pub fn parse_keep(s: &str) -> Result<BTreeSet<u64>, String> {
    if s.trim() == "none" {
        return Ok(BTreeSet::new());
    }
    s.split(',')
        .map(|w| {
            w.trim().parse::<u64>().map_err(|_| {
                format!("--keep-faults: '{w}' is not a fault index (use e.g. 3,17 or none)")
            })
        })
        .collect()
}

/// `keep` as `--keep-faults` reads it back.
pub fn describe_keep(keep: &BTreeSet<u64>) -> String {
    if keep.is_empty() {
        return "none".into();
    }
    keep.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// How a run failed, or None when it passed: runs fail "the same way" when these are equal.
pub fn failure(r: &SimReport) -> Option<String> {
    if let Some(v) = &r.violation {
        return Some(v.invariant.to_string());
    }
    r.exit_code
        .filter(|c| *c != 0)
        .map(|c| format!("the terminal process exited with {c}"))
}

/// Faults that fired in a run, all types together.
pub fn fired(r: &SimReport) -> u64 {
    r.faults.values().sum()
}

pub struct Shrunk {
    /// The smallest failing configuration found (replay it as it is).
    pub cfg: SimConfig,
    pub report: SimReport,
    /// How the first run failed (the shrunk run fails the same way).
    pub failure: String,
    /// Faults fired in the first run.
    pub fired_before: u64,
    /// Runs it took.
    pub runs: u64,
}

/// Shrinks `cfg`'s failing run with at most `budget` runs of `run`. `Ok(None)` when `cfg`
/// does not fail. First whole fault types are switched off (rates to 0, buggify off), then
/// delta debugging (ddmin) over the indices of the faults left.
pub fn shrink(
    cfg: &SimConfig,
    budget: u64,
    mut run: impl FnMut(&SimConfig) -> Result<SimReport, String>,
) -> Result<Option<Shrunk>, String> {
    let first = run(cfg)?;
    let Some(want) = failure(&first) else {
        return Ok(None);
    };
    let mut s = Search {
        run: &mut run,
        want,
        runs: 1,
        budget: budget.max(1),
        best: (cfg.clone(), first.clone()),
    };

    // Whole fault types off, one at a time.
    let offs: [fn(&mut Faults) -> bool; 6] = [
        |f| std::mem::take(&mut f.buggify),
        |f| std::mem::take(&mut f.noise) > 0.0,
        |f| std::mem::take(&mut f.jitter) > 0.0,
        |f| std::mem::take(&mut f.late) > 0.0,
        |f| std::mem::take(&mut f.fail) > 0.0,
        |f| std::mem::take(&mut f.kill) > 0.0,
    ];
    for off in offs {
        let mut c = s.best.0.clone();
        if off(&mut c.faults) {
            s.try_cfg(c)?;
        }
    }

    // ddmin over the indices of the faults the best run drew.
    let all: Vec<u64> = match &s.best.0.keep_faults {
        Some(k) => k.iter().copied().collect(),
        None => (0..s.best.1.faults_drawn).collect(),
    };
    let mut keep = all;
    let mut n = 2usize;
    while keep.len() >= 2 && s.runs < s.budget {
        let chunk = keep.len().div_ceil(n);
        let parts: Vec<Vec<u64>> = keep.chunks(chunk).map(<[u64]>::to_vec).collect();
        let mut reduced = false;
        for (i, part) in parts.iter().enumerate() {
            if s.try_keep(part)? {
                keep = part.clone();
                n = 2;
                reduced = true;
                break;
            }
            if parts.len() > 2 {
                let rest: Vec<u64> = parts
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, p)| p.iter().copied())
                    .collect();
                if s.try_keep(&rest)? {
                    keep = rest;
                    n = (n - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if n >= keep.len() {
                break;
            }
            n = (n * 2).min(keep.len());
        }
    }
    if keep.len() == 1 {
        s.try_keep(&[])?;
    }
    let Search {
        want, runs, best, ..
    } = s;
    Ok(Some(Shrunk {
        cfg: best.0,
        report: best.1,
        failure: want,
        fired_before: fired(&first),
        runs,
    }))
}

struct Search<'a, F> {
    run: &'a mut F,
    want: String,
    runs: u64,
    budget: u64,
    /// The smallest failing run so far.
    best: (SimConfig, SimReport),
}

impl<F: FnMut(&SimConfig) -> Result<SimReport, String>> Search<'_, F> {
    /// Runs `c`; keeps it as the best when it fails the same way with no more faults fired.
    fn try_cfg(&mut self, c: SimConfig) -> Result<bool, String> {
        if self.runs >= self.budget {
            return Ok(false);
        }
        self.runs += 1;
        let r = (self.run)(&c)?;
        let ok =
            failure(&r).as_deref() == Some(self.want.as_str()) && fired(&r) <= fired(&self.best.1);
        if ok {
            self.best = (c, r);
        }
        Ok(ok)
    }

    fn try_keep(&mut self, keep: &[u64]) -> Result<bool, String> {
        let mut c = self.best.0.clone();
        c.keep_faults = Some(keep.iter().copied().collect());
        self.try_cfg(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    /// A run that draws 100 kills and fails iff every index of `culprits` fires.
    fn fake(cfg: &SimConfig, culprits: &[u64]) -> SimReport {
        let on = cfg.faults.kill > 0.0;
        let kept = |i: u64| on && cfg.keep_faults.as_ref().is_none_or(|k| k.contains(&i));
        let fired = (0..100).filter(|i| kept(*i)).count() as u64;
        SimReport {
            seed: cfg.seed,
            sim_time_ns: 0,
            steps: 0,
            processes: 0,
            messages: 0,
            restarts: 0,
            faults: [("kill".to_string(), fired)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            faults_drawn: if on { 100 } else { 0 },
            trace_hash: 0,
            schedule_hash: 0,
            trace: vec![],
            recent: vec![],
            stdout: String::new(),
            stderr: String::new(),
            exit_code: Some(i32::from(culprits.iter().all(|c| kept(*c)))),
            violation: None,
        }
    }

    #[test]
    fn ddmin_finds_the_faults_a_failure_needs() {
        let mut cfg = SimConfig::new(1);
        cfg.faults = Faults::parse("kill=0.5,noise=0.1").unwrap();
        for culprits in [vec![37], vec![10, 90], vec![0, 1, 99]] {
            let s = shrink(&cfg, 400, |c| Ok(fake(c, &culprits)))
                .unwrap()
                .expect("fails");
            assert_eq!(s.fired_before, 100);
            let keep: Vec<u64> = s.cfg.keep_faults.clone().unwrap().into_iter().collect();
            assert_eq!(keep, culprits);
            assert_eq!(fired(&s.report), culprits.len() as u64);
            assert_eq!(
                s.cfg.faults.noise, 0.0,
                "a fault type the failure needs not is off"
            );
            assert!(s.runs < 80, "{} runs", s.runs);
        }
        // A passing run has nothing to shrink.
        let none = shrink(&cfg, 400, |c| {
            let mut r = fake(c, &[5]);
            r.exit_code = Some(0);
            Ok(r)
        })
        .unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn keep_lists_read_back() {
        for k in [vec![], vec![0], vec![3, 17, 40]] {
            let set: BTreeSet<u64> = k.into_iter().collect();
            assert_eq!(parse_keep(&describe_keep(&set)).unwrap(), set);
        }
        assert!(parse_keep("3,x").unwrap_err().contains("not a fault index"));
    }

    #[test]
    fn the_gate_counts_draws_and_fires_only_kept_indices() {
        let mut f = Faults::parse("kill=1").unwrap();
        f.gate = Gate::new(Some([1, 3].into_iter().collect()), 9);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let fired: Vec<Option<bool>> = (0..5).map(|_| f.roll("kill", f.kill, &mut rng)).collect();
        assert_eq!(
            fired,
            [
                Some(false),
                Some(true),
                Some(false),
                Some(true),
                Some(false)
            ]
        );
        assert_eq!(f.gate.drawn(), 5);
        // No gate: everything fires; a zero rate draws nothing.
        let g = Faults::parse("kill=1").unwrap();
        assert_eq!(g.roll("kill", g.kill, &mut rng), Some(true));
        assert_eq!(g.roll("kill", 0.0, &mut rng), None);
        assert_eq!(g.gate.drawn(), 0);
    }
}
