//! `sockcap worker`: one shard of a run, started by `sockcap run` (the coordinator)
//! when the connections need more descriptors than one process may hold. Orders
//! arrive as JSON lines on stdin, messages leave as JSON lines on stdout (see
//! [`crate::engine::messages`]); anything for a human goes to stderr.

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::failure::{exit, Failure};
use crate::descriptors;
use crate::engine::messages::{Order, WorkerMsg};
use crate::engine::worker::{self, WorkerContext, WorkerLink};
use crate::plan::{parse_sources, Plan, TargetSpec};
use crate::sources::Sources;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `sockcap worker`: one shard of a run, driven by a coordinator over stdin/stdout.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// The target address, resolved by the coordinator.
    #[arg(long)]
    pub target: SocketAddr,
    /// The run's target is the embedded one, started by the coordinator at `--target`:
    /// the scenario is read as written for it (its `[embedded]` and `[netns]` sections
    /// stand), and the connections go to `--target`.
    #[arg(long)]
    pub embedded: bool,
    /// The CA file of the embedded TLS target, to trust when the scenario gives no
    /// `[tls] ca`.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
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

pub fn worker(args: WorkerArgs) -> Result<u8, Failure> {
    if let Some(then) = &args.scenario_sha256 {
        let now = super::shard_args::scenario_sha256(&args.scenario)?;
        if &now != then {
            let why = format!(
                "{}: the scenario file changed since the run started (sha256 {now:.12}… now, {then:.12}… then); \
                 leave it alone while a run reads it",
                args.scenario.display()
            );
            return Err(Failure::bad_input(anyhow::anyhow!(why)));
        }
    }
    let spec = if args.embedded { TargetSpec::Embedded } else { TargetSpec::Addr(args.target) };
    let mut plan = Plan::load_toward(&args.scenario, Some(spec)).map_err(Failure::bad_input)?;
    if let Some(ca) = &args.tls_ca {
        plan.transport.trust_embedded_ca(ca).map_err(Failure::bad_input)?;
    }
    let ports = probe::limits::parse_port_range(&args.ports.replace('-', " "))
        .ok_or_else(|| Failure::bad_input(anyhow::anyhow!("--ports {}: write LO-HI", args.ports)))?;
    let addrs = match &args.sources {
        Some(list) => parse_sources(&list.split(',').map(str::to_string).collect::<Vec<_>>())
            .map_err(|m| Failure::bad_input(anyhow::anyhow!("--sources: {m}")))?,
        None => Vec::new(),
    };
    let nofile = descriptors::raise_nofile()
        .map_err(|e| Failure::environment(anyhow::Error::new(e).context("reading RLIMIT_NOFILE")))?;
    let share = args.shard.share(plan.peak_connections());
    descriptors::check_descriptors(share, &nofile).map_err(Failure::environment)?;
    let ctx = WorkerContext {
        target: args.target,
        sources: Sources::new(addrs, ports),
        shard: args.shard,
        hosts: args.hosts,
    };
    super::setup::tune_malloc_for_connections();
    let rt = super::setup::runtime_on_this_thread()?;
    let served = rt.block_on(serve_coordinator(&plan, ctx));
    // The stdin reader may still block in read(2): do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    served.map_err(Failure::environment)?;
    Ok(exit::PASSED)
}

/// Run the worker with its link on stdin and stdout.
async fn serve_coordinator(plan: &Plan, ctx: WorkerContext) -> anyhow::Result<()> {
    let (orders_tx, orders) = mpsc::unbounded_channel();
    let (out, mut msgs) = mpsc::unbounded_channel::<WorkerMsg>();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Order>(&line) {
                Ok(order) => {
                    let _ = orders_tx.send(order);
                }
                Err(e) => crate::stderr::line(format_args!(
                    "sockcap worker: ignoring a line that is not an order ({e}): {line:.120}"
                )),
            }
        }
        // EOF: the coordinator is gone; dropping the sender tells the worker to stop.
    });
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(msg) = msgs.recv().await {
            let mut line = serde_json::to_vec(&msg).context("serializing a worker message")?;
            line.push(b'\n');
            stdout.write_all(&line).await.context("writing to the coordinator")?;
            stdout.flush().await.context("writing to the coordinator")?;
        }
        anyhow::Ok(())
    });
    worker::run(plan, ctx, WorkerLink { orders, out }, CancellationToken::new()).await;
    reader.abort();
    writer.await.context("the worker's writer task")?
}
