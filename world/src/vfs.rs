//! A simulated disk for SQLite (used only under `weft sim`): an in-memory VFS registered with
//! SQLite as `weft-sim`, whose files keep two images. Writes land in the *written* image;
//! `xSync` copies it to the *durable* image. A crash keeps the durable images only (plus, per
//! the fault draw, a torn prefix of the last unsynced write), so what survives is exactly what
//! SQLite made durable. Faults are drawn from a generator the simulator hands in (never OS
//! randomness): an I/O error on read, write or sync (SQLite answers `SQLITE_IOERR_*`, the app
//! gets an error value), a lost fsync (reports OK, persists nothing), a torn write at crash.
//!
//! Hand-written over `rusqlite::ffi` (libsqlite3-sys) rather than a VFS crate: the one such
//! crate (`sqlite-vfs`) is not in the offline registry, and the few callbacks SQLite needs
//! (no shared memory: databases use rollback journals under the simulator) fit in this file.
//!
//! Files are named `/weftfs<ID>/<path>`: `<ID>` picks the disk from a per-thread table, so
//! every simulated node (and every run of a parallel test) has its own disk. Metadata changes
//! (create, delete) are durable at once; SQLite syncs a file before it deletes the journal that
//! protects it, which is what the commit point relies on.

use rusqlite::ffi;
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// The name the VFS is registered under.
pub const VFS_NAME: &str = "weft-sim";
const VFS_NAME_C: &CStr = c"weft-sim";
const MAX_PATH: c_int = 512;

/// Fault rates of a simulated disk (per I/O call; `torn` per unsynced file at a crash).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiskFaults {
    /// Per read, write or truncate: fail with SQLITE_IOERR.
    pub ioerr: f64,
    /// Per sync: fail with SQLITE_IOERR_FSYNC.
    pub syncerr: f64,
    /// Per sync: report success without persisting anything (a lying disk).
    pub fsyncloss: f64,
    /// Per file with unsynced data at a crash: a prefix of its last unsynced write survives.
    pub torn: f64,
}

#[derive(Default, Clone)]
struct File {
    written: Vec<u8>,
    durable: Vec<u8>,
    /// The last write since the last sync: (offset, bytes), torn at a crash.
    last_unsynced: Option<(usize, Vec<u8>)>,
}

struct Disk {
    files: BTreeMap<String, File>,
    /// Bumped at every crash: handles opened before it are dead (their I/O fails, does nothing).
    generation: u64,
    faults: DiskFaults,
    /// Faults off (boot, checks): I/O always succeeds.
    quiet: bool,
    rng: Box<dyn FnMut() -> u64 + Send>,
    /// Faults injected since the simulator last asked: (kind, detail).
    fired: Vec<(&'static str, String)>,
    /// Databases open with `PRAGMA synchronous=OFF` (a planted durability bug).
    pub(crate) plant_nosync: bool,
    temp_seq: u64,
    random_seq: u64,
}

impl Disk {
    fn unit(&mut self) -> f64 {
        ((self.rng)() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn draw(&mut self, rate: f64) -> bool {
        !self.quiet && rate > 0.0 && self.unit() < rate
    }
}

/// One node's simulated disk. Clones share it; it outlives the node's world across crashes.
#[derive(Clone)]
pub struct SimDisk {
    id: u64,
    disk: Arc<Mutex<Disk>>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimDisk#{}", self.id)
    }
}

impl PartialEq for SimDisk {
    fn eq(&self, o: &SimDisk) -> bool {
        Arc::ptr_eq(&self.disk, &o.disk)
    }
}
impl Eq for SimDisk {}

thread_local! {
    // Disks by id, per thread (each simulation runs on one thread).
    static DISKS: std::cell::RefCell<BTreeMap<u64, Weak<Mutex<Disk>>>> = const { std::cell::RefCell::new(BTreeMap::new()) };
    static NEXT_ID: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

trait LockDisk {
    fn lock_disk(&self) -> MutexGuard<'_, Disk>;
}

impl LockDisk for Mutex<Disk> {
    /// The disk; a panic elsewhere never makes it unusable.
    fn lock_disk(&self) -> MutexGuard<'_, Disk> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn disk_of(path: &str) -> Option<(Arc<Mutex<Disk>>, String)> {
    let rest = path.strip_prefix("/weftfs")?;
    let (id, file) = rest.split_once('/')?;
    let id: u64 = id.parse().ok()?;
    let disk = DISKS.with(|d| d.borrow().get(&id).and_then(Weak::upgrade))?;
    Some((disk, file.to_string()))
}

impl SimDisk {
    /// A new empty disk whose faults draw from `rng` (the simulator's seeded generator).
    pub fn new(faults: DiskFaults, rng: Box<dyn FnMut() -> u64 + Send>) -> SimDisk {
        register();
        let id = NEXT_ID.with(|n| {
            let id = n.get();
            n.set(id + 1);
            id
        });
        let disk = Arc::new(Mutex::new(Disk {
            files: BTreeMap::new(),
            generation: 0,
            faults,
            quiet: false,
            rng,
            fired: Vec::new(),
            plant_nosync: false,
            temp_seq: 0,
            random_seq: 0,
        }));
        DISKS.with(|d| {
            let mut d = d.borrow_mut();
            d.retain(|_, w| w.strong_count() > 0);
            d.insert(id, Arc::downgrade(&disk));
        });
        SimDisk { id, disk }
    }

    /// The SQLite file name of `rel` on this disk (open it with the `weft-sim` VFS).
    pub fn path(&self, rel: &str) -> String {
        format!("/weftfs{}/{}", self.id, rel.trim_start_matches('/'))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.disk
            .lock_disk()
            .files
            .contains_key(rel.trim_start_matches('/'))
    }

    /// Plants a durability bug: databases opened from now on skip syncing (synchronous=OFF).
    pub fn plant_nosync(&self, on: bool) {
        self.disk.lock_disk().plant_nosync = on;
    }

    pub fn planted_nosync(&self) -> bool {
        self.disk.lock_disk().plant_nosync
    }

    /// Turns fault injection off (`true`) or back on; returns the previous setting.
    pub fn set_quiet(&self, quiet: bool) -> bool {
        std::mem::replace(&mut self.disk.lock_disk().quiet, quiet)
    }

    pub fn set_faults(&self, faults: DiskFaults) {
        self.disk.lock_disk().faults = faults;
    }

    /// Faults injected since the last call, as (kind, detail).
    pub fn take_fired(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut self.disk.lock_disk().fired)
    }

    /// A crash: every file goes back to its durable image, except that with probability
    /// `torn` a file's last unsynced write partly survives (a prefix of it, in place). Handles
    /// opened before are dead from now on. Returns the files that were torn.
    pub fn crash(&self) -> Vec<String> {
        let mut d = self.disk.lock_disk();
        d.generation += 1;
        let torn_rate = d.faults.torn;
        let names: Vec<String> = d.files.keys().cloned().collect();
        let mut torn = Vec::new();
        for name in names {
            let last = d.files.get_mut(&name).and_then(|f| f.last_unsynced.take());
            let tear = match &last {
                Some((_, bytes)) if bytes.len() > 1 && torn_rate > 0.0 => d.unit() < torn_rate,
                _ => false,
            };
            let keep = if tear {
                let len = last.as_ref().map_or(0, |l| l.1.len());
                1 + ((d.rng)() % (len as u64 - 1)) as usize
            } else {
                0
            };
            let f = d.files.get_mut(&name).expect("listed above");
            f.written = f.durable.clone();
            if let (true, Some((off, bytes))) = (tear, last) {
                let end = off + keep;
                if f.written.len() < end {
                    f.written.resize(end, 0);
                }
                f.written[off..end].copy_from_slice(&bytes[..keep]);
                f.durable = f.written.clone();
                torn.push(format!("{name}: {keep} of {} bytes", bytes.len()));
            }
        }
        torn
    }

    /// (path, durable size) of every file, for reports and tests.
    pub fn files(&self) -> Vec<(String, usize)> {
        self.disk
            .lock_disk()
            .files
            .iter()
            .map(|(k, f)| (k.clone(), f.durable.len()))
            .collect()
    }
}

/// Opens `rel` on `disk` through the simulated VFS.
pub fn open(disk: &SimDisk, rel: &str) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags as F;
    rusqlite::Connection::open_with_flags_and_vfs(
        disk.path(rel),
        F::SQLITE_OPEN_READ_WRITE | F::SQLITE_OPEN_CREATE | F::SQLITE_OPEN_NO_MUTEX,
        VFS_NAME,
    )
}

/// Pragmas for a database on the simulated disk: a rollback journal with full syncs (the
/// VFS has no shared memory for WAL), temp data in memory. `nosync` plants the durability bug.
pub fn durable_pragmas(conn: &rusqlite::Connection, nosync: bool) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", if nosync { "OFF" } else { "FULL" })?;
    conn.pragma_update(None, "temp_store", "MEMORY")
}

// ---- the VFS itself ----

#[repr(C)]
struct Handle {
    base: ffi::sqlite3_file,
    data: *mut HandleData,
}

struct HandleData {
    disk: Arc<Mutex<Disk>>,
    name: String,
    generation: u64,
    delete_on_close: bool,
}

fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let vfs = Box::new(ffi::sqlite3_vfs {
            iVersion: 1,
            szOsFile: std::mem::size_of::<Handle>() as c_int,
            mxPathname: MAX_PATH,
            pNext: std::ptr::null_mut(),
            zName: VFS_NAME_C.as_ptr(),
            pAppData: std::ptr::null_mut(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: None,
            xDlError: None,
            xDlSym: None,
            xDlClose: None,
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: None,
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        });
        // SAFETY: the VFS struct is leaked, so it lives as long as SQLite may use it.
        let rc = unsafe { ffi::sqlite3_vfs_register(Box::leak(vfs), 0) };
        assert_eq!(rc, ffi::SQLITE_OK, "registering the simulated VFS");
    });
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_lock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe fn name_of(z: *const c_char) -> Option<String> {
    if z.is_null() {
        return None;
    }
    // SAFETY: SQLite passes NUL-terminated names.
    Some(unsafe { CStr::from_ptr(z) }.to_string_lossy().into_owned())
}

unsafe fn data<'a>(f: *mut ffi::sqlite3_file) -> &'a HandleData {
    // SAFETY: every file SQLite hands back was set up by x_open with a live `data`.
    unsafe { &*(*(f as *mut Handle)).data }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    z: ffi::sqlite3_filename,
    f: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: z is a name or null; f points at szOsFile bytes SQLite allocated.
    unsafe {
        (*f).pMethods = std::ptr::null();
        let (disk, name) = match name_of(z) {
            Some(n) => match disk_of(&n) {
                Some(x) => x,
                None => return ffi::SQLITE_CANTOPEN,
            },
            None => {
                // A temp file with no name: the disk of any open database will do; use the
                // most recent one of this thread.
                let Some(disk) = DISKS.with(|d| d.borrow().values().rev().find_map(Weak::upgrade))
                else {
                    return ffi::SQLITE_CANTOPEN;
                };
                let n = {
                    let mut d = disk.lock_disk();
                    d.temp_seq += 1;
                    format!(".tmp/{}", d.temp_seq)
                };
                (disk, n)
            }
        };
        let generation = {
            let mut d = disk.lock_disk();
            if !d.files.contains_key(&name) {
                if flags & ffi::SQLITE_OPEN_CREATE == 0 {
                    return ffi::SQLITE_CANTOPEN;
                }
                d.files.insert(name.clone(), File::default());
            }
            d.generation
        };
        let data = Box::new(HandleData {
            disk,
            name,
            generation,
            delete_on_close: flags & ffi::SQLITE_OPEN_DELETEONCLOSE != 0,
        });
        std::ptr::write(
            f as *mut Handle,
            Handle {
                base: ffi::sqlite3_file {
                    pMethods: &IO_METHODS,
                },
                data: Box::into_raw(data),
            },
        );
        if !out_flags.is_null() {
            *out_flags = flags;
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    z: *const c_char,
    _sync_dir: c_int,
) -> c_int {
    // SAFETY: z is a NUL-terminated name.
    let Some((disk, name)) = unsafe { name_of(z) }.and_then(|n| disk_of(&n)) else {
        return ffi::SQLITE_IOERR_DELETE;
    };
    disk.lock_disk().files.remove(&name);
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    z: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    // SAFETY: z is a NUL-terminated name, out a valid int.
    unsafe {
        let exists = name_of(z)
            .and_then(|n| disk_of(&n))
            .is_some_and(|(disk, name)| disk.lock_disk().files.contains_key(&name));
        *out = exists as c_int;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    z: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: z is NUL-terminated; out holds n_out bytes.
    unsafe {
        let bytes = CStr::from_ptr(z).to_bytes_with_nul();
        if bytes.len() > n_out as usize {
            return ffi::SQLITE_CANTOPEN;
        }
        std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, out, bytes.len());
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_randomness(
    _vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    // Deterministic bytes (journal nonces, temp names): a counter, never OS randomness.
    let seq = DISKS.with(|d| {
        d.borrow()
            .values()
            .rev()
            .find_map(Weak::upgrade)
            .map(|disk| {
                let mut d = disk.lock_disk();
                d.random_seq += 1;
                d.random_seq
            })
            .unwrap_or(0)
    });
    for i in 0..n.max(0) as usize {
        let b = seq
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(i as u32 % 64) as u8;
        // SAFETY: out holds n bytes.
        unsafe { *out.add(i) = b as c_char };
    }
    n
}

unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    micros
}

unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    // The simulator's epoch (2026-01-01T00:00:00Z) as a Julian day: no real clock is read.
    // SAFETY: out is a valid double.
    unsafe { *out = 2_461_041.5 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_get_last_error(
    _vfs: *mut ffi::sqlite3_vfs,
    _n: c_int,
    _out: *mut c_char,
) -> c_int {
    0
}

unsafe extern "C" fn x_close(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: data was made by Box::into_raw in x_open and is freed once, here.
    unsafe {
        let h = f as *mut Handle;
        if (*h).data.is_null() {
            return ffi::SQLITE_OK;
        }
        let data = Box::from_raw((*h).data);
        (*h).data = std::ptr::null_mut();
        if data.delete_on_close {
            let mut d = data.disk.lock_disk();
            if d.generation == data.generation {
                d.files.remove(&data.name);
            }
        }
    }
    ffi::SQLITE_OK
}

/// The handle's file when the handle is alive (opened since the last crash); a fault drawn
/// for `op` at `rate` fails the call with `code`.
fn io<R>(
    f: *mut ffi::sqlite3_file,
    rate: impl Fn(&DiskFaults) -> f64,
    kind: &'static str,
    code: c_int,
    body: impl FnOnce(&mut File, &mut Disk) -> R,
) -> Result<R, c_int> {
    // SAFETY: f is a file x_open set up.
    let h = unsafe { data(f) };
    let mut d = h.disk.lock_disk();
    if d.generation != h.generation {
        return Err(code);
    }
    let r = rate(&d.faults);
    if d.draw(r) {
        d.fired.push((kind, h.name.clone()));
        return Err(code);
    }
    let mut file = d.files.remove(&h.name).unwrap_or_default();
    let out = body(&mut file, &mut d);
    d.files.insert(h.name.clone(), file);
    Ok(out)
}

unsafe extern "C" fn x_read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    let (amt, off) = (amt.max(0) as usize, off.max(0) as usize);
    let r = io(
        f,
        |x| x.ioerr,
        "ioerr",
        ffi::SQLITE_IOERR_READ,
        |file, _| {
            let have = file.written.len().saturating_sub(off).min(amt);
            // SAFETY: buf holds amt bytes.
            unsafe {
                let out = std::slice::from_raw_parts_mut(buf as *mut u8, amt);
                if have > 0 {
                    out[..have].copy_from_slice(&file.written[off..off + have]);
                }
                out[have..].fill(0);
            }
            have
        },
    );
    match r {
        Ok(n) if n < amt => ffi::SQLITE_IOERR_SHORT_READ,
        Ok(_) => ffi::SQLITE_OK,
        Err(c) => c,
    }
}

unsafe extern "C" fn x_write(
    f: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    let (amt, off) = (amt.max(0) as usize, off.max(0) as usize);
    // SAFETY: buf holds amt bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buf as *const u8, amt) };
    let r = io(
        f,
        |x| x.ioerr,
        "ioerr",
        ffi::SQLITE_IOERR_WRITE,
        |file, _| {
            if file.written.len() < off + amt {
                file.written.resize(off + amt, 0);
            }
            file.written[off..off + amt].copy_from_slice(bytes);
            file.last_unsynced = Some((off, bytes.to_vec()));
        },
    );
    r.err().unwrap_or(ffi::SQLITE_OK)
}

unsafe extern "C" fn x_truncate(f: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    let r = io(
        f,
        |x| x.ioerr,
        "ioerr",
        ffi::SQLITE_IOERR_TRUNCATE,
        |file, _| {
            file.written.truncate(size.max(0) as usize);
            file.last_unsynced = None;
        },
    );
    r.err().unwrap_or(ffi::SQLITE_OK)
}

unsafe extern "C" fn x_sync(f: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    let r = io(
        f,
        |x| x.syncerr,
        "syncerr",
        ffi::SQLITE_IOERR_FSYNC,
        |file, d| {
            if d.draw(d.faults.fsyncloss) {
                // SAFETY: f is a file x_open set up.
                let name = unsafe { data(f) }.name.clone();
                d.fired.push(("fsyncloss", name));
                return;
            }
            file.durable = file.written.clone();
            file.last_unsynced = None;
        },
    );
    r.err().unwrap_or(ffi::SQLITE_OK)
}

unsafe extern "C" fn x_file_size(f: *mut ffi::sqlite3_file, out: *mut ffi::sqlite3_int64) -> c_int {
    // SAFETY: f is a file x_open set up; out a valid int64.
    unsafe {
        let h = data(f);
        let d = h.disk.lock_disk();
        if d.generation != h.generation {
            return ffi::SQLITE_IOERR_FSTAT;
        }
        *out = d.files.get(&h.name).map_or(0, |x| x.written.len()) as ffi::sqlite3_int64;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_lock(_f: *mut ffi::sqlite3_file, _level: c_int) -> c_int {
    // One connection per file under the simulator: locks always succeed.
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(_f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: out is a valid int.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    _f: *mut ffi::sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_f: *mut ffi::sqlite3_file) -> c_int {
    4096
}

unsafe extern "C" fn x_device_characteristics(_f: *mut ffi::sqlite3_file) -> c_int {
    0
}

/// A digest of a database's logical content (schema and every row of every table), for the
/// simulator's durability checks.
pub fn digest(conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
    let mut h = Fnv::default();
    let mut st =
        conn.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let tables: Vec<(String, Option<String>)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (name, sql) in tables {
        h.add(name.as_bytes());
        h.add(sql.unwrap_or_default().as_bytes());
        let mut rows = conn.prepare(&format!("SELECT * FROM \"{}\"", name.replace('"', "\"\"")))?;
        let n = rows.column_count();
        let mut it = rows.query([])?;
        let mut lines: Vec<Vec<u8>> = Vec::new();
        while let Some(r) = it.next()? {
            let mut line = Vec::new();
            for i in 0..n {
                use rusqlite::types::ValueRef as V;
                match r.get_ref(i)? {
                    V::Null => line.push(0),
                    V::Integer(x) => {
                        line.push(1);
                        line.extend_from_slice(&x.to_le_bytes());
                    }
                    V::Real(x) => {
                        line.push(2);
                        line.extend_from_slice(&x.to_bits().to_le_bytes());
                    }
                    V::Text(t) | V::Blob(t) => {
                        line.push(3);
                        line.extend_from_slice(&(t.len() as u64).to_le_bytes());
                        line.extend_from_slice(t);
                    }
                }
            }
            lines.push(line);
        }
        // Row order is not content: compare as a set.
        lines.sort();
        for l in lines {
            h.add(&l);
        }
    }
    Ok(h.0)
}

struct Fnv(u64);
impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}
impl Fnv {
    fn add(&mut self, b: &[u8]) {
        for x in b.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> Box<dyn FnMut() -> u64 + Send> {
        let mut x = 0x1234_5678_u64;
        Box::new(move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
    }

    fn rows(c: &rusqlite::Connection) -> Vec<i64> {
        let mut st = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn committed_rows_survive_a_crash_and_nothing_leaks_to_the_os() {
        let disk = SimDisk::new(DiskFaults::default(), counter());
        let c = open(&disk, "db/app.db").unwrap();
        durable_pragmas(&c, false).unwrap();
        c.execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1), (2);")
            .unwrap();
        c.execute_batch("BEGIN; INSERT INTO t VALUES (3);").unwrap();
        disk.crash();
        drop(c);
        assert!(disk.exists("db/app.db"));
        let c = open(&disk, "db/app.db").unwrap();
        assert_eq!(rows(&c), vec![1, 2], "the open transaction is gone");
        assert!(!std::path::Path::new(&disk.path("db/app.db")).exists());
    }

    #[test]
    fn unsynced_commits_are_lost_and_sync_errors_reach_the_caller() {
        let disk = SimDisk::new(DiskFaults::default(), counter());
        let c = open(&disk, "a.db").unwrap();
        durable_pragmas(&c, true).unwrap(); // the planted bug: no syncs
        c.execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        disk.crash();
        drop(c);
        let c = open(&disk, "a.db").unwrap();
        let tables: i64 = c
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "acknowledged but never synced: lost");

        let disk = SimDisk::new(
            DiskFaults {
                syncerr: 1.0,
                ..Default::default()
            },
            counter(),
        );
        let c = open(&disk, "b.db").unwrap();
        let e = durable_pragmas(&c, false)
            .and_then(|_| c.execute_batch("CREATE TABLE t (v INTEGER)"))
            .unwrap_err();
        assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::SystemIoFailure)
        );
        assert!(disk.take_fired().iter().any(|(k, _)| *k == "syncerr"));
    }

    #[test]
    fn torn_writes_and_io_errors_never_lose_a_commit() {
        let (mut torn, mut errors) = (0, 0);
        for seed in 0..40u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let disk = SimDisk::new(
                DiskFaults {
                    ioerr: 0.05,
                    syncerr: 0.05,
                    fsyncloss: 0.0,
                    torn: 0.5,
                },
                Box::new(move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                }),
            );
            disk.set_quiet(true);
            let c = open(&disk, "t.db").unwrap();
            durable_pragmas(&c, false).unwrap();
            c.execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
            disk.set_quiet(false);
            let mut acked = Vec::new();
            let mut c = c;
            for i in 0..60i64 {
                if c.execute("INSERT INTO t VALUES (?1)", [i]).is_ok() {
                    acked.push(i);
                }
                if i % 17 == 16 {
                    torn += disk.crash().len();
                    errors += disk.take_fired().len();
                    drop(c);
                    disk.set_quiet(true);
                    c = open(&disk, "t.db").unwrap();
                    let have = rows(&c);
                    assert_eq!(have, acked, "seed {seed}: after a crash at {i}");
                    disk.set_quiet(false);
                }
            }
        }
        assert!(
            torn > 10 && errors > 10,
            "faults fired: {torn} torn, {errors} errors"
        );
    }
}
