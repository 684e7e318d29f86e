//! The metrics of a run (or of one shard of a fleet), read at each scrape from the
//! engine's progress channel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::info::Info;
use tokio::sync::watch;

use super::families;
use super::histogram::{self, Buckets};
use crate::engine::{EndedPhase, Progress};
use crate::latency::Latency;

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
    /// `(phase kind, result)` → operations of the ended phases (each figure below is the
    /// ended phases'; the scrape adds the phase in progress's live counts).
    operations: BTreeMap<(String, &'static str), u64>,
    errors: BTreeMap<String, u64>,
    reconnected: u64,
    /// Established connections lost without sockcap closing them (the phases' `drops`).
    lost: u64,
    connect: Latency,
    handshake: Latency,
    close: Latency,
    /// The three histograms as buckets, computed when a phase is folded in.
    buckets: Option<[Buckets; 3]>,
    /// Undecodable histograms met (a report bug, counted rather than hidden).
    bad_histograms: u64,
    written: BTreeMap<(String, &'static str), u64>,
}

impl Totals {
    fn fold(&mut self, finished: &[Arc<EndedPhase>]) {
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
        if finished.len() > self.phases || self.buckets.is_none() {
            self.buckets = Some([Buckets::of(&self.connect), Buckets::of(&self.handshake), Buckets::of(&self.close)]);
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
        let live = started && p.finished.len() <= p.phase_index;
        let mut operations = totals.operations.clone();
        let mut errors = totals.errors.clone();
        let (mut reconnected, mut lost) = (totals.reconnected, totals.lost);
        if live {
            *operations.entry((p.kind.to_string(), "succeeded")).or_default() += p.succeeded;
            *operations.entry((p.kind.to_string(), "failed")).or_default() += p.failed;
            for (kind, n) in &p.errors {
                *errors.entry(kind.clone()).or_default() += n;
            }
            reconnected += p.reconnected;
            lost += p.drops;
        }
        let operations: Vec<((String, &'static str), u64)> =
            operations.into_iter().map(|(key, n)| (key.clone(), totals.monotonic(key, n))).collect();
        let series: Vec<([(&str, &str); 2], u64)> =
            operations.iter().map(|((kind, result), n)| ([("kind", kind.as_str()), ("result", *result)], *n)).collect();
        families::counters(
            &mut encoder,
            "operations",
            "Operations (connects, closes, churn cycles) by phase kind and result",
            &series,
        )?;
        let errors: Vec<(String, u64)> =
            errors.into_iter().map(|(kind, n)| (kind.clone(), totals.monotonic((kind, "errors"), n))).collect();
        let series: Vec<([(&str, &str); 1], u64)> =
            errors.iter().map(|(kind, n)| ([("kind", kind.as_str())], *n)).collect();
        families::counters(&mut encoder, "errors", "Failed operations by error kind", &series)?;
        let reconnected = totals.monotonic((String::new(), "reconnected"), reconnected);
        let lost = totals.monotonic((String::new(), "lost"), lost);
        for (name, help, value) in [
            ("reconnected", "Lost connections that came back (`[client] reconnect`)", reconnected),
            ("lost", "Established connections lost without sockcap closing them", lost),
        ] {
            families::counters(&mut encoder, name, help, &[([], value)])?;
        }
        if let Some([connect, handshake, close]) = &totals.buckets {
            let series = [("connect", connect), ("handshake", handshake), ("close", close)];
            histogram::encode(
                &mut encoder,
                "latency_seconds",
                "Latency from each operation's scheduled instant, ended phases merged",
                "op",
                &series,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::PhaseReport;
    use prometheus_client::registry::Registry;

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    fn live(index: usize, name: &str, kind: &'static str, finished: &[Arc<EndedPhase>]) -> Progress {
        Progress {
            phase_index: index,
            phase_count: 2,
            phase_name: name.into(),
            kind,
            finished: finished.to_vec(),
            ..Progress::default()
        }
    }

    /// A phase counts live, then from its report; a report below the live count (a
    /// close's count is settled at the end) never takes a counter down.
    #[test]
    fn counters_run_live_then_from_the_report_and_never_go_down() {
        let (tx, rx) = watch::channel(Progress::default());
        let registry = super::super::registry(RunCollector::new(rx), Some((1, 2)));
        assert!(scrape(&registry).contains("sockcap_phase_index{shard=\"1/2\"} 0"));
        let mut ramp = live(0, "ramp", "connect", &[]);
        (ramp.succeeded, ramp.failed) = (7, 2);
        ramp.errors = [("refused".to_string(), 2)].into();
        tx.send_replace(ramp);
        let text = scrape(&registry);
        assert!(
            text.contains(r#"sockcap_operations_total{shard="1/2",kind="connect",result="succeeded"} 7"#),
            "{text}"
        );
        assert!(text.contains(r#"sockcap_errors_total{shard="1/2",kind="refused"} 2"#), "{text}");
        assert!(text.contains(r#"sockcap_phase_info{shard="1/2",name="ramp",kind="connect"} 1"#), "{text}");

        let mut report = PhaseReport::empty("ramp", "connect");
        report.succeeded = 6;
        report.errors = [("refused".to_string(), 3), ("timed_out".to_string(), 0)].into();
        let mut hold = live(1, "hold", "hold", &[Arc::new(EndedPhase::of(&report))]);
        hold.drops = 4;
        tx.send_replace(hold);
        let text = scrape(&registry);
        assert!(
            text.contains(r#"sockcap_operations_total{shard="1/2",kind="connect",result="succeeded"} 7"#),
            "{text}"
        );
        assert!(text.contains(r#"sockcap_errors_total{shard="1/2",kind="refused"} 3"#), "{text}");
        assert!(text.contains(r#"sockcap_lost_total{shard="1/2"} 4"#), "{text}");
        assert!(text.contains(r#"sockcap_phase_index{shard="1/2"} 2"#), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
