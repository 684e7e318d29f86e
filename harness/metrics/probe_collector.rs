//! The metrics of `sockcap probe --watch`: its last census, read at each scrape.

use probe::StateCounts;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::sync::watch;

use super::families;

/// One `probe` census: the sockets on the port (or every TCP socket) and those to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeSample {
    /// Sockets whose local port is the probed one (the server side), or all sockets.
    pub local: StateCounts,
    /// Sockets whose remote port is the probed one (the client side), with `--port`.
    pub remote: Option<StateCounts>,
    /// The census took this long, µs.
    pub elapsed_us: u64,
    /// Censuses taken so far.
    pub censuses: u64,
}

/// Reads the latest [`ProbeSample`] at each scrape (none before the first census).
#[derive(Debug)]
pub struct ProbeCollector {
    samples: watch::Receiver<Option<ProbeSample>>,
}

impl ProbeCollector {
    pub fn new(samples: watch::Receiver<Option<ProbeSample>>) -> ProbeCollector {
        ProbeCollector { samples }
    }
}

impl Collector for ProbeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(sample) = *self.samples.borrow() else { return Ok(()) };
        // As in a run: the server side holds the port locally, the client side remotely;
        // without a port, every TCP socket is `all`.
        let sides = match sample.remote {
            Some(remote) => vec![("server", sample.local), ("client", remote)],
            None => vec![("all", sample.local)],
        };
        families::sockets(&mut encoder, &sides)?;
        families::counters(&mut encoder, "censuses", "Censuses taken", &[([], sample.censuses)])?;
        families::gauges(
            &mut encoder,
            "census_duration_us",
            "How long the last census took, µs",
            &[([], sample.elapsed_us)],
        )
    }
}
