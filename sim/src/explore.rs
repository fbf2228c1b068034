//! What a seed may reorder within what the runtime promises: which ready process runs next,
//! which of several timers due at one instant fires first, which ready coroutine resumes first.
//! Fixed by `--explore` or drawn per seed for a swarm; the delivery delay is its own setting.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explore {
    /// One step in this many, any ready process may run next (0: never, the queue's order).
    pub pick: u64,
    /// Timers due at the same instant fire in seeded order.
    pub ties: bool,
    /// Ready coroutines of a process resume in seeded order.
    pub coroutines: bool,
}

impl Default for Explore {
    fn default() -> Explore {
        Explore::all()
    }
}

impl Explore {
    /// Everything explored (the default).
    pub fn all() -> Explore {
        Explore {
            pick: 2,
            ties: true,
            coroutines: true,
        }
    }

    /// Nothing reordered beyond the delivery delay: the queues' own order.
    pub fn none() -> Explore {
        Explore {
            pick: 0,
            ties: false,
            coroutines: false,
        }
    }

    /// `all`, `none`, or a list like `pick=4,ties` (what is not named is off).
    pub fn parse(spec: &str) -> Result<Explore, String> {
        let mut e = Explore::none();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                _ if part == "none" => {}
                _ if part == "all" => e = Explore::all(),
                _ if part == "ties" => e.ties = true,
                _ if part == "coroutines" => e.coroutines = true,
                Some(("pick", n)) => {
                    e.pick = n.parse().map_err(|_| {
                        format!("--explore: pick={n}: give N, for one step in N (0: never)")
                    })?
                }
                _ => {
                    return Err(format!(
                        "--explore: unknown '{part}' (known: all, none, pick=N, ties, coroutines)"
                    ))
                }
            }
        }
        Ok(e)
    }

    /// The text `parse` reads back as the same settings.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.pick > 0 {
            parts.push(format!("pick={}", self.pick));
        }
        if self.ties {
            parts.push("ties".into());
        }
        if self.coroutines {
            parts.push("coroutines".into());
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }

    /// Swarm testing: each seed draws how much it reorders, from a stream of its own (the
    /// seed's fault and network draws stay as they were).
    pub fn draw(seed: u64) -> Explore {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4558_504C_4F52_4500);
        const PICKS: [u64; 4] = [0, 1, 2, 4];
        Explore {
            pick: PICKS[(rng.next_u64() % PICKS.len() as u64) as usize],
            ties: !rng.next_u64().is_multiple_of(4),
            coroutines: !rng.next_u64().is_multiple_of(4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reads_back() {
        assert_eq!(Explore::parse("all").unwrap(), Explore::all());
        assert_eq!(Explore::parse("none").unwrap(), Explore::none());
        let e = Explore::parse("pick=4,coroutines").unwrap();
        assert_eq!((e.pick, e.ties, e.coroutines), (4, false, true));
        assert!(Explore::parse("pick=x").is_err());
        assert!(Explore::parse("shuffle").unwrap_err().contains("unknown"));
        for seed in 0..300 {
            let d = Explore::draw(seed);
            assert_eq!(Explore::parse(&d.describe()).unwrap(), d, "seed {seed}");
        }
    }

    #[test]
    fn swarm_draws_vary_with_the_seed() {
        let draws: Vec<Explore> = (0..40).map(Explore::draw).collect();
        assert_eq!(Explore::draw(7), draws[7]);
        assert!(draws.iter().any(|d| d.pick == 0) && draws.iter().any(|d| d.pick == 4));
        assert!(draws.iter().any(|d| !d.ties) && draws.iter().any(|d| d.coroutines));
    }
}
