//! A phase's recovery figures ([`Recovery`]): connections lost, back again, how long
//! each took (an HdrHistogram, merged exactly like the latencies), the peak reconnect
//! rate, when the last came back, and the failed reconnect attempts by kind.
//!
//! A recovery is recorded in the phase where the connection came back: one lost near a
//! phase's end and back in the next counts under `lost` in the first and under
//! `recovered` (with its whole recovery time) in the second.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::latency::LatencySummary;

/// The width of one [`Recovery::reconnects_100ms`] bucket, in ms.
pub const BUCKET_MS: u64 = 100;

/// The buckets in the window the peak rate is counted over: one second.
const WINDOW: usize = (1_000 / BUCKET_MS) as usize;

/// What a phase saw of lost connections and their way back (`[client] reconnect`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// Established connections lost in the phase without sockcap closing them.
    pub lost: u64,
    /// The losses by what ended each connection (`ping_timeout`, `closed_by_peer`,
    /// `reset`, ...: the error kinds' names); under a reconnect policy a loss is no error,
    /// so this is where its cause is kept.
    #[serde(default)]
    pub lost_by: BTreeMap<String, u64>,
    /// Lost connections (in this phase or before) that came back in this phase.
    pub recovered: u64,
    /// Each recovered connection's time from its loss to its CONNACK again (TCP: to its
    /// connect again).
    pub recovery_us: LatencySummary,
    /// The most reconnects in any one second of the phase (a sliding window over
    /// [`Recovery::reconnects_100ms`], all workers and shards summed first).
    pub peak_reconnect_rate_per_s: u64,
    /// When the last connection came back, ms since the start of the run (like a
    /// phase's `started_ms`); null when none did.
    #[serde(default)]
    pub last_back_ms: Option<u64>,
    /// Reconnect attempts that failed, by error kind (`refused`, `reset`, `timed_out`,
    /// `connack_refused`, ...); kinds with none left out.
    #[serde(default)]
    pub refusals: BTreeMap<String, u64>,
    /// Reconnects in each 100 ms since the phase started; trailing empty buckets left out.
    #[serde(default)]
    pub reconnects_100ms: Vec<u32>,
    /// Connections lost (in this phase or before) and not back when the phase ended,
    /// still trying under `[client] reconnect`: the longest recovery is unknown while any is.
    #[serde(default)]
    pub down_at_end: u64,
}

impl Recovery {
    /// The peak rate of a reconnect timeline: the most reconnects in any `WINDOW`
    /// consecutive buckets (one second).
    pub fn peak_per_s(timeline: &[u32]) -> u64 {
        let sums = timeline.windows(WINDOW.min(timeline.len()).max(1));
        sums.map(|w| w.iter().map(|&n| u64::from(n)).sum::<u64>()).max().unwrap_or(0)
    }

    /// Whether a phase has anything to say on recovery (a loss, a return, a refusal).
    pub fn is_empty(&self) -> bool {
        self.lost == 0 && self.recovered == 0 && self.refusals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Latency;
    use crate::report::test_support::sample_report;

    /// A hold that lost 300 connections and got 299 back, refused 40 times.
    fn storm() -> Recovery {
        let mut times = Latency::new();
        (1..=299).for_each(|i| times.record_us(i * 10_000));
        Recovery {
            lost: 300,
            lost_by: [("closed_by_peer".to_string(), 300)].into(),
            recovered: 299,
            recovery_us: times.summary(),
            peak_reconnect_rate_per_s: 180,
            last_back_ms: Some(12_345),
            refusals: [("refused".to_string(), 40)].into(),
            reconnects_100ms: vec![20, 40, 60, 60, 60, 59],
            down_at_end: 1,
        }
    }

    #[test]
    fn every_view_shows_the_recovery() {
        let mut report = sample_report();
        report.phases[1].recovery = Some(storm());
        let text = crate::report::text::render(&report);
        let line = "  recovery lost 300 (closed_by_peer 300), back 299, 1 still down; p50 1.50s p99 2.97s max 2.99s; peak 180/s; last back at 12.3s";
        assert!(text.contains(line), "{text}");
        assert!(text.contains("  refusals refused 40 (failed reconnect attempts)"), "{text}");
        assert_eq!(text.matches("  recovery ").count(), 1, "no recovery line where nothing was lost: {text}");
        let xml = crate::report::junit::render(&report);
        for (name, value) in [
            ("recovery.lost", "300"),
            ("recovery.recovered", "299"),
            ("recovery.down_at_end", "1"),
            ("recovery.max_us", "2990079"),
            ("recovery.peak_reconnect_rate_per_s", "180"),
            ("recovery.last_back_ms", "12345"),
            ("recovery.refusals.refused", "40"),
        ] {
            assert!(xml.contains(&format!("<property name=\"{name}\" value=\"{value}\"/>")), "{name}: {xml}");
        }
        let html = crate::report::html::render(&report);
        assert!(html.contains("<section id=\"recovery\"><h2>Recovery</h2>"), "{html}");
        assert!(html.contains("<td>300</td><td class=\"bad\">299</td><td>1.50s</td>"), "{html}");
        assert!(html.contains("<td>180</td><td>12.35 s</td><td class=\"l\">refused 40</td>"), "{html}");
        assert!(html.contains("\"reconnects_100ms\":[20,40,60,60,60,59]"), "the rate chart's reconnects/s: {html}");
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["phases"][0].get("recovery").is_none(), "left out where nothing was lost");
        assert_eq!(json["phases"][1]["recovery"]["recovery_us"]["count"], 299);
        let back: crate::report::RunReport = serde_json::from_value(json).unwrap();
        assert_eq!(back.phases[1].recovery, Some(storm()));
    }

    /// Two workers' recoveries: counts summed, histograms added exactly, the timelines
    /// summed before the peak is taken (each worker's peak alone is lower).
    #[test]
    fn recoveries_merge_exactly() {
        let mut one = sample_report().phases[1].clone();
        let mut two = one.clone();
        let (mut a, mut b) = (Latency::new(), Latency::new());
        (1..=100).for_each(|i| a.record_us(i * 1_000));
        (101..=300).for_each(|i| b.record_us(i * 1_000));
        let recovery = |lost, times: &Latency, timeline: Vec<u32>, last, refused: u64| Recovery {
            lost,
            lost_by: [("ping_timeout".to_string(), lost)].into(),
            recovered: times.count(),
            recovery_us: times.summary(),
            peak_reconnect_rate_per_s: Recovery::peak_per_s(&timeline),
            last_back_ms: Some(last),
            refusals: [("refused".to_string(), refused)].into(),
            reconnects_100ms: timeline,
            down_at_end: 0,
        };
        // Worker one's returns early, worker two's late: apart, neither peaks at 300 in a second.
        one.recovery = Some(recovery(100, &a, vec![50, 50], 150, 3));
        two.recovery = Some(recovery(200, &b, [vec![0; 9], vec![100, 100]].concat(), 1_050, 4));
        let merged = crate::report::merge::phases(&[one, two, sample_report().phases[1].clone()], "worker");
        assert!(merged.notes.is_empty(), "{:?}", merged.notes);
        let merged = merged.report.recovery.unwrap();
        a.merge(&b);
        assert_eq!((merged.lost, merged.recovered, merged.recovery_us.clone()), (300, 300, a.summary()));
        assert_eq!(merged.peak_reconnect_rate_per_s, 50 + 200, "buckets 1..11 hold 50 + 200");
        assert_eq!((merged.last_back_ms, merged.refusals["refused"]), (Some(1_050), 7));
        assert_eq!(merged.lost_by["ping_timeout"], 300, "the causes of loss are summed");
        let none = crate::report::merge::phases(&[sample_report().phases[1].clone()], "worker");
        assert_eq!(none.report.recovery, None);
    }

    /// `sockcap compare` lists the recovery percentiles and the peak rate beside the
    /// latencies, and a limit on one judges it.
    #[test]
    fn compare_lists_the_recovery_figures() {
        use crate::report::compare::{compare, Verdict};
        let mut base = sample_report();
        base.phases[1].recovery = Some(storm());
        let mut slower = base.clone();
        let mut times = Latency::new();
        (1..=299).for_each(|i| times.record_us(i * 20_000));
        slower.phases[1].recovery.as_mut().unwrap().recovery_us = times.summary();
        let c = compare(&base, &slower, &"recovery_p99=10%".parse().unwrap()).unwrap();
        let hold = &c.phases[1].figures;
        let figure = |name: &str| hold.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(figure("recovery_p99").verdict, Verdict::Regressed);
        assert_eq!(figure("recovery_max").verdict, Verdict::Unlimited);
        assert_eq!(
            (figure("peak_reconnect_rate").baseline, figure("peak_reconnect_rate").current),
            (Some(180.0), Some(180.0))
        );
        assert!(c.phases[0].figures.iter().all(|f| !f.name.starts_with("recovery")), "none where nothing was lost");
    }

    #[test]
    fn an_undecodable_recovery_histogram_leaves_the_times_unobserved() {
        let mut one = sample_report().phases[1].clone();
        one.recovery = Some(storm());
        let mut two = one.clone();
        two.recovery.as_mut().unwrap().recovery_us.hdr = "not base64!".into();
        let merged = crate::report::merge::phases(&[one, two], "shard");
        assert!(merged.notes[0].contains("recovery histogram cannot be decoded"), "{:?}", merged.notes);
        let phase = merged.report;
        let recovery = phase.recovery.as_ref().unwrap();
        assert_eq!((recovery.lost, recovery.down_at_end), (600, 2), "the counts merge");
        let e = crate::expect::Expectation::parse("recovery_p50", &toml::Value::String("< 3600s".into()))
            .unwrap()
            .judge(&phase);
        assert!(!e.passed && e.reason.as_deref().unwrap().contains("recovery histogram cannot be decoded"), "{e:?}");
        assert!(crate::report::text::render(&crate::report::RunReport { phases: vec![phase], ..sample_report() })
            .contains("times unobserved: 1 of the 2 shards' recovery histogram cannot be decoded"));
    }

    #[test]
    fn the_peak_is_the_busiest_second() {
        assert_eq!(Recovery::peak_per_s(&[]), 0);
        assert_eq!(Recovery::peak_per_s(&[3]), 3, "a phase shorter than a second");
        // 20 buckets: 2 s. The busiest second is buckets 5..15.
        let mut timeline = vec![1u32; 20];
        timeline[5] = 50;
        timeline[14] = 40;
        assert_eq!(Recovery::peak_per_s(&timeline), 50 + 40 + 8);
        assert_eq!(Recovery::peak_per_s(&[u32::MAX; 12]), 10 * u64::from(u32::MAX), "no overflow");
    }
}
