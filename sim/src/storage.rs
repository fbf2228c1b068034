//! Storage faults and crash-restart durability (`weft sim --storage ...`).
//!
//! With storage on, the node's world keeps its SQL databases, `store.sql` stores and registry
//! history on a simulated disk (`weft_world::vfs`): files with a written and a durable image,
//! seeded I/O errors, sync errors, lost fsyncs and torn writes at a crash. The node crashes
//! (engine, VM and world dropped, only the durable images kept) and restarts from what was
//! durably written. The simulator, not the app, checks durability: every world command that
//! wrote and was answered ok (an SQL statement outside a transaction, a `COMMIT`, a store
//! write, a registry commit or head move) is an acknowledgement, recorded as a digest of each
//! database's content when it was answered. After every restart each database must hold the
//! content of its last acknowledged write (or a later state no one was told about); anything
//! older lost an acknowledged write and fails the seed, naming that write.

use crate::check::Violation;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;
use std::collections::{BTreeMap, BTreeSet};
use weft_engine::world::{TxOp, WorldCommand};
use weft_world::vfs::{DiskFaults, SimDisk};
use weft_world::World;

/// Storage fault kinds, in report order (`crash` and `torn` per crash, the others per I/O).
pub const STORAGE_KINDS: &[&str] = &["crash", "ioerr", "syncerr", "fsyncloss", "torn"];
/// Clock fault kinds (`--clock`).
pub const CLOCK_KINDS: &[&str] = &["clockjump"];

/// Storage settings of a run: off (databases in memory, as before), or a simulated disk with
/// these fault rates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageFaults {
    /// The world runs on a simulated disk (any spec but `none`).
    pub on: bool,
    /// Per step: the node crashes and restarts from its durable files.
    pub crash: f64,
    pub disk: DiskFaults,
    /// Planted durability bug: SQL databases acknowledge commits without syncing
    /// (`PRAGMA synchronous=OFF`); `--plant nosync`.
    pub nosync: bool,
}

impl StorageFaults {
    pub fn none() -> StorageFaults {
        StorageFaults::default()
    }

    /// `none`, `disk` (the simulated disk, no faults), `all`, or a list like
    /// `crash=0.002,ioerr=0.01,syncerr=0.01,fsyncloss=0.01,torn=0.5`.
    pub fn parse(spec: &str) -> Result<StorageFaults, String> {
        let mut f = StorageFaults::none();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "none" => continue,
                "disk" => {
                    f.on = true;
                    continue;
                }
                "all" => {
                    f = StorageFaults {
                        on: true,
                        crash: 0.002,
                        disk: DiskFaults {
                            ioerr: 0.005,
                            syncerr: 0.01,
                            fsyncloss: 0.0,
                            torn: 0.5,
                        },
                        nosync: f.nosync,
                    };
                    continue;
                }
                _ => {}
            }
            let (k, v) = part.split_once('=').unwrap_or((part, "0.05"));
            let rate: f64 = v
                .parse()
                .map_err(|_| format!("--storage: '{v}' is not a rate between 0 and 1"))?;
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("--storage: {k}={v} is outside 0..1"));
            }
            f.on = true;
            match k {
                "crash" => f.crash = rate,
                "ioerr" => f.disk.ioerr = rate,
                "syncerr" => f.disk.syncerr = rate,
                "fsyncloss" => f.disk.fsyncloss = rate,
                "torn" => f.disk.torn = rate,
                other => {
                    return Err(format!(
                        "--storage: unknown fault '{other}' (known: {}, or disk, all, none)",
                        STORAGE_KINDS.join(", ")
                    ))
                }
            }
        }
        Ok(f)
    }

    /// Swarm testing: a seed's own mix. Crashes always fire (they are what is tested); each
    /// I/O fault is on for about half the seeds. Lost fsyncs stay off: a disk that lies about
    /// syncing loses acknowledged writes by definition (`--storage fsyncloss=...` shows the
    /// checker catching that).
    pub fn draw(rng: &mut ChaCha8Rng, nosync: bool) -> StorageFaults {
        let mut pick = |max: f64| crate::faults::swarm_rate(rng, max);
        let crash = 0.0005 + pick(0.005);
        let disk = DiskFaults {
            ioerr: pick(0.02),
            syncerr: pick(0.05),
            fsyncloss: 0.0,
            torn: pick(1.0),
        };
        StorageFaults {
            on: true,
            crash,
            disk,
            nosync,
        }
    }

    /// The `--storage` text that parses back to these settings (the plant travels as
    /// `--plant nosync`).
    pub fn describe(&self) -> String {
        if !self.on {
            return "none".into();
        }
        let mut parts = Vec::new();
        for (k, v) in [
            ("crash", self.crash),
            ("ioerr", self.disk.ioerr),
            ("syncerr", self.disk.syncerr),
            ("fsyncloss", self.disk.fsyncloss),
            ("torn", self.disk.torn),
        ] {
            if v > 0.0 {
                parts.push(format!("{k}={v}"));
            }
        }
        if parts.is_empty() {
            "disk".into()
        } else {
            parts.join(",")
        }
    }
}

/// Wall clock faults the app sees through `time.now()` / `os.time()`: a skew drawn per seed
/// (up to `skew_ns` either way, per incarnation) and jumps forward or back (per step, up to
/// `JUMP_MAX_NS` either way). Monotonic time (`os.clock()`, timers) never moves with them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClockFaults {
    pub skew_ns: u64,
    pub jump: f64,
}

/// The largest wall clock jump, either way.
pub const JUMP_MAX_NS: u64 = 300_000_000_000;

impl ClockFaults {
    /// `none`, or a list like `skew=1h,jump=0.001`.
    pub fn parse(spec: &str) -> Result<ClockFaults, String> {
        let mut c = ClockFaults::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "none" {
                continue;
            }
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!(
                    "--clock: use skew=DURATION or jump=RATE, not '{part}'"
                ));
            };
            match k {
                "skew" => {
                    c.skew_ns = weft_engine::duration::parse(v)
                        .map_err(|e| format!("--clock skew: {e}"))?
                        .max(0) as u64
                }
                "jump" => {
                    c.jump = v
                        .parse()
                        .ok()
                        .filter(|r| (0.0..=1.0).contains(r))
                        .ok_or_else(|| format!("--clock: jump={v} is not a rate in 0..1"))?
                }
                other => return Err(format!("--clock: unknown setting '{other}' (skew, jump)")),
            }
        }
        Ok(c)
    }

    pub fn is_none(&self) -> bool {
        self.skew_ns == 0 && self.jump == 0.0
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.skew_ns > 0 {
            parts.push(format!(
                "skew={}",
                weft_engine::duration::format(self.skew_ns as i64)
            ));
        }
        if self.jump > 0.0 {
            parts.push(format!("jump={}", self.jump));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }

    /// The wall clock offset incarnation `incarnation` starts with.
    pub fn skew(&self, seed: u64, incarnation: u64) -> i64 {
        use rand_core::SeedableRng;
        if self.skew_ns == 0 {
            return 0;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC10C_C10C ^ (incarnation << 40));
        let span = 2 * self.skew_ns + 1;
        (rng.next_u64() % span) as i64 - self.skew_ns as i64
    }
}

/// A new simulated disk whose faults draw from a stream of the seed of their own (so turning
/// storage on leaves the scheduling draws as they were).
pub fn new_disk(seed: u64, s: &StorageFaults) -> SimDisk {
    use rand_core::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xD15C_D15C_D15C_D15C);
    let disk = SimDisk::new(s.disk.clone(), Box::new(move || rng.next_u64()));
    disk.plant_nosync(s.nosync);
    disk
}

/// The last acknowledged write to one database.
#[derive(Clone, Debug)]
struct Ack {
    digest: u64,
    what: String,
    at: u64,
}

/// The simulator's record of acknowledged writes, per database, and the check after restarts.
pub(crate) struct Durability {
    pub(crate) disk: SimDisk,
    acked: BTreeMap<String, Ack>,
    /// States a database may also be found in: written but never acknowledged (boot writes,
    /// failed commands), since its last acknowledgement.
    allowed: BTreeMap<String, BTreeSet<u64>>,
    pub(crate) acks: u64,
    pub(crate) checks: u64,
}

/// What a world command writes, when it writes: its description in violation reports.
pub(crate) fn write_of(cmd: &WorldCommand) -> Option<String> {
    use WorldCommand::*;
    let short = |s: &str| {
        let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if s.chars().count() > 60 {
            format!("{}...", s.chars().take(60).collect::<String>())
        } else {
            s
        }
    };
    Some(match cmd {
        SqlExecute {
            db, tx: None, sql, ..
        } => format!("SQL execute on {db}: {}", short(sql)),
        SqlTx {
            db,
            op: TxOp::Commit,
            tx,
            ..
        } => format!("SQL COMMIT of transaction {tx} on {db}"),
        StoreSet { store, key, .. } => format!("store set {store} key '{key}'"),
        StorePut { store, key, .. } => format!("store put {store} key '{key}'"),
        StoreDelete { store, key, .. } => format!("store delete {store} key '{key}'"),
        RegistryCommit { version, .. } => format!("registry commit of version {version}"),
        RegistryHead { version } => format!("registry head moved to version {version}"),
        _ => return None,
    })
}

impl Durability {
    pub(crate) fn new(disk: SimDisk) -> Durability {
        Durability {
            disk,
            acked: BTreeMap::new(),
            allowed: BTreeMap::new(),
            acks: 0,
            checks: 0,
        }
    }

    fn digests(&self, world: &mut World) -> Vec<(String, Option<u64>)> {
        let was = self.disk.set_quiet(true);
        let d = world.durable_digests();
        self.disk.set_quiet(was);
        d
    }

    /// A world command `what` was answered at `at` (ok or not): an ok answer acknowledges the
    /// content each database now has.
    pub(crate) fn answered(&mut self, world: &mut World, what: String, ok: bool, at: u64) {
        for (db, d) in self.digests(world) {
            let Some(d) = d else { continue };
            let same = self.acked.get(&db).is_some_and(|a| a.digest == d);
            if same {
                continue;
            }
            if ok {
                self.acks += 1;
                self.acked.insert(
                    db.clone(),
                    Ack {
                        digest: d,
                        what: what.clone(),
                        at,
                    },
                );
                self.allowed.remove(&db);
            } else {
                self.allowed.entry(db).or_default().insert(d);
            }
        }
    }

    /// After a boot: what the boot itself wrote (a registry version of the app's files) may
    /// be found after the next crash too, and is no acknowledgement.
    pub(crate) fn booted(&mut self, world: &mut World) {
        for (db, d) in self.digests(world) {
            if let Some(d) = d {
                if self.acked.get(&db).is_none_or(|a| a.digest != d) {
                    self.allowed.entry(db).or_default().insert(d);
                }
            }
        }
    }

    /// After a restart, before the new node boots: every database holds its last
    /// acknowledged write (or a later state).
    pub(crate) fn check(&mut self, world: &mut World, crash: u64) -> Option<Violation> {
        self.checks += 1;
        let now: BTreeMap<String, Option<u64>> = self.digests(world).into_iter().collect();
        for (db, ack) in &self.acked {
            let found = now.get(db).copied().flatten();
            let fine = found.is_some_and(|d| {
                d == ack.digest || self.allowed.get(db).is_some_and(|a| a.contains(&d))
            });
            if !fine {
                let state = match found {
                    None => "is gone".to_string(),
                    Some(d) => format!("holds another state (digest {d:016x})"),
                };
                return Some(Violation {
                    invariant: "no acknowledged write is lost",
                    detail: format!(
                        "after crash {crash}, database {db} {state}: the acknowledged {} \
                         (answered ok at {}) is lost",
                        ack.what,
                        weft_engine::duration::format(ack.at as i64)
                    ),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn storage_specs_round_trip_and_refuse_nonsense() {
        let f = StorageFaults::parse("crash=0.01,ioerr=0.002,torn=0.5").unwrap();
        assert!(f.on);
        assert_eq!(f.crash, 0.01);
        assert_eq!(f.disk.torn, 0.5);
        assert_eq!(StorageFaults::parse(&f.describe()).unwrap(), f);
        assert_eq!(StorageFaults::parse("disk").unwrap().describe(), "disk");
        assert!(!StorageFaults::parse("none").unwrap().on);
        assert!(StorageFaults::parse("melt=1")
            .unwrap_err()
            .contains("unknown fault"));
        assert!(StorageFaults::parse("crash=3").is_err());
        for seed in 0..200 {
            let f = StorageFaults::draw(&mut ChaCha8Rng::seed_from_u64(seed), false);
            assert!(f.crash > 0.0);
            assert_eq!(
                StorageFaults::parse(&f.describe()).unwrap(),
                f,
                "seed {seed}"
            );
        }
    }
}
