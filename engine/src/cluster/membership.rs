//! SWIM membership through the `foca` crate, sans-IO: which nodes of the cluster are up.
//!
//! `Membership` wraps one `foca::Foca` so that it is driven only by the node's clock (every call
//! takes `now`, nanoseconds; foca's timers become deadlines kept here in `(deadline, order)`
//! order and fired by `handle_timeout`) and by a seeded generator (`rand_chacha`, as the node's
//! own). It reads datagrams (`handle_datagram`) and yields `Output`s: datagrams to send to a
//! peer's address and membership `Event`s, up and down with a reason. Nothing here touches the
//! OS: the driver (or the simulator's network) carries the datagrams.
//!
//! A member's identity is its node name, the address peers reach it at, the node's incarnation
//! (a restarted node is a new incarnation: the driver hands a larger one, such as its start
//! time, and the others see the old incarnation down with `DownReason::Restarted`) and a rejoin
//! counter that foca bumps on its own when the cluster declared this node down while it was
//! still running (after a partition heals it rejoins under the next counter: same node, same
//! incarnation, same PIDs). foca tells members apart by address, so two identities at one
//! address are one member, and the newer `(incarnation, rejoin)` wins.
//!
//! Datagrams carry a check of the cluster's secret in their header: a peer with another key is
//! refused (`MembershipError::Rejected`) and never joins.

use crate::pid::NodeId;
use crate::value::codec::{CodecError, Reader};
use bytes::{Buf, BufMut};
use foca::{AccumulatingRuntime, Config, Foca, Header, Member, Message, OwnedNotification, Timer};
use hmac::{Hmac, Mac};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::Sha256;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

/// Nanoseconds on the node's clock (`node::Instant`).
pub type Instant = u64;

/// Who a member is. See the module comment for what each part means.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemberId {
    pub node: NodeId,
    pub addr: String,
    pub incarnation: u64,
    pub rejoin: u16,
}

impl foca::Identity for MemberId {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(MemberId {
            rejoin: self.rejoin.checked_add(1)?,
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, self.rejoin) > (adversary.incarnation, adversary.rejoin)
    }
}

/// Why a node is down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// SWIM confirmed it down: it stopped answering probes (past suspicion) or it left.
    Confirmed,
    /// It came back as a new incarnation: everything of the old one is gone.
    Restarted { incarnation: u64 },
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::Confirmed => f.write_str("unreachable or left (confirmed by SWIM)"),
            DownReason::Restarted { incarnation } => {
                write!(f, "restarted as incarnation {incarnation}")
            }
        }
    }
}

/// A change of the membership as this node sees it. Each incarnation of a node goes up at most
/// once and down at most once after it went up; a node that was cut off and came back without
/// restarting goes up again with the same incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Up {
        node: NodeId,
        addr: String,
        incarnation: u64,
    },
    Down {
        node: NodeId,
        incarnation: u64,
        reason: DownReason,
    },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `bytes` to the member at `addr` (`node` is None when only the address is known: a
    /// join through a seed address).
    Datagram {
        node: Option<NodeId>,
        addr: String,
        bytes: Vec<u8>,
    },
    Event(Event),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipError {
    /// A node name or address longer than 255 bytes, or an empty one.
    BadIdentity(String),
    /// A datagram that was refused (garbage, another cluster's key, too big); counted.
    Rejected(String),
    /// foca refused an operation (such as joining through our own address).
    Swim(String),
}

impl fmt::Display for MembershipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipError::BadIdentity(m) => write!(f, "bad member identity: {m}"),
            MembershipError::Rejected(m) => write!(f, "membership datagram refused: {m}"),
            MembershipError::Swim(m) => write!(f, "membership: {m}"),
        }
    }
}

impl std::error::Error for MembershipError {}

/// How a node takes part in membership.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    pub node: NodeId,
    /// The address peers send datagrams to (`host:port`; opaque here).
    pub addr: String,
    /// This run of the node; a restart must hand a larger one.
    pub incarnation: u64,
    /// The cluster's secret key; members with another key never join.
    pub secret: Vec<u8>,
    /// Seeds the generator behind probe targets and gossip fan-out.
    pub seed: u64,
    /// foca's timing (probe period, suspicion, gossip); `swim_config` gives the defaults.
    pub swim: Config,
}

impl MembershipConfig {
    pub fn new(
        node: NodeId,
        addr: impl Into<String>,
        incarnation: u64,
        secret: &[u8],
        seed: u64,
    ) -> Self {
        MembershipConfig {
            node,
            addr: addr.into(),
            incarnation,
            secret: secret.to_vec(),
            seed,
            swim: swim_config(),
        }
    }
}

/// foca's LAN settings (1 s probes, 500 ms probe round trip, suspicion of 4 probe periods),
/// except that members declared down are re-announced to every 5 s instead of 65 s, so a
/// healed partition converges within seconds.
pub fn swim_config() -> Config {
    let mut c = Config::new_lan(NonZeroU32::new(8).expect("nonzero"));
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(5),
        num_members: NonZeroUsize::new(2).expect("nonzero"),
    });
    c
}

/// Counters for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Datagrams refused (garbage, another cluster, too big).
    pub rejected: u64,
    /// Times the cluster declared this node down while it ran and it rejoined.
    pub rejoins: u64,
    /// Errors foca returned from timers (logged by the caller, not fatal).
    pub timer_errors: u64,
}

/// The node's generator, seen through the rand 0.10 traits foca is written against.
struct SwimRng(ChaCha8Rng);

impl rand_core_010::TryRng for SwimRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

/// One member of the cluster's SWIM membership. See the module comment.
pub struct Membership {
    foca: Foca<MemberId, WireCodec, SwimRng, foca::NoCustomBroadcast>,
    runtime: AccumulatingRuntime<MemberId>,
    timers: BTreeMap<(Instant, u64), Timer<MemberId>>,
    timer_order: u64,
    /// Members reported up and not since down, by address.
    up: BTreeMap<String, MemberId>,
    out: VecDeque<Output>,
    left: bool,
    stats: Stats,
}

fn check_identity(node: &str, addr: &str) -> Result<(), MembershipError> {
    for (what, s) in [("node", node), ("address", addr)] {
        if s.is_empty() || s.len() > 255 {
            return Err(MembershipError::BadIdentity(format!(
                "{what} {s:?} must be 1 to 255 bytes"
            )));
        }
    }
    Ok(())
}

impl Membership {
    pub fn new(cfg: MembershipConfig) -> Result<Membership, MembershipError> {
        check_identity(cfg.node.as_str(), &cfg.addr)?;
        let me = MemberId {
            node: cfg.node,
            addr: cfg.addr,
            incarnation: cfg.incarnation,
            rejoin: 0,
        };
        let codec = WireCodec {
            key_check: key_check(&cfg.secret),
        };
        let rng = SwimRng(ChaCha8Rng::seed_from_u64(cfg.seed));
        Ok(Membership {
            foca: Foca::new(me, cfg.swim, rng, codec),
            runtime: AccumulatingRuntime::new(),
            timers: BTreeMap::new(),
            timer_order: 0,
            up: BTreeMap::new(),
            out: VecDeque::new(),
            left: false,
            stats: Stats::default(),
        })
    }

    /// This member's identity now (its rejoin counter moves when it rejoins).
    pub fn identity(&self) -> &MemberId {
        self.foca.identity()
    }

    /// Joins the cluster through a seed address (any member's).
    pub fn join(&mut self, now: Instant, seed_addr: &str) -> Result<(), MembershipError> {
        let seed = MemberId {
            node: NodeId::named(""),
            addr: seed_addr.to_string(),
            incarnation: 0,
            rejoin: 0,
        };
        let r = self.foca.announce(seed, &mut self.runtime);
        self.drain(now);
        r.map_err(|e| MembershipError::Swim(e.to_string()))
    }

    /// A datagram a peer sent. A refused one is counted and returned as `Rejected`; the
    /// membership goes on either way.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) -> Result<(), MembershipError> {
        if self.left {
            return Ok(());
        }
        self.stats.datagrams_in += 1;
        let r = self.foca.handle_data(bytes, &mut self.runtime);
        self.drain(now);
        r.map_err(|e| {
            self.stats.rejected += 1;
            MembershipError::Rejected(e.to_string())
        })
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Fires every timer due at `now`, in deadline order (and in the order they were set for
    /// equal deadlines).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now || self.left {
                break;
            }
            let timer = entry.remove();
            if self.foca.handle_timer(timer, &mut self.runtime).is_err() {
                self.stats.timer_errors += 1;
            }
            self.drain(now);
        }
    }

    /// Leaves the cluster gracefully (on shutdown): the others see this node down at once
    /// instead of after suspicion. Nothing is handled afterwards.
    pub fn leave(&mut self, now: Instant) -> Result<(), MembershipError> {
        let r = self.foca.leave_cluster(&mut self.runtime);
        self.drain(now);
        self.left = true;
        self.timers.clear();
        r.map_err(|e| MembershipError::Swim(e.to_string()))
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The members up now, by address.
    pub fn members_up(&self) -> impl Iterator<Item = &MemberId> {
        self.up.values()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Moves what foca asked for into outputs and deadlines.
    fn drain(&mut self, now: Instant) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.stats.datagrams_out += 1;
            let node = (!to.node.as_str().is_empty()).then(|| to.node.clone());
            self.out.push_back(Output::Datagram {
                node,
                addr: to.addr,
                bytes: data.to_vec(),
            });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let at = now.saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX));
            self.timer_order += 1;
            self.timers.insert((at, self.timer_order), timer);
        }
        while let Some(n) = self.runtime.to_notify() {
            self.notified(n);
        }
    }

    fn notified(&mut self, n: OwnedNotification<MemberId>) {
        match n {
            OwnedNotification::MemberUp(m) => {
                if self.up.get(&m.addr) != Some(&m) {
                    let replaced = self.up.insert(m.addr.clone(), m.clone());
                    self.replaced(replaced, &m);
                }
            }
            OwnedNotification::MemberDown(m) => {
                if self.up.get(&m.addr) == Some(&m) {
                    self.up.remove(&m.addr);
                    self.out.push_back(Output::Event(Event::Down {
                        node: m.node,
                        incarnation: m.incarnation,
                        reason: DownReason::Confirmed,
                    }));
                }
            }
            OwnedNotification::Rename(old, new) => {
                // Only a member we hold as up matters: one that was down goes up through
                // `MemberUp` if the new identity is alive.
                if self.up.get(&old.addr) == Some(&old) {
                    self.up.insert(new.addr.clone(), new.clone());
                    self.replaced(Some(old), &new);
                }
            }
            OwnedNotification::Rejoin(_) => self.stats.rejoins += 1,
            OwnedNotification::Active | OwnedNotification::Idle | OwnedNotification::Defunct => {}
        }
    }

    /// `new` is up in place of `old` (if any): a new incarnation (or another node at that
    /// address) takes the old one down first; a rejoin of the same incarnation is not news.
    fn replaced(&mut self, old: Option<MemberId>, new: &MemberId) {
        if let Some(old) = old {
            if old.node == new.node && old.incarnation == new.incarnation {
                return;
            }
            self.out.push_back(Output::Event(Event::Down {
                node: old.node,
                incarnation: old.incarnation,
                reason: DownReason::Restarted {
                    incarnation: new.incarnation,
                },
            }));
        }
        self.out.push_back(Output::Event(Event::Up {
            node: new.node.clone(),
            addr: new.addr.clone(),
            incarnation: new.incarnation,
        }));
    }
}

/// The member a datagram says it is from (node, incarnation), read from its header without any
/// check but the layout: after `handle_datagram` took it, a sign that the member is alive.
pub fn datagram_sender(bytes: &[u8]) -> Option<(NodeId, u64)> {
    let mut r = Reader::new(bytes);
    if r.take(2).ok()? != SWIM_MAGIC || r.u8().ok()? != SWIM_VERSION {
        return None;
    }
    r.take(8).ok()?;
    let id = get_id(&mut r).ok()?;
    Some((id.node, id.incarnation))
}

// ---- the datagram encoding ----------------------------------------------------------------------

/// Datagram magic and version; the version is checked like the relay frames' (`frame::VERSION`).
const SWIM_MAGIC: [u8; 2] = *b"WS";
const SWIM_VERSION: u8 = 1;

/// The first 8 bytes of HMAC-SHA256(secret, "weft-swim-v1"): not a signature of the datagram,
/// only a check that both ends were given the same key.
fn key_check(secret: &[u8]) -> [u8; 8] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"weft-swim-v1");
    let full = m.finalize().into_bytes();
    let mut out = [0u8; 8];
    out.copy_from_slice(&full[..8]);
    out
}

/// Why a datagram did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    BadMagic,
    UnsupportedVersion(u8),
    /// The sender holds another cluster secret.
    OtherCluster,
    BadMessage(u8),
    BadState(u8),
    BadText,
    Codec(CodecError),
    /// The encoded item does not fit the space foca left for it.
    NoRoom,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadMagic => f.write_str("not a membership datagram"),
            WireError::UnsupportedVersion(v) => write!(f, "membership version {v} not supported"),
            WireError::OtherCluster => f.write_str("sender holds another cluster secret key"),
            WireError::BadMessage(t) => write!(f, "unknown message {t}"),
            WireError::BadState(s) => write!(f, "unknown member state {s}"),
            WireError::BadText => f.write_str("node or address is not UTF-8"),
            WireError::Codec(e) => write!(f, "{e}"),
            WireError::NoRoom => f.write_str("no room in the datagram"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<CodecError> for WireError {
    fn from(e: CodecError) -> Self {
        WireError::Codec(e)
    }
}

struct WireCodec {
    key_check: [u8; 8],
}

fn put_text(s: &str, out: &mut Vec<u8>) {
    // Identities are checked to 1..=255 bytes when made; a longer text from elsewhere is cut
    // at 255 so the length byte stays true.
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_id(id: &MemberId, out: &mut Vec<u8>) {
    put_text(id.node.as_str(), out);
    put_text(&id.addr, out);
    out.extend_from_slice(&id.incarnation.to_le_bytes());
    out.extend_from_slice(&id.rejoin.to_le_bytes());
}

fn get_text(r: &mut Reader<'_>) -> Result<String, WireError> {
    let n = r.u8()? as usize;
    std::str::from_utf8(r.take(n)?)
        .map(str::to_owned)
        .map_err(|_| WireError::BadText)
}

fn get_u16(r: &mut Reader<'_>) -> Result<u16, WireError> {
    let b = r.take(2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn get_id(r: &mut Reader<'_>) -> Result<MemberId, WireError> {
    let node = get_text(r)?;
    let addr = get_text(r)?;
    Ok(MemberId {
        node: NodeId::named(&node),
        addr,
        incarnation: r.u64()?,
        rejoin: get_u16(r)?,
    })
}

/// Writes `bytes` only when they fit (foca's rule: no half-written item).
fn put_all(bytes: &[u8], mut buf: impl BufMut) -> Result<(), WireError> {
    if buf.remaining_mut() < bytes.len() {
        return Err(WireError::NoRoom);
    }
    buf.put_slice(bytes);
    Ok(())
}

/// Reads one item from the front of `buf` (contiguous, as foca promises) and advances it.
fn read_from<T>(
    mut buf: impl Buf,
    f: impl FnOnce(&mut Reader<'_>) -> Result<T, WireError>,
) -> Result<T, WireError> {
    let chunk = buf.chunk();
    let mut r = Reader::new(chunk);
    let v = f(&mut r)?;
    let used = chunk.len() - r.remaining();
    buf.advance(used);
    Ok(v)
}

impl foca::Codec<MemberId> for WireCodec {
    type Error = WireError;

    fn encode_header(&mut self, h: &Header<MemberId>, buf: impl BufMut) -> Result<(), WireError> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(&SWIM_MAGIC);
        out.push(SWIM_VERSION);
        out.extend_from_slice(&self.key_check);
        put_id(&h.src, &mut out);
        out.extend_from_slice(&h.src_incarnation.to_le_bytes());
        put_id(&h.dst, &mut out);
        let (tag, other, probe) = match &h.message {
            Message::Ping(p) => (0, None, Some(*p)),
            Message::Ack(p) => (1, None, Some(*p)),
            Message::PingReq {
                target,
                probe_number,
            } => (2, Some(target), Some(*probe_number)),
            Message::IndirectPing {
                origin,
                probe_number,
            } => (3, Some(origin), Some(*probe_number)),
            Message::IndirectAck {
                target,
                probe_number,
            } => (4, Some(target), Some(*probe_number)),
            Message::ForwardedAck {
                origin,
                probe_number,
            } => (5, Some(origin), Some(*probe_number)),
            Message::Announce => (6, None, None),
            Message::Feed => (7, None, None),
            Message::Gossip => (8, None, None),
            Message::Broadcast => (9, None, None),
            Message::TurnUndead => (10, None, None),
        };
        out.push(tag);
        if let Some(id) = other {
            put_id(id, &mut out);
        }
        if let Some(p) = probe {
            out.push(p);
        }
        put_all(&out, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<MemberId>, WireError> {
        let key_check = self.key_check;
        read_from(buf, |r| {
            if r.take(2)? != SWIM_MAGIC {
                return Err(WireError::BadMagic);
            }
            let v = r.u8()?;
            if v != SWIM_VERSION {
                return Err(WireError::UnsupportedVersion(v));
            }
            if r.take(8)? != key_check {
                return Err(WireError::OtherCluster);
            }
            let src = get_id(r)?;
            let src_incarnation = get_u16(r)?;
            let dst = get_id(r)?;
            let message = match r.u8()? {
                0 => Message::Ping(r.u8()?),
                1 => Message::Ack(r.u8()?),
                2 => Message::PingReq {
                    target: get_id(r)?,
                    probe_number: r.u8()?,
                },
                3 => Message::IndirectPing {
                    origin: get_id(r)?,
                    probe_number: r.u8()?,
                },
                4 => Message::IndirectAck {
                    target: get_id(r)?,
                    probe_number: r.u8()?,
                },
                5 => Message::ForwardedAck {
                    origin: get_id(r)?,
                    probe_number: r.u8()?,
                },
                6 => Message::Announce,
                7 => Message::Feed,
                8 => Message::Gossip,
                9 => Message::Broadcast,
                10 => Message::TurnUndead,
                t => return Err(WireError::BadMessage(t)),
            };
            Ok(Header {
                src,
                src_incarnation,
                dst,
                message,
            })
        })
    }

    fn encode_member(&mut self, m: &Member<MemberId>, buf: impl BufMut) -> Result<(), WireError> {
        let mut out = Vec::with_capacity(48);
        put_id(m.id(), &mut out);
        out.extend_from_slice(&m.incarnation().to_le_bytes());
        out.push(match m.state() {
            foca::State::Alive => 0,
            foca::State::Suspect => 1,
            foca::State::Down => 2,
        });
        put_all(&out, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<MemberId>, WireError> {
        read_from(buf, |r| {
            let id = get_id(r)?;
            let incarnation = get_u16(r)?;
            let state = match r.u8()? {
                0 => foca::State::Alive,
                1 => foca::State::Suspect,
                2 => foca::State::Down,
                s => return Err(WireError::BadState(s)),
            };
            Ok(Member::new(id, incarnation, state))
        })
    }
}

#[cfg(test)]
mod tests;
