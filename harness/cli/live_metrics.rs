//! `--metrics ADDR` on `run` and `probe --watch`: parse the address, bind it before
//! anything connects (a bad or busy address is bad input, exit 2), say where it is, and
//! serve until the command stops it.

use std::net::SocketAddr;

use prometheus_client::collector::Collector;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::failure::Failure;
use crate::metrics::{self, MetricsServer};

/// The `--metrics` option, shared by the commands that take it.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsOption {
    /// Serve live Prometheus/OpenMetrics metrics at http://ADDR/metrics while the command
    /// runs ("127.0.0.1:9464"; port 0 picks a free one, printed on stderr). See
    /// docs/metrics.md.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub metrics: Option<SocketAddr>,
}

/// An `IP:PORT` address.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("`{text}` is not IP:PORT; write e.g. 127.0.0.1:9464 (port 0 picks a free port), or [::1]:9464")
    })
}

impl MetricsOption {
    /// Bind the address, if one was given; prints `sockcap: metrics on http://…/metrics`.
    pub fn bind(&self) -> Result<Option<MetricsServer>, Failure> {
        let Some(addr) = self.metrics else { return Ok(None) };
        let server = metrics::bind(addr).map_err(|e| {
            let fix = match e.kind() {
                std::io::ErrorKind::AddrInUse => "another program listens there: pick a free port, or 0 for any",
                std::io::ErrorKind::AddrNotAvailable => "the address is not this machine's: use one of its addresses",
                std::io::ErrorKind::PermissionDenied => "a port below 1024 needs privileges: pick a higher one",
                _ => "pick another address",
            };
            Failure::bad_input(anyhow::anyhow!("--metrics {addr}: {e}; {fix}"))
        })?;
        crate::stderr::line(format_args!("sockcap: metrics on http://{}/metrics", server.addr()));
        Ok(Some(server))
    }
}

/// A metrics server running until [`Serving::stop`].
#[derive(Debug)]
pub struct Serving {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Serve `collector` on `server` (inside a runtime), labelled by `shard` on a shard of a fleet.
pub fn serve(server: MetricsServer, collector: impl Collector, shard: Option<(u32, u32)>) -> Result<Serving, Failure> {
    let stop = CancellationToken::new();
    let registry = metrics::registry(collector, shard);
    let task = server
        .serve(registry, stop.clone())
        .map_err(|e| Failure::environment(anyhow::Error::new(e).context("serving --metrics")))?;
    Ok(Serving { stop, task })
}

impl Serving {
    /// Stop serving: the listener closes and scrapes in progress end.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
