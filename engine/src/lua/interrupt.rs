//! Preemption: Luau's interrupt, installed as a raw C callback that counts a per-step budget and
//! yields the coroutine the scheduler resumed once it is spent. The only unsafe code in the engine.

use mlua::ffi;
use std::cell::Cell;
use std::os::raw::c_int;

#[derive(Clone, Copy, Default)]
struct Budget {
    used: u32,
    limit: u32,
    /// `lua_State*` of the coroutine being resumed; 0 when none (no preemption then).
    root: usize,
    preempted: bool,
}

thread_local! {
    static BUDGET: Cell<Budget> = const { Cell::new(Budget { used: 0, limit: u32::MAX, root: 0, preempted: false }) };
}

/// Luau calls this at loop back-edges and calls. Going through mlua's closure here cost a
/// protected call per tick (about a tenth of a message round trip); a raw callback is a counter.
unsafe extern "C-unwind" fn on_interrupt(l: *mut ffi::lua_State, gc: c_int) {
    if gc >= 0 {
        return; // GC interrupts are not preemption points.
    }
    let mut b = BUDGET.with(Cell::get);
    b.used = b.used.saturating_add(1);
    // Any coroutine of a step may be preempted: the one the scheduler resumed returns to it, and
    // a user's nested coroutine returns PREEMPT to the prelude's resume, which passes it up.
    // Outside a step (root 0) nothing is preempted.
    // SAFETY: `l` is the running thread handed to us by Luau; isyieldable only reads it.
    let yield_now = b.used >= b.limit && b.root != 0 && unsafe { ffi::lua_isyieldable(l) } != 0;
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

/// Starts a step with `limit` ticks.
pub fn begin_step(limit: u32) {
    BUDGET.with(|c| {
        c.set(Budget {
            used: 0,
            limit,
            root: 0,
            preempted: false,
        })
    });
}

/// Marks `thread_ptr` (from `Thread::to_pointer`) as the coroutine that may be preempted.
pub fn set_root(thread_ptr: usize) {
    BUDGET.with(|c| {
        let mut b = c.get();
        b.root = thread_ptr;
        b.preempted = false;
        c.set(b);
    });
}

/// Clears the root and says whether the last resume ended by preemption.
pub fn end_resume() -> bool {
    BUDGET.with(|c| {
        let mut b = c.get();
        let p = b.preempted;
        b.root = 0;
        b.preempted = false;
        c.set(b);
        p
    })
}
