//! `--metrics ADDR`: live OpenMetrics text of a run, a shard of a fleet, or
//! `probe --watch`, for Prometheus to scrape while it goes.
//!
//! The figures are the ones the engine already publishes on its progress channel
//! ([`crate::engine::Progress`]): nothing here measures. A [`Collector`] reads the
//! latest value at each scrape and `prometheus-client` encodes it; [`server`] answers
//! `GET /metrics` with a deadline per connection and a bound on concurrent scrapers.
//!
//! Which figures are live and which are counted at a phase's end:
//! - live (every progress tick, 4 per second; sockets at each census sample): the
//!   sockets by state and side, the phase, the open connections, operations succeeded
//!   and failed, errors by kind, reconnects and lost connections; when a phase ends its
//!   report's figures replace its live ones (a counter never goes down);
//! - at each phase's end (from its merged report): the latency histograms (the
//!   workers' HdrHistograms, merged; sending them with every progress tick would cost
//!   far more than the counts).
//!
//! [`Collector`]: prometheus_client::collector::Collector

mod families;
mod histogram;
mod probe_collector;
mod run_collector;
mod server;

pub use probe_collector::{ProbeCollector, ProbeSample};
pub use run_collector::RunCollector;
pub use server::{bind, MetricsServer};

use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;

/// The registry of one run: the collector's families under `sockcap_`, labelled
/// `shard="i/N"` on a shard of a fleet.
pub fn registry(collector: impl Collector, shard: Option<(u32, u32)>) -> Registry {
    let mut registry = match shard {
        Some((index, count)) => Registry::with_prefix_and_labels(
            "sockcap",
            [("shard".into(), format!("{index}/{count}").into())].into_iter(),
        ),
        None => Registry::with_prefix("sockcap"),
    };
    registry.register_collector(Box::new(collector));
    registry
}
