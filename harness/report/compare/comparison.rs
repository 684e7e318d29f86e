//! Two reports compared ([`compare`]): phases matched by name, their histograms
//! decoded, every figure read on both sides and judged against the limits.

use std::fmt;

use probe::TcpState;

use super::figure::{judge, metric_name, Better, Figure, Verdict};
use super::limits::RegressionLimits;
use crate::expect::{LatencyKind, Metric, Percentile, Side};
use crate::failure::ErrorKind;
use crate::latency::{HdrError, Latency, LatencySummary};
use crate::report::{Outcome, PhaseReport, RunReport};

/// Whether a phase was in both reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Both,
    /// Only in the baseline: the current run did not reach it (a regression).
    BaselineOnly,
    /// Only in the current report: nothing to compare against.
    CurrentOnly,
}

/// One phase compared.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseComparison {
    pub name: String,
    /// The phase kind (`connect`, `hold`, ...), from the current report when it has the phase.
    pub kind: String,
    pub presence: Presence,
    /// Every figure compared, in a stable order: operations, errors, latencies, census,
    /// then limited metrics not among those.
    pub figures: Vec<Figure>,
}

/// Two reports compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub limits: RegressionLimits,
    pub phases: Vec<PhaseComparison>,
    /// Things a reader should know (different scenarios, an interrupted run, ...).
    pub notes: Vec<String>,
}

impl Comparison {
    /// Figures that passed their limit, with their phase.
    pub fn regressions(&self) -> impl Iterator<Item = (&PhaseComparison, &Figure)> {
        self.phases.iter().flat_map(|p| p.figures.iter().filter(|f| f.verdict.is_regression()).map(move |f| (p, f)))
    }

    /// Phases of the baseline that the current report lacks.
    pub fn missing_phases(&self) -> impl Iterator<Item = &PhaseComparison> {
        self.phases.iter().filter(|p| p.presence == Presence::BaselineOnly)
    }

    /// True when no figure passed its limit and no baseline phase is missing.
    pub fn passed(&self) -> bool {
        self.regressions().next().is_none() && self.missing_phases().next().is_none()
    }
}

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Baseline,
    Current,
}

impl fmt::Display for Which {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Which::Baseline => "baseline",
            Which::Current => "current",
        })
    }
}

/// A report that cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("the {histogram} histogram of phase `{phase}` in the {which} report: {source}")]
    Histogram { which: Which, phase: String, histogram: &'static str, source: HdrError },
}

impl CompareError {
    /// The report at fault.
    pub fn which(&self) -> Which {
        match self {
            CompareError::Histogram { which, .. } => *which,
        }
    }
}

/// Compare `current` with `baseline` under `limits`.
pub fn compare(
    baseline: &RunReport,
    current: &RunReport,
    limits: &RegressionLimits,
) -> Result<Comparison, CompareError> {
    let mut notes = Vec::new();
    if baseline.scenario.name != current.scenario.name {
        notes.push(format!(
            "the reports come from different scenarios (`{}` and `{}`); phases are matched by name",
            baseline.scenario.name, current.scenario.name
        ));
    }
    if baseline.scenario.protocol != current.scenario.protocol {
        notes.push(format!(
            "the protocols differ ({} and {}); handshake figures are not comparable",
            baseline.scenario.protocol, current.scenario.protocol
        ));
    }
    for (which, report) in [(Which::Baseline, baseline), (Which::Current, current)] {
        match report.outcome {
            Outcome::Interrupted => notes.push(format!("the {which} run was interrupted; its last phase is partial")),
            Outcome::Failed => notes.push(format!("a worker of the {which} run died; its last phase is partial")),
            Outcome::Completed => {}
        }
        let failed = report.failures().count();
        if failed > 0 {
            notes.push(format!("the {which} run failed {failed} of its own expectations"));
        }
    }

    let mut phases = Vec::new();
    let mut matched = vec![false; current.phases.len()];
    for (i, base) in baseline.phases.iter().enumerate() {
        let nth = baseline.phases[..i].iter().filter(|p| p.name == base.name).count();
        let found = current.phases.iter().enumerate().filter(|(_, p)| p.name == base.name).nth(nth);
        let base_values = PhaseValues::read(Which::Baseline, base)?;
        match found {
            Some((j, cur)) => {
                matched[j] = true;
                let cur_values = PhaseValues::read(Which::Current, cur)?;
                phases.push(PhaseComparison {
                    name: base.name.clone(),
                    kind: cur.kind.clone(),
                    presence: Presence::Both,
                    figures: figures(Some(&base_values), Some(&cur_values), limits),
                });
            }
            None => phases.push(PhaseComparison {
                name: base.name.clone(),
                kind: base.kind.clone(),
                presence: Presence::BaselineOnly,
                figures: figures(Some(&base_values), None, limits),
            }),
        }
    }
    for cur in current.phases.iter().enumerate().filter(|(j, _)| !matched[*j]).map(|(_, p)| p) {
        let cur_values = PhaseValues::read(Which::Current, cur)?;
        phases.push(PhaseComparison {
            name: cur.name.clone(),
            kind: cur.kind.clone(),
            presence: Presence::CurrentOnly,
            figures: figures(None, Some(&cur_values), limits),
        });
    }
    Ok(Comparison { limits: limits.clone(), phases, notes })
}

/// A phase with its histograms decoded.
struct PhaseValues<'a> {
    phase: &'a PhaseReport,
    connect: Option<LatencySummary>,
    tls: Option<LatencySummary>,
    ws: Option<LatencySummary>,
    handshake: Option<LatencySummary>,
    close: Option<LatencySummary>,
    recovery: Option<LatencySummary>,
}

impl<'a> PhaseValues<'a> {
    fn read(which: Which, phase: &'a PhaseReport) -> Result<PhaseValues<'a>, CompareError> {
        let decode = |histogram: &'static str, s: &LatencySummary| -> Result<Option<LatencySummary>, CompareError> {
            if s.count == 0 && s.hdr.is_empty() {
                return Ok(None);
            }
            let latency = Latency::from_hdr(&s.hdr).map_err(|source| CompareError::Histogram {
                which,
                phase: phase.name.clone(),
                histogram,
                source,
            })?;
            Ok((latency.count() > 0).then(|| latency.summary()))
        };
        Ok(PhaseValues {
            phase,
            connect: decode("connect", &phase.latency_us.connect)?,
            tls: decode("tls", &phase.latency_us.tls)?,
            ws: decode("ws", &phase.latency_us.ws)?,
            handshake: decode("handshake", &phase.latency_us.handshake)?,
            close: decode("close", &phase.latency_us.close)?,
            recovery: match &phase.recovery {
                Some(r) => decode("recovery", &r.recovery_us)?,
                None => None,
            },
        })
    }

    fn latency(&self, kind: LatencyKind) -> Option<&LatencySummary> {
        match kind {
            LatencyKind::Connect => self.connect.as_ref(),
            LatencyKind::Handshake => self.handshake.as_ref(),
            LatencyKind::Tls => self.tls.as_ref(),
            LatencyKind::Ws => self.ws.as_ref(),
            LatencyKind::Close => self.close.as_ref(),
            LatencyKind::Recovery => self.recovery.as_ref(),
            LatencyKind::Lateness
            | LatencyKind::Suback
            | LatencyKind::Puback
            | LatencyKind::Pubcomp
            | LatencyKind::Delivery => None,
        }
    }

    /// Why the phase has no value of `metric`, when it did not observe it.
    fn unobserved(&self, metric: &Metric) -> Option<String> {
        self.phase.unobserved.reason_for(metric).map(str::to_string)
    }

    /// The figure's value; latencies from the decoded histograms. None when the phase
    /// did not observe it (its field's zero is no reading).
    fn value(&self, metric: &Metric) -> Option<f64> {
        if self.phase.unobserved.reason_for(metric).is_some() {
            return None;
        }
        match metric {
            Metric::Latency(kind, pct) => {
                let s = self.latency(*kind)?;
                let v = match pct {
                    Percentile::P50 => s.p50,
                    Percentile::P90 => s.p90,
                    Percentile::P99 => s.p99,
                    Percentile::P999 => s.p999,
                    Percentile::Max => s.max,
                    Percentile::Min => s.min,
                };
                Some(v as f64)
            }
            Metric::Connected | Metric::Rate if !does_operations(&self.phase.kind) => None,
            other => other.actual(self.phase),
        }
    }
}

/// Phases whose `succeeded` and rate mean something.
fn does_operations(kind: &str) -> bool {
    matches!(kind, "connect" | "close" | "churn")
}

/// The figures shown for a phase: every one measured on either side, then the limited
/// metrics not already among them.
fn figures(base: Option<&PhaseValues>, cur: Option<&PhaseValues>, limits: &RegressionLimits) -> Vec<Figure> {
    let sides = || base.into_iter().chain(cur);
    let mut metrics = vec![Metric::Connected, Metric::Rate, Metric::Drops, Metric::Errors(None)];
    for kind in ErrorKind::ALL {
        if sides().any(|v| v.value(&Metric::Errors(Some(kind))).is_some_and(|n| n > 0.0)) {
            metrics.push(Metric::Errors(Some(kind)));
        }
    }
    for kind in [
        LatencyKind::Connect,
        LatencyKind::Tls,
        LatencyKind::Ws,
        LatencyKind::Handshake,
        LatencyKind::Close,
        LatencyKind::Recovery,
    ] {
        for pct in [Percentile::P50, Percentile::P90, Percentile::P99, Percentile::P999, Percentile::Max] {
            metrics.push(Metric::Latency(kind, pct));
        }
    }
    metrics.push(Metric::PeakReconnectRate);
    for side in [Side::Client, Side::Server] {
        for state in TcpState::REPORTED {
            let metric = Metric::State(side, state);
            let nonzero = sides().any(|v| v.value(&metric).is_some_and(|n| n > 0.0));
            if nonzero || state == TcpState::Established {
                metrics.push(metric);
            }
        }
    }
    for limit in limits.iter() {
        if !metrics.contains(&limit.metric) {
            metrics.push(limit.metric.clone());
        }
    }
    metrics
        .into_iter()
        .filter_map(|metric| {
            let baseline = base.and_then(|v| v.value(&metric));
            let current = cur.and_then(|v| v.value(&metric));
            let baseline_unobserved = base.and_then(|v| v.unobserved(&metric));
            let current_unobserved = cur.and_then(|v| v.unobserved(&metric));
            let unobserved = baseline_unobserved.is_some() || current_unobserved.is_some();
            if baseline.is_none() && current.is_none() && !unobserved {
                return None;
            }
            let limit = limits.get(&metric).map(|l| l.allowance);
            let mut figure = Figure {
                name: metric_name(&metric),
                unit: metric.unit(),
                better: Better::of(&metric),
                metric,
                baseline,
                current,
                baseline_unobserved,
                current_unobserved,
                limit,
                verdict: Verdict::Unlimited,
            };
            figure.verdict = judge(&figure);
            Some(figure)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::{latency, sample_report};

    fn figure<'a>(c: &'a Comparison, phase: &str, name: &str) -> &'a Figure {
        let p = c.phases.iter().find(|p| p.name == phase).unwrap_or_else(|| panic!("no phase {phase}"));
        p.figures.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no figure {name} in {phase}: {p:?}"))
    }

    #[test]
    fn identical_reports_pass_and_show_every_figure() {
        let r = sample_report();
        let c = compare(&r, &r, &RegressionLimits::defaults()).unwrap();
        assert!(c.passed(), "{c:?}");
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        let names: Vec<&str> = c.phases[0].figures.iter().map(|f| f.name.as_str()).collect();
        for want in ["connected", "rate", "errors", "connect_p50", "connect_p99", "handshake_max", "established"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(!names.contains(&"close_p99"), "no close samples, no close figures: {names:?}");
        assert_eq!(figure(&c, "ramp", "connect_p99").verdict, Verdict::Within);
        assert_eq!(figure(&c, "ramp", "rate").verdict, Verdict::Unlimited);
        let hold: Vec<&str> = c.phases[1].figures.iter().map(|f| f.name.as_str()).collect();
        assert!(!hold.contains(&"connected"), "a hold phase has no connects: {hold:?}");
    }

    #[test]
    fn latencies_come_from_the_histogram_not_the_rounded_fields() {
        let base = sample_report();
        let mut cur = base.clone();
        let slow = latency(5000, 100, 20_000);
        // Keep the JSON's p99 as it was: only the histogram says it got slower.
        cur.phases[0].latency_us.connect.hdr = slow.hdr.clone();
        let c = compare(&base, &cur, &RegressionLimits::defaults()).unwrap();
        let f = figure(&c, "ramp", "connect_p99");
        assert_eq!(f.current, Some(slow.p99 as f64));
        assert_eq!(f.verdict, Verdict::Regressed);
        assert!(!c.passed());
        let regressed: Vec<&str> = c.regressions().map(|(_, f)| f.name.as_str()).collect();
        assert_eq!(regressed, ["connect_p99"]);
    }

    #[test]
    fn direction_decides_what_is_worse() {
        let base = sample_report();
        let mut faster = base.clone();
        faster.phases[0].latency_us.connect = latency(5000, 10, 100);
        faster.phases[0].census.client.add_n(TcpState::Established, 100);
        let c = compare(&base, &faster, &"connect_p99=0%,established=0%".parse().unwrap()).unwrap();
        assert!(c.passed(), "lower latency and more established are improvements: {c:?}");

        let mut fewer = base.clone();
        fewer.phases[1].census.client = Default::default();
        fewer.phases[1].census.client.add_n(TcpState::Established, 4990);
        let c = compare(&base, &fewer, &"established=1%".parse().unwrap()).unwrap();
        assert!(c.passed(), "10 fewer of 5000 is within 1%");
        let c = compare(&base, &fewer, &"established=0.1%".parse().unwrap()).unwrap();
        let f = figure(&c, "hold", "established");
        assert_eq!((f.verdict, f.worse_by()), (Verdict::Regressed, Some(10.0)));

        let mut waiting = base.clone();
        waiting.phases[1].census.client.add_n(TcpState::TimeWait, 3);
        let c = compare(&waiting, &base, &"time_wait=2".parse().unwrap()).unwrap();
        assert_eq!(figure(&c, "hold", "time_wait").verdict, Verdict::Regressed, "fewer TIME_WAIT also counts");
    }

    #[test]
    fn errors_from_zero_and_missing_phases_regress() {
        let base = sample_report();
        let mut cur = base.clone();
        cur.phases[0].errors.insert("refused".into(), 1);
        cur.phases.truncate(1);
        let c = compare(&base, &cur, &RegressionLimits::defaults()).unwrap();
        assert_eq!(figure(&c, "ramp", "errors").verdict, Verdict::Regressed);
        assert_eq!(figure(&c, "ramp", "errors.refused").verdict, Verdict::Unlimited);
        assert_eq!(c.missing_phases().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["hold"]);
        assert!(!c.passed());
    }

    /// A figure the current report did not observe is no zero: it has no value, says
    /// why, and under a limit it regresses.
    #[test]
    fn unobserved_figures_are_shown_as_such_not_as_zero() {
        let base = sample_report();
        let mut cur = base.clone();
        cur.phases[1].census.client = Default::default();
        cur.phases[1].unobserved.mark("census.client", "the client-side census failed: EPERM");
        let c = compare(&base, &cur, &"established=0%".parse().unwrap()).unwrap();
        let f = figure(&c, "hold", "established");
        assert_eq!((f.baseline, f.current), (Some(5000.0), None));
        assert_eq!(f.current_unobserved.as_deref(), Some("the client-side census failed: EPERM"));
        assert_eq!(f.verdict, Verdict::NotMeasured);
        assert!(!c.passed());
        // Unobserved on both sides: still listed, with no value on either.
        let c = compare(&cur, &cur, &RegressionLimits::defaults()).unwrap();
        let f = figure(&c, "hold", "established");
        assert_eq!((f.baseline, f.current, f.verdict), (None, None, Verdict::NoBaseline));
        assert!(f.baseline_unobserved.is_some() && f.current_unobserved.is_some());
    }

    #[test]
    fn a_broken_histogram_names_the_report_and_phase() {
        let base = sample_report();
        let mut cur = base.clone();
        cur.phases[0].latency_us.connect.hdr = "not base64!".into();
        let err = compare(&base, &cur, &RegressionLimits::defaults()).unwrap_err();
        assert_eq!(err.which(), Which::Current);
        assert!(err.to_string().contains("phase `ramp`"), "{err}");
    }
}
