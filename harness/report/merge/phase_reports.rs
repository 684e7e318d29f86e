//! Merging phase reports measured by several workers (processes, or hosts) into one,
//! exactly: counts are summed, histograms are decoded from their serialized form and
//! added, so the merged percentiles are those of all samples together.
//!
//! What the coordinator observes itself for the whole machine (census, samples, kernel
//! counters, sockstat) it sets on the merged report afterwards; here those are summed,
//! which is right for reports of different machines.
//!
//! A histogram that cannot be decoded (workers' and shards' alike) does not stop the
//! merge: that latency (connect, handshake or close) is left out of the merged phase,
//! as not measured, since percentiles of the other parts alone are not the phase's;
//! every other figure is merged, and a note says which histogram failed and why. A part
//! whose report cannot be read whole is no reading of the phase: that latency and the
//! phase's counts (`operations`) are marked unobserved, so no expectation passes on
//! them. What the parts did not observe stays unobserved in the merge.

use std::collections::BTreeMap;

use crate::expect::LatencyKind;
use crate::latency::{HdrError, Latency, LatencySummary};
use crate::report::messages::Messages;
use crate::report::unobserved::{self, Unobserved};
use crate::report::{CensusPair, Exhaustion, Latencies, PhaseReport, Recovery};

/// A phase merged from its parts, and what could not be merged.
#[derive(Debug, Clone)]
pub struct MergedPhase {
    pub report: PhaseReport,
    /// One per latency left out because a part's histogram cannot be decoded: which
    /// histogram, of how many parts, and why.
    pub notes: Vec<String>,
}

/// One report for the phase measured in `parts` (at least one; the first names it),
/// each part measured by one `part` (`worker`, `shard`: the notes name them so).
/// Expectations are left empty: judge them on the merged figures.
pub fn phases(parts: &[PhaseReport], part: &str) -> MergedPhase {
    let first = parts.first().expect("merging at least one phase report");
    let mut notes = Vec::new();
    let mut unobserved = Unobserved::default();
    parts.iter().for_each(|p| unobserved.extend(&p.unobserved, ""));
    let mut latency = |kind: LatencyKind, histogram: &str, summaries: Vec<&LatencySummary>| {
        latency(summaries.into_iter()).unwrap_or_else(|Undecodable { parts: failed, error }| {
            let whose = match parts.len() {
                1 => format!("the {part}'s"),
                all => format!("{failed} of the {all} {part}s'"),
            };
            notes.push(format!(
                "phase `{}`: {whose} {histogram} histogram cannot be decoded ({error}); the phase's {histogram} \
                 latencies are left out",
                first.name
            ));
            let reason = format!("{whose} {histogram} histogram cannot be decoded ({error})");
            unobserved.mark(unobserved::latency(kind), reason.clone());
            unobserved.mark(unobserved::OPERATIONS, format!("{reason}: that report cannot be read whole"));
            LatencySummary::default()
        })
    };
    let latency_us = Latencies {
        connect: latency(LatencyKind::Connect, "connect", parts.iter().map(|p| &p.latency_us.connect).collect()),
        tls: latency(LatencyKind::Tls, "tls", parts.iter().map(|p| &p.latency_us.tls).collect()),
        ws: latency(LatencyKind::Ws, "ws", parts.iter().map(|p| &p.latency_us.ws).collect()),
        handshake: latency(
            LatencyKind::Handshake,
            "handshake",
            parts.iter().map(|p| &p.latency_us.handshake).collect(),
        ),
        close: latency(LatencyKind::Close, "close", parts.iter().map(|p| &p.latency_us.close).collect()),
        lateness: latency(LatencyKind::Lateness, "lateness", parts.iter().map(|p| &p.latency_us.lateness).collect()),
    };
    let recoveries: Vec<&Recovery> = parts.iter().filter_map(|p| p.recovery.as_ref()).collect();
    let recovery_us = latency(LatencyKind::Recovery, "recovery", recoveries.iter().map(|r| &r.recovery_us).collect());
    let recovery = recovery(&recoveries, recovery_us);
    let with_messages: Vec<&Messages> = parts.iter().filter_map(|p| p.messages.as_ref()).collect();
    let messages = match Messages::merge(&with_messages) {
        _ if with_messages.is_empty() => None,
        Ok(m) => Some(m),
        Err(error) => {
            notes.push(format!("phase `{}`: {error}; the phase's message figures are left out", first.name));
            unobserved.mark("messages", format!("a part's message histogram cannot be decoded ({error})"));
            None
        }
    };
    let sum = |f: fn(&PhaseReport) -> u64| parts.iter().map(f).fold(0, u64::saturating_add);
    let rate = parts.iter().map(|p| p.achieved_rate_per_s).sum::<f64>();
    let report = PhaseReport {
        name: first.name.clone(),
        kind: first.kind.clone(),
        started_ms: parts.iter().map(|p| p.started_ms).min().unwrap_or(0),
        duration_ms: parts.iter().map(|p| p.duration_ms).max().unwrap_or(0),
        planned: sum(|p| p.planned),
        attempted: sum(|p| p.attempted),
        succeeded: sum(|p| p.succeeded),
        achieved_rate_per_s: (rate * 10.0).round() / 10.0,
        open_at_end: sum(|p| p.open_at_end),
        drops: sum(|p| p.drops),
        reconnect_attempts: sum(|p| p.reconnect_attempts),
        reconnected: sum(|p| p.reconnected),
        recovery,
        peer_closed: sum(|p| p.peer_closed),
        ports_taken: sum(|p| p.ports_taken),
        tls_resumed: sum(|p| p.tls_resumed),
        census: census(parts.iter().map(|p| &p.census)),
        samples: Vec::new(),
        latency_us,
        errors: add_maps(parts.iter().map(|p| &p.errors)),
        other_errnos: add_maps(parts.iter().map(|p| &p.other_errnos)),
        kernel: add_maps(parts.iter().map(|p| &p.kernel)),
        sockstat: first.sockstat,
        exhaustion: exhaustion(parts.iter().filter_map(|p| p.exhaustion.as_ref())),
        timeline_100ms: add_timelines(parts.iter().map(|p| p.timeline_100ms.as_slice())),
        // One target seen from every part: the largest reading.
        target_fds: parts.iter().filter_map(|p| p.target_fds).max_by_key(|t| t.open),
        // Workers measure none of these (their coordinator does); shards each their own
        // host's, summed here and checked by census scope in `shards`.
        target: crate::report::spend::sum_targets(parts.iter().map(|p| p.target.as_ref())),
        kernel_memory: crate::report::spend::sum_kernel_memory(parts.iter().map(|p| &p.kernel_memory)),
        generator: parts
            .iter()
            .filter_map(|p| p.generator.clone())
            .max_by(|a, b| a.cpu_percent.total_cmp(&b.cpu_percent)),
        invalid: parts.iter().find_map(|p| p.invalid.clone()),
        unobserved,
        // Events run in each host's coordinator: a worker's part has none, a shard's
        // has its host's.
        events: parts.iter().flat_map(|p| p.events.iter().cloned()).collect(),
        messages,
        expectations: Vec::new(),
    };
    MergedPhase { report, notes }
}

/// The parts' recovery figures as one, but the histogram (`recovery_us`, merged with
/// the latencies): counts and refusals summed, the reconnect timelines summed bucket by
/// bucket before the peak is taken, the last return the latest. `None` when no part has any.
fn recovery(parts: &[&Recovery], recovery_us: LatencySummary) -> Option<Recovery> {
    if parts.is_empty() {
        return None;
    }
    let sum = |f: fn(&Recovery) -> u64| parts.iter().map(|r| f(r)).fold(0, u64::saturating_add);
    let timeline = add_timelines(parts.iter().map(|r| r.reconnects_100ms.as_slice()));
    Some(Recovery {
        lost: sum(|r| r.lost),
        lost_by: add_maps(parts.iter().map(|r| &r.lost_by)),
        recovered: sum(|r| r.recovered),
        recovery_us,
        peak_reconnect_rate_per_s: Recovery::peak_per_s(&timeline),
        last_back_ms: parts.iter().filter_map(|r| r.last_back_ms).max(),
        refusals: add_maps(parts.iter().map(|r| &r.refusals)),
        reconnects_100ms: timeline,
        down_at_end: sum(|r| r.down_at_end),
    })
}

/// Parts' histograms that cannot be decoded: how many, and the first one's error.
struct Undecodable {
    parts: usize,
    error: HdrError,
}

/// The parts' histograms added, or which of them cannot be decoded.
fn latency<'a>(parts: impl Iterator<Item = &'a LatencySummary>) -> Result<LatencySummary, Undecodable> {
    let mut merged = Latency::new();
    let mut undecodable: Option<Undecodable> = None;
    for part in parts.filter(|p| p.count > 0) {
        match Latency::from_hdr(&part.hdr) {
            Ok(latency) => merged.merge(&latency),
            Err(error) => undecodable.get_or_insert(Undecodable { parts: 0, error }).parts += 1,
        }
    }
    match undecodable {
        None => Ok(merged.summary()),
        Some(failed) => Err(failed),
    }
}

/// Element-wise sums: the parts' phases started at one instant.
fn add_timelines<'a>(parts: impl Iterator<Item = &'a [u32]>) -> Vec<u32> {
    let mut merged: Vec<u32> = Vec::new();
    for part in parts {
        if merged.len() < part.len() {
            merged.resize(part.len(), 0);
        }
        for (sum, n) in merged.iter_mut().zip(part) {
            *sum = sum.saturating_add(*n);
        }
    }
    merged
}

fn census<'a>(parts: impl Iterator<Item = &'a CensusPair>) -> CensusPair {
    let mut merged = CensusPair::default();
    for part in parts {
        merged.client.merge(&part.client);
        if let Some(server) = &part.server {
            merged.server.get_or_insert_with(Default::default).merge(server);
        }
    }
    merged
}

fn add_maps<'a, V>(maps: impl Iterator<Item = &'a BTreeMap<String, V>>) -> BTreeMap<String, V>
where
    V: Copy + Default + SaturatingAdd + 'a,
{
    let mut merged = BTreeMap::new();
    for (key, value) in maps.flatten() {
        let sum: &mut V = merged.entry(key.clone()).or_default();
        *sum = sum.saturating_add(*value);
    }
    merged
}

/// The ports ran out in at least one part: the earliest moment, the connections that
/// came before it everywhere, the largest TIME_WAIT count seen.
fn exhaustion<'a>(parts: impl Iterator<Item = &'a Exhaustion>) -> Option<Exhaustion> {
    parts.copied().reduce(|a, b| Exhaustion {
        after_connections: a.after_connections.saturating_add(b.after_connections),
        after_ms: a.after_ms.min(b.after_ms),
        time_wait: a.time_wait.max(b.time_wait),
        recovered_after_ms: match (a.recovered_after_ms, b.recovered_after_ms) {
            (Some(x), Some(y)) => Some(x.max(y)),
            _ => None,
        },
        failed: a.failed.saturating_add(b.failed),
        ip_local_port_range: a.ip_local_port_range.or(b.ip_local_port_range),
        tcp_tw_reuse: a.tcp_tw_reuse.or(b.tcp_tw_reuse),
    })
}

/// Counts of reports read from outside are summed saturating: a corrupt or hostile
/// count stays as large as it claims, never wraps to a small one an expectation passes.
trait SaturatingAdd {
    fn saturating_add(self, other: Self) -> Self;
}

impl SaturatingAdd for u64 {
    fn saturating_add(self, other: u64) -> u64 {
        u64::saturating_add(self, other)
    }
}

impl SaturatingAdd for i64 {
    fn saturating_add(self, other: i64) -> i64 {
        i64::saturating_add(self, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::sample_report;

    #[test]
    fn counts_add_and_histograms_merge_exactly() {
        let report = sample_report();
        let one = report.phases[0].clone();
        let mut two = one.clone();
        let mut latency = Latency::new();
        (1..=1000).for_each(|us| latency.record_us(us * 100));
        two.latency_us.connect = latency.summary();
        two.errors.insert("refused".into(), 3);
        two.timeline_100ms = vec![5, 0, 7];
        let merged = phases(&[one.clone(), two.clone()], "worker");
        assert!(merged.notes.is_empty(), "{:?}", merged.notes);
        let merged = merged.report;
        assert_eq!(merged.succeeded, one.succeeded + two.succeeded);
        assert_eq!(merged.latency_us.connect.count, one.latency_us.connect.count + 1000);
        assert_eq!(merged.errors["refused"], one.errors.get("refused").copied().unwrap_or(0) + 3);
        let mut expected = Latency::from_hdr(&one.latency_us.connect.hdr).unwrap();
        expected.merge(&latency);
        assert_eq!(merged.latency_us.connect, expected.summary());
        assert!(merged.expectations.is_empty());
        let mut timeline = one.timeline_100ms.clone();
        timeline.resize(timeline.len().max(3), 0);
        timeline.iter_mut().zip([5, 0, 7]).for_each(|(t, n)| *t += n);
        assert_eq!(merged.timeline_100ms, timeline);
    }

    /// Found by the report fuzz target with overflow checks: counts near the top of their
    /// type panicked in a debug build and wrapped to small ones in a release build.
    #[test]
    fn counts_from_outside_saturate_instead_of_wrapping() {
        let mut one = sample_report().phases[0].clone();
        one.succeeded = u64::MAX - 1;
        one.errors.insert("refused".into(), u64::MAX);
        one.kernel.insert("ListenOverflows".into(), i64::MAX);
        one.timeline_100ms = vec![u32::MAX];
        one.census.client.add_n(probe::TcpState::Established, u64::MAX);
        let merged = phases(&[one.clone(), one], "shard").report;
        assert_eq!(merged.succeeded, u64::MAX);
        assert_eq!(merged.errors["refused"], u64::MAX);
        assert_eq!(merged.kernel["ListenOverflows"], i64::MAX);
        assert_eq!(merged.timeline_100ms, vec![u32::MAX]);
        assert_eq!(merged.census.client.get(probe::TcpState::Established), u64::MAX);
        assert_eq!(merged.census.client.total(), u64::MAX);
    }

    #[test]
    fn an_undecodable_histogram_leaves_its_latency_out_with_a_note() {
        let report = sample_report();
        let one = report.phases[0].clone();
        let mut two = one.clone();
        two.latency_us.connect.hdr = "not base64!".into();
        let merged = phases(&[one.clone(), two.clone(), one.clone()], "shard");
        assert_eq!(merged.report.succeeded, 3 * one.succeeded, "every other figure is merged");
        assert_eq!(merged.report.latency_us.connect, LatencySummary::default());
        assert_eq!(merged.report.latency_us.handshake.count, 3 * one.latency_us.handshake.count);
        assert_eq!(merged.notes.len(), 1, "{:?}", merged.notes);
        let note = &merged.notes[0];
        assert!(note.starts_with("phase `ramp`: 1 of the 3 shards' connect histogram cannot be decoded ("), "{note}");
        assert!(note.ends_with("the phase's connect latencies are left out"), "{note}");
        let alone = phases(&[two], "worker");
        assert!(alone.notes[0].starts_with("phase `ramp`: the worker's connect histogram cannot"), "{:?}", alone.notes);
    }

    /// The parts' figures are merged (the schema keeps its numbers), but the phase's
    /// counts and that latency are no reading: `errors == 0` does not pass on them.
    #[test]
    fn an_undecodable_histogram_leaves_the_counts_and_its_latency_unobserved() {
        use crate::expect::Expectation;
        let one = sample_report().phases[0].clone();
        let whole = phases(&[one.clone(), one.clone()], "worker").report;
        assert!(whole.unobserved.is_empty(), "{:?}", whole.unobserved);
        assert!(Expectation::no_errors().judge(&whole).passed);
        let mut two = one.clone();
        two.latency_us.handshake.hdr = "not base64!".into();
        let merged = phases(&[one.clone(), two], "shard").report;
        let figures: Vec<&str> = merged.unobserved.iter().map(|(f, _)| f).collect();
        assert_eq!(figures, ["latency.handshake", "operations"]);
        assert!(merged.unobserved.get("latency.handshake").unwrap().starts_with("1 of the 2 shards' handshake"));
        let e = Expectation::no_errors().judge(&merged);
        assert!(!e.passed && e.actual.is_none(), "{e:?}");
        assert!(e.reason.as_deref().unwrap().contains("cannot be read whole"), "{e:?}");
        // What a part did not observe stays unobserved.
        let mut blind = one.clone();
        blind.unobserved.mark("census.client", "the client-side census failed: x");
        let merged = phases(&[one, blind], "worker").report;
        assert_eq!(merged.unobserved.get("census.client"), Some("the client-side census failed: x"));
    }
}
