//! What a phase did not observe, and why: [`Unobserved`], a map from a figure's name to
//! the reason it has no reading (a census that failed on both backends, kernel counters
//! that could not be read, a worker or shard that sent no report, a histogram that
//! cannot be decoded).
//!
//! The report keeps a number in such fields where its schema asks for one (a census of
//! zeros, an empty kernel delta), so the figure's entry here is what says the number is
//! not a reading: an expectation on an unobserved figure fails with the reason
//! (`report/judge.rs`) instead of passing on a zero.
//!
//! Figures (the keys):
//! - `census.client`, `census.server`: the phase's closing census of that side;
//! - `kernel`: every kernel counter delta; `kernel.<Counter>`: one counter this kernel
//!   does not have;
//! - `sockstat`: /proc/net/sockstat;
//! - `operations`: the workers' counts (`connected`, `errors`, `errors.<kind>`,
//!   `drops`, `rate`) and their latencies, when a worker's or shard's report is missing
//!   or cannot be read whole;
//! - `latency.connect`, `latency.tls`, `latency.ws`, `latency.handshake`, `latency.close`, `latency.recovery`,
//!   `latency.lateness`: one histogram (`latency.recovery`: the phase's `recovery.recovery_us`);
//! - `target`: the target's processes' spend; `kernel_memory.client`,
//!   `kernel_memory.server`: a side's kernel memory; `sockcap.cpu`: sockcap's own CPU
//!   (`report/spend.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::expect::{LatencyKind, Metric, Side};

/// The client-side census.
pub const CENSUS_CLIENT: &str = "census.client";
/// The server-side census.
pub const CENSUS_SERVER: &str = "census.server";
/// Every kernel counter (`kernel.<Counter>` names one).
pub const KERNEL: &str = "kernel";
/// /proc/net/sockstat.
pub const SOCKSTAT: &str = "sockstat";
/// The workers' counts and latencies.
pub const OPERATIONS: &str = "operations";

/// The figure name of a latency histogram: `latency.connect`, ...
pub fn latency(kind: LatencyKind) -> &'static str {
    match kind {
        LatencyKind::Connect => "latency.connect",
        LatencyKind::Handshake => "latency.handshake",
        LatencyKind::Tls => "latency.tls",
        LatencyKind::Ws => "latency.ws",
        LatencyKind::Close => "latency.close",
        LatencyKind::Recovery => "latency.recovery",
        LatencyKind::Lateness => "latency.lateness",
        LatencyKind::Suback | LatencyKind::Puback | LatencyKind::Pubcomp | LatencyKind::Delivery => "messages",
    }
}

/// The figures a phase did not observe: figure name → why. Empty when it observed all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Unobserved(BTreeMap<String, String>);

impl Unobserved {
    /// Say that `figure` was not observed, and why. The first reason given stays.
    pub fn mark(&mut self, figure: &str, reason: impl Into<String>) {
        self.0.entry(figure.to_string()).or_insert_with(|| reason.into());
    }

    /// Every figure of `other`, each reason after `prefix` (`shard 1 (host): `).
    pub fn extend(&mut self, other: &Unobserved, prefix: &str) {
        for (figure, reason) in other.iter() {
            self.mark(figure, format!("{prefix}{reason}"));
        }
    }

    /// Keep only the figures `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|figure, _| keep(figure));
    }

    /// Forget `figure` (another reading covers it).
    pub fn remove(&mut self, figure: &str) -> Option<String> {
        self.0.remove(figure)
    }

    pub fn get(&self, figure: &str) -> Option<&str> {
        self.0.get(figure).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Figures and reasons, by figure name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(f, r)| (f.as_str(), r.as_str()))
    }

    /// Why `metric` has no reading in this phase, if it has none: the reason of the first
    /// of its figures ([`figures_of`]) not observed.
    pub fn reason_for(&self, metric: &Metric) -> Option<&str> {
        figures_of(metric).iter().find_map(|figure| self.get(figure))
    }
}

/// The figures a metric's value is read from.
pub fn figures_of(metric: &Metric) -> Vec<String> {
    match metric {
        Metric::State(Side::Client, _) => vec![CENSUS_CLIENT.into()],
        Metric::State(Side::Server, _) => vec![CENSUS_SERVER.into()],
        Metric::Latency(kind, _) => vec![OPERATIONS.into(), latency(*kind).into()],
        Metric::Errors(_)
        | Metric::ErrorReason(_)
        | Metric::Connected
        | Metric::Drops
        | Metric::ReconnectAttempts
        | Metric::Reconnected
        | Metric::PeakReconnectRate
        | Metric::Rate => vec![OPERATIONS.into()],
        Metric::Message(_) => vec!["messages".into()],
        Metric::Kernel(name) => vec![KERNEL.into(), format!("{KERNEL}.{name}")],
        Metric::Target(_) => vec![crate::report::spend::TARGET.into()],
        Metric::SockcapCpu => vec![crate::report::spend::SOCKCAP_CPU.into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_unobserved_when_any_figure_it_reads_is() {
        let mut u = Unobserved::default();
        u.mark(CENSUS_CLIENT, "census failed: reading /proc/net/tcp: Permission denied");
        u.mark(CENSUS_CLIENT, "a later reason does not replace the first");
        u.mark("kernel.Foo", "no counter `Foo`");
        u.mark(latency(LatencyKind::Close), "undecodable");
        let why = |u: &Unobserved, name: &str| u.reason_for(&Metric::parse(name).unwrap()).map(str::to_string);
        let reason = |name: &str| why(&u, name);
        assert_eq!(reason("established").as_deref(), Some("census failed: reading /proc/net/tcp: Permission denied"));
        assert_eq!(reason("time_wait"), reason("established"));
        assert_eq!(reason("server.time_wait"), None);
        assert_eq!(reason("kernel.Foo").as_deref(), Some("no counter `Foo`"));
        assert_eq!(reason("kernel.ListenOverflows"), None);
        assert_eq!(reason("close_p99").as_deref(), Some("undecodable"));
        assert_eq!((reason("connect_p99"), reason("errors")), (None, None));
        u.mark(OPERATIONS, "worker 1 sent no report");
        assert_eq!(why(&u, "errors.refused").as_deref(), Some("worker 1 sent no report"));
        assert_eq!(why(&u, "close_p99").as_deref(), Some("worker 1 sent no report"), "operations come first");
    }

    #[test]
    fn the_json_is_an_object_of_figure_to_reason() {
        let mut u = Unobserved::default();
        u.mark(KERNEL, "reading /proc/net/netstat: Permission denied");
        let mut merged = Unobserved::default();
        merged.extend(&u, "shard 2 (h): ");
        let json = serde_json::to_string(&merged).unwrap();
        assert_eq!(json, r#"{"kernel":"shard 2 (h): reading /proc/net/netstat: Permission denied"}"#);
        assert_eq!(serde_json::from_str::<Unobserved>(&json).unwrap(), merged);
        assert_eq!(merged.remove(KERNEL).as_deref(), Some("shard 2 (h): reading /proc/net/netstat: Permission denied"));
        assert!(merged.is_empty());
    }
}
