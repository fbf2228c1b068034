//! Preemption: Luau's interrupt, installed as a raw C callback that counts a per-step budget and
//! yields the coroutine the scheduler resumed once it is spent. The only unsafe code in the engine.

use mlua::ffi;
use std::cell::Cell;
use std::os::raw::c_int;

#[derive(Clone, Copy, Default)]
struct Budget {
    used: u32,
    limit: u32,
    /// Ticks at which a step that could not yield is killed (`limit` + the ceiling).
    kill_at: u32,
    /// `lua_State*` of the coroutine being resumed; 0 when none (no preemption then).
    root: usize,
    preempted: bool,
    /// Why the process was killed in this step; sticky, so a `pcall` cannot swallow it.
    killed: Option<Kill>,
    /// The process's Luau memory category (0: not accounted) and its byte limit (0: none).
    memcat: u8,
    mem_limit: usize,
    /// The process went over its memory limit (checked again after a collection).
    over_memory: bool,
    /// A wait is registered and the coroutine is on its way to yield PARK: a preemption now
    /// would let the wait's completion resume it at the wrong yield.
    parking: bool,
}

/// Why the interrupt killed a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kill {
    /// It ran `ceiling` ticks past its budget inside a call that cannot yield.
    Ceiling(u32),
    /// It held more than twice its memory limit where it could not yield to be checked.
    Memory(usize),
}

impl Kill {
    /// The error the process dies with (and its monitors see in EXIT).
    pub fn message(self) -> String {
        match self {
            Kill::Ceiling(n) => format!(
                "process killed: it ran {n} instructions without a point where it could be \
                 preempted (an endless loop inside a table.sort comparator, a string.gsub \
                 callback, a metamethod, an error handler or a string pattern); \
                 WEFT_STEP_CEILING sets the limit"
            ),
            Kill::Memory(n) => memory_message(n),
        }
    }
}

/// The error of a process that went over its memory limit.
pub fn memory_message(limit: usize) -> String {
    format!(
        "process killed: out of memory (it holds more than its limit of {} MiB; `limits: \
         {{memory: …}}` in its entry or WEFT_PROCESS_MEMORY sets the limit)",
        limit >> 20
    )
}

thread_local! {
    static BUDGET: Cell<Budget> = const { Cell::new(Budget {
        used: 0,
        limit: u32::MAX,
        kill_at: u32::MAX,
        root: 0,
        preempted: false,
        killed: None,
        memcat: 0,
        mem_limit: 0,
        over_memory: false,
        parking: false,
    }) };
}

/// Luau calls this at loop back-edges and calls, and inside pattern matching (not yieldable
/// there). Going through mlua's closure here cost a protected call per tick (about a tenth of
/// a message round trip); a raw callback is a counter.
unsafe extern "C-unwind" fn on_interrupt(l: *mut ffi::lua_State, gc: c_int) {
    if gc >= 0 {
        return; // GC interrupts are not preemption points.
    }
    let mut b = BUDGET.with(Cell::get);
    b.used = b.used.saturating_add(1);
    // Outside a step (root 0) nothing is preempted or killed.
    if b.root == 0 {
        BUDGET.with(|c| c.set(b));
        return;
    }
    if b.killed.is_none() && b.used >= b.kill_at {
        b.killed = Some(Kill::Ceiling(b.kill_at - b.limit));
    }
    if b.killed.is_none() && b.memcat != 0 && b.mem_limit != 0 && b.used & 31 == 0 {
        // SAFETY: `l` is a live thread of the VM; this reads one counter of its global state.
        let held = unsafe { ffi::lua_totalbytes(l, c_int::from(b.memcat)) };
        if held > b.mem_limit {
            b.over_memory = true;
            if held / 2 > b.mem_limit {
                b.killed = Some(Kill::Memory(b.mem_limit));
            }
        }
    }
    if let Some(k) = b.killed {
        BUDGET.with(|c| c.set(b));
        let msg = k.message();
        // SAFETY: raising from the interrupt is how Luau hosts stop runaway scripts; the
        // callback is C-unwind and holds nothing that needs dropping (msg is copied first).
        unsafe {
            ffi::lua_pushlstring(l, msg.as_ptr().cast(), msg.len());
            drop(msg);
            ffi::lua_error(l);
        }
    }
    // Any coroutine of a step may be preempted: the one the scheduler resumed returns to it, and
    // a user's nested coroutine returns PREEMPT to the prelude's resume, which passes it up.
    // A process over its memory limit is preempted at once so the scheduler can check it.
    // SAFETY: `l` is the running thread handed to us by Luau; isyieldable only reads it.
    let yield_now = (b.used >= b.limit || b.over_memory)
        && !b.parking
        && unsafe { ffi::lua_isyieldable(l) } != 0;
    if yield_now {
        b.preempted = true;
    }
    BUDGET.with(|c| c.set(b));
    if yield_now {
        // SAFETY: the thread is yieldable (checked above) and Luau supports yielding from the
        // interrupt callback; the scheduler resumes it later with no arguments.
        unsafe {
            ffi::lua_pushlightuserdata(l, preempt_ptr());
            ffi::lua_yield(l, 1);
        }
    }
}

static PREEMPT_ADDR: u8 = 0;

fn preempt_ptr() -> *mut std::ffi::c_void {
    &PREEMPT_ADDR as *const u8 as *mut std::ffi::c_void
}

/// The value a preempted coroutine yields (its resumer passes it on up).
pub fn preempt_value() -> mlua::Value {
    mlua::Value::LightUserData(mlua::LightUserData(preempt_ptr()))
}

/// Installs the callback on the VM (the callbacks table is shared by all its threads).
pub fn install(lua: &mlua::Lua) -> mlua::Result<()> {
    // SAFETY: we only write the interrupt slot of the VM's callbacks table, which lives as long
    // as the VM; the callback itself touches nothing but the thread-local budget.
    unsafe {
        lua.exec_raw::<()>((), |state| {
            (*ffi::lua_callbacks(state)).interrupt = Some(on_interrupt);
        })
    }
}

/// What a step may use: its tick budget, the ticks past it where it cannot yield, and the
/// process's memory category with its byte limit.
#[derive(Clone, Copy, Debug)]
pub struct StepLimits {
    pub budget: u32,
    pub ceiling: u32,
    pub memcat: u8,
    pub mem_limit: usize,
}

/// Starts a step.
pub fn begin_step(s: StepLimits) {
    let ceiling = if s.ceiling == 0 { u32::MAX } else { s.ceiling };
    BUDGET.with(|c| {
        c.set(Budget {
            used: 0,
            limit: s.budget,
            kill_at: s.budget.saturating_add(ceiling),
            root: 0,
            preempted: false,
            killed: None,
            memcat: s.memcat,
            mem_limit: s.mem_limit,
            over_memory: false,
            parking: false,
        })
    });
}

/// Marks `thread_ptr` (from `Thread::to_pointer`) as the coroutine that may be preempted.
pub fn set_root(thread_ptr: usize) {
    BUDGET.with(|c| {
        let mut b = c.get();
        b.root = thread_ptr;
        b.preempted = false;
        b.parking = false;
        c.set(b);
    });
}

/// How a resume ended, as the interrupt saw it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resumed {
    pub preempted: bool,
    pub killed: Option<Kill>,
    pub over_memory: bool,
}

/// Clears the root and says whether the last resume ended by preemption or a kill.
pub fn end_resume() -> Resumed {
    BUDGET.with(|c| {
        let mut b = c.get();
        let r = Resumed {
            preempted: b.preempted,
            killed: b.killed,
            over_memory: b.over_memory,
        };
        b.root = 0;
        b.preempted = false;
        b.over_memory = false;
        b.parking = false;
        c.set(b);
        r
    })
}

/// Ends the current resume at the coroutine's next preemption point (a call or a loop's
/// back-edge), as a spent budget would: the process stays runnable.
pub fn yield_soon() {
    BUDGET.with(|c| {
        let mut b = c.get();
        if b.root != 0 {
            b.limit = b.limit.min(b.used);
        }
        c.set(b);
    });
}

/// The running coroutine registered a wait and returns PARK to the prelude, which yields it:
/// no preemption until that yield ends the resume.
pub fn parking() {
    BUDGET.with(|c| {
        let mut b = c.get();
        b.parking = true;
        c.set(b);
    });
}

/// Ticks the current step used so far.
pub fn used() -> u32 {
    BUDGET.with(|c| c.get().used)
}

/// Bytes Luau counts for memory category `cat` (objects allocated while it was active), read
/// through any thread of the VM.
pub fn category_bytes(thread: &mlua::Thread, cat: u8) -> usize {
    // SAFETY: reads one counter of the VM's global state through a live thread.
    unsafe { ffi::lua_totalbytes(thread.state(), c_int::from(cat)) }
}

/// Makes `thread` allocate into memory category `cat`.
pub fn set_category(thread: &mlua::Thread, cat: u8) {
    // SAFETY: sets the active category of a live thread; affects only later allocations.
    unsafe { ffi::lua_setmemcat(thread.state(), c_int::from(cat)) }
}
