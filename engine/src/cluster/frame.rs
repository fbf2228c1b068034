//! The relay frames nodes exchange over their connection: domain types and their binary
//! encoding. The transport (gRPC in the production driver, the simulated network in the
//! simulator) carries each encoded frame as one opaque byte string; no transport type enters
//! the engine.
//!
//! Encoding, version 1. Every frame is an envelope
//!
//! ```text
//! magic "WF" (2) | version (1) | kind (1) | body length (u32 LE) | body
//! ```
//!
//! and the body is the frame's fields in declaration order: integers little-endian (u64 unless
//! said), texts and byte strings as a u64 length and the bytes, booleans and option/variant
//! flags as one byte, a PID as its node, host and counter, values with the shared value codec
//! (`value::codec`). Decoding checks the magic, the version, the kind, that the declared length
//! is exactly the rest of the input (at most `MAX_FRAME_LEN`), every field's length against the
//! bytes left, and that the body is used up; any failure is a `FrameError` naming what was
//! wrong, never a panic.

use crate::pid::{NodeId, Pid};
use crate::value::codec::{self, CodecError, Reader};
use crate::value::{ErrorValue, Value};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

pub const MAGIC: [u8; 2] = *b"WF";
/// The encoding this node writes and the only one it reads.
pub const VERSION: u8 = 1;
/// The largest body a frame may declare; larger input is refused before it is read.
pub const MAX_FRAME_LEN: usize = 16 << 20;
/// Magic, version, kind and body length.
pub const HEADER_LEN: usize = 8;

/// Proof that a peer knows the cluster's secret: HMAC-SHA256 over the node and incarnation.
pub type Proof = [u8; 32];

/// The first frame on a connection: who is speaking, which incarnation of it (a restarted node
/// is a new incarnation, and frames about PIDs of an older one are dropped), and proof that it
/// holds the cluster's secret key (a peer with another key never joins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub node: NodeId,
    pub incarnation: u64,
    pub proof: Proof,
}

impl Hello {
    pub fn new(secret: &[u8], node: NodeId, incarnation: u64) -> Hello {
        let proof = proof(secret, &node, incarnation);
        Hello {
            node,
            incarnation,
            proof,
        }
    }

    /// Whether the peer that sent this knows `secret` (compared in constant time).
    pub fn verify(&self, secret: &[u8]) -> bool {
        mac(secret, &self.node, self.incarnation)
            .verify_slice(&self.proof)
            .is_ok()
    }
}

fn mac(secret: &[u8], node: &NodeId, incarnation: u64) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"weft-hello-v1\0");
    m.update(&(node.as_str().len() as u64).to_le_bytes());
    m.update(node.as_str().as_bytes());
    m.update(&incarnation.to_le_bytes());
    m
}

fn proof(secret: &[u8], node: &NodeId, incarnation: u64) -> Proof {
    mac(secret, node, incarnation)
        .finalize()
        .into_bytes()
        .into()
}

/// Where a message goes: a process, or a cluster-wide name resolved by the receiving node.
#[derive(Clone, Debug, PartialEq)]
pub enum Dest {
    Pid(Pid),
    Name(String),
}

/// A message. `seq` counts the sender node's messages on this connection (one per peer and
/// connection epoch), so the receiver can drop duplicates and check FIFO order.
#[derive(Clone, Debug, PartialEq)]
pub struct SendFrame {
    pub from: Option<Pid>,
    pub to: Dest,
    pub topic: String,
    pub payload: Vec<Value>,
    pub seq: u64,
}

/// A spawn on the receiving node for `caller`, answered by a `SpawnReply` carrying `tag`.
#[derive(Clone, Debug, PartialEq)]
pub struct SpawnRequest {
    pub caller: Pid,
    pub tag: u64,
    pub entry: String,
    /// The host on the receiving node (without its `node@` prefix).
    pub host: String,
    pub args: Vec<Value>,
    pub monitor: bool,
    pub link: bool,
    /// Register the child under this name once it exists.
    pub name: Option<String>,
}

/// The answer to a `SpawnRequest`: the child's PID or why there is none.
#[derive(Clone, Debug, PartialEq)]
pub struct SpawnReply {
    pub caller: Pid,
    pub tag: u64,
    pub result: Result<Pid, ErrorValue>,
}

/// A process's end as its watchers see it: the process's result, or its error.
pub type ExitResult = Result<Value, ErrorValue>;

/// Orders competing claims of one cluster-wide name. The smaller `(key, owner)` wins on every
/// node: `lamport` is the claiming node's logical clock when it claimed (so the earlier claim
/// wins after a partition heals), and the node name breaks ties.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClaimKey {
    pub lamport: u64,
    pub node: NodeId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameClaim {
    pub name: String,
    pub owner: Pid,
    pub key: ClaimKey,
}

impl NameClaim {
    /// Whether this claim beats `other` for the same name: the same answer on every node.
    pub fn wins_over(&self, other: &NameClaim) -> bool {
        (&self.key, &self.owner) < (&other.key, &other.owner)
    }
}

/// Everything one node tells another.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Hello(Hello),
    Send(SendFrame),
    SpawnRequest(SpawnRequest),
    SpawnReply(SpawnReply),
    /// `watcher` (on the sender) monitors `target` (on the receiver).
    Monitor {
        watcher: Pid,
        target: Pid,
    },
    Demonitor {
        watcher: Pid,
        target: Pid,
    },
    /// `from` (on the sender) links to `to` (on the receiver).
    Link {
        from: Pid,
        to: Pid,
    },
    Unlink {
        from: Pid,
        to: Pid,
    },
    /// `from` ended; `to` monitored it.
    Exit {
        from: Pid,
        to: Pid,
        result: ExitResult,
    },
    /// `from` ended; `to` was linked to it.
    LinkDown {
        from: Pid,
        to: Pid,
        result: ExitResult,
    },
    NameClaim(NameClaim),
    NameRelease {
        name: String,
        owner: Pid,
    },
    /// `from` asks `to` to stop (`process.cancel`); `to` sees a `pid.cancel` event.
    Cancel {
        from: Pid,
        to: Pid,
        reason: String,
    },
    /// `from` ends `to` at once (`process.terminate`).
    Terminate {
        from: Pid,
        to: Pid,
    },
    /// "Send me your claims": the sender holds none of the receiver's cluster-wide names
    /// (it saw the receiver down, which dropped them, and up again).
    NameSync,
    /// Collective dispatch: a request for the receiver's collector, sent by the sender's
    /// collector as its outbound call `call`; `timeout_ns` is what is left of the attempt
    /// (clocks of two nodes are not comparable, durations are). Answered by a `DispatchReply`.
    DispatchRequest {
        call: u64,
        timeout_ns: u64,
        request: crate::dispatch::Request,
    },
    /// The answer to a `DispatchRequest` `call`.
    DispatchReply {
        call: u64,
        response: crate::dispatch::Response,
    },
    /// The namespaces the sender's collector serves, at `version`; with `reply` the receiver
    /// answers with its own (sent when the sender saw the receiver come up).
    DispatchNamespaces {
        namespaces: Vec<String>,
        version: u64,
        reply: bool,
    },
    /// The sender's caller gave up on its `DispatchRequest` `call`: the receiver cancels the
    /// request (stopping its handler run) and answers it as canceled.
    DispatchCancel {
        call: u64,
    },
}

/// The kind byte of each frame.
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const SEND: u8 = 2;
    pub const SPAWN_REQUEST: u8 = 3;
    pub const SPAWN_REPLY: u8 = 4;
    pub const MONITOR: u8 = 5;
    pub const DEMONITOR: u8 = 6;
    pub const LINK: u8 = 7;
    pub const UNLINK: u8 = 8;
    pub const EXIT: u8 = 9;
    pub const LINK_DOWN: u8 = 10;
    pub const NAME_CLAIM: u8 = 11;
    pub const NAME_RELEASE: u8 = 12;
    pub const CANCEL: u8 = 13;
    pub const TERMINATE: u8 = 14;
    pub const NAME_SYNC: u8 = 15;
    pub const DISPATCH_REQUEST: u8 = 16;
    pub const DISPATCH_REPLY: u8 = 17;
    pub const DISPATCH_NAMESPACES: u8 = 18;
    pub const DISPATCH_CANCEL: u8 = 19;
}

impl Frame {
    pub fn kind(&self) -> u8 {
        match self {
            Frame::Hello(_) => kind::HELLO,
            Frame::Send(_) => kind::SEND,
            Frame::SpawnRequest(_) => kind::SPAWN_REQUEST,
            Frame::SpawnReply(_) => kind::SPAWN_REPLY,
            Frame::Monitor { .. } => kind::MONITOR,
            Frame::Demonitor { .. } => kind::DEMONITOR,
            Frame::Link { .. } => kind::LINK,
            Frame::Unlink { .. } => kind::UNLINK,
            Frame::Exit { .. } => kind::EXIT,
            Frame::LinkDown { .. } => kind::LINK_DOWN,
            Frame::NameClaim(_) => kind::NAME_CLAIM,
            Frame::NameRelease { .. } => kind::NAME_RELEASE,
            Frame::Cancel { .. } => kind::CANCEL,
            Frame::Terminate { .. } => kind::TERMINATE,
            Frame::NameSync => kind::NAME_SYNC,
            Frame::DispatchRequest { .. } => kind::DISPATCH_REQUEST,
            Frame::DispatchReply { .. } => kind::DISPATCH_REPLY,
            Frame::DispatchNamespaces { .. } => kind::DISPATCH_NAMESPACES,
            Frame::DispatchCancel { .. } => kind::DISPATCH_CANCEL,
        }
    }

    /// The frame's name, for logs and counters.
    pub fn name(&self) -> &'static str {
        kind_name(self.kind()).unwrap_or("?")
    }

    /// The frame's bytes: the envelope and the body. A body over `MAX_FRAME_LEN` is an error
    /// (the receiver would refuse it).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind());
        out.extend_from_slice(&[0; 4]);
        let mut w = Writer(&mut out);
        match self {
            Frame::Hello(h) => {
                w.node(&h.node);
                w.u64(h.incarnation);
                w.0.extend_from_slice(&h.proof);
            }
            Frame::Send(s) => {
                w.opt_pid(s.from.as_ref());
                match &s.to {
                    Dest::Pid(p) => {
                        w.u8(0);
                        w.pid(p);
                    }
                    Dest::Name(n) => {
                        w.u8(1);
                        w.str(n);
                    }
                }
                w.str(&s.topic);
                w.values(&s.payload);
                w.u64(s.seq);
            }
            Frame::SpawnRequest(r) => {
                w.pid(&r.caller);
                w.u64(r.tag);
                w.str(&r.entry);
                w.str(&r.host);
                w.values(&r.args);
                w.u8(u8::from(r.monitor));
                w.u8(u8::from(r.link));
                match &r.name {
                    None => w.u8(0),
                    Some(n) => {
                        w.u8(1);
                        w.str(n);
                    }
                }
            }
            Frame::SpawnReply(r) => {
                w.pid(&r.caller);
                w.u64(r.tag);
                match &r.result {
                    Ok(p) => {
                        w.u8(0);
                        w.pid(p);
                    }
                    Err(e) => {
                        w.u8(1);
                        w.error(e);
                    }
                }
            }
            Frame::Monitor { watcher, target } | Frame::Demonitor { watcher, target } => {
                w.pid(watcher);
                w.pid(target);
            }
            Frame::Link { from, to }
            | Frame::Unlink { from, to }
            | Frame::Terminate { from, to } => {
                w.pid(from);
                w.pid(to);
            }
            Frame::Cancel { from, to, reason } => {
                w.pid(from);
                w.pid(to);
                w.str(reason);
            }
            Frame::Exit { from, to, result } | Frame::LinkDown { from, to, result } => {
                w.pid(from);
                w.pid(to);
                match result {
                    Ok(v) => {
                        w.u8(0);
                        codec::encode(v, w.0);
                    }
                    Err(e) => {
                        w.u8(1);
                        w.error(e);
                    }
                }
            }
            Frame::NameClaim(c) => {
                w.str(&c.name);
                w.pid(&c.owner);
                w.u64(c.key.lamport);
                w.node(&c.key.node);
            }
            Frame::NameRelease { name, owner } => {
                w.str(name);
                w.pid(owner);
            }
            Frame::NameSync => {}
            Frame::DispatchRequest {
                call,
                timeout_ns,
                request,
            } => {
                w.u64(*call);
                w.u64(*timeout_ns);
                w.request(request);
            }
            Frame::DispatchReply { call, response } => {
                w.u64(*call);
                w.response(response);
            }
            Frame::DispatchNamespaces {
                namespaces,
                version,
                reply,
            } => {
                w.namespaces(namespaces);
                w.u64(*version);
                w.u8(u8::from(*reply));
            }
            Frame::DispatchCancel { call } => w.u64(*call),
        }
        let body = out.len() - HEADER_LEN;
        if body > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge(body as u64));
        }
        out[4..8].copy_from_slice(&(body as u32).to_le_bytes());
        Ok(out)
    }

    /// Reads one whole frame; anything wrong is a `FrameError`, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::Truncated("header"));
        }
        if bytes[0..2] != MAGIC {
            return Err(FrameError::BadMagic([bytes[0], bytes[1]]));
        }
        if bytes[2] != VERSION {
            return Err(FrameError::UnsupportedVersion(bytes[2]));
        }
        let k = bytes[3];
        let Some(name) = kind_name(k) else {
            return Err(FrameError::UnknownKind(k));
        };
        let declared = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as u64;
        if declared > MAX_FRAME_LEN as u64 {
            return Err(FrameError::TooLarge(declared));
        }
        let body = &bytes[HEADER_LEN..];
        if declared != body.len() as u64 {
            return Err(FrameError::LengthMismatch {
                declared,
                actual: body.len() as u64,
            });
        }
        let mut r = FrameReader(Reader::new(body));
        let frame = match k {
            kind::HELLO => {
                let node = r.node("hello.node")?;
                let incarnation = r.u64("hello.incarnation")?;
                let mut proof = [0u8; 32];
                proof.copy_from_slice(r.take(32, "hello.proof")?);
                Frame::Hello(Hello {
                    node,
                    incarnation,
                    proof,
                })
            }
            kind::SEND => {
                let from = r.opt_pid("send.from")?;
                let to = match r.u8("send.to")? {
                    0 => Dest::Pid(r.pid("send.to")?),
                    1 => Dest::Name(r.str("send.to")?),
                    b => {
                        return Err(FrameError::BadFlag {
                            field: "send.to",
                            byte: b,
                        })
                    }
                };
                Frame::Send(SendFrame {
                    from,
                    to,
                    topic: r.str("send.topic")?,
                    payload: r.values("send.payload")?,
                    seq: r.u64("send.seq")?,
                })
            }
            kind::SPAWN_REQUEST => Frame::SpawnRequest(SpawnRequest {
                caller: r.pid("spawn.caller")?,
                tag: r.u64("spawn.tag")?,
                entry: r.str("spawn.entry")?,
                host: r.str("spawn.host")?,
                args: r.values("spawn.args")?,
                monitor: r.bool("spawn.monitor")?,
                link: r.bool("spawn.link")?,
                name: match r.u8("spawn.name")? {
                    0 => None,
                    1 => Some(r.str("spawn.name")?),
                    b => {
                        return Err(FrameError::BadFlag {
                            field: "spawn.name",
                            byte: b,
                        })
                    }
                },
            }),
            kind::SPAWN_REPLY => {
                let caller = r.pid("spawn_reply.caller")?;
                let tag = r.u64("spawn_reply.tag")?;
                let result = match r.u8("spawn_reply.result")? {
                    0 => Ok(r.pid("spawn_reply.pid")?),
                    1 => Err(r.error("spawn_reply.error")?),
                    b => {
                        return Err(FrameError::BadFlag {
                            field: "spawn_reply.result",
                            byte: b,
                        })
                    }
                };
                Frame::SpawnReply(SpawnReply {
                    caller,
                    tag,
                    result,
                })
            }
            kind::MONITOR | kind::DEMONITOR => {
                let watcher = r.pid("monitor.watcher")?;
                let target = r.pid("monitor.target")?;
                if k == kind::MONITOR {
                    Frame::Monitor { watcher, target }
                } else {
                    Frame::Demonitor { watcher, target }
                }
            }
            kind::LINK | kind::UNLINK => {
                let from = r.pid("link.from")?;
                let to = r.pid("link.to")?;
                if k == kind::LINK {
                    Frame::Link { from, to }
                } else {
                    Frame::Unlink { from, to }
                }
            }
            kind::EXIT | kind::LINK_DOWN => {
                let from = r.pid("exit.from")?;
                let to = r.pid("exit.to")?;
                let result = match r.u8("exit.result")? {
                    0 => Ok(r.value("exit.result")?),
                    1 => Err(r.error("exit.error")?),
                    b => {
                        return Err(FrameError::BadFlag {
                            field: "exit.result",
                            byte: b,
                        })
                    }
                };
                if k == kind::EXIT {
                    Frame::Exit { from, to, result }
                } else {
                    Frame::LinkDown { from, to, result }
                }
            }
            kind::NAME_CLAIM => Frame::NameClaim(NameClaim {
                name: r.str("name_claim.name")?,
                owner: r.pid("name_claim.owner")?,
                key: ClaimKey {
                    lamport: r.u64("name_claim.lamport")?,
                    node: r.node("name_claim.node")?,
                },
            }),
            kind::NAME_RELEASE => Frame::NameRelease {
                name: r.str("name_release.name")?,
                owner: r.pid("name_release.owner")?,
            },
            kind::CANCEL => Frame::Cancel {
                from: r.pid("cancel.from")?,
                to: r.pid("cancel.to")?,
                reason: r.str("cancel.reason")?,
            },
            kind::TERMINATE => Frame::Terminate {
                from: r.pid("terminate.from")?,
                to: r.pid("terminate.to")?,
            },
            kind::NAME_SYNC => Frame::NameSync,
            kind::DISPATCH_REQUEST => Frame::DispatchRequest {
                call: r.u64("dispatch.call")?,
                timeout_ns: r.u64("dispatch.timeout")?,
                request: r.request()?,
            },
            kind::DISPATCH_REPLY => Frame::DispatchReply {
                call: r.u64("dispatch_reply.call")?,
                response: r.response()?,
            },
            kind::DISPATCH_NAMESPACES => Frame::DispatchNamespaces {
                namespaces: r.strs("dispatch_namespaces.namespaces")?,
                version: r.u64("dispatch_namespaces.version")?,
                reply: r.bool("dispatch_namespaces.reply")?,
            },
            kind::DISPATCH_CANCEL => Frame::DispatchCancel {
                call: r.u64("dispatch_cancel.call")?,
            },
            _ => unreachable!("kind_name accepted only the kinds above"),
        };
        match r.0.remaining() {
            0 => Ok(frame),
            n => Err(FrameError::TrailingBytes {
                kind: name,
                count: n as u64,
            }),
        }
    }
}

fn kind_name(k: u8) -> Option<&'static str> {
    Some(match k {
        kind::HELLO => "hello",
        kind::SEND => "send",
        kind::SPAWN_REQUEST => "spawn",
        kind::SPAWN_REPLY => "spawn_reply",
        kind::MONITOR => "monitor",
        kind::DEMONITOR => "demonitor",
        kind::LINK => "link",
        kind::UNLINK => "unlink",
        kind::EXIT => "exit",
        kind::LINK_DOWN => "link_down",
        kind::NAME_CLAIM => "name_claim",
        kind::NAME_RELEASE => "name_release",
        kind::CANCEL => "cancel",
        kind::TERMINATE => "terminate",
        kind::NAME_SYNC => "name_sync",
        kind::DISPATCH_REQUEST => "dispatch",
        kind::DISPATCH_REPLY => "dispatch_reply",
        kind::DISPATCH_NAMESPACES => "dispatch_namespaces",
        kind::DISPATCH_CANCEL => "dispatch_cancel",
        _ => return None,
    })
}

/// Why bytes are not a frame. Each names the field (`kind.field`) it failed in, where there
/// is one, so a log line says what the peer sent wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The input ended inside this field (or inside the envelope: `header`).
    Truncated(&'static str),
    BadMagic([u8; 2]),
    UnsupportedVersion(u8),
    UnknownKind(u8),
    /// The envelope's length is not the length of the rest of the input.
    LengthMismatch {
        declared: u64,
        actual: u64,
    },
    /// A body over `MAX_FRAME_LEN`.
    TooLarge(u64),
    /// A length or count in this field larger than the input could hold.
    BadLength {
        field: &'static str,
        len: u64,
    },
    /// A flag or variant byte out of range.
    BadFlag {
        field: &'static str,
        byte: u8,
    },
    /// A text field that is not UTF-8.
    BadUtf8(&'static str),
    /// A PID with an empty node or host.
    BadPid(&'static str),
    /// A value that the value codec refused.
    BadValue {
        field: &'static str,
        error: CodecError,
    },
    /// An error field whose value is not an error.
    NotAnError(&'static str),
    /// Bytes left after the last field of this kind of frame.
    TrailingBytes {
        kind: &'static str,
        count: u64,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Truncated(field) => write!(f, "frame truncated in {field}"),
            FrameError::BadMagic(m) => {
                write!(f, "not a relay frame (magic {:02x}{:02x})", m[0], m[1])
            }
            FrameError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "frame version {v} not supported (this node speaks {VERSION})"
                )
            }
            FrameError::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::LengthMismatch { declared, actual } => write!(
                f,
                "frame declares {declared} body bytes but {actual} arrived"
            ),
            FrameError::TooLarge(n) => {
                write!(
                    f,
                    "frame body of {n} bytes is over the limit of {MAX_FRAME_LEN}"
                )
            }
            FrameError::BadLength { field, len } => {
                write!(f, "length {len} in {field} is larger than the frame")
            }
            FrameError::BadFlag { field, byte } => write!(f, "bad flag {byte} in {field}"),
            FrameError::BadUtf8(field) => write!(f, "{field} is not UTF-8"),
            FrameError::BadPid(field) => write!(f, "{field} is not a valid PID"),
            FrameError::BadValue { field, error } => write!(f, "bad value in {field}: {error}"),
            FrameError::NotAnError(field) => write!(f, "{field} does not hold an error"),
            FrameError::TrailingBytes { kind, count } => {
                write!(f, "{count} bytes after the end of a {kind} frame")
            }
        }
    }
}

impl std::error::Error for FrameError {}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, b: u8) {
        self.0.push(b);
    }

    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn node(&mut self, n: &NodeId) {
        self.str(n.as_str());
    }

    fn pid(&mut self, p: &Pid) {
        self.node(&p.node);
        self.str(&p.host);
        self.u64(p.uniq);
    }

    fn opt_pid(&mut self, p: Option<&Pid>) {
        match p {
            None => self.u8(0),
            Some(p) => {
                self.u8(1);
                self.pid(p);
            }
        }
    }

    fn values(&mut self, vs: &[Value]) {
        self.u64(vs.len() as u64);
        for v in vs {
            codec::encode(v, self.0);
        }
    }

    fn error(&mut self, e: &ErrorValue) {
        codec::encode(&Value::error(e.clone()), self.0);
    }
}

struct FrameReader<'a>(Reader<'a>);

impl<'a> FrameReader<'a> {
    fn wrap(field: &'static str, e: CodecError) -> FrameError {
        match e {
            CodecError::Truncated => FrameError::Truncated(field),
            CodecError::BadLength(len) => FrameError::BadLength { field, len },
            other => FrameError::BadValue {
                field,
                error: other,
            },
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        self.0.take(n).map_err(|e| Self::wrap(field, e))
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        self.0.u8().map_err(|e| Self::wrap(field, e))
    }

    fn bool(&mut self, field: &'static str) -> Result<bool, FrameError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(FrameError::BadFlag { field, byte }),
        }
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, FrameError> {
        self.0.u64().map_err(|e| Self::wrap(field, e))
    }

    fn str(&mut self, field: &'static str) -> Result<String, FrameError> {
        self.name(field).map(str::to_owned)
    }

    /// A string field, borrowed from the frame.
    fn name(&mut self, field: &'static str) -> Result<&'a str, FrameError> {
        let b = self.0.bytes().map_err(|e| Self::wrap(field, e))?;
        std::str::from_utf8(b).map_err(|_| FrameError::BadUtf8(field))
    }

    fn node(&mut self, field: &'static str) -> Result<NodeId, FrameError> {
        let s = self.name(field)?;
        if s.is_empty() {
            return Err(FrameError::BadPid(field));
        }
        Ok(NodeId::named(s))
    }

    fn pid(&mut self, field: &'static str) -> Result<Pid, FrameError> {
        let node = self.node(field)?;
        let host = self.name(field)?;
        if host.is_empty() {
            return Err(FrameError::BadPid(field));
        }
        let uniq = self.u64(field)?;
        Ok(Pid::on(node, crate::pid::intern(host), uniq))
    }

    fn opt_pid(&mut self, field: &'static str) -> Result<Option<Pid>, FrameError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => self.pid(field).map(Some),
            byte => Err(FrameError::BadFlag { field, byte }),
        }
    }

    fn value(&mut self, field: &'static str) -> Result<Value, FrameError> {
        self.0.value().map_err(|e| Self::wrap(field, e))
    }

    fn values(&mut self, field: &'static str) -> Result<Vec<Value>, FrameError> {
        let n = self.0.count(1).map_err(|e| Self::wrap(field, e))?;
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.value(field)?);
        }
        Ok(out)
    }

    fn error(&mut self, field: &'static str) -> Result<ErrorValue, FrameError> {
        match self.value(field)? {
            Value::Error(e) => Ok(*e),
            _ => Err(FrameError::NotAnError(field)),
        }
    }
}

mod rpc;

#[cfg(test)]
mod tests;
