//! The `weft` command: init, run and bench. Parses arguments and hands off to the driver.
//! All runtime behaviour lives in the engine; this file must stay a thin front.

// World handlers answer with engine error values (data travelling back to Lua).
#![allow(clippy::result_large_err)]

mod bench;
mod init;
mod project;
mod run;
mod sim;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Weft runs Wippy-format actor apps (YAML entries + Lua) on a deterministic engine.
#[derive(Parser, Debug)]
#[command(
    name = "weft",
    version,
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
    Sim(sim::SimArgs),
    /// Measure the runtime: prints `name value unit` lines.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when the reader of our output goes away (`| head`),
    // instead of panicking on the failed write.
    // SAFETY: resetting a signal disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Init(a) => init::init(a),
        Cmd::Run(a) => run::run(a),
        Cmd::Sim(a) => {
            sim::reexec_without_aslr();
            sim::sim(a)
        }
        Cmd::Bench(a) => bench::bench(a),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
