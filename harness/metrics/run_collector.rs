//! The metrics of a run (or of one shard of a fleet), read at each scrape from the
//! engine's progress channel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::info::Info;
use tokio::sync::watch;

use super::{families, histogram};
use crate::engine::Progress;
use crate::latency::Latency;
use crate::report::PhaseReport;

/// Reads the latest [`Progress`] at each scrape.
#[derive(Debug)]
pub struct RunCollector {
    progress: watch::Receiver<Progress>,
    totals: Mutex<Totals>,
}

impl RunCollector {
    pub fn new(progress: watch::Receiver<Progress>) -> RunCollector {
        RunCollector { progress, totals: Mutex::new(Totals::default()) }
    }
}

/// What the ended phases add up to, folded in once per phase; and the counters' highest
/// values written, so that a counter never goes down when a phase's report replaces its
/// live counts.
#[derive(Debug, Default)]
struct Totals {
    /// Phases folded in.
    phases: usize,
    /// `(phase kind, result)` → operations of the ended phases.
    operations: BTreeMap<(String, &'static str), u64>,
    errors: BTreeMap<String, u64>,
    reconnected: u64,
    /// Established connections lost without sockcap closing them (the phases' `drops`).
    lost: u64,
    connect: Latency,
    handshake: Latency,
    close: Latency,
    /// Undecodable histograms met (a report bug, counted rather than hidden).
    bad_histograms: u64,
    written: BTreeMap<(String, &'static str), u64>,
}

impl Totals {
    fn fold(&mut self, finished: &[Arc<PhaseReport>]) {
        for phase in finished.iter().skip(self.phases) {
            let failed = phase.errors.values().sum::<u64>();
            *self.operations.entry((phase.kind.clone(), "succeeded")).or_default() += phase.succeeded;
            *self.operations.entry((phase.kind.clone(), "failed")).or_default() += failed;
            for (kind, n) in &phase.errors {
                *self.errors.entry(kind.clone()).or_default() += n;
            }
            self.reconnected += phase.reconnected;
            self.lost += phase.drops;
            let latencies = &phase.latency_us;
            for (into, summary) in [
                (&mut self.connect, &latencies.connect),
                (&mut self.handshake, &latencies.handshake),
                (&mut self.close, &latencies.close),
            ] {
                if summary.count == 0 {
                    continue;
                }
                match Latency::from_hdr(&summary.hdr) {
                    Ok(latency) => into.merge(&latency),
                    Err(_) => self.bad_histograms += 1,
                }
            }
        }
        self.phases = self.phases.max(finished.len());
    }

    /// The value to write for a counter: never below one written before.
    fn monotonic(&mut self, key: (String, &'static str), value: u64) -> u64 {
        let written = self.written.entry(key).or_default();
        *written = (*written).max(value);
        *written
    }
}

impl Collector for RunCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = self.progress.borrow().clone();
        let mut totals = self.totals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        totals.fold(&p.finished);

        let started = !p.phase_name.is_empty();
        if started {
            let info = Info::new([("name", p.phase_name.clone()), ("kind", p.kind.to_string())]);
            let metric = encoder.encode_descriptor("phase", "The phase in progress", None, info.metric_type())?;
            info.encode(metric)?;
        }
        let index = if started { p.phase_index as u64 + 1 } else { 0 };
        families::gauges(&mut encoder, "phase_index", "The phase in progress, 1-based (0: none yet)", &[([], index)])?;
        families::gauges(&mut encoder, "phases", "Phases in the scenario", &[([], p.phase_count as u64)])?;
        families::gauges(&mut encoder, "open_connections", "Connections sockcap holds open", &[([], p.open)])?;
        if let Some(census) = &p.census {
            let mut sides = vec![("client", census.client)];
            sides.extend(census.server.map(|server| ("server", server)));
            families::sockets(&mut encoder, &sides)?;
        }

        // The phase in progress counts live until its report is folded in.
        let mut operations = totals.operations.clone();
        let live = started && p.finished.len() <= p.phase_index;
        if live {
            *operations.entry((p.kind.to_string(), "succeeded")).or_default() += p.succeeded;
            *operations.entry((p.kind.to_string(), "failed")).or_default() += p.failed;
        }
        let operations: Vec<((String, &'static str), u64)> =
            operations.into_iter().map(|(key, n)| (key.clone(), totals.monotonic(key, n))).collect();
        let series: Vec<([(&str, &str); 2], u64)> =
            operations.iter().map(|((kind, result), n)| ([("kind", kind.as_str()), ("result", *result)], *n)).collect();
        families::counters(
            &mut encoder,
            "operations",
            "Operations (connects, closes, churn cycles) by phase kind and result; live",
            &series,
        )?;
        let errors: Vec<([(&str, &str); 1], u64)> =
            totals.errors.iter().map(|(kind, n)| ([("kind", kind.as_str())], *n)).collect();
        families::counters(&mut encoder, "errors", "Failed operations by error kind; at each phase's end", &errors)?;
        for (name, help, value) in [
            ("reconnected", "Connections that came back after a loss; at each phase's end", totals.reconnected),
            ("lost", "Established connections lost without sockcap closing them; at each phase's end", totals.lost),
        ] {
            families::counters(&mut encoder, name, help, &[([], value)])?;
        }
        let series = [("connect", &totals.connect), ("handshake", &totals.handshake), ("close", &totals.close)];
        histogram::encode(
            &mut encoder,
            "latency_seconds",
            "Latency from each operation's scheduled instant, ended phases merged",
            "op",
            &series,
        )?;
        Ok(())
    }
}
