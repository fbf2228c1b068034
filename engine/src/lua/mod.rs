//! The Luau runtime: one VM per node, each process a sandboxed thread with its own globals.
//! Owns VM setup, entry compilation and the process factory; the modules live beside it.

mod arena;
pub mod base64;
pub mod channel;
pub mod convert;
pub mod coroutines;
pub mod env;
pub mod errors;
pub mod events;
pub mod funcs;
pub mod hash;
pub mod interrupt;
pub mod io;
pub mod json;
pub mod jsonschema;
pub mod logger;
pub mod lua_process;
pub mod os;
pub mod payload;
pub mod prepass;
pub mod process;
pub mod registry;
pub mod sql;
pub mod store;
pub mod time;
pub mod timefmt;
pub mod uuid;
pub mod yaml;

use crate::command::{Command, Reply};
use crate::entries::Entry;
use crate::node::{Factory, Port, Spawning};
use crate::value::{kind, ErrorValue, Value};
use lua_process::{LuaProcess, ProcState};
use mlua::{Function, LightUserData, Lua, Table, Value as LV};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Names a granted module can have in `modules:`.
pub const MODULES: &[&str] = &[
    "io", "time", "logger", "json", "process", "channel", "errors", "os", "funcs", "ctx", "events",
    "payload", "env", "uuid", "hash", "base64", "yaml", "sql", "store", "registry",
];

static PARK_ADDR: u8 = 0;

const STRING_COMPAT: &str = r#"
local string = ...
local find, match, gmatch, gsub = string.find, string.match, string.gmatch, string.gsub
local function str(v)
  local t = type(v)
  if t == "userdata" or t == "table" then return tostring(v) end
  return v
end
string.find = function(s, ...) return find(str(s), ...) end
string.match = function(s, ...) return match(str(s), ...) end
string.gmatch = function(s, ...) return gmatch(str(s), ...) end
string.gsub = function(s, ...) return gsub(str(s), ...) end
setmetatable(string, { __call = function(_, v) return tostring(v) end })
"#;

pub(crate) fn park_value() -> LV {
    LV::LightUserData(LightUserData(
        &PARK_ADDR as *const u8 as *mut std::ffi::c_void,
    ))
}

pub(crate) fn is_park(v: &LV) -> bool {
    matches!(v, LV::LightUserData(p) if std::ptr::eq(p.0 as *const u8, &PARK_ADDR))
}

/// What the shared Rust functions of a VM reach through its app data: the node's command port
/// and the process stepping now. Lua code never holds the node: it builds commands and hands
/// them to the port, which dispatches them through the node's command registry.
pub struct Bridge {
    pub port: Port,
    pub current: RefCell<Option<Rc<RefCell<ProcState>>>>,
    /// Id of the process stepping now (0 between steps).
    pub current_id: Cell<u64>,
    /// The node's resource limits.
    pub limits: crate::node::Limits,
    /// Luau memory categories free for a process's own accounting (Luau has 255; 0 is shared).
    pub memcats: RefCell<std::collections::VecDeque<u8>>,
    /// The VM's heap ceiling in bytes (0: none).
    pub heap_ceiling: Cell<usize>,
    /// The process stepping now already yielded once to let a frame out since it last waited:
    /// it sends frame after frame (a stream), and those leave together at the end of its step.
    pub flushed: Cell<bool>,
}

pub(crate) fn bridge(lua: &Lua) -> Rc<Bridge> {
    lua.app_data_ref::<Rc<Bridge>>()
        .expect("weft host installed")
        .clone()
}

/// The running process's state; raises if called outside a process.
pub(crate) fn current(lua: &Lua) -> mlua::Result<Rc<RefCell<ProcState>>> {
    bridge(lua)
        .current
        .borrow()
        .clone()
        .ok_or_else(|| mlua::Error::runtime("not inside a process"))
}

/// Runs `cmd` for the process stepping now and returns the node's reply.
pub(crate) fn dispatch(lua: &Lua, cmd: Command) -> mlua::Result<Reply> {
    let h = lua
        .app_data_ref::<Rc<Bridge>>()
        .ok_or_else(|| mlua::Error::runtime("weft host not installed"))?;
    let me = h.current_id.get();
    if me == 0 {
        return Err(mlua::Error::runtime("not inside a process"));
    }
    // Handlers run on the node and never reach back into the VM, so the borrow can stay.
    let reply = h.port.dispatch(me, cmd);
    if h.port.core.borrow().flush_soon && !h.flushed.replace(true) {
        // A frame for a peer is queued and nothing else is ready: stop at the next preemption
        // point so the driver sends it before this step goes on. Once per wake-up: a process
        // that goes on sending is streaming, and its frames batch as before.
        interrupt::yield_soon();
    }
    Ok(reply)
}

/// A command whose reply is a plain result (never pending): the value, or the error raised
/// as `nil, err` by the caller.
pub(crate) fn request(lua: &Lua, cmd: Command) -> mlua::Result<Result<Value, ErrorValue>> {
    Ok(dispatch(lua, cmd)?.into_result())
}

/// Lua's `value, nil` or `nil, err` for a reply; a pending reply parks the calling coroutine
/// until its tag completes (the Lua function must be wrapped with the prelude's `blocking`).
pub(crate) fn answer(lua: &Lua, reply: Reply) -> mlua::Result<(LV, LV)> {
    match reply {
        Reply::Pending(tag) => lua_process::await_tag(lua, tag),
        Reply::Done(Ok(v)) => Ok((convert::to_lua(lua, &v)?, LV::Nil)),
        Reply::Done(Err(e)) => errors::fail(lua, e),
        other => errors::fail(lua, other.into_result().unwrap_err()),
    }
}

/// A boot-time error in one entry's Lua source.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    pub entry: String,
    pub message: String,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entry '{}': {}", self.entry, self.message)
    }
}

struct Compiled {
    template: Function,
    env_meta: Table,
    /// `imports:` as (alias, library entry id), ids made absolute.
    imports: Vec<(String, String)>,
    /// An import alias hides a shared global: the env must not be marked safe.
    shadows: bool,
}

/// How to build the imported libraries of one entry, computed once at link time.
struct Plan {
    /// Every library the entry needs, transitively, dependencies first; each instantiated once
    /// per process: (template, its env metatable, frozen binds `{alias, index, ...}`).
    libs: Vec<(Rc<Compiled>, Table)>,
    /// The entry's own binds into its env, same shape.
    binds: Table,
}

pub struct LuaRuntime {
    lua: Lua,
    compiled: BTreeMap<String, Rc<Compiled>>,
    /// Link plans of entries with `imports:` (entries without imports have none).
    plans: BTreeMap<String, Rc<Plan>>,
    layers: BTreeMap<Vec<String>, Table>,
    modules: BTreeMap<&'static str, LV>,
    boot: Function,
}

/// Chunk name shown in Lua errors: the source file when known, else the entry id.
fn chunk_name(e: &Entry) -> String {
    match &e.source_file {
        Some(f) => format!("@{f}"),
        None => format!("@{}", e.id),
    }
}

pub fn compile(src: &str, name: &str) -> Result<Vec<u8>, String> {
    let src = prepass::to_luau(src);
    let bc = mlua::chunk::Compiler::new()
        .set_optimization_level(1)
        .compile(src.as_ref());
    match bc {
        Ok(b) => Ok(b),
        Err(e) => {
            let msg = e.to_string();
            // Luau reports ":line: message"; put the file in front as `file:line: message`.
            let file = name.trim_start_matches('@');
            let msg = msg.trim_start_matches("syntax error: ");
            let starts_with_line = msg
                .split(':')
                .next()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if let Some(rest) = msg.strip_prefix(':') {
                Err(format!("{file}:{rest}"))
            } else if starts_with_line {
                Err(format!("{file}:{msg}"))
            } else {
                Err(format!("{file}: {msg}"))
            }
        }
    }
}

impl LuaRuntime {
    pub fn new(port: Port) -> mlua::Result<LuaRuntime> {
        let (limits, deterministic_heap) = {
            let core = port.core.borrow();
            (core.cfg.limits, core.cfg.deterministic_heap)
        };
        let lua = if deterministic_heap {
            arena::new_lua()?
        } else {
            Lua::new()
        };
        lua.set_app_data(Rc::new(Bridge {
            port,
            current: RefCell::new(None),
            current_id: Cell::new(0),
            limits,
            memcats: RefCell::new((1..=u8::MAX).collect()),
            heap_ceiling: Cell::new(0),
            flushed: Cell::new(false),
        }));

        let g = lua.globals();
        for name in [
            "getfenv",
            "setfenv",
            "loadstring",
            "load",
            "dofile",
            "loadfile",
            "collectgarbage",
            "gcinfo",
            "debug",
            "utf8",
        ] {
            g.raw_set(name, LV::Nil)?;
        }
        // Shared globals every process sees (identical for all, so Luau's import cache is safe).
        let coroutine: Table = g.get("coroutine")?;
        let yield_fn: Function = coroutine.get("yield")?;
        let raw = lua.create_table()?;
        channel::install_raw(&lua, &raw)?;
        time::install_raw(&lua, &raw)?;
        io::install_raw(&lua, &raw)?;
        raw.set(
            "require_lookup",
            lua.create_function(lua_process::require_lookup)?,
        )?;
        let prelude: Table = lua
            .load(include_str!("prelude.lua"))
            .set_name("=weft-prelude")
            .call((park_value(), raw, yield_fn, interrupt::preempt_value()))?;
        lua.set_named_registry_value("weft.chan_methods", prelude.get::<Table>("chan_methods")?)?;
        let boot: Function = prelude.get("boot")?;

        coroutine.raw_set("spawn", lua.create_function(lua_process::coroutine_spawn)?)?;
        coroutine.raw_set("resume", prelude.get::<Function>("resume")?)?;
        coroutine.raw_set("wrap", prelude.get::<Function>("wrap")?)?;
        // Wippy's dialect: `string(x)` casts, and the pattern functions take error values and
        // other objects with a string form (Wippy's tests do string.find(err, "...")).
        lua.load(STRING_COMPAT)
            .set_name("=weft-string")
            .call::<()>(g.get::<Table>("string")?)?;
        let math: Table = g.get("math")?;
        math.raw_set("random", lua.create_function(lua_process::math_random)?)?;
        math.raw_set(
            "randomseed",
            lua.create_function(lua_process::math_randomseed)?,
        )?;
        g.raw_set("channel", channel::module(&lua, &prelude)?)?;
        let process_table = process::module(&lua, &prelude)?;
        funcs::extend_process(&lua, &process_table)?;
        funcs::extend_process_exec(&lua, &process_table, &prelude)?;
        g.raw_set("process", process_table)?;
        g.raw_set("errors", errors::module(&lua)?)?;
        g.raw_set("os", os::module(&lua)?)?;
        g.raw_set("payload", payload::module(&lua)?)?;
        g.raw_set("print", lua.create_function(logger::global_print)?)?;
        g.raw_set("require", prelude.get::<LV>("require")?)?;
        g.raw_set("subscribe", LV::Nil)?;

        let mut modules = BTreeMap::new();
        modules.insert("io", LV::Table(io::module(&lua, &prelude)?));
        modules.insert("time", LV::Table(time::module(&lua, &prelude)?));
        modules.insert("logger", LV::UserData(logger::root(&lua)?));
        modules.insert("json", LV::Table(json::module(&lua)?));
        modules.insert("funcs", LV::Table(funcs::module(&lua, &prelude)?));
        modules.insert("ctx", LV::Table(funcs::ctx_module(&lua)?));
        modules.insert("events", LV::Table(events::module(&lua)?));
        modules.insert("env", LV::Table(env::module(&lua, &prelude)?));
        modules.insert("uuid", LV::Table(uuid::module(&lua)?));
        modules.insert("hash", LV::Table(hash::module(&lua)?));
        modules.insert("base64", LV::Table(base64::module(&lua)?));
        modules.insert("yaml", LV::Table(yaml::module(&lua)?));
        let glue = storage_glue(&lua, &prelude)?;
        modules.insert("sql", LV::Table(sql::module(&lua, &glue)?));
        modules.insert("store", LV::Table(store::module(&lua, &glue)?));
        modules.insert("registry", LV::Table(registry::module(&lua, &prelude)?));
        for v in modules.values() {
            if let LV::Table(t) = v {
                freeze(t, &mut Vec::new());
            }
        }
        freeze(&g, &mut Vec::new());
        lua.sandbox(true)?;
        interrupt::install(&lua)?;
        let node_memory = match (deterministic_heap, limits.node_memory) {
            (false, n) => n,
            (true, 0) => arena::HEAP_CEILING,
            (true, n) => n.min(arena::HEAP_CEILING),
        };
        if node_memory > 0 {
            // Past this, allocations fail with a Lua error in whoever allocates; the node
            // itself never aborts.
            let ceiling = lua.used_memory() + node_memory;
            lua.set_memory_limit(ceiling)?;
            bridge(&lua).heap_ceiling.set(ceiling);
        }

        Ok(LuaRuntime {
            lua,
            compiled: BTreeMap::new(),
            plans: BTreeMap::new(),
            layers: BTreeMap::new(),
            modules,
            boot,
        })
    }

    /// A runtime for compiling and linking entries only (`weft check`): it belongs to no
    /// running node, so nothing it could build would ever be stepped.
    pub fn detached() -> mlua::Result<LuaRuntime> {
        LuaRuntime::new(crate::node::Node::bare(crate::node::NodeConfig::default()).port())
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// The environment metatable for a set of granted modules (shared by every process with it).
    fn layer(&mut self, mods: &[String]) -> mlua::Result<Table> {
        if let Some(t) = self.layers.get(mods) {
            return Ok(t.clone());
        }
        let layer = self.lua.create_table()?;
        for m in mods {
            if let Some(v) = self.modules.get(m.as_str()) {
                layer.raw_set(m.as_str(), v.clone())?;
            }
        }
        let lm = self.lua.create_table()?;
        lm.raw_set("__index", self.lua.globals())?;
        layer.set_metatable(Some(lm))?;
        layer.set_readonly(true);
        let meta = self.lua.create_table()?;
        meta.raw_set("__index", layer)?;
        meta.raw_set("__metatable", "locked")?;
        meta.set_readonly(true);
        self.layers.insert(mods.to_vec(), meta.clone());
        Ok(meta)
    }

    /// Compiles an entry's source once; later spawns clone the loaded function.
    pub fn prepare(&mut self, e: &Entry) -> Result<(), CompileError> {
        if self.compiled.contains_key(&e.id) {
            return Ok(());
        }
        let cerr = |m: String| CompileError {
            entry: e.id.clone(),
            message: m,
        };
        let src = e
            .data
            .get("source")
            .and_then(|v| v.as_str())
            .ok_or_else(|| cerr("needs `source:` (Lua text or file://path)".into()))?;
        let name = chunk_name(e);
        let bc = compile(src, &name).map_err(cerr)?;
        let mods = modules_of(e);
        // A module Weft does not have yet is not a boot error (Wippy binds modules lazily and
        // an entry may never run): boot warns, and `require` raises when it is reached.
        let imports = imports_of(e).map_err(cerr)?;
        // Luau resolves reads of shared global names at load time (luau-notes §2.3). An alias
        // that shadows one (Wippy's tests import a library as `assert`) is only seen if the
        // chunk's env is not marked safe, which makes global reads take the slow path.
        let shadows = imports.iter().any(|(alias, _)| {
            !self
                .lua
                .globals()
                .get::<LV>(alias.as_str())
                .unwrap_or(LV::Nil)
                .is_nil()
        });
        let env_meta = self.layer(&mods).map_err(|e| cerr(e.to_string()))?;
        let env = self.lua.create_table().map_err(|e| cerr(e.to_string()))?;
        env.set_metatable(Some(env_meta.clone()))
            .map_err(|e| cerr(e.to_string()))?;
        let template = self
            .lua
            .load(&bc[..])
            .set_name(&name)
            .set_mode(mlua::chunk::ChunkMode::Binary)
            .set_environment(env)
            .into_function()
            .map_err(|e| cerr(e.to_string()))?;
        self.compiled.insert(
            e.id.clone(),
            Rc::new(Compiled {
                template,
                env_meta,
                imports,
                shadows,
            }),
        );
        Ok(())
    }

    /// Resolves an entry's `imports:` (transitively) into a plan used at every process creation.
    /// `lookup` finds entries by id (entries not yet compiled are compiled on the way). Errors
    /// name the entry whose `imports:` is wrong: a missing entry, a non-library, or a cycle.
    pub fn link(
        &mut self,
        e: &Entry,
        lookup: &dyn Fn(&str) -> Option<Rc<Entry>>,
    ) -> Result<(), CompileError> {
        self.prepare(e)?;
        if self.compiled[&e.id].imports.is_empty() || self.plans.contains_key(&e.id) {
            return Ok(());
        }
        let mut order: Vec<String> = Vec::new();
        let mut stack: Vec<String> = vec![e.id.clone()];
        self.visit(&e.id, lookup, &mut stack, &mut order)?;
        let lerr = |m: mlua::Error| CompileError {
            entry: e.id.clone(),
            message: m.to_string(),
        };
        let index = |id: &str| order.iter().position(|o| o == id).unwrap_or(0) + 1;
        let mut libs = Vec::with_capacity(order.len());
        for id in &order {
            let c = self.compiled[id].clone();
            let binds = self.binds(&c.imports, &index).map_err(lerr)?;
            libs.push((c, binds));
        }
        let binds = self
            .binds(&self.compiled[&e.id].imports.clone(), &index)
            .map_err(lerr)?;
        self.plans
            .insert(e.id.clone(), Rc::new(Plan { libs, binds }));
        Ok(())
    }

    fn binds(
        &self,
        imports: &[(String, String)],
        index: &dyn Fn(&str) -> usize,
    ) -> mlua::Result<Table> {
        let t = self.lua.create_table()?;
        for (i, (alias, id)) in imports.iter().enumerate() {
            t.raw_set(2 * i + 1, alias.as_str())?;
            t.raw_set(2 * i + 2, index(id))?;
        }
        t.set_readonly(true);
        Ok(t)
    }

    /// Depth-first over `id`'s imports: pushes libraries to `order` after their own imports.
    fn visit(
        &mut self,
        id: &str,
        lookup: &dyn Fn(&str) -> Option<Rc<Entry>>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), CompileError> {
        let imports = self.compiled[id].imports.clone();
        let cerr = |m: String| CompileError {
            entry: id.to_string(),
            message: m,
        };
        for (alias, target) in &imports {
            if order.contains(target) {
                continue;
            }
            if let Some(at) = stack.iter().position(|s| s == target) {
                let mut cycle = stack[at..].to_vec();
                cycle.push(target.clone());
                return Err(cerr(format!("import cycle: {}", cycle.join(" -> "))));
            }
            let lib = lookup(target).ok_or_else(|| {
                cerr(format!(
                    "imports: {alias}: entry '{target}' not found (it must be a library.lua entry)"
                ))
            })?;
            if lib.kind != crate::entries::EntryKind::LibraryLua {
                return Err(cerr(format!(
                    "imports: {alias}: '{target}' is a {}, not a library.lua",
                    lib.kind
                )));
            }
            self.prepare(&lib)?;
            stack.push(target.clone());
            self.visit(target, lookup, stack, order)?;
            stack.pop();
            order.push(target.clone());
        }
        Ok(())
    }

    fn new_process(&mut self, sp: Spawning<'_>) -> mlua::Result<LuaProcess> {
        let Spawning {
            pid,
            entry,
            args,
            terminal,
            stale,
            lookup,
        } = sp;
        self.drop_stale(stale);
        if !self.compiled.contains_key(&entry.id) {
            self.prepare(entry)
                .map_err(|e| mlua::Error::runtime(e.to_string()))?;
        }
        let c = self.compiled[&entry.id].clone();
        let env = self.lua.create_table()?;
        env.set_metatable(Some(c.env_meta.clone()))?;
        env.set_safeenv(!c.shadows);
        let chunk = c.template.deep_clone()?;
        chunk.set_environment(env.clone())?;
        let libs = if c.imports.is_empty() {
            LV::Nil
        } else {
            LV::Table(self.instantiate(lookup, entry, &env)?)
        };
        let thread = self.lua.create_thread(self.boot.clone())?;
        // A process of its own memory category while the VM has one free; past 255 live
        // processes the rest share category 0 and only the node's ceiling bounds them.
        let memcat = bridge(&self.lua)
            .memcats
            .borrow_mut()
            .pop_front()
            .unwrap_or(0);
        interrupt::set_category(&thread, memcat);
        let method = entry
            .data
            .get("method")
            .and_then(|v| v.as_str())
            .filter(|m| !m.is_empty())
            // function.lua without a method: the chunk itself is the body (prelude's boot).
            .unwrap_or(if entry.kind == crate::entries::EntryKind::FunctionLua {
                ""
            } else {
                "main"
            })
            .to_string();
        let mut st = ProcState::new(pid.clone(), entry.clone(), env, terminal);
        st.has_libs = !libs.is_nil();
        st.memcat = memcat;
        st.mem_limit =
            entry_limit(entry, "memory").unwrap_or(bridge(&self.lua).limits.process_memory);
        Ok(LuaProcess::new(
            self.lua.clone(),
            st,
            thread,
            chunk,
            method,
            libs,
            args,
        ))
    }

    /// Forgets compiled code of entries a registry change replaced or removed; link plans are
    /// rebuilt (a library may have changed under any importer).
    fn drop_stale(&mut self, stale: Vec<String>) {
        if !stale.is_empty() {
            for id in &stale {
                self.compiled.remove(id);
            }
            self.plans.clear();
        }
    }

    /// The libraries a process imports, ready for the prelude's `boot` to run and bind:
    /// `{ {chunk, env, binds}..., {nil, process env, binds} }`.
    fn instantiate(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<Rc<Entry>>,
        entry: &Rc<Entry>,
        env: &Table,
    ) -> mlua::Result<Table> {
        if !self.plans.contains_key(&entry.id) {
            self.link(entry, lookup)
                .map_err(|e| mlua::Error::runtime(e.to_string()))?;
        }
        let plan = self.plans[&entry.id].clone();
        let out = self
            .lua
            .create_table_with_capacity(plan.libs.len() + 1, 0)?;
        for (i, (lib, binds)) in plan.libs.iter().enumerate() {
            let lenv = self.lua.create_table()?;
            lenv.set_metatable(Some(lib.env_meta.clone()))?;
            lenv.set_safeenv(!lib.shadows);
            let chunk = lib.template.deep_clone()?;
            chunk.set_environment(lenv.clone())?;
            let step = self.lua.create_table_with_capacity(3, 0)?;
            step.raw_set(1, chunk)?;
            step.raw_set(2, lenv)?;
            step.raw_set(3, binds)?;
            out.raw_set(i + 1, step)?;
        }
        let step = self.lua.create_table_with_capacity(3, 0)?;
        step.raw_set(1, false)?;
        step.raw_set(2, env)?;
        step.raw_set(3, &plan.binds)?;
        out.raw_set(plan.libs.len() + 1, step)?;
        Ok(out)
    }
}

/// Loads storage.lua over the sql/store primitives; its method tables back the handles'
/// `__index` (read-only: every process shares them).
fn storage_glue(lua: &Lua, prelude: &Table) -> mlua::Result<Table> {
    let raw = lua.create_table()?;
    sql::install_raw(lua, &raw)?;
    store::install_raw(lua, &raw)?;
    let glue: Table = lua
        .load(include_str!("storage.lua"))
        .set_name("=weft-storage")
        .call((raw, prelude.get::<Function>("blocking")?))?;
    for k in ["sql_db", "sql_tx", "sql_stmt", "store"] {
        let t: Table = glue.get(k)?;
        t.set_readonly(true);
        lua.set_named_registry_value(&format!("weft.{k}"), t)?;
    }
    Ok(glue)
}

/// An entry's `imports:` map as (alias, absolute library id); ids without a namespace are
/// taken from the entry's own namespace.
pub fn imports_of(e: &Entry) -> Result<Vec<(String, String)>, String> {
    let t = match e.data.get("imports") {
        None | Some(Value::Nil) => return Ok(Vec::new()),
        Some(Value::Table(t)) if t.array.is_empty() => t,
        Some(_) => return Err("`imports:` must be a map of alias: library entry id".into()),
    };
    let mut out = Vec::new();
    for (k, v) in &t.map {
        let (Some(alias), Some(id)) = (k.as_str(), v.as_str()) else {
            return Err("`imports:` must be a map of alias: library entry id".into());
        };
        let ident = alias.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            return Err(format!("imports: alias '{alias}' is not a valid Lua name"));
        }
        let id = if id.contains(':') {
            id.to_string()
        } else {
            format!("{}:{id}", e.namespace)
        };
        out.push((alias.to_string(), id));
    }
    out.sort();
    Ok(out)
}

/// Modules an entry lists that this runtime does not provide.
pub fn unavailable_modules(e: &Entry) -> Vec<String> {
    modules_of(e)
        .into_iter()
        .filter(|m| !MODULES.contains(&m.as_str()))
        .collect()
}

pub fn modules_of(e: &Entry) -> Vec<String> {
    let mut mods: Vec<String> = match e.data.get("modules") {
        Some(Value::Table(t)) => t
            .array
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    mods.sort();
    mods.dedup();
    mods
}

/// A per-entry override of a node limit: `limits: { memory: 32M, mailbox: 1000 }` in the
/// entry (a number, or a size with a K/M/G suffix); None when absent or not understood.
pub fn entry_limit(e: &Entry, name: &str) -> Option<usize> {
    let Some(Value::Table(t)) = e.data.get("limits") else {
        return None;
    };
    let v = t.get(name)?;
    match v {
        Value::Int(n) => usize::try_from(*n).ok(),
        Value::Float(f) if *f >= 0.0 => Some(*f as usize),
        _ => crate::node::parse_size(v.as_str()?),
    }
}

/// Makes every table reachable from `t` read-only (Luau's own sandbox freezes one level only).
fn freeze(t: &Table, seen: &mut Vec<usize>) {
    let p = t.to_pointer() as usize;
    if seen.contains(&p) {
        return;
    }
    seen.push(p);
    for (_, v) in t.pairs::<LV, LV>().flatten() {
        if let LV::Table(inner) = v {
            freeze(&inner, seen);
        }
    }
    t.set_readonly(true);
}

impl Factory for LuaRuntime {
    fn create(&mut self, sp: Spawning<'_>) -> Result<Box<dyn crate::process::Process>, ErrorValue> {
        self.new_process(sp)
            .map(|p| Box::new(p) as Box<dyn crate::process::Process>)
            .map_err(|e| ErrorValue::new(kind::INTERNAL, e.to_string()))
    }
}

#[cfg(test)]
mod registry_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_support;

#[cfg(test)]
mod funcs_tests;
#[cfg(test)]
mod tests_modules;
