//! Fault rates for a simulated run, fixed by `--faults` or drawn per seed for a swarm.
//! Each fault type has a name used in counts and reports.

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

/// Every fault type the simulator can inject, in report order.
pub const KINDS: &[&str] = &["kill", "fail", "late", "jitter", "noise", "buggify"];

#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Per step: kill a random live process (not the terminal one).
    pub kill: f64,
    /// Per world command: answer with an error.
    pub fail: f64,
    /// Per world command: answer up to 2 s late.
    pub late: f64,
    /// Per clock jump: wake up to 5 ms after the deadline.
    pub jitter: f64,
    /// Per step: put a stray message in a random mailbox (mailbox pressure).
    pub noise: f64,
    /// BUGGIFY points in engine code.
    pub buggify: bool,
    /// Which of the faults drawn in a run may fire (all unless shrinking keeps a subset).
    pub gate: crate::shrink::Gate,
}

impl Faults {
    pub fn none() -> Faults {
        Faults {
            kill: 0.0,
            fail: 0.0,
            late: 0.0,
            jitter: 0.0,
            noise: 0.0,
            buggify: false,
            gate: Default::default(),
        }
    }

    /// `none`, `all`, or a list like `kill=0.001,late=0.1,buggify`.
    pub fn parse(spec: &str) -> Result<Faults, String> {
        let mut f = Faults::none();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "none" {
                continue;
            }
            if part == "all" {
                f = Faults {
                    kill: 0.002,
                    fail: 0.05,
                    late: 0.1,
                    jitter: 0.2,
                    noise: 0.01,
                    buggify: true,
                    gate: Default::default(),
                };
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, "0.05"));
            let rate: f64 = v
                .parse()
                .map_err(|_| format!("--faults: '{v}' is not a rate between 0 and 1"))?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("--faults: {k}={v} is outside 0..1"));
            }
            match k {
                "kill" => f.kill = rate,
                "fail" => f.fail = rate,
                "late" => f.late = rate,
                "jitter" => f.jitter = rate,
                "noise" => f.noise = rate,
                "buggify" => f.buggify = rate > 0.0,
                other => {
                    return Err(format!(
                        "--faults: unknown fault '{other}' (known: {})",
                        KINDS.join(", ")
                    ))
                }
            }
        }
        Ok(f)
    }

    /// Swarm testing: each seed gets its own mix, some faults off entirely.
    pub fn draw(rng: &mut ChaCha8Rng) -> Faults {
        let mut pick = |max: f64| swarm_rate(rng, max);
        Faults {
            kill: pick(0.005),
            fail: pick(0.2),
            late: pick(0.3),
            jitter: pick(0.5),
            noise: pick(0.02),
            buggify: pick(1.0) > 0.0,
            gate: Default::default(),
        }
    }

    pub fn is_none(&self) -> bool {
        *self == Faults::none()
    }

    pub fn describe(&self) -> String {
        if self.is_none() {
            return "none".into();
        }
        let mut parts = Vec::new();
        for (k, v) in [
            ("kill", self.kill),
            ("fail", self.fail),
            ("late", self.late),
            ("jitter", self.jitter),
            ("noise", self.noise),
        ] {
            if v > 0.0 {
                // Shortest text that reads back as the same f64: replay lines are exact.
                parts.push(format!("{k}={v}"));
            }
        }
        if self.buggify {
            parts.push("buggify".into());
        }
        parts.join(",")
    }
}

/// A swarm draw of one fault rate: off for about half the seeds, else uniform below `max`.
pub(crate) fn swarm_rate(rng: &mut ChaCha8Rng, max: f64) -> f64 {
    let on = rng.next_u64().is_multiple_of(2);
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    if on {
        unit * max
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn parses_and_round_trips() {
        let f = Faults::parse("kill=0.01,late=0.5,buggify").unwrap();
        assert_eq!(f.kill, 0.01);
        assert_eq!(f.late, 0.5);
        assert!(f.buggify);
        assert_eq!(
            Faults::parse(&f.describe()).unwrap().describe(),
            f.describe()
        );
        assert!(Faults::parse("explode=1")
            .unwrap_err()
            .contains("unknown fault"));
        assert!(Faults::parse("kill=2").is_err());
        assert!(Faults::parse("none").unwrap().is_none());
    }

    #[test]
    fn drawn_rates_replay_exactly() {
        for seed in 0..300 {
            let f = Faults::draw(&mut ChaCha8Rng::seed_from_u64(seed));
            let back = Faults::parse(&f.describe()).unwrap();
            assert_eq!(back, f, "seed {seed}: {}", f.describe());
        }
    }

    #[test]
    fn swarm_draws_depend_on_the_seed() {
        let a = Faults::draw(&mut ChaCha8Rng::seed_from_u64(1));
        let b = Faults::draw(&mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(a, b);
        let differ = (2..20).any(|s| Faults::draw(&mut ChaCha8Rng::seed_from_u64(s)) != a);
        assert!(differ);
    }
}
