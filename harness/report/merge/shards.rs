//! Merging the reports of a sharded run's shards (`sockcap merge`) into one report of
//! the whole scenario, exactly:
//! - each shard index must appear once, every shard with the same scenario file and N;
//!   a missing one makes the merged report partial;
//! - counters are added and histograms merged from their serialized form
//!   ([`super::phases`]; one that cannot be decoded leaves its latency out, with a note);
//! - the census series are put on one clock, each shard's from its own start of phase 1
//!   (the fleet's common start), and summed second by second: the merged peak is the
//!   peak of the sum, not the sum of the peaks;
//! - shards that ran on one machine in one network namespace (the same census scope)
//!   saw each other's sockets: their census, kernel counters and sockstat count once;
//! - what a shard did not observe stays unobserved in the merge (its census only when
//!   no shard of its scope observed it), and a shard that is missing, or did not run a
//!   phase, leaves that phase's figures unobserved: no expectation passes without them;
//! - the expectations are judged again on the merged figures.

use std::collections::{BTreeMap, BTreeSet};

use super::phase_reports;
use super::scoped::{self, by_scope, Scoped};
use crate::expect::Expectation;
use crate::report::spend;
use crate::report::unobserved::{Unobserved, CENSUS_CLIENT, CENSUS_SERVER};
use crate::report::{
    CensusPair, CensusSample, MergeInfo, MergedShard, Outcome, PhaseReport, RunReport, ShardInfo, SCHEMA,
};

/// One shard's report and where it came from.
#[derive(Debug, Clone)]
pub struct ShardReport {
    pub file: String,
    pub report: RunReport,
}

/// Reports that cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("{0}: not a shard's report (no `shard`): run each shard with --shard I/N")]
    NotAShard(String),
    #[error("{file}: shard {index}/{count}, but --expect-shards {expected}")]
    OtherCount { file: String, index: u32, count: u32, expected: u32 },
    #[error("{file} and {other}: both are shard {index}: give each shard's report once")]
    Twice { file: String, other: String, index: u32 },
    #[error("{file} ran another scenario than {other} (sha256 {sha:.12}… against {other_sha:.12}…)")]
    OtherScenario { file: String, other: String, sha: String, other_sha: String },
    #[error("no report to merge")]
    Nothing,
}

/// The merged report of the shards in `parts`, `expected` of them in the fleet.
pub fn shards(parts: Vec<ShardReport>, expected: u32) -> Result<RunReport, MergeError> {
    let mut by_index: BTreeMap<u32, (ShardReport, ShardInfo)> = BTreeMap::new();
    for part in parts {
        let shard = part.report.shard.clone().ok_or_else(|| MergeError::NotAShard(part.file.clone()))?;
        if shard.count != expected {
            let (index, count) = (shard.index, shard.count);
            return Err(MergeError::OtherCount { file: part.file, index, count, expected });
        }
        if let Some((first, info)) = by_index.values().next() {
            if info.scenario_sha256 != shard.scenario_sha256 {
                return Err(MergeError::OtherScenario {
                    file: part.file,
                    other: first.file.clone(),
                    sha: shard.scenario_sha256,
                    other_sha: info.scenario_sha256.clone(),
                });
            }
        }
        if let Some((other, _)) = by_index.get(&shard.index) {
            return Err(MergeError::Twice { file: part.file, other: other.file.clone(), index: shard.index });
        }
        by_index.insert(shard.index, (part, shard));
    }
    let shards: Vec<(ShardReport, ShardInfo)> = by_index.into_values().collect();
    let (first, _) = shards.first().ok_or(MergeError::Nothing)?;
    let present: BTreeSet<u32> = shards.iter().map(|(_, s)| s.index).collect();
    let missing: Vec<u32> = (0..expected).filter(|i| !present.contains(i)).collect();
    let reports: Vec<&RunReport> = shards.iter().map(|(p, _)| &p.report).collect();
    let scopes: Vec<&str> = shards.iter().map(|(_, s)| s.census_scope.as_str()).collect();
    let whose: Vec<String> = shards.iter().map(|(_, s)| format!("shard {} ({}): ", s.index, s.host)).collect();

    let phase_count = reports.iter().map(|r| r.phases.len()).max().unwrap_or(0);
    let series: Vec<Vec<Point>> = reports.iter().map(|r| points(r)).collect();
    let mut phases = Vec::with_capacity(phase_count);
    let mut notes = Vec::new();
    for p in 0..phase_count {
        let with: Vec<usize> = (0..reports.len()).filter(|i| reports[*i].phases.len() > p).collect();
        let parts: Vec<PhaseReport> = with.iter().map(|i| aligned(reports[*i], p, &whose[*i])).collect();
        let merged = phase_reports::phases(&parts, "shard");
        notes.extend(merged.notes);
        let mut phase = merged.report;
        let scoped = by_scope(with.iter().map(|i| (scopes[*i], Scoped::phase(&reports[*i].phases[p], &whose[*i]))));
        phase.unobserved.extend(&scoped.unobserved, "");
        (phase.kernel, phase.sockstat) = (scoped.kernel.clone(), scoped.sockstat);
        phase.census = scoped.into_census();
        // Shards on one machine and namespace read the same target and sockets: one
        // reading per scope (the largest), summed across scopes, as the census is.
        let mut one_per_scope: BTreeMap<&str, &PhaseReport> = BTreeMap::new();
        let rss = |p: &PhaseReport| p.target.as_ref().map_or(0, |t| t.rss_bytes);
        for (part, i) in parts.iter().zip(&with) {
            let kept = one_per_scope.entry(scopes[*i]).or_insert(part);
            if rss(part) > rss(kept) {
                *kept = part;
            }
        }
        phase.target = spend::sum_targets(one_per_scope.values().map(|p| p.target.as_ref()));
        phase.kernel_memory = spend::sum_kernel_memory(one_per_scope.values().map(|p| &p.kernel_memory));
        // What a shard without this phase would have measured is not in the merge.
        for i in (0..reports.len()).filter(|i| !with.contains(i)) {
            let seen = with.iter().any(|j| scopes[*j] == scopes[i]);
            scoped::absent(&mut phase.unobserved, &format!("{}did not run this phase", whose[i]), !seen);
        }
        for m in &missing {
            scoped::absent(&mut phase.unobserved, &format!("no report from shard {m}"), true);
        }
        phase.started_ms = parts.iter().map(|x| x.started_ms).min().unwrap_or(0);
        let end_ms = parts.iter().map(|x| x.started_ms.saturating_add(x.duration_ms)).max().unwrap_or(0);
        phase.duration_ms = end_ms - phase.started_ms;
        phase.samples = summed_samples(&series, &scopes, p, phase.started_ms, phase.started_ms + phase.duration_ms);
        if with.len() < reports.len() {
            notes.push(format!("phase `{}`: {} of {} shards ran it", phase.name, with.len(), reports.len()));
        }
        let hosts: BTreeSet<&str> = with.iter().map(|i| shards[*i].1.host.as_str()).collect();
        if hosts.len() > 1 && phase.messages.as_ref().is_some_and(|m| m.latency_us.delivery.count > 0) {
            notes.push(format!(
                "phase `{}`: delivery latency compares the publisher's clock with the subscriber's, and these \
                 shards ran on {} hosts: it holds only as far as their clocks agree (NTP, PTP)",
                phase.name,
                hosts.len()
            ));
        }
        let judged = reports[with[0]].phases[p].expectations.iter().map(|e| {
            Expectation::from_result(e).map(|x| x.judge(&phase)).unwrap_or_else(|why| {
                notes.push(format!("phase `{}`: `{}` cannot be judged again: {why}", phase.name, e.expr));
                crate::report::ExpectationResult { passed: false, deferred: false, ..e.clone() }
            })
        });
        phase.expectations = judged.collect();
        phases.push(phase);
    }
    if scopes.iter().collect::<BTreeSet<_>>().len() < scopes.len() {
        notes.push(
            "some shards ran on one machine in one network namespace: each of their censuses saw all of their \
             sockets, so the merge counts that census once (the largest reading), not once per shard"
                .to_string(),
        );
    }
    for (part, info) in &shards {
        notes.extend(part.report.notes.iter().map(|n| format!("shard {} ({}): {n}", info.index, info.host)));
        if part.report.sockcap_version != first.report.sockcap_version {
            notes.push(format!(
                "shard {} ran sockcap {}, shard {} ran {}",
                info.index, part.report.sockcap_version, shards[0].1.index, first.report.sockcap_version
            ));
        }
    }
    let outcome = worst(reports.iter().map(|r| r.outcome));
    let mut scenario = first.report.scenario.clone();
    scenario.workers = reports.iter().map(|r| r.scenario.workers).fold(0, u32::saturating_add);
    scenario.sources = reports.iter().flat_map(|r| r.scenario.sources.iter().cloned()).collect();
    let mut merged = RunReport {
        schema: SCHEMA.to_string(),
        sockcap_version: first.report.sockcap_version.clone(),
        passed: false,
        outcome,
        scenario,
        started_at: reports.iter().map(|r| r.started_at.clone()).min().unwrap_or_default(),
        duration_ms: phases.last().map_or(0, |p| p.started_ms + p.duration_ms),
        limits: first.report.limits.clone(),
        probe_backend: first.report.probe_backend.clone(),
        probe_warning: first.report.probe_warning.clone(),
        notes,
        phases,
        shard: None,
        merge: Some(MergeInfo {
            expected_shards: expected,
            shards: shards
                .iter()
                .map(|(part, info)| MergedShard {
                    index: info.index,
                    host: info.host.clone(),
                    file: part.file.clone(),
                    outcome: part.report.outcome,
                    phases: part.report.phases.len() as u32,
                })
                .collect(),
            partial: !missing.is_empty(),
            missing,
        }),
        invalid: None,
        verdict: String::new(),
    };
    merged.invalid = reports.iter().zip(&shards).find_map(|(r, (_, info))| {
        r.invalid.as_ref().map(|why| format!("{why} (shard {}, {})", info.index, info.host))
    });
    let held = merged.failures().next().is_none() && merged.failed_events().next().is_none();
    merged.passed = outcome == Outcome::Completed
        && !merged.merge.as_ref().is_some_and(|m| m.partial)
        && held
        && merged.invalid.is_none();
    merged.verdict = merged.verdict_key();
    merged.notes.extend(crate::report::findings(&merged));
    Ok(merged)
}

/// The worst way a shard ended.
fn worst(outcomes: impl Iterator<Item = Outcome>) -> Outcome {
    outcomes.fold(Outcome::Completed, |a, b| match (a, b) {
        (Outcome::Failed, _) | (_, Outcome::Failed) => Outcome::Failed,
        (Outcome::Interrupted, _) | (_, Outcome::Interrupted) => Outcome::Interrupted,
        _ => Outcome::Completed,
    })
}

/// Phase `p` of a shard with its times counted from the shard's start of phase 1, and
/// what its workers did not observe said to be `whose` (census, counters and sockstat
/// are merged by scope instead).
fn aligned(report: &RunReport, p: usize, whose: &str) -> PhaseReport {
    let zero = report.phases.first().map_or(0, |f| f.started_ms);
    let mut phase = report.phases[p].clone();
    phase.started_ms = phase.started_ms.saturating_sub(zero);
    let mut unobserved = Unobserved::default();
    for (figure, reason) in phase.unobserved.iter().filter(|(f, _)| !scoped::is_scoped(f)) {
        unobserved.mark(figure, format!("{whose}{reason}"));
    }
    phase.unobserved = unobserved;
    phase
}

/// One census reading of a shard, on the common clock.
#[derive(Debug, Clone)]
struct Point {
    /// Since the shard's start of phase 1 (negative: the opening census before it).
    t_ms: i64,
    phase: usize,
    pair: CensusPair,
    succeeded: u64,
    failed: u64,
    open: u64,
}

/// A shard's census readings in time order: its samples and each phase's closing census.
fn points(report: &RunReport) -> Vec<Point> {
    let zero = report.phases.first().map_or(0, |f| f.started_ms) as i64;
    let mut points = Vec::new();
    for (phase, p) in report.phases.iter().enumerate() {
        points.extend(p.samples.iter().map(|s: &CensusSample| Point {
            t_ms: s.t_ms as i64 - zero,
            phase,
            pair: CensusPair { client: s.client, server: s.server },
            succeeded: s.succeeded,
            failed: s.failed,
            open: s.open,
        }));
        if [CENSUS_CLIENT, CENSUS_SERVER].iter().any(|f| p.unobserved.get(f).is_some()) {
            continue; // zeros, no reading
        }
        points.push(Point {
            t_ms: p.started_ms.saturating_add(p.duration_ms) as i64 - zero,
            phase,
            pair: p.census.clone(),
            succeeded: p.succeeded,
            failed: crate::failure::error_total(&p.errors),
            open: p.open_at_end,
        });
    }
    points.sort_by_key(|p| p.t_ms);
    points
}

/// The most instants a merged phase's census series has: a day's, once a second.
const MAX_SAMPLES: u64 = 86_400;

/// The summed census of phase `p`'s span, once a second from its start (less often past
/// [`MAX_SAMPLES`] seconds: a report may claim any duration) and at its end: at each
/// instant, every shard's latest reading (its first, before it has one).
fn summed_samples(series: &[Vec<Point>], scopes: &[&str], p: usize, from_ms: u64, to_ms: u64) -> Vec<CensusSample> {
    let every_ms = (to_ms.saturating_sub(from_ms) / MAX_SAMPLES).max(1000);
    let mut instants: Vec<u64> = (from_ms..to_ms).step_by(every_ms as usize).collect();
    instants.push(to_ms);
    let per_shard: Vec<Vec<Point>> = series.iter().map(|shard| readings_at(shard, p, &instants)).collect();
    (0..instants.len())
        .map(|k| {
            let readings: Vec<(usize, &Point)> =
                per_shard.iter().enumerate().filter_map(|(i, shard)| shard.get(k).map(|r| (i, r))).collect();
            let census = by_scope(readings.iter().map(|(i, r)| (scopes[*i], Scoped::census(&r.pair)))).into_census();
            CensusSample {
                t_ms: instants[k],
                client: census.client,
                server: census.server,
                succeeded: readings.iter().map(|(_, r)| r.succeeded).fold(0, u64::saturating_add),
                failed: readings.iter().map(|(_, r)| r.failed).fold(0, u64::saturating_add),
                open: readings.iter().map(|(_, r)| r.open).fold(0, u64::saturating_add),
            }
        })
        .collect()
}

/// A shard's latest reading at each of `instants` (ascending), in one pass over its
/// time-ordered points; none when it has no reading at all.
fn readings_at(shard: &[Point], p: usize, instants: &[u64]) -> Vec<Point> {
    let Some(first) = shard.first() else { return Vec::new() };
    // Counts of operations are per phase: a shard before phase p has done none of them,
    // one past it all of them.
    let end_of_p = shard.iter().rfind(|x| x.phase == p).map(|end| (end.succeeded, end.failed));
    let mut seen = 0;
    instants
        .iter()
        .map(|&t| {
            while seen < shard.len() && shard[seen].t_ms <= t as i64 {
                seen += 1;
            }
            let mut reading = if seen == 0 { first.clone() } else { shard[seen - 1].clone() };
            if reading.phase != p {
                (reading.succeeded, reading.failed) = match end_of_p {
                    Some(end) if reading.phase > p => end,
                    _ => (0, 0),
                };
            }
            reading
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use probe::{StateCounts, TcpState};

    use super::*;
    use crate::latency::Latency;
    use crate::report::test_support::{latency, sample_report};

    fn established(n: u64) -> StateCounts {
        let mut c = StateCounts::default();
        c.add_n(TcpState::Established, n);
        c
    }

    /// Shard `index` of 3: its phase 1 started `offset_ms` into its run; its ramp ends
    /// with `held` established; census samples once a second from its phase-1 start.
    fn shard(index: u32, scope: &str, offset_ms: u64, held: u64, samples: &[u64]) -> ShardReport {
        let mut report = sample_report();
        report.shard = Some(ShardInfo {
            index,
            count: 3,
            scenario_sha256: "ab".repeat(32),
            host: format!("host{index}"),
            start: "rendezvous".into(),
            start_unix_us: 0,
            census_scope: scope.into(),
        });
        let shift = offset_ms;
        for phase in &mut report.phases {
            phase.started_ms += shift;
            phase.expectations.iter_mut().for_each(|e| e.deferred = true);
        }
        let ramp = &mut report.phases[0];
        ramp.succeeded = held;
        ramp.latency_us.connect = latency(held, 100 * u64::from(index + 1), 1000 * u64::from(index + 1));
        ramp.census.client = established(held);
        ramp.duration_ms = 4500;
        ramp.samples = samples
            .iter()
            .enumerate()
            .map(|(s, n)| CensusSample {
                t_ms: offset_ms + s as u64 * 1000,
                client: established(*n),
                server: None,
                succeeded: *n,
                failed: 0,
                open: *n,
            })
            .collect();
        report.phases[1].started_ms = offset_ms + 4500;
        report.phases[1].census.client = established(held);
        ShardReport { file: format!("shard-{index}.json"), report }
    }

    fn fleet() -> Vec<ShardReport> {
        vec![
            shard(0, "a", 100, 2000, &[1000, 3000, 1000, 1000, 2000]),
            shard(1, "b", 700, 2000, &[1000, 1000, 1000, 3000, 2000]),
            shard(2, "c", 2000, 2000, &[1000, 1000, 1000, 1000, 2000]),
        ]
    }

    #[test]
    fn shards_add_up_exactly_and_expectations_are_judged_on_the_sum() {
        let parts = fleet();
        let merged = shards(parts.clone(), 3).unwrap();
        let ramp = &merged.phases[0];
        assert_eq!(ramp.succeeded, 6000);
        assert_eq!(ramp.census.client.get(TcpState::Established), 6000);
        let mut all = Latency::new();
        for part in &parts {
            all.merge(&Latency::from_hdr(&part.report.phases[0].latency_us.connect.hdr).unwrap());
        }
        assert_eq!(ramp.latency_us.connect, all.summary());
        // `established >= 5000` fails on each shard's 2,000 and holds on the merged 6,000.
        let e = &ramp.expectations[0];
        assert_eq!(
            (e.expr.as_str(), e.actual, e.passed, e.deferred),
            ("established >= 5000", Some(6000.0), true, false)
        );
        assert!(merged.passed && merged.shard.is_none());
        let info = merged.merge.as_ref().unwrap();
        assert_eq!((info.shards.len(), info.partial), (3, false));
        assert_eq!(merged.scenario.workers, 3);
    }

    /// Each host's coordinator ran the phase's events: the merge keeps every host's, and
    /// one that failed fails the merged run.
    #[test]
    fn every_host_s_events_are_kept_and_a_failed_one_fails_the_merge() {
        let mut parts = fleet();
        for (i, part) in parts.iter_mut().enumerate() {
            let ok = i != 1;
            let error = (!ok).then(|| "it exited with exit status: 3".to_string());
            let what = format!("sh restart-{i}.sh");
            part.report.phases[1].events =
                vec![crate::report::EventReport { kind: "exec".into(), what, ok, error, ..Default::default() }];
        }
        let merged = shards(parts, 3).unwrap();
        let whats: Vec<&str> = merged.phases[1].events.iter().map(|e| e.what.as_str()).collect();
        assert_eq!(whats, ["sh restart-0.sh", "sh restart-1.sh", "sh restart-2.sh"]);
        assert_eq!(merged.failed_events().count(), 1);
        assert!(!merged.passed, "the expectations hold, the event failed");
    }

    /// Found by the `report` fuzz target: a phase claiming 115 days made a sample a
    /// second, 7.5 GB of them.
    #[test]
    fn a_phase_of_any_claimed_length_merges_into_a_bounded_series() {
        let mut parts = fleet();
        parts[1].report.phases[1].duration_ms = 10_000_000_000;
        let merged = shards(parts, 3).unwrap();
        let samples = merged.phases[1].samples.len() as u64;
        assert!((2..=MAX_SAMPLES + 2).contains(&samples), "{samples} samples");
        parts = fleet();
        parts[0].report.phases[1].duration_ms = u64::MAX;
        assert!(shards(parts, 3).unwrap().phases[1].samples.len() as u64 <= MAX_SAMPLES + 2);
    }

    /// Delivery latency measured on several hosts rests on their clocks: the merge says so.
    #[test]
    fn delivery_latency_across_hosts_carries_a_clock_note() {
        let mut parts = fleet();
        let mut delivery = crate::latency::Latency::new();
        delivery.record_us(800);
        let mut m = crate::report::messages::Messages { published: 1, expected: 1, delivered: 1, ..Default::default() };
        m.latency_us.delivery = delivery.summary();
        parts[0].report.phases[1].messages = Some(m);
        let merged = shards(parts, 3).unwrap();
        assert!(merged.notes.iter().any(|n| n.contains("as far as their clocks agree")), "{:?}", merged.notes);
        assert_eq!(merged.phases[1].messages.as_ref().map(|m| m.delivered), Some(1));
        assert!(!shards(fleet(), 3).unwrap().notes.iter().any(|n| n.contains("clocks agree")));
    }

    #[test]
    fn the_merged_peak_is_the_peak_of_the_sum() {
        let merged = shards(fleet(), 3).unwrap();
        let ramp = &merged.phases[0];
        // Aligned on each shard's start: shard 0 peaks in second 1, shard 1 in second 3.
        let series: Vec<u64> = ramp.samples.iter().map(|s| s.client.get(TcpState::Established)).collect();
        assert_eq!(&series[..5], &[3000, 5000, 3000, 5000, 6000], "{series:?}");
        assert_eq!(series.iter().max(), Some(&6000));
        assert_eq!(ramp.samples[1].t_ms, 1000);
        assert_eq!((ramp.started_ms, merged.phases[1].started_ms), (0, 4500));
        // The text report names a peak above the closing census.
        let mut fewer = merged.clone();
        fewer.phases[0].census.client = established(5500);
        let text = crate::report::text::render(&fewer);
        assert!(text.contains("peak     client established 6000 at 4.0s"), "{text}");
        assert!(!crate::report::text::render(&merged).contains("peak "), "no peak line when the census holds it");
    }

    #[test]
    fn shards_of_one_scope_count_their_census_once() {
        let parts = vec![
            shard(0, "same", 100, 2000, &[2000]),
            shard(1, "same", 100, 2100, &[2100]),
            shard(2, "other", 100, 500, &[500]),
        ];
        let merged = shards(parts, 3).unwrap();
        assert_eq!(merged.phases[0].census.client.get(TcpState::Established), 2600);
        assert_eq!(merged.phases[0].succeeded, 4600);
        assert!(merged.notes.iter().any(|n| n.contains("one network namespace")));
    }

    #[test]
    fn a_missing_shard_makes_the_merge_partial() {
        let mut parts = fleet();
        parts.remove(1);
        let merged = shards(parts, 3).unwrap();
        let info = merged.merge.as_ref().unwrap();
        assert!(info.partial && !merged.passed);
        assert_eq!(info.missing, vec![1]);
        assert_eq!(merged.verdict_word(), "PARTIAL");
    }

    #[test]
    fn reports_that_do_not_belong_together_are_refused() {
        let twice = vec![shard(0, "a", 0, 1, &[]), shard(0, "b", 0, 1, &[])];
        assert!(matches!(shards(twice, 3), Err(MergeError::Twice { index: 0, .. })));
        let mut other = fleet();
        other[2].report.shard.as_mut().unwrap().scenario_sha256 = "cd".repeat(32);
        assert!(matches!(shards(other, 3), Err(MergeError::OtherScenario { .. })));
        assert!(matches!(shards(fleet(), 4), Err(MergeError::OtherCount { expected: 4, .. })));
        let whole = ShardReport { file: "whole.json".into(), report: sample_report() };
        assert_eq!(shards(vec![whole], 1).unwrap_err(), MergeError::NotAShard("whole.json".into()));
        assert_eq!(shards(Vec::new(), 1).unwrap_err(), MergeError::Nothing);
    }

    #[test]
    fn every_view_tells_a_shard_and_a_merge() {
        let one = &fleet()[0].report;
        assert!(crate::report::text::render(one)
            .contains("SHARD 0/3 DONE: 2 phases ran; 3 expectations are judged by `sockcap merge`"));
        let xml = crate::report::junit::render(one);
        assert!(
            xml.contains("skipped=\"3\"") && xml.contains("<skipped message=\"judged on the merged report"),
            "{xml}"
        );
        assert!(crate::report::html::render(one).contains("expectations are judged on the merged report"));

        let mut parts = fleet();
        parts.remove(2);
        let merged = shards(parts, 3).unwrap();
        let text = crate::report::text::render(&merged);
        assert!(text.contains("merged from 2 of 3 shards: 0 (host0), 1 (host1)"), "{text}");
        assert!(text.contains("PARTIAL: no report from shard 2"), "{text}");
        let xml = crate::report::junit::render(&merged);
        assert!(xml.contains("type=\"partial\"") && xml.contains("no report from shard 2"), "{xml}");
        let html = crate::report::html::render(&merged);
        assert!(html.contains("merged from 2 of 3 shards (missing: 2)") && html.contains("PARTIAL"));
    }

    /// A shard's report that cannot be read whole, a census a shard did not take, or a
    /// missing shard: the merged phase's figures are unobserved, not zeros that pass.
    #[test]
    fn what_a_shard_did_not_observe_stays_unobserved() {
        use crate::expect::Expectation;
        let errors_zero = |phase: &PhaseReport| Expectation::no_errors().judge(phase);
        let whole = shards(fleet(), 3).unwrap();
        assert!(whole.phases.iter().all(|p| p.unobserved.is_empty()) && whole.passed);

        let mut parts = fleet();
        parts[1].report.phases[0].latency_us.connect.hdr = "AAAA!".into();
        let errors = Expectation::no_errors().judge(&parts[0].report.phases[0]);
        parts[0].report.phases[0].expectations.push(errors);
        let merged = shards(parts, 3).unwrap();
        let ramp = &merged.phases[0];
        assert!(ramp.unobserved.get("latency.connect").is_some() && ramp.unobserved.get("operations").is_some());
        let e = ramp.expectations.iter().find(|e| e.expr == "errors == 0").unwrap();
        assert!(!e.passed && e.actual.is_none() && e.reason.is_some(), "{e:?}");
        assert!(!errors_zero(ramp).passed && !merged.passed);
        assert!(merged.phases[1].unobserved.is_empty(), "the hold phase read whole: {:?}", merged.phases[1].unobserved);

        // Shard 1's census failed; shard 0 shares its scope and observed it, shard 2 not.
        let mut parts =
            vec![shard(0, "same", 100, 2000, &[2000]), shard(1, "same", 100, 2000, &[]), shard(2, "c", 100, 500, &[])];
        parts[1].report.phases[0].unobserved.mark("census.client", "the client-side census failed: EPERM");
        parts[2].report.phases[1].unobserved.mark("kernel", "reading /proc/net/netstat: Permission denied");
        let merged = shards(parts, 3).unwrap();
        assert!(merged.phases[0].unobserved.is_empty(), "{:?}", merged.phases[0].unobserved);
        assert_eq!(
            merged.phases[1].unobserved.get("kernel"),
            Some("shard 2 (host2): reading /proc/net/netstat: Permission denied")
        );
        let mut parts = fleet();
        parts[2].report.phases[0].unobserved.mark("census.client", "the client-side census failed: EPERM");
        let ramp = &shards(parts, 3).unwrap().phases[0];
        assert_eq!(ramp.unobserved.get("census.client"), Some("shard 2 (host2): the client-side census failed: EPERM"));
        let e = &ramp.expectations[0];
        assert_eq!((e.expr.as_str(), e.passed, e.actual), ("established >= 5000", false, None));

        let mut parts = fleet();
        parts.remove(1);
        let merged = shards(parts, 3).unwrap();
        for phase in &merged.phases {
            assert_eq!(phase.unobserved.get("operations"), Some("no report from shard 1"));
            assert!(!errors_zero(phase).passed);
        }
        let mut parts = fleet();
        parts[2].report.phases.truncate(1);
        let hold = &shards(parts, 3).unwrap().phases[1];
        assert_eq!(hold.unobserved.get("operations"), Some("shard 2 (host2): did not run this phase"));
        assert!(hold.unobserved.get("census.client").is_some(), "no other shard of its scope counted for it");
    }
}
