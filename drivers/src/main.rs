//! The `weft` command: init, run and bench. Parses arguments and hands off to the driver.
//! All runtime behaviour lives in the engine; this file must stay a thin front.

// World handlers answer with engine error values (data travelling back to Lua).
#![allow(clippy::result_large_err)]

mod bench;
mod check;
mod cluster;
mod init;
mod inputs;
mod logs;
mod project;
mod run;
mod sim;

/// mimalloc: the engine, the Luau VM (mlua allocates through Rust's allocator) and the
/// HTTP/2 stack allocate and free small blocks on every message; glibc's malloc spent 16% of
/// a node's time on them at 16 concurrent remote calls.
///
/// Called directly rather than through the `mimalloc` crate, whose allocator asks for every
/// block with `mi_malloc_aligned`: that takes mimalloc's generic aligned path (about 90
/// instructions instead of about 20), some twenty times per relayed message.
#[global_allocator]
static ALLOC: MiMalloc = MiMalloc;

struct MiMalloc;

/// Blocks from `mi_malloc` are aligned to 16 bytes when they are at least that big (and to
/// their size below it), as glibc's are; Rust's `System` allocator relies on the same rule.
const MI_MIN_ALIGN: usize = 16;

fn plain(layout: std::alloc::Layout) -> bool {
    layout.align() <= MI_MIN_ALIGN && layout.align() <= layout.size()
}

// SAFETY: each call forwards to mimalloc with a size and alignment it honours; blocks are freed
// by `mi_free`, whichever call made them.
unsafe impl std::alloc::GlobalAlloc for MiMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if plain(layout) {
            libmimalloc_sys::mi_malloc(layout.size()).cast()
        } else {
            libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if plain(layout) {
            libmimalloc_sys::mi_zalloc(layout.size()).cast()
        } else {
            libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` is a valid size for `layout`'s alignment (GlobalAlloc's contract).
        if plain(std::alloc::Layout::from_size_align_unchecked(
            new_size,
            layout.align(),
        )) {
            libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            libmimalloc_sys::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

use clap::{CommandFactory, Parser, Subcommand};
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

/// Weft runs Wippy-format actor apps (YAML entries + Lua) on a deterministic engine.
/// `weft --version`: the crate version and the commit it was built from (drivers/build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WEFT_COMMIT"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "weft",
    version = VERSION,
    about = "Weft runs Wippy-format actor apps (YAML entries + typed Lua) on a deterministic, sans-IO engine.",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a project here: scaffolds a runnable app in an empty folder, or writes
    /// wippy.lock when src/ already exists.
    Init(init::InitArgs),
    /// Boot the app in this folder: start auto_start services, optionally run a process on
    /// the terminal host (-x ns:entry, or host/entry), or a named command with arguments.
    Run(run::RunArgs),
    /// Run the app under the deterministic simulator: seeded scheduling, virtual time,
    /// injected faults, invariant checks; the same seed replays the same run.
    Sim(Box<sim::SimArgs>),
    /// Validate the app without running it: loads every entry, compiles every Lua file,
    /// checks imports, modules and references; reports every problem with file:line and
    /// exits 1 if there is any.
    Check(check::CheckArgs),
    /// Measure the runtime: prints `name value unit` lines.
    Bench(bench::BenchArgs),
}

/// `weft run DIR ...`, `weft sim DIR ...`, `weft check DIR`: a first argument that is a folder
/// names the app, as `-C DIR` does. For `run` only an app folder counts, since its first
/// argument may also be a command name. Arguments are left alone when `-C` is given, and after
/// `-x` (what follows the entry is the process's) or `--`.
fn folder_as_dir(mut args: Vec<OsString>) -> Vec<OsString> {
    let cli = Cli::command();
    let Some(sub) = args
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|name| cli.find_subcommand(name))
    else {
        return args;
    };
    if !sub.get_arguments().any(|a| a.get_id() == "dir") {
        return args;
    }
    let strict = sub.get_name() == "run";
    let options: Vec<&clap::Arg> = sub.get_arguments().filter(|a| !a.is_positional()).collect();
    let stops = |a: &clap::Arg| a.get_id() == "dir" || a.get_id() == "exec";
    let mut i = 2;
    while let Some(arg) = args.get(i).and_then(|a| a.to_str()) {
        if arg == "--" {
            return args;
        }
        let found = if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, _)) => (n, true),
                None => (long, false),
            };
            options
                .iter()
                .find(|o| o.get_long() == Some(name))
                .map(|o| (*o, !inline))
        } else if let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) {
            // A cluster like -vx ENTRY: the first flag taking a value takes the rest of the
            // cluster, or the next argument when it ends the cluster.
            flags.char_indices().find_map(|(at, c)| {
                let o = options.iter().find(|o| o.get_short() == Some(c))?;
                let ends = at + c.len_utf8() == flags.len();
                (stops(o) || o.get_action().takes_values()).then_some((*o, ends))
            })
        } else {
            let dir = Path::new(arg);
            let is_folder = if strict {
                project::is_app_folder(dir)
            } else {
                dir.is_dir()
            };
            if is_folder {
                let value = args[i].clone();
                args.splice(i..=i, [OsString::from("-C"), value]);
            }
            return args;
        };
        match found {
            Some((o, _)) if stops(o) => return args,
            Some((o, next_is_value)) if o.get_action().takes_values() && next_is_value => i += 2,
            _ => i += 1,
        }
    }
    args
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away (`| head`),
    // instead of panicking on the failed write.
    // SAFETY: resetting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse_from(folder_as_dir(std::env::args_os().collect()));
    let code = match cli.command {
        Cmd::Init(a) => init::init(a),
        Cmd::Run(a) => run::run(a),
        Cmd::Sim(a) => {
            sim::reexec_without_aslr();
            sim::sim(*a)
        }
        Cmd::Check(a) => check::check(a),
        Cmd::Bench(a) => bench::bench(a),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
