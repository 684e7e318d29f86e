//! The command line: the commands and their dispatch. Each command lives in its own
//! file with its arguments; all of them return a result carrying an exit code
//! ([`exit`], [`Failure`] in `failure.rs`) so nothing below `main` calls
//! `process::exit` (except a second Ctrl-C). What several commands share: `setup.rs`
//! (the plan, the runtime), `values.rs` (argument values), `outputs.rs` (report files), `console.rs` (text on
//! stdout that a closed pipe ends quietly).

mod compare;
mod console;
mod failure;
mod interrupt;
mod live_metrics;
mod merge;
mod outputs;
mod preflight;
mod probe_cmd;
mod progress;
mod run;
mod search;
mod serve;
mod setup;
mod shard_args;
mod target_restart;
mod values;
mod worker;

use clap::{Parser, Subcommand};

pub use failure::{exit, Failure};
pub use probe_cmd::ProbeArgs;
pub use run::RunArgs;
pub use serve::ServeArgs;
pub use worker::WorkerArgs;

/// Connection-capacity load tests for TCP and MQTT servers, with socket states
/// verified by the kernel's sock_diag at every phase.
#[derive(Debug, Parser)]
#[command(name = "sockcap", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario file and report every phase (exit 0 when all expectations hold).
    Run(RunArgs),
    /// Find the target's limit (connect rate or connections held) against the `[search]`
    /// objectives, by stepping then bisecting (exit 0 found, 1 the first step breached).
    Search(search::SearchArgs),
    /// Count TCP sockets by state for a port (a netstat | sort | uniq -c replacement).
    Probe(ProbeArgs),
    /// Run the embedded target on its own.
    Serve(ServeArgs),
    /// Compare two JSON reports phase by phase (exit 1 when a figure regressed past its limit).
    Compare(compare::CompareArgs),
    /// Check a scenario's budget (descriptors, ports, memory, TIME_WAIT, accept queue, the
    /// target's descriptors) before running it (exit 0 fits, 3 does not).
    Preflight(preflight::PreflightArgs),
    /// Merge the JSON reports of a sharded run's shards into one, exactly (exit 0 when
    /// the merged expectations hold, 1 when one fails or a shard is missing).
    Merge(merge::MergeArgs),
    /// One worker process of a run (started by `sockcap run`, not by hand).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// Run the parsed command; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Search(args) => search::search(args),
        Command::Probe(args) => probe_cmd::probe(args),
        Command::Serve(args) => serve::serve(args),
        Command::Compare(args) => compare::compare(args),
        Command::Preflight(args) => preflight::preflight(args),
        Command::Merge(args) => merge::merge(args),
        Command::Worker(args) => worker::worker(args),
    }
}
