//! `sockcap probe`: a census of TCP sockets for a port, both sides of it, and the
//! addresses that hold most connections to it; once, or every `--watch` interval.

use std::time::{Duration, Instant};

use probe::{Census, CensusError, Filter, PeerCount, Prober, StateCounts};
use serde::Serialize;

use super::console::Console;
use super::failure::{exit, Failure};
use crate::metrics::{ProbeCollector, ProbeSample};

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Count sockets whose local or remote port is this one (default: every TCP socket).
    #[arg(long, short)]
    pub port: Option<u16>,
    /// Show this many addresses holding most sockets to the port.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Repeat at this interval ("1s", "500ms") until Ctrl-C.
    #[arg(long, value_parser = super::values::parse_interval)]
    pub watch: Option<Duration>,
    /// Print JSON (one object per census, one per line with --watch).
    #[arg(long)]
    pub json: bool,
    /// Read /proc/net/tcp{,6} instead of sock_diag.
    #[arg(long)]
    pub proc_net: bool,
    /// With --watch: the sockets by side and state as live metrics.
    #[command(flatten)]
    pub metrics: super::live_metrics::MetricsOption,
}

/// One probe reading.
#[derive(Debug, Serialize)]
struct Reading {
    /// Seconds since the Unix epoch, with milliseconds.
    unix_time: f64,
    port: Option<u16>,
    backend: &'static str,
    /// Time the census took, microseconds.
    elapsed_us: u64,
    /// Sockets whose local port is `port` (the server side, listeners included),
    /// or every TCP socket when no port is given.
    local: StateCounts,
    /// Sockets whose remote port is `port` (clients of it on this machine).
    remote: Option<StateCounts>,
    /// Remote addresses holding most sockets on the local port, largest first.
    top_peers: Vec<PeerCount>,
}

pub fn probe(args: ProbeArgs) -> Result<u8, Failure> {
    let mut prober = if args.proc_net { Prober::proc_net() } else { Prober::new() };
    if let Some(warning) = prober.warning() {
        crate::stderr::line(format_args!("sockcap: warning: {warning}"));
    }
    if args.metrics.metrics.is_some() && args.watch.is_none() {
        let why = "--metrics serves the censuses of --watch: add --watch 1s (a single census ends at once)";
        return Err(Failure::bad_input(anyhow::anyhow!(why)));
    }
    let (samples, live) = tokio::sync::watch::channel(None);
    // The server runs on its own runtime's threads while this one takes the censuses.
    let serving = match args.metrics.bind()? {
        Some(server) => {
            let rt = super::setup::runtime()?;
            let serving = {
                let _entered = rt.enter();
                super::live_metrics::serve(server, ProbeCollector::new(live), None)?
            };
            Some((rt, serving))
        }
        None => None,
    };
    let ended = watch(&mut prober, &args, &samples);
    if let Some((rt, serving)) = serving {
        rt.block_on(serving.stop());
    }
    ended
}

/// Take a census, print it, publish it; again every `--watch` interval.
fn watch(
    prober: &mut Prober,
    args: &ProbeArgs,
    samples: &tokio::sync::watch::Sender<Option<ProbeSample>>,
) -> Result<u8, Failure> {
    let mut console = Console::stdout();
    let mut censuses = 0;
    loop {
        let reading = read(prober, args).map_err(|e| Failure::environment(anyhow::Error::new(e).context("census")))?;
        censuses += 1;
        samples.send_replace(Some(ProbeSample {
            local: reading.local,
            remote: reading.remote,
            elapsed_us: reading.elapsed_us,
            censuses,
        }));
        if args.json {
            let line = serde_json::to_string(&reading).map_err(Failure::failed)?;
            console.print(&format!("{line}\n"))?;
        } else {
            console.print(&render(&reading))?;
        }
        // `--watch | head -2`: the reader has what it wanted.
        if console.closed() {
            break;
        }
        let Some(every) = args.watch else { break };
        std::thread::sleep(every);
    }
    Ok(exit::PASSED)
}

fn read(prober: &mut Prober, args: &ProbeArgs) -> Result<Reading, CensusError> {
    let started = Instant::now();
    let (local, remote, top_peers) = match args.port {
        None => (prober.census(&Filter::default())?, None, Vec::new()),
        Some(port) => {
            let Census { states, peers, .. } =
                prober.census_with_peers(&Filter { local_port: Some(port), ..Filter::default() }, args.top)?;
            let remote = prober.census(&Filter { remote_port: Some(port), ..Filter::default() })?;
            (states, Some(remote), peers)
        }
    };
    let backend = match prober.backend() {
        probe::Backend::SockDiag => "sock_diag",
        probe::Backend::ProcNet => "proc_net",
    };
    let unix_time =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as f64
            / 1000.0;
    Ok(Reading {
        unix_time,
        port: args.port,
        backend,
        elapsed_us: started.elapsed().as_micros() as u64,
        local,
        remote,
        top_peers,
    })
}

fn render(r: &Reading) -> String {
    let mut out = String::new();
    let took = format!("{} in {:.1}ms", r.backend, r.elapsed_us as f64 / 1000.0);
    let rows: Vec<(String, &StateCounts)> = match (r.port, &r.remote) {
        (Some(port), Some(remote)) => {
            out.push_str(&format!("TCP sockets on port {port} ({took})\n"));
            vec![(format!("local :{port}"), &r.local), (format!("remote :{port}"), remote)]
        }
        _ => {
            out.push_str(&format!("TCP sockets ({took})\n"));
            vec![("all".to_string(), &r.local)]
        }
    };
    out.push_str(&format!("  {:<14}", "state"));
    for (name, _) in &rows {
        out.push_str(&format!("{name:>14}"));
    }
    out.push('\n');
    for state in probe::TcpState::REPORTED {
        if rows.iter().all(|(_, c)| c.get(state) == 0) {
            continue;
        }
        out.push_str(&format!("  {:<14}", state.key().to_uppercase()));
        for (_, c) in &rows {
            out.push_str(&format!("{:>14}", c.get(state)));
        }
        out.push('\n');
    }
    out.push_str(&format!("  {:<14}", "total"));
    for (_, c) in &rows {
        out.push_str(&format!("{:>14}", c.total()));
    }
    out.push('\n');
    if !r.top_peers.is_empty() {
        out.push_str("  top peers on the local port:\n");
        for p in &r.top_peers {
            out.push_str(&format!("  {:>10}  {}\n", p.sockets, p.addr));
        }
    }
    out
}
