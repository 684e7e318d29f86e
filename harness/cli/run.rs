//! `sockcap run`: plan, check the environment, start the embedded target if asked,
//! run the engine, print the report, write `--json`, exit with the verdict.

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::failure::{exit, Failure};
use super::live_metrics::{self, Serving};
use super::{progress, shard_args, target_restart};
use crate::descriptors;
use crate::embedded::{EmbeddedTarget, ServeOptions};
use crate::engine::worker::WorkerContext;
use crate::engine::worker_set::{self, WorkerSet};
use crate::engine::{self, RunContext, StartGate};
use crate::metrics::{MetricsServer, RunCollector};
use crate::plan::{Action, Plan, TargetSpec};
use crate::preflight;
use crate::rendezvous::RendezvousError;
use crate::report::{self, Outcome, RunReport, ShardInfo};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Connect here instead of the scenario's `target` ("HOST:PORT" or "embedded").
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub outputs: super::outputs::ReportFiles,
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
    #[arg(long, default_value = "auto", value_parser = super::values::parse_workers)]
    pub workers: super::values::Workers,
    #[command(flatten)]
    pub sharding: shard_args::ShardOptions,
    /// Print the JSON report on stdout after the text, framed and checksummed, for
    /// collection from logs (`kubectl logs`); `sockcap merge` reads such logs.
    #[arg(long)]
    pub emit_report: bool,
    #[command(flatten)]
    pub metrics: super::live_metrics::MetricsOption,
    /// Exit by the expectations alone when the run is invalid (sockcap's schedule or CPU
    /// was the bottleneck: `[validity]`); the report still says INVALID.
    #[arg(long)]
    pub allow_invalid: bool,
}

pub fn run(args: RunArgs) -> Result<u8, Failure> {
    let mut plan = super::setup::load_plan(&args.scenario, args.target.as_deref())?;
    let mut inputs = vec![("the scenario file", args.scenario.as_path())];
    inputs.extend(args.sharding.rendezvous_token_file.as_deref().map(|token| ("the rendezvous token file", token)));
    args.outputs.check(&inputs)?;
    if args.emit_report {
        args.outputs.leave_stdout_to("--emit-report")?;
    }
    let host = shard_args::host_shard(args.sharding.shard, |var| std::env::var(var).ok())
        .map_err(|m| Failure::bad_input(anyhow::anyhow!(m)))?;
    let sha256 = shard_args::scenario_sha256(&args.scenario)?;
    let (gate, how) = shard_args::start_gate(&args.sharding, host, &sha256)?;
    if let Some(list) = &args.sources {
        plan.set_sources(list).map_err(|m| Failure::bad_input(anyhow::anyhow!("--sources: {m}")))?;
    }
    if args.netns && plan.netns.is_none() {
        if plan.target != TargetSpec::Embedded {
            let why = "--netns: a private network namespace only reaches the embedded target; use --target embedded";
            return Err(Failure::bad_input(anyhow::anyhow!(why)));
        }
        plan.netns = Some(Vec::new());
    }
    if plan.netns.is_some() && args.sharding.rendezvous.is_some() {
        let why = "--rendezvous: a run in a private network namespace ([netns] or --netns) cannot reach its \
                   peers; run the shards without it, or start them with --start-at";
        return Err(Failure::bad_input(anyhow::anyhow!(why)));
    }
    // A source address that is not this machine's would fail every bind: refused
    // before anything connects.
    plan.check_sources_here(args.sources.is_some()).map_err(Failure::bad_input)?;
    // Bound here, before a namespace is entered: scrapers reach it from this machine.
    let metrics = args.metrics.bind()?;
    let metrics_shard = args.sharding.shard.map(|_| (host.index, host.count));
    if let Some(sysctls) = &plan.netns {
        // Before the runtime exists: its threads, the workers and the embedded target
        // inherit the namespace.
        crate::netns::enter(sysctls).map_err(Failure::environment)?;
    }
    let nofile = descriptors::raise_nofile()
        .map_err(|e| Failure::environment(anyhow::Error::new(e).context("reading RLIMIT_NOFILE")))?;
    // The same budget as `sockcap preflight`: refuse what cannot run on this side
    // (descriptors, files, ports, memory) before any socket opens; note the target's.
    let nominal_target = match plan.target {
        TargetSpec::Addr(addr) => Some(addr),
        TargetSpec::Embedded => None,
    };
    // A shard's budget is its host's share of the scenario.
    let share = plan.host_share(host);
    let env = preflight::Environment::read(&share, nominal_target, nofile, args.workers.forced());
    let budget = preflight::assess(&share, &env);
    if let Some(blocker) = budget.client_blocker() {
        let fix = blocker.fix.as_deref().map(|f| format!("\nFix: {f}")).unwrap_or_default();
        let why = format!(
            "{}: {}{fix}\n(`sockcap preflight` shows the whole budget)",
            blocker.name.as_str(),
            blocker.summary
        );
        return Err(Failure::environment(anyhow::anyhow!(why)));
    }
    let mut notes: Vec<String> = budget
        .checks
        .iter()
        .filter(|c| c.side == preflight::Side::Target && c.verdict == preflight::Verdict::Blocks)
        .map(|c| format!("preflight, {}: {}", c.name.as_str(), c.summary))
        .collect();
    if plan.transport.insecure() {
        notes.push(
            "TLS: insecure = true: the target's certificate was NOT verified; these figures hold for whatever answered"
                .to_string(),
        );
    }
    let workers = budget.workers;
    let target_workers = u32::try_from(budget.target_workers).unwrap_or(crate::embedded::MAX_WORKERS);
    let traffic = plan.phases.iter().any(|p| matches!(p.action, Action::Subscribe(_) | Action::Publish(_)));
    if plan.target == TargetSpec::Embedded && traffic && target_workers > 1 {
        // Its routing table is per process: a publisher and a subscriber in different
        // processes would never meet, and their messages would count as lost.
        return Err(Failure::bad_input(anyhow::anyhow!(
            "{}: the embedded target routes messages within one process, and this run needs {target_workers} \
             target processes ({} connections at once, or [embedded] workers): hold fewer clients in a scenario \
             with subscribe or publish phases, or run it against a broker (target = \"host:port\")",
            args.scenario.display(),
            budget.peak_connections
        )));
    }
    let needed = budget.peak_connections.div_ceil(workers) + descriptors::RESERVE;
    let sources = env.sources;
    if workers == 1 {
        // The connections are held in this process.
        super::setup::tune_malloc_for_connections();
    }
    let rt = super::setup::runtime()?;
    let (report, serving) = rt.block_on(async {
        let mut notes = notes;
        if let Some(netem) = &plan.netem {
            // In the run's own namespace, entered above.
            let what = engine::set_netem(netem)
                .await
                .map_err(|e| Failure::environment(anyhow::anyhow!("[netns] netem: {e}")))?;
            notes.push(format!("[netns] netem for the whole run: {what}"));
        }
        let (embedded, serve_options) = match plan.target {
            TargetSpec::Embedded => {
                let (target, opts) = start_embedded(&plan, target_workers).await?;
                (Some(target), Some(opts))
            }
            TargetSpec::Addr(_) => (None, None),
        };
        // TLS toward the embedded target trusts the certificate it made.
        let mut plan = plan.clone();
        let tls_ca = embedded.as_ref().and_then(|e| e.tls_ca.clone());
        if let Some(ca) = &tls_ca {
            plan.transport.trust_embedded_ca(ca).map_err(Failure::bad_input)?;
        }
        if plan.transport.needs_embedded_ca() {
            let why = "the embedded target named no CA file to trust; give `[tls] ca` or `insecure = true`";
            return Err(Failure::environment(anyhow::anyhow!(why)));
        }
        let target = match (&embedded, plan.target) {
            (Some(e), _) => e.addr,
            (None, TargetSpec::Addr(addr)) => addr,
            (None, TargetSpec::Embedded) => unreachable!("an embedded target was started above"),
        };
        let clients = if workers == 1 {
            let ctx = WorkerContext { target, sources: sources.clone(), shard: host, hosts: host.count };
            WorkerSet::in_process(Arc::new(plan.clone()), ctx)
        } else {
            let embedded = embedded.is_some();
            let scenario =
                worker_set::Scenario { path: &plan.file, sha256: &sha256, embedded, tls_ca: tls_ca.as_deref() };
            WorkerSet::processes(&scenario, target, &sources, host, workers as u32).map_err(Failure::environment)?
        };
        let (restarts, requests) = target_restart::channel();
        let ctx = RunContext {
            restarts: embedded.is_some().then_some(restarts),
            target,
            embedded: embedded.is_some(),
            sources,
            nofile,
            descriptors_needed: needed,
            notes,
            // Inside the run's namespace, toward the resolved target: the census's scope.
            shard: args.sharding.shard.map(|_| ShardInfo::of_this_host(host, sha256.clone(), how, target)),
        };
        let metrics = metrics.map(|server| (server, metrics_shard));
        let engine = run_engine(&plan, ctx, clients, gate, args.quiet, metrics);
        let (outcome, embedded) = match serve_options {
            // Restarts are served on this (the main) thread while the engine runs.
            Some(opts) => tokio::join!(engine, target_restart::serve(embedded, opts, requests)),
            None => (engine.await, None),
        };
        let (report, serving) = outcome?;
        if let Some(embedded) = embedded {
            if let Err(e) = embedded.stop().await {
                crate::stderr::line(format_args!("sockcap: stopping the embedded target: {e:#}"));
            }
        }
        let report = report.map_err(|e| match e {
            RendezvousError::Refused(_) => Failure::bad_input(e),
            RendezvousError::TimedOut(_) | RendezvousError::Listen(_) => Failure::environment(e),
        })?;
        Ok::<_, Failure>((report, serving))
    })?;
    // The text may meet a closed stdout (`| head`): the report files are written anyway.
    let mut console = args.outputs.text_console();
    let mut printed = console.print(&report::text::render(&report));
    if args.emit_report && printed.is_ok() {
        printed = console.print(&report::frame::frame(&report));
    }
    let written = args.outputs.write(&report);
    // The metrics stay up until the report is written: the last scrape sees the end.
    if let Some(serving) = serving {
        rt.block_on(serving.stop());
    }
    written?;
    printed?;
    let held = report.failures().next().is_none();
    Ok(match (report.outcome, report.passed) {
        (Outcome::Interrupted, _) => exit::INTERRUPTED,
        (Outcome::Completed, false) if args.allow_invalid && report.invalid.is_some() && held => exit::PASSED,
        (Outcome::Failed, _) => exit::FAILED,
        (Outcome::Completed, true) => exit::PASSED,
        (Outcome::Completed, false) => exit::FAILED,
    })
}

/// Starts the embedded target with at least as many processes as the peak needs to
/// stay under each one's descriptor limit (`workers`, from the preflight assessment).
pub(super) async fn start_embedded(plan: &Plan, workers: u32) -> Result<(EmbeddedTarget, ServeOptions), Failure> {
    // In a private namespace the well-known port is free, and outside the ephemeral range.
    let port = if plan.netns.is_some() { 1883 } else { crate::embedded::quiet_port() };
    let embedded = &plan.embedded;
    let opts = ServeOptions {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        protocol: plan.protocol,
        transport: plan.transport.transport,
        backlog: embedded.backlog,
        on_eof: embedded.on_eof,
        accept: embedded.accept,
        defer_accept: embedded.defer_accept,
        read: embedded.read,
        shutdown_after: embedded.shutdown_after,
        workers,
    };
    let target = EmbeddedTarget::spawn(opts)
        .await
        .context("starting the embedded target (`sockcap serve`)")
        .map_err(Failure::environment)?;
    Ok((target, opts))
}

/// Run the engine with Ctrl-C handling (`interrupt.rs`), the progress line and, with
/// `--metrics`, the metrics server (returned running, for the caller to stop once the
/// report is written).
async fn run_engine(
    plan: &Plan,
    ctx: RunContext,
    clients: WorkerSet,
    gate: StartGate,
    quiet: bool,
    metrics: Option<(MetricsServer, Option<(u32, u32)>)>,
) -> Result<(Result<RunReport, RendezvousError>, Option<Serving>), Failure> {
    let shutdown = CancellationToken::new();
    // Without signals to watch, the default action (the process ends) stays.
    let signals = super::interrupt::watch(shutdown.clone()).ok();
    let (progress_tx, progress_rx) = watch::channel(engine::Progress::default());
    let serving = match metrics {
        Some((server, shard)) => Some(live_metrics::serve(server, RunCollector::new(progress_rx.clone()), shard)?),
        None => None,
    };
    let renderer = (!quiet).then(|| tokio::spawn(progress::render(progress_rx, std::io::stderr().is_terminal())));
    let report = engine::run(plan, ctx, clients, gate, shutdown, progress_tx).await;
    if let Some(signals) = signals {
        // A second signal still quits at once (its handler stays).
        signals.abort();
    }
    if let Some(renderer) = renderer {
        let _ = renderer.await;
    }
    Ok((report, serving))
}
