//! The simulator's Lua heap: a VM whose object addresses depend only on its own allocations.
//!
//! Luau hashes tables, functions, threads and userdata used as table keys by the low 32 bits
//! of their address, so `pairs()` over such keys follows addresses. With the global allocator
//! those depend on everything the OS process allocated before (an earlier seed of a sweep,
//! `--trace` keeping lines), and a seed would not replay. Here every block of the VM comes
//! from one region aligned to 4 GiB: the low 32 bits of an address are its offset in the
//! region, and offsets come from a bump pointer and free lists per power-of-two size class,
//! so they follow the VM's own sequence of allocations and frees, which follows the seed.
//!
//! Only the simulator's nodes use it (`NodeConfig::deterministic_heap`); production keeps
//! mlua's allocator. mlua's accounting and limits (node ceiling, `used_memory`) apply as usual
//! (the backend hook of the patched mlua, vendor/README.md); the node's ceiling is kept well
//! below the region's size (`HEAP_CEILING`). Luau's collector paces itself by the wall clock,
//! so these VMs collect on a schedule of their own (`pace`).

use mlua::{Lua, LuaAllocator, LuaOptions, StdLib};
use std::alloc::{alloc, dealloc, Layout};
use std::os::raw::c_int;
use std::ptr;

/// Alignment of a region: addresses below it are the same in every run.
const REGION_ALIGN: usize = 1 << 32;
/// Address space of a simulated VM's heap (reserved; pages are committed only when touched).
const REGION_SIZE: usize = 2 << 30;
/// The most Lua heap a VM with an arena may hold (`LuaRuntime::new` caps the node's ceiling
/// at it). Blocks are rounded up to a power of two and free blocks serve their own size class
/// only, so the region holds several times this: mlua assumes some allocations (its own
/// bookkeeping while an error is raised) cannot fail, which a full region would break.
pub(crate) const HEAP_CEILING: usize = REGION_SIZE / 4;
/// Smallest block: 16 bytes (Luau's and mlua's minimum alignment; room for a free-list link).
const MIN_SHIFT: u32 = 4;
const CLASSES: usize = (usize::BITS - MIN_SHIFT) as usize;
/// End of a free list.
const NONE: usize = usize::MAX;

pub(crate) struct Arena {
    base: *mut u8,
    layout: Layout,
    /// First byte never handed out.
    top: usize,
    /// Per size class, the offset of the first free block (each free block holds the next).
    free: [usize; CLASSES],
}

/// Size class of a block of `size` (> 0) bytes: its index and the bytes it really takes.
fn class(size: usize) -> Option<(usize, usize)> {
    let bytes = size.max(1 << MIN_SHIFT).checked_next_power_of_two()?;
    Some(((bytes.trailing_zeros() - MIN_SHIFT) as usize, bytes))
}

impl Arena {
    /// A fresh region, or None when the address space cannot be had.
    pub(crate) fn new() -> Option<Arena> {
        Arena::with_size(REGION_SIZE)
    }

    fn with_size(size: usize) -> Option<Arena> {
        let layout = Layout::from_size_align(size, REGION_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc(layout) };
        (!base.is_null()).then_some(Arena {
            base,
            layout,
            top: 0,
            free: [NONE; CLASSES],
        })
    }

    fn take(&mut self, size: usize) -> *mut u8 {
        let Some((c, bytes)) = class(size) else {
            return ptr::null_mut();
        };
        let head = self.free[c];
        if head != NONE {
            // SAFETY: `head` is a free block of this region, at least 16 bytes, holding the
            // offset of the next free block of its class.
            unsafe {
                let p = self.base.add(head);
                self.free[c] = (p as *const usize).read();
                return p;
            }
        }
        if bytes > self.layout.size() - self.top {
            return ptr::null_mut();
        }
        // SAFETY: `top + bytes` is within the region.
        let p = unsafe { self.base.add(self.top) };
        self.top += bytes;
        p
    }

    fn give_back(&mut self, p: *mut u8, size: usize) {
        let Some((c, _)) = class(size) else { return };
        let off = p as usize - self.base as usize;
        // SAFETY: `p` is a block of this region of at least 16 bytes, no longer used by Lua.
        unsafe { (p as *mut usize).write(self.free[c]) };
        self.free[c] = off;
    }
}

impl LuaAllocator for Arena {
    unsafe fn alloc(&mut self, size: usize) -> *mut u8 {
        self.take(size)
    }

    unsafe fn realloc(&mut self, p: *mut u8, old: usize, new: usize) -> *mut u8 {
        if class(old).map(|c| c.0) == class(new).map(|c| c.0) {
            return p;
        }
        let q = self.take(new);
        if !q.is_null() {
            // SAFETY: both blocks are live, distinct and at least `min(old, new)` bytes.
            unsafe { ptr::copy_nonoverlapping(p, q, old.min(new)) };
            self.give_back(p, old);
        }
        q
    }

    unsafe fn dealloc(&mut self, p: *mut u8, size: usize) {
        self.give_back(p, size);
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_size` with this layout; mlua drops the backend after the
        // state is closed, so nothing points into the region any more.
        unsafe { dealloc(self.base, self.layout) };
    }
}

/// A Lua VM as `Lua::new()` makes it, its heap in an arena when one can be had, its garbage
/// collector paced by `pace` (Luau's own pacing reads the wall clock).
pub(crate) fn new_lua() -> mlua::Result<Lua> {
    let lua = match Arena::new() {
        Some(a) => Lua::new_with_allocator(StdLib::ALL_SAFE, LuaOptions::default(), Box::new(a))?,
        None => Lua::new(),
    };
    lua.gc_stop();
    lua.set_app_data(Pacer {
        last: lua.used_memory(),
        trigger: MIN_TRIGGER,
        in_cycle: false,
    });
    Ok(lua)
}

/// A GC cycle starts once the heap reaches this, at least.
const MIN_TRIGGER: usize = 4 << 20;

/// The collector's schedule in a VM of `new_lua`. Luau sets the heap size at which the next
/// cycle starts from the allocation rate it measured with the wall clock, so when garbage is
/// freed (and which blocks the arena hands out next) would depend on how fast the machine ran.
/// Here the automatic collector stays stopped and `pace`, called before each step, does the
/// work: a cycle starts when the heap has doubled since the last one ended (Luau's default
/// goal), and each call pays for what was allocated since the previous one, as Luau's
/// incremental steps would.
#[derive(Clone, Copy)]
struct Pacer {
    /// Heap at the previous call.
    last: usize,
    /// Heap at which the next cycle starts.
    trigger: usize,
    in_cycle: bool,
}

/// Collector work before a step, in a VM of `new_lua` (nothing otherwise). Also stops the
/// automatic collector a full collection restarted.
pub(crate) fn pace(lua: &Lua) {
    // Copied out: the collector may run destructors that read the VM's app data.
    let Some(mut p) = lua.app_data_ref::<Pacer>().map(|p| *p) else {
        return;
    };
    lua.gc_stop();
    let used = lua.used_memory();
    let grown = used.saturating_sub(p.last);
    p.last = used;
    if !p.in_cycle && used < p.trigger {
        if let Some(mut q) = lua.app_data_mut::<Pacer>() {
            *q = p;
        }
        return;
    }
    p.in_cycle = true;
    let kb = c_int::try_from((grown >> 10).max(64)).unwrap_or(c_int::MAX);
    // SAFETY: a GC step on the main state; Weft's userdata destructors do not raise errors.
    let done = unsafe {
        lua.exec_raw::<bool>((), |state| {
            let r = mlua::ffi::lua_gc(state, mlua::ffi::LUA_GCSTEP, kb);
            mlua::ffi::lua_pushboolean(state, r);
        })
    }
    .unwrap_or(false);
    // A cycle that ended set Luau's own trigger: stopped again.
    lua.gc_stop();
    p.last = lua.used_memory();
    if done {
        p.in_cycle = false;
        p.trigger = (p.last * 2).max(MIN_TRIGGER);
    }
    if let Some(mut q) = lua.app_data_mut::<Pacer>() {
        *q = p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order `pairs()` visits 40 table and function keys in (by their insertion index).
    const ORDER: &str = r#"
        local t, keys = {}, {}
        for i = 1, 20 do
            local k = {}
            keys[k] = i
            t[k] = true
            local f = function() return i end
            keys[f] = 20 + i
            t[f] = true
        end
        local out = {}
        for k in pairs(t) do out[#out + 1] = keys[k] end
        return table.concat(out, ",")
    "#;

    fn order(lua: &Lua) -> String {
        lua.load(ORDER).eval().unwrap()
    }

    #[test]
    fn pointer_keyed_order_depends_only_on_the_vm() {
        let first = order(&new_lua().unwrap());
        // Other work in between: other VMs alive, Rust heap churn, a VM that did more.
        let busy = new_lua().unwrap();
        busy.load("local x = {} for i = 1, 5000 do x[i] = {i} end")
            .exec()
            .unwrap();
        let junk: Vec<Vec<u8>> = (0..1000).map(|i| vec![0; i * 7 % 512 + 1]).collect();
        let again = order(&new_lua().unwrap());
        assert_eq!(first, again);
        drop(junk);
        // The same script after other allocations in the same VM is another sequence (the
        // order may differ), but the same sequence twice gives the same order.
        let (a, b) = (new_lua().unwrap(), new_lua().unwrap());
        for l in [&a, &b] {
            l.load("local y = {} for i = 1, 77 do y[i] = function() end end")
                .exec()
                .unwrap();
        }
        assert_eq!(order(&a), order(&b));
        // Forty keys in twenty-one-slot-or-more hash part: not insertion order.
        assert_ne!(
            first,
            (1..=20)
                .flat_map(|i| [i, 20 + i])
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }

    #[test]
    fn memory_accounting_and_limits_still_apply() {
        let lua = new_lua().unwrap();
        let before = lua.used_memory();
        lua.load("big = string.rep('x', 1048576)").exec().unwrap();
        assert!(lua.used_memory() >= before + (1 << 20));
        lua.set_memory_limit(lua.used_memory() + (1 << 20)).unwrap();
        let err = lua
            .load("big2 = string.rep('y', 4194304)")
            .exec()
            .unwrap_err();
        assert!(matches!(err, mlua::Error::MemoryError(_)), "{err}");
        // Still usable below the limit.
        lua.load("small = string.rep('z', 1000)").exec().unwrap();
    }

    #[test]
    fn blocks_are_reused_by_class() {
        let mut a = Arena::with_size(1 << 16).unwrap();
        unsafe {
            let p = a.alloc(24);
            let q = a.alloc(100);
            assert_eq!(p as usize % 16, 0);
            assert_eq!(q as usize - p as usize, 32);
            a.dealloc(p, 24);
            assert_eq!(a.alloc(30), p); // same class (32), reused
            assert_eq!(a.realloc(q, 100, 120), q); // same class (128), in place
            let r = a.realloc(q, 100, 300);
            assert_ne!(r, q);
            assert_eq!(a.alloc(128), q); // the old block is free again
            assert!(a.alloc(1 << 20).is_null());
        }
    }
}
