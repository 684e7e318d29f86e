//! The page's JSON block, `<script type="application/json" id="sockcap-data">` with
//! schema [`DATA_SCHEMA`]: what `report.js` draws the charts from, built from the
//! [`RunReport`]: every phase's census samples and end census, the success and failure
//! rates between successive samples, and latency percentile curves computed from the
//! serialized HdrHistograms. Every string in it is escaped for a `<script>` element.

use std::collections::BTreeMap;

use probe::{StateCounts, TcpState};
use serde::Serialize;

use crate::latency::{Latency, LatencySummary};
use crate::report::{unobserved, CensusSample, EventReport, Exhaustion, Outcome, PhaseReport, RunReport};

/// Schema of the JSON block in the page (the data the charts are drawn from).
pub const DATA_SCHEMA: &str = "sockcap.html-data/1";

/// The `id` of the JSON block.
pub const DATA_ELEMENT_ID: &str = "sockcap-data";

/// Steps of the percentile curves per halving of the distance to 100%, as in
/// HdrHistogram's percentile output.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// A census closer than this to the previous one is merged into its interval, so a
/// sample taken just before a phase's end census does not make a spike in the rates.
const MIN_RATE_INTERVAL_MS: u64 = 250;

/// What the charts are drawn from.
#[derive(Debug, Serialize)]
struct PageData<'a> {
    schema: &'static str,
    scenario: &'a str,
    target: &'a str,
    protocol: &'a str,
    passed: bool,
    outcome: Outcome,
    duration_ms: u64,
    /// Every state key, in kernel order: the order charts list them in.
    states: Vec<&'static str>,
    phases: Vec<PhaseData<'a>>,
}

/// One phase, as the charts need it.
#[derive(Debug, Serialize)]
struct PhaseData<'a> {
    name: &'a str,
    kind: &'a str,
    /// Start, from the start of the run.
    started_ms: u64,
    duration_ms: u64,
    planned: u64,
    succeeded: u64,
    /// The census samples taken during the phase, as in the report.
    samples: Vec<Census>,
    /// The census when the phase ended, at `started_ms + duration_ms`.
    end: Census,
    /// True when that census failed on a side (the phase's `unobserved`): its zeros are
    /// no reading, and the census charts leave it out.
    end_census_unobserved: bool,
    /// Successes and failures per second between successive censuses.
    rate: Vec<RateStep>,
    /// Percentile curves of the latencies the phase measured.
    latency: Vec<Curve>,
    /// Failures by kind, non-zero kinds only.
    errors: BTreeMap<&'a str, u64>,
    /// Reconnects of lost connections in each 100 ms since the phase started (the
    /// rate chart's reconnects/s, finer than the census samples); empty when none.
    reconnects_100ms: &'a [u32],
    /// Messages published and delivered in each 100 ms since the phase started; empty
    /// without traffic.
    published_100ms: &'a [u32],
    delivered_100ms: &'a [u32],
    /// When the ephemeral ports toward the target ran out, as in the report.
    exhaustion: Option<&'a Exhaustion>,
    /// The events the phase ran (`exec`, `fault`, `netem`), as in the report: marked on
    /// the census charts.
    events: &'a [EventReport],
    expectations: Vec<Verdict<'a>>,
}

/// A census: non-zero states only, plus the phase's running counts.
#[derive(Debug, Serialize)]
struct Census {
    t_ms: u64,
    client: BTreeMap<&'static str, u64>,
    server: Option<BTreeMap<&'static str, u64>>,
    succeeded: u64,
    failed: u64,
    open: u64,
}

/// Rates over one interval between censuses.
#[derive(Debug, Serialize)]
struct RateStep {
    from_ms: u64,
    to_ms: u64,
    succeeded_per_s: f64,
    failed_per_s: f64,
}

/// A latency percentile curve.
#[derive(Debug, Serialize)]
struct Curve {
    /// `connect`, `tls`, `handshake` or `close`.
    name: &'static str,
    count: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    /// `[quantile, µs]`, quantile ascending from 0. The last point is the maximum, placed at
    /// quantile `1 - 1/count` (the resolution of `count` samples) so it has a finite `1/(1-q)`.
    points: Vec<(f64, u64)>,
    /// Set when the histogram could not be decoded: `points` are then the summary's percentiles.
    error: Option<String>,
}

/// An expectation and its verdict.
#[derive(Debug, Serialize)]
struct Verdict<'a> {
    expr: &'a str,
    actual: Option<f64>,
    unit: &'a str,
    passed: bool,
    implicit: bool,
    /// Judged on the merged report, not on this shard's figures.
    deferred: bool,
}

/// The text of the JSON block for `report`, safe inside its `<script>` element.
pub(super) fn json_block(report: &RunReport) -> String {
    script_json(&page_data(report))
}

fn page_data(report: &RunReport) -> PageData<'_> {
    PageData {
        schema: DATA_SCHEMA,
        scenario: &report.scenario.name,
        target: &report.scenario.target,
        protocol: &report.scenario.protocol,
        passed: report.passed,
        outcome: report.outcome,
        duration_ms: report.duration_ms,
        states: TcpState::REPORTED.iter().map(|s| s.key()).collect(),
        phases: report.phases.iter().map(phase_data).collect(),
    }
}

fn phase_data(p: &PhaseReport) -> PhaseData<'_> {
    let samples: Vec<Census> = p.samples.iter().map(census_of_sample).collect();
    let end = Census {
        t_ms: p.started_ms + p.duration_ms,
        client: nonzero(&p.census.client),
        server: p.census.server.as_ref().map(nonzero),
        succeeded: p.succeeded,
        failed: crate::failure::error_total(&p.errors),
        open: p.open_at_end,
    };
    let rate = rate_steps(p.started_ms, &samples, &end);
    let messages = p.messages.as_ref().map(|m| {
        let l = &m.latency_us;
        [("suback", &l.suback), ("puback", &l.puback), ("pubcomp", &l.pubcomp), ("delivery", &l.delivery)]
    });
    // The message latencies beside the connection ones.
    let latency = p
        .latency_us
        .measured()
        .chain(messages.into_iter().flatten().filter(|(_, s)| s.count > 0))
        .map(|(name, s)| curve(name, s))
        .collect();
    PhaseData {
        name: &p.name,
        kind: &p.kind,
        started_ms: p.started_ms,
        duration_ms: p.duration_ms,
        planned: p.planned,
        succeeded: p.succeeded,
        samples,
        end,
        end_census_unobserved: [unobserved::CENSUS_CLIENT, unobserved::CENSUS_SERVER]
            .iter()
            .any(|figure| p.unobserved.get(figure).is_some()),
        rate,
        latency,
        errors: p.errors.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (k.as_str(), *n)).collect(),
        reconnects_100ms: p.recovery.as_ref().map_or(&[], |r| r.reconnects_100ms.as_slice()),
        published_100ms: p.messages.as_ref().map_or(&[], |m| m.published_100ms.as_slice()),
        delivered_100ms: p.messages.as_ref().map_or(&[], |m| m.delivered_100ms.as_slice()),
        exhaustion: p.exhaustion.as_ref(),
        events: &p.events,
        expectations: p
            .expectations
            .iter()
            .map(|e| Verdict {
                expr: &e.expr,
                actual: e.actual,
                unit: &e.unit,
                passed: e.passed,
                implicit: e.implicit,
                deferred: e.deferred,
            })
            .collect(),
    }
}

fn census_of_sample(s: &CensusSample) -> Census {
    Census {
        t_ms: s.t_ms,
        client: nonzero(&s.client),
        server: s.server.as_ref().map(nonzero),
        succeeded: s.succeeded,
        failed: s.failed,
        open: s.open,
    }
}

fn nonzero(c: &StateCounts) -> BTreeMap<&'static str, u64> {
    c.iter().filter(|(_, n)| *n > 0).map(|(s, n)| (s.key(), n)).collect()
}

/// Rates between successive censuses of a phase, from its start (where its counts are 0)
/// to its end census.
fn rate_steps(started_ms: u64, samples: &[Census], end: &Census) -> Vec<RateStep> {
    let mut points: Vec<(u64, u64, u64)> = vec![(started_ms, 0, 0)];
    for c in samples.iter().chain(std::iter::once(end)) {
        let (last_t, ..) = points[points.len() - 1];
        if c.t_ms <= last_t {
            continue;
        }
        if points.len() > 1 && c.t_ms - last_t < MIN_RATE_INTERVAL_MS {
            points.pop();
        }
        points.push((c.t_ms, c.succeeded, c.failed));
    }
    points
        .windows(2)
        .map(|w| {
            let (t0, s0, f0) = w[0];
            let (t1, s1, f1) = w[1];
            let secs = (t1 - t0) as f64 / 1000.0;
            let per_s = |a: u64, b: u64| (b.saturating_sub(a) as f64 / secs * 10.0).round() / 10.0;
            RateStep { from_ms: t0, to_ms: t1, succeeded_per_s: per_s(s0, s1), failed_per_s: per_s(f0, f1) }
        })
        .collect()
}

fn curve(name: &'static str, s: &LatencySummary) -> Curve {
    let (points, error) = match Latency::from_hdr(&s.hdr) {
        Ok(latency) => (percentile_points(&latency), None),
        Err(e) => {
            let n = s.count as f64;
            let mut points = vec![(0.0, s.min), (0.5, s.p50), (0.9, s.p90), (0.99, s.p99), (0.999, s.p999)];
            points.retain(|(q, _)| *q <= 1.0 - 1.0 / n);
            points.push(((1.0 - 1.0 / n).max(0.0), s.max));
            (points, Some(e.to_string()))
        }
    };
    Curve {
        name,
        count: s.count,
        p50_us: s.p50,
        p90_us: s.p90,
        p99_us: s.p99,
        p999_us: s.p999,
        max_us: s.max,
        points,
        error,
    }
}

/// The percentile distribution of a histogram, cut at the resolution its sample count
/// gives (`1 - 1/count`, where the maximum is placed), keeping only the first and last
/// point of each run of equal values.
fn percentile_points(latency: &Latency) -> Vec<(f64, u64)> {
    let all: Vec<(f64, u64)> = latency.quantiles(TICKS_PER_HALF_DISTANCE).collect();
    let Some(&(_, max)) = all.last() else { return Vec::new() };
    let n = latency.count();
    let last_q = if n > 1 { 1.0 - 1.0 / n as f64 } else { 0.0 };
    let mut raw: Vec<(f64, u64)> = all.into_iter().take_while(|(q, _)| *q < last_q).collect();
    raw.push((last_q, max));
    let mut points = Vec::with_capacity(raw.len());
    for (i, &(q, v)) in raw.iter().enumerate() {
        let same_before = i > 0 && raw[i - 1].1 == v;
        let same_after = i + 1 < raw.len() && raw[i + 1].1 == v;
        if !(same_before && same_after) {
            points.push((q, v));
        }
    }
    points
}

/// JSON that is safe inside a `<script>` element: `<`, `>` and `&` (which only occur
/// inside JSON strings) become `\u` escapes, so no `</script>` or `<!--` can appear;
/// U+2028 and U+2029 too, for older JavaScript parsers.
fn script_json<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_string(value).expect("the page data always serializes");
    let mut out = String::with_capacity(json.len() + 64);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_points_keep_the_ends_of_flat_runs() {
        let mut l = Latency::new();
        (0..1000).for_each(|_| l.record_us(100));
        l.record_us(5000);
        let points = percentile_points(&l);
        assert_eq!(points.first(), Some(&(0.0, 100)));
        assert_eq!(points.last().map(|p| p.1), Some(l.summary().max));
        assert!(points.len() <= 4, "a flat run collapses to its ends: {points:?}");
        assert!(percentile_points(&Latency::new()).is_empty());
    }
}
