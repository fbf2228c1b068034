//! What one collector knows about each other collector: address, served namespaces (versioned),
//! load (in-flight calls, EWMA latency) and health (a circuit breaker with exponential ejection).
//! Pure bookkeeping; the collector decides when to call these.

use super::Instant;
use std::collections::BTreeSet;

/// How a peer became known; membership wins over a Connect record for the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Weft node of the same cluster (membership gossip).
    Membership,
    /// A collector that called `Connect` on us, or that we connected to.
    Connect,
}

/// Outlier ejection per peer: closed (counting consecutive failures), open (ejected until an
/// instant), half-open (one probe call allowed; its outcome closes or re-opens the breaker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Clone, Debug)]
pub struct Peer {
    pub id: String,
    pub address: String,
    pub namespaces: BTreeSet<String>,
    /// Version of `namespaces`; an update with a version at or below it is stale and ignored.
    pub version: u64,
    pub source: Source,
    pub up: bool,
    pub in_flight: u32,
    /// Smoothed latency of answered calls, nanoseconds.
    pub ewma_ns: u64,
    pub breaker: Breaker,
    /// Times ejected without a successful probe since; sets the next ejection's length.
    pub ejections: u32,
}

/// Breaker and load-balancing parameters (named bounds, units in the names).
#[derive(Clone, Debug)]
pub struct Health {
    pub eject_after_failures: u32,
    pub eject_base_ns: u64,
    pub eject_max_ns: u64,
    /// Latency assumed for a peer with no answered call yet.
    pub initial_latency_ns: u64,
}

/// What a breaker transition means for logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    Ejected { until: Instant },
    Restored,
}

impl Peer {
    pub fn new(id: &str, address: &str, source: Source, health: &Health) -> Peer {
        Peer {
            id: id.to_string(),
            address: address.to_string(),
            namespaces: BTreeSet::new(),
            version: 0,
            source,
            up: true,
            in_flight: 0,
            ewma_ns: health.initial_latency_ns,
            breaker: Breaker::Closed { failures: 0 },
            ejections: 0,
        }
    }

    /// May a call go to this peer at `now`? Moves an expired ejection to half-open.
    pub fn available(&mut self, now: Instant) -> bool {
        if !self.up {
            return false;
        }
        match self.breaker {
            Breaker::Closed { .. } => true,
            Breaker::Open { until } if now >= until => {
                self.breaker = Breaker::HalfOpen { probing: false };
                true
            }
            Breaker::Open { .. } => false,
            Breaker::HalfOpen { probing } => !probing,
        }
    }

    /// A call leaves for this peer; in half-open it is the one probe.
    pub fn start(&mut self) {
        self.in_flight += 1;
        if let Breaker::HalfOpen { probing } = &mut self.breaker {
            *probing = true;
        }
    }

    /// A call to the peer was dropped before its answer (the caller cancelled it): it no longer
    /// counts as in flight, and says nothing about the peer's health.
    pub fn withdrawn(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Breaker::HalfOpen { probing } = &mut self.breaker {
            *probing = false;
        }
    }

    /// The peer answered (whatever the status): it is alive.
    pub fn success(&mut self, latency_ns: u64) -> Transition {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.ewma_ns =
            (self.ewma_ns.saturating_mul(7) / 10).saturating_add(latency_ns.saturating_mul(3) / 10);
        match self.breaker {
            Breaker::HalfOpen { .. } | Breaker::Open { .. } => {
                self.breaker = Breaker::Closed { failures: 0 };
                self.ejections = self.ejections.saturating_sub(1);
                Transition::Restored
            }
            Breaker::Closed { .. } => {
                self.breaker = Breaker::Closed { failures: 0 };
                Transition::None
            }
        }
    }

    /// A transport error or timeout: counts toward ejection; a failed probe re-ejects at once.
    pub fn failure(&mut self, now: Instant, h: &Health) -> Transition {
        self.in_flight = self.in_flight.saturating_sub(1);
        let eject = match &mut self.breaker {
            Breaker::Closed { failures } => {
                *failures += 1;
                *failures >= h.eject_after_failures
            }
            Breaker::HalfOpen { .. } => true,
            // Already ejected: a late failure of an older call changes nothing.
            Breaker::Open { .. } => false,
        };
        if !eject {
            return Transition::None;
        }
        let factor = 1u64 << self.ejections.min(20);
        let until = now.saturating_add(h.eject_base_ns.saturating_mul(factor).min(h.eject_max_ns));
        self.ejections += 1;
        self.breaker = Breaker::Open { until };
        Transition::Ejected { until }
    }

    /// Load score for power-of-two-choices: lower is better.
    pub fn score(&self) -> u128 {
        (self.in_flight as u128 + 1) * (self.ewma_ns.max(1) as u128)
    }
}
