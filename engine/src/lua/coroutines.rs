//! The in-process scheduler: a Lua process's coroutines, its channels and `select`.
//! Channels and waiting coroutines are process-local; nothing here touches another process.

use crate::relay::{Event, Message};
use crate::value::{ErrorValue, Value};
use mlua::{Thread, Value as LV};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

pub type ChanRef = Rc<RefCell<Chan>>;

/// Unbounded capacity for mailbox-backed channels (inbox, events, listen).
pub const UNBOUNDED: usize = usize::MAX;

/// A value in flight inside a process. Messages and events stay outside the Lua heap until taken.
#[derive(Clone, Debug)]
pub enum Item {
    Lua(LV),
    Msg(Message),
    Ev(Event),
    /// A timer/ticker firing, as Unix nanoseconds.
    Time(i64),
    /// A completed world command (readline, …).
    Done(Result<Value, ErrorValue>),
    /// A value handed out as a Payload object (a `funcs.async` result).
    Payload(Value),
}

#[derive(Clone, Copy, Debug)]
pub struct Waiter {
    pub task: usize,
    pub gen: u32,
    pub case: usize,
}

#[derive(Debug, Default)]
pub struct Chan {
    pub cap: usize,
    pub buf: VecDeque<Item>,
    pub closed: bool,
    pub recvq: VecDeque<Waiter>,
    pub sendq: VecDeque<(Waiter, Item)>,
    /// listen channels in raw mode hand out payload values instead of Message objects.
    pub raw: bool,
    /// Close after the first delivery (`time.after`).
    pub one_shot: bool,
}

impl Chan {
    pub fn new(cap: usize) -> ChanRef {
        Rc::new(RefCell::new(Chan {
            cap,
            ..Default::default()
        }))
    }
}

/// How a parked coroutine wants its result handed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// `ch:receive()` → value, ok
    Recv,
    /// `ch:send(v)` → true (raises if the channel closed)
    Send,
    /// `channel.select` → {channel=, value=, ok=}
    Select,
    /// `time.sleep` → nothing
    Sleep,
    /// a world command → value | nil, err
    Call,
}

#[derive(Debug)]
pub struct Completion {
    pub case: usize,
    pub item: Option<Item>,
    pub ok: bool,
    /// Raise this in the coroutine instead of returning (send on a closed channel).
    pub raise: Option<String>,
}

pub struct Wait {
    pub kind: WaitKind,
    /// The channel userdata of each case, for `r.channel`; the sent value for send cases.
    pub cases: Vec<(LV, Option<LV>)>,
}

pub struct Task {
    pub thread: Thread,
    pub gen: u32,
    pub wait: Option<Wait>,
    pub done: Option<(Wait, Completion)>,
}

/// One case of a select as the core sees it.
pub struct Case {
    pub chan: ChanRef,
    pub send: Option<Item>,
}

// Returned by value and consumed at once; boxing the ready case would cost an allocation per
// channel operation for no saving.
#[allow(clippy::large_enum_variant)]
pub enum Selected {
    Ready(Completion),
    Default,
    Blocked,
    /// A plain send on a closed channel.
    Closed,
}

#[derive(Default)]
pub struct Tasks {
    pub slots: Vec<Option<Task>>,
    free: Vec<usize>,
    pub ready: VecDeque<usize>,
    pub live: usize,
}

impl Tasks {
    pub fn add(&mut self, thread: Thread) -> usize {
        let t = Task {
            thread,
            gen: 0,
            wait: None,
            done: None,
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(t);
                i
            }
            None => {
                self.slots.push(Some(t));
                self.slots.len() - 1
            }
        };
        self.live += 1;
        self.ready.push_back(id);
        id
    }

    pub fn remove(&mut self, id: usize) {
        if self.slots.get_mut(id).and_then(|s| s.take()).is_some() {
            self.free.push(id);
            self.live -= 1;
        }
    }

    fn is_live_waiter(&self, w: &Waiter) -> bool {
        matches!(self.slots.get(w.task), Some(Some(t)) if t.gen == w.gen && t.wait.is_some())
    }

    /// Hands a completion to a parked coroutine and makes it runnable.
    fn complete(&mut self, w: Waiter, c: Completion) {
        if let Some(Some(t)) = self.slots.get_mut(w.task) {
            if t.gen == w.gen {
                if let Some(wait) = t.wait.take() {
                    t.gen = t.gen.wrapping_add(1);
                    t.done = Some((wait, c));
                    self.ready.push_back(w.task);
                }
            }
        }
    }

    /// Tries the cases in order (first ready wins); else registers the task on every case.
    pub fn select(
        &mut self,
        task: usize,
        cases: Vec<Case>,
        has_default: bool,
        plain_send: bool,
    ) -> Selected {
        for (i, c) in cases.iter().enumerate() {
            let mut ch = c.chan.borrow_mut();
            match &c.send {
                None => {
                    if let Some(item) = self.take(&mut ch) {
                        return Selected::Ready(Completion {
                            case: i,
                            item: Some(item),
                            ok: true,
                            raise: None,
                        });
                    }
                    if ch.closed {
                        return Selected::Ready(Completion {
                            case: i,
                            item: None,
                            ok: false,
                            raise: None,
                        });
                    }
                }
                Some(item) => {
                    if ch.closed {
                        if plain_send {
                            return Selected::Closed;
                        }
                        continue;
                    }
                    if self.put(&mut ch, item.clone()) {
                        return Selected::Ready(Completion {
                            case: i,
                            item: None,
                            ok: true,
                            raise: None,
                        });
                    }
                }
            }
        }
        if has_default {
            return Selected::Default;
        }
        let gen = self.slots[task].as_ref().map(|t| t.gen).unwrap_or(0);
        for (i, c) in cases.into_iter().enumerate() {
            let mut ch = c.chan.borrow_mut();
            let w = Waiter { task, gen, case: i };
            match c.send {
                None => {
                    if ch.recvq.len() > 8 {
                        ch.recvq.retain(|w| self.is_live_waiter(w));
                    }
                    ch.recvq.push_back(w)
                }
                Some(item) => {
                    if ch.sendq.len() > 8 {
                        ch.sendq.retain(|(w, _)| self.is_live_waiter(w));
                    }
                    ch.sendq.push_back((w, item))
                }
            }
        }
        Selected::Blocked
    }

    /// Takes a value for a receiver: from the buffer (refilling it from a parked sender) or
    /// straight from a parked sender on an unbuffered channel.
    fn take(&mut self, ch: &mut Chan) -> Option<Item> {
        if let Some(item) = ch.buf.pop_front() {
            while let Some((w, v)) = ch.sendq.pop_front() {
                if self.is_live_waiter(&w) {
                    ch.buf.push_back(v);
                    self.complete(
                        w,
                        Completion {
                            case: w.case,
                            item: None,
                            ok: true,
                            raise: None,
                        },
                    );
                    break;
                }
            }
            self.after_delivery(ch);
            return Some(item);
        }
        while let Some((w, v)) = ch.sendq.pop_front() {
            if self.is_live_waiter(&w) {
                self.complete(
                    w,
                    Completion {
                        case: w.case,
                        item: None,
                        ok: true,
                        raise: None,
                    },
                );
                return Some(v);
            }
        }
        None
    }

    /// Gives a value to a parked receiver or the buffer; false if it would block.
    pub fn put(&mut self, ch: &mut Chan, item: Item) -> bool {
        while let Some(w) = ch.recvq.pop_front() {
            if self.is_live_waiter(&w) {
                self.complete(
                    w,
                    Completion {
                        case: w.case,
                        item: Some(item),
                        ok: true,
                        raise: None,
                    },
                );
                self.after_delivery(ch);
                return true;
            }
        }
        if ch.buf.len() < ch.cap {
            ch.buf.push_back(item);
            return true;
        }
        false
    }

    fn after_delivery(&mut self, ch: &mut Chan) {
        if ch.one_shot && !ch.closed {
            self.close(ch);
        }
    }

    /// Delivery from outside the process (messages, timers, completions): never blocks.
    pub fn deliver(&mut self, ch: &ChanRef, item: Item) -> bool {
        let mut c = ch.borrow_mut();
        if c.closed {
            return false;
        }
        self.put(&mut c, item)
    }

    pub fn close(&mut self, ch: &mut Chan) {
        if ch.closed {
            return;
        }
        ch.closed = true;
        // Buffered values stay readable; receivers only parked when the buffer was empty.
        if ch.buf.is_empty() {
            while let Some(w) = ch.recvq.pop_front() {
                self.complete(
                    w,
                    Completion {
                        case: w.case,
                        item: None,
                        ok: false,
                        raise: None,
                    },
                );
            }
        }
        while let Some((w, _)) = ch.sendq.pop_front() {
            self.complete(
                w,
                Completion {
                    case: w.case,
                    item: None,
                    ok: false,
                    raise: Some("send on closed channel".into()),
                },
            );
        }
    }
}
