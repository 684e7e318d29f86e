//! The command line: argument definitions, dispatch, and the meaning of exit codes.
//! Each command lives in its own file; all of them return an [`ExitCode`]-carrying
//! result so nothing below `main` calls `process::exit` (except a second Ctrl-C).

mod compare;
mod shard_args;
mod merge;
mod outputs;
mod preflight;
mod probe_cmd;
mod progress;
mod run;
mod serve;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::protocol::Protocol;

/// Exit codes, as documented in the README.
pub mod exit {
    /// Every expectation held.
    pub const PASSED: u8 = 0;
    /// An expectation failed (or the target failed mid-run).
    pub const FAILED: u8 = 1;
    /// Bad scenario or arguments.
    pub const BAD_INPUT: u8 = 2;
    /// The environment cannot run it (limits, permissions).
    pub const ENVIRONMENT: u8 = 3;
    /// Interrupted (Ctrl-C); the partial report was still written.
    pub const INTERRUPTED: u8 = 130;
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn bad_input(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: exit::BAD_INPUT, error: error.into() }
    }

    pub fn environment(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: exit::ENVIRONMENT, error: error.into() }
    }

    pub fn failed(error: impl Into<anyhow::Error>) -> Failure {
        Failure { code: exit::FAILED, error: error.into() }
    }
}

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

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Connect here instead of the scenario's `target` ("HOST:PORT" or "embedded").
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub outputs: outputs::ReportFiles,
    /// No live progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run client and embedded target in a private network namespace (as `[netns]` does,
    /// with the kernel's default sysctls unless the scenario sets some).
    #[arg(long)]
    pub netns: bool,
    /// Client source addresses instead of the scenario's `sources`, comma-separated:
    /// "127.0.0.2-127.0.0.40,127.0.1.1".
    #[arg(long, value_name = "LIST")]
    pub sources: Option<String>,
    /// Worker processes holding the connections: "auto" (as many as the descriptor
    /// limit requires) or a number.
    #[arg(long, default_value = "auto", value_parser = parse_workers)]
    pub workers: Workers,
    /// Run shard I of N of the scenario (connection g is shard g mod N's), one per
    /// host; "auto" reads I from $JOB_COMPLETION_INDEX and N from $SOCKCAP_SHARDS.
    /// Merge the shards' --json reports with `sockcap merge`.
    #[arg(long, value_name = "I/N|auto", value_parser = shard_args::parse_shard)]
    pub shard: Option<shard_args::ShardArg>,
    /// Start phase 1 together with the other shards: shard 0 listens on PORT, the
    /// others register at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "start_at")]
    pub rendezvous: Option<String>,
    /// How long a shard waits for its peers at the rendezvous before giving up (exit 3).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub rendezvous_timeout: Duration,
    /// Start phase 1 at this instant (UTC RFC 3339, e.g. 2026-11-27T18:30:00Z): for
    /// shards started by other means than a rendezvous; the hosts' clocks must agree.
    #[arg(long, value_name = "RFC3339")]
    pub start_at: Option<String>,
    /// Print the JSON report on stdout after the text, framed and checksummed, for
    /// collection from logs (`kubectl logs`); `sockcap merge` reads such logs.
    #[arg(long)]
    pub emit_report: bool,
}

/// How many worker processes a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// As many as needed to stay under the per-process descriptor limit.
    Auto,
    Count(u32),
}

impl Workers {
    /// The forced count, or `None` for auto.
    pub fn forced(self) -> Option<u64> {
        match self {
            Workers::Auto => None,
            Workers::Count(n) => Some(u64::from(n)),
        }
    }
}

fn parse_workers(text: &str) -> Result<Workers, String> {
    match text {
        "auto" => Ok(Workers::Auto),
        n => parse_process_count(n).map(Workers::Count).map_err(|e| format!("`{n}`: {e}, or \"auto\"")),
    }
}

/// `sockcap worker`: one shard of a run, driven by a coordinator over stdin/stdout.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// The target address, resolved by the coordinator.
    #[arg(long)]
    pub target: SocketAddr,
    /// This worker's shard, INDEX/COUNT.
    #[arg(long, value_parser = crate::shard::Shard::parse)]
    pub shard: crate::shard::Shard,
    /// The source ports per address, LO-HI.
    #[arg(long)]
    pub ports: String,
    /// Source addresses, comma-separated (none: the kernel's choice).
    #[arg(long)]
    pub sources: Option<String>,
    /// Host shards of the run (`run --shard I/N`: N); the shard above then counts
    /// over all hosts' workers.
    #[arg(long, default_value_t = 1)]
    pub hosts: u32,
    /// The SHA-256 of the scenario file as the coordinator read it: a worker refuses a
    /// file that changed since.
    #[arg(long)]
    pub scenario_sha256: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Count sockets whose local or remote port is this one (default: every TCP socket).
    #[arg(long, short)]
    pub port: Option<u16>,
    /// Show this many addresses holding most sockets to the port.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Repeat at this interval ("1s", "500ms") until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub watch: Option<Duration>,
    /// Print JSON (one object per census, one per line with --watch).
    #[arg(long)]
    pub json: bool,
    /// Read /proc/net/tcp{,6} instead of sock_diag.
    #[arg(long)]
    pub proc_net: bool,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the ready line says which).
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub listen: SocketAddr,
    #[arg(long, value_enum, default_value_t = Protocol::Mqtt)]
    pub protocol: Protocol,
    /// Listen backlog (capped by net.core.somaxconn).
    #[arg(long, default_value_t = crate::embedded::DEFAULT_BACKLOG)]
    pub backlog: u32,
    /// When a client half-closes: close our end too, or hold it (CLOSE_WAIT here,
    /// FIN_WAIT_2 on the client).
    #[arg(long, value_enum, default_value_t = crate::protocol::OnEof::Close)]
    pub on_eof: crate::protocol::OnEof,
    /// Listen but never accept: once backlog + 1 handshakes fill the accept queue,
    /// further SYNs are dropped and those clients stay in SYN_SENT.
    #[arg(long)]
    pub no_accept: bool,
    /// Set TCP_DEFER_ACCEPT ("30s", whole seconds rounded up): a client that sends
    /// nothing stays SYN_RECV here (ESTABLISHED on its side) until the delay ends.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub defer_accept: Option<Duration>,
    /// Never read from accepted connections (mqtt: once CONNACK is sent), so the
    /// client's data fills the window; the client's FIN is then never noticed.
    #[arg(long)]
    pub no_read: bool,
    /// That long after accepting a connection, shut down its write side (send FIN
    /// first) and keep the socket, reading per --no-read and --on-eof.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub shutdown_after: Option<Duration>,
    /// Processes sharing the port with SO_REUSEPORT (this one and N - 1 children),
    /// each holding a share of the connections under its own descriptor limit.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_process_count)]
    pub workers: u32,
    /// Run on one thread: set by a `serve --workers N` parent for its children, which
    /// share the cores with it.
    #[arg(long, hide = true)]
    pub one_thread: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("{e}; write e.g. 1s or 500ms"))?;
    if d < Duration::from_millis(10) {
        return Err("the interval must be at least 10ms".into());
    }
    Ok(d)
}

/// A number of processes, 1 to [`crate::embedded::MAX_WORKERS`].
fn parse_process_count(text: &str) -> Result<u32, String> {
    let max = crate::embedded::MAX_WORKERS;
    match text.parse::<u32>() {
        Ok(0) => Err("at least one process must serve; use 1 (the default) to serve from this process alone".into()),
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("write a number of processes from 1 to {max}")),
    }
}

/// The scenario at `path`, its target replaced by `--target` when given (the scenario's
/// own target is then not resolved).
fn load_plan(path: &std::path::Path, target: Option<&str>) -> Result<crate::plan::Plan, Failure> {
    let target = target.map(crate::plan::parse_target).transpose();
    let target = target.map_err(|m| Failure::bad_input(anyhow::anyhow!("--target: {m}")))?;
    crate::plan::Plan::load_toward(path, target).map_err(Failure::bad_input)
}

/// Run the parsed command; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Probe(args) => probe_cmd::probe(args),
        Command::Serve(args) => serve::serve(args),
        Command::Compare(args) => compare::compare(args),
        Command::Preflight(args) => preflight::preflight(args),
        Command::Merge(args) => merge::merge(args),
        Command::Worker(args) => worker::worker(args),
    }
}

/// A tokio runtime for a command: a thread per core.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sockcap")
        .build()
        .map_err(|e| Failure::environment(anyhow::Error::new(e).context("starting the async runtime")))
}

/// A tokio runtime that runs every task on the calling thread, for one of several
/// processes (client workers, target processes): they share the cores, so a thread per
/// core in each would only contend. Measured on 2 cores with 3 workers: faster connects
/// (at 40,000/s asked, 29,000–37,000/s against 10,000–20,000/s with a thread per core)
/// and less memory per held connection (one malloc arena, no cross-thread frees).
fn runtime_on_this_thread() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::environment(anyhow::Error::new(e).context("starting the async runtime")))
}

/// Tune glibc's malloc for a process that holds many connections: no fastbins. The
/// small chunks freed around each task's and socket registration's allocations then
/// merge and get reused, where fastbins keep them apart; measured: about 100 bytes less
/// per held connection (~11%), connect rate unchanged.
fn tune_malloc_for_connections() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter (it takes malloc's own lock).
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}
