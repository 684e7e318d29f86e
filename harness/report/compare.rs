//! `sockcap compare`: two reports side by side, phase by phase, figure by figure, and
//! which differences pass a regression limit. Pure: [`compare`] takes two
//! [`RunReport`]s and returns a [`Comparison`]; printing is the CLI's job.
//!
//! - Phases are matched by name (the n-th phase called `ramp` in one report with the
//!   n-th in the other). A phase of the baseline missing from the current report is a
//!   regression (the run stopped early, or the scenario changed).
//! - Latency figures come from the serialized histograms (`hdr`), decoded and read
//!   again, not from the rounded percentiles beside them.
//! - Metric names are the expectation names ([`Metric::parse`]): `connect_p99`,
//!   `handshake_p50`, `close_max`, `established`, `server.time_wait`, `errors`,
//!   `errors.<kind>`, `kernel.<Counter>`, `connected`, `drops`, `rate`.
//! - Which way is worse ([`Better`]): latencies, errors and drops get worse as they grow;
//!   `established` (either side), `connected` and `rate` as they shrink. Every other
//!   socket state and kernel counter is a regression when it moves either way by more
//!   than its limit: a census that shifts (more TIME_WAIT: port pressure; fewer: closes
//!   that did not finish) means the run behaved differently.
//! - A limit ([`Allowance`]) is a percentage of the baseline value, an absolute amount in
//!   the metric's unit, or both added: `connect_p99=20%+1ms` lets p99 grow by a fifth
//!   plus a millisecond (a floor for sub-millisecond noise). `errors=0`: no increase.
//! - Without `--max-regression` the [`RegressionLimits::defaults`] apply; with it, only
//!   the metrics it names are limited. Figures without a limit are still compared and
//!   shown, with no verdict.

use std::fmt;
use std::str::FromStr;

use probe::TcpState;

use super::{PhaseReport, RunReport};
use crate::expect::{LatencyKind, Metric, Percentile, Side};
use crate::failure::ErrorKind;
use crate::latency::{parse_latency_us, HdrError, Latency, LatencySummary, LatencyText};

/// Which direction of change is a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Growth is a regression (latencies, errors, drops).
    Lower,
    /// Shrinking is a regression (established, connected, rate).
    Higher,
    /// A change either way is a regression (other states, kernel counters).
    Unchanged,
}

impl Better {
    /// The direction for a metric (see the module documentation).
    pub fn of(metric: &Metric) -> Better {
        match metric {
            Metric::Latency(..) | Metric::Errors(_) | Metric::Drops => Better::Lower,
            Metric::State(_, TcpState::Established) | Metric::Connected | Metric::Rate => Better::Higher,
            Metric::State(..) | Metric::Kernel(_) => Better::Unchanged,
        }
    }
}

/// How far a figure may move in its worse direction: `percent` of the baseline's
/// value plus `absolute` (in the metric's unit: µs for latencies).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allowance {
    pub percent: f64,
    pub absolute: f64,
}

impl Allowance {
    /// The amount allowed for a baseline value.
    pub fn allowed(&self, baseline: f64) -> f64 {
        baseline.abs() * self.percent / 100.0 + self.absolute
    }

    fn parse(metric: &Metric, text: &str) -> Result<Allowance, String> {
        let mut allowance = Allowance { percent: 0.0, absolute: 0.0 };
        let text = text.trim();
        let text = text.strip_prefix('+').unwrap_or(text);
        if text.is_empty() {
            return Err("the limit is empty".into());
        }
        for part in text.split('+').map(str::trim) {
            if let Some(pct) = part.strip_suffix('%') {
                allowance.percent +=
                    non_negative(pct.trim()).ok_or_else(|| format!("`{part}` is not a percentage; write e.g. 10%"))?;
            } else if matches!(metric, Metric::Latency(..)) {
                allowance.absolute += parse_duration_us(part)?;
            } else {
                allowance.absolute += non_negative(part)
                    .ok_or_else(|| format!("`{part}` is not a number or a percentage; write e.g. 5 or 1%"))?;
            }
        }
        Ok(allowance)
    }

    /// As written on the command line, in `unit` (`20%+1ms`, `0`).
    pub fn display(&self, unit: &str) -> String {
        let absolute = match unit {
            "us" => short_duration(self.absolute),
            _ => trim_number(self.absolute),
        };
        match (self.percent > 0.0, self.absolute > 0.0) {
            (true, true) => format!("{}%+{absolute}", trim_number(self.percent)),
            (true, false) => format!("{}%", trim_number(self.percent)),
            (false, _) => absolute,
        }
    }
}

fn non_negative(text: &str) -> Option<f64> {
    text.replace('_', "").parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

fn parse_duration_us(text: &str) -> Result<f64, String> {
    parse_latency_us(text).map_err(|e| match e {
        LatencyText::NotANumber => format!("`{text}` is not a duration; write e.g. 2ms or 10%"),
        LatencyText::NoUnit => {
            format!("`{text}` has no unit; a latency limit is a percentage (10%) or a duration (2ms)")
        }
        LatencyText::UnknownUnit(u) => format!("unknown unit `{u}`; use us, ms or s"),
    })
}

/// Microseconds as a limit is written: `1ms`, `250us`, `1.5s`.
fn short_duration(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{}s", trim_number(us / 1e6))
    } else if us >= 1_000.0 {
        format!("{}ms", trim_number(us / 1e3))
    } else {
        format!("{}us", trim_number(us))
    }
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// One metric's limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// As written: `connect_p99`.
    pub name: String,
    pub metric: Metric,
    pub allowance: Allowance,
}

/// The limits a comparison judges against: `--max-regression METRIC=LIMIT,...`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionLimits {
    limits: Vec<Limit>,
}

/// A `--max-regression` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("`{0}` is not METRIC=LIMIT; write e.g. connect_p99=10%,established=1%,errors=0")]
    Syntax(String),
    #[error("in `{item}`: {reason}")]
    Metric { item: String, reason: String },
    #[error("in `{item}`: {reason}")]
    Value { item: String, reason: String },
    #[error("`{0}` is limited twice; give each metric once")]
    Duplicate(String),
}

impl RegressionLimits {
    /// The limits used when `--max-regression` is not given:
    /// `connect_p99=50%+5ms, handshake_p99=50%+5ms, connected=0, established=0, errors=0, drops=0`:
    /// no fewer connections, no fewer established sockets, no more errors or drops, and
    /// p99 latencies may grow by half plus 5 ms. The latency allowance is wide because
    /// p99 is noisy: five identical release runs of `scenarios/quickstart.toml` on a
    /// 2-core machine measured connect p99 from 10 to 17 ms and handshake p99 from 17
    /// to 31 ms. It still catches a p99 that doubles; tighten it on quiet hardware.
    pub fn defaults() -> RegressionLimits {
        "connect_p99=50%+5ms,handshake_p99=50%+5ms,connected=0,established=0,errors=0,drops=0"
            .parse()
            .expect("the default limits parse")
    }

    /// Parse `METRIC=LIMIT[,METRIC=LIMIT...]`.
    pub fn parse(text: &str) -> Result<RegressionLimits, LimitError> {
        let mut limits: Vec<Limit> = Vec::new();
        for item in text.split(',').map(str::trim) {
            let (name, value) = item.split_once('=').ok_or_else(|| LimitError::Syntax(item.to_string()))?;
            let name = name.trim();
            let metric = Metric::parse(name).map_err(|reason| LimitError::Metric { item: item.to_string(), reason })?;
            let allowance = Allowance::parse(&metric, value)
                .map_err(|reason| LimitError::Value { item: item.to_string(), reason })?;
            if limits.iter().any(|l| l.metric == metric) {
                return Err(LimitError::Duplicate(name.to_string()));
            }
            limits.push(Limit { name: name.to_string(), metric, allowance });
        }
        Ok(RegressionLimits { limits })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Limit> {
        self.limits.iter()
    }

    /// The limit on `metric`, if any.
    pub fn get(&self, metric: &Metric) -> Option<&Limit> {
        self.limits.iter().find(|l| &l.metric == metric)
    }
}

impl FromStr for RegressionLimits {
    type Err = LimitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RegressionLimits::parse(text)
    }
}

impl fmt::Display for RegressionLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> =
            self.limits.iter().map(|l| format!("{}={}", l.name, l.allowance.display(l.metric.unit()))).collect();
        f.write_str(&items.join(","))
    }
}

/// The verdict on one figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No limit on this metric: shown, not judged.
    Unlimited,
    /// Within its limit.
    Within,
    /// Moved in its worse direction by more than its limit.
    Regressed,
    /// Limited, measured in the baseline, not in the current report (a regression).
    NotMeasured,
    /// Not in the baseline: nothing to compare against.
    NoBaseline,
}

impl Verdict {
    pub fn is_regression(self) -> bool {
        matches!(self, Verdict::Regressed | Verdict::NotMeasured)
    }
}

/// One figure of one phase in both reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The metric's name, as in expectations: `connect_p99`, `server.time_wait`.
    pub name: String,
    pub metric: Metric,
    /// `count`, `us` or `per_s`.
    pub unit: &'static str,
    pub better: Better,
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    pub limit: Option<Allowance>,
    pub verdict: Verdict,
}

impl Figure {
    /// `current - baseline`, when both were measured.
    pub fn change(&self) -> Option<f64> {
        Some(self.current? - self.baseline?)
    }

    /// The change relative to the baseline (0.1 = +10%); `None` when the baseline is 0
    /// or either value is missing.
    pub fn relative_change(&self) -> Option<f64> {
        let base = self.baseline?;
        (base != 0.0).then(|| self.change().map(|c| c / base.abs()))?
    }

    /// How far the figure moved in its worse direction (negative: it improved).
    pub fn worse_by(&self) -> Option<f64> {
        let change = self.change()?;
        Some(match self.better {
            Better::Lower => change,
            Better::Higher => -change,
            Better::Unchanged => change.abs(),
        })
    }
}

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
            super::Outcome::Interrupted => {
                notes.push(format!("the {which} run was interrupted; its last phase is partial"))
            }
            super::Outcome::Failed => {
                notes.push(format!("a worker of the {which} run died; its last phase is partial"))
            }
            super::Outcome::Completed => {}
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
    handshake: Option<LatencySummary>,
    close: Option<LatencySummary>,
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
            handshake: decode("handshake", &phase.latency_us.handshake)?,
            close: decode("close", &phase.latency_us.close)?,
        })
    }

    fn latency(&self, kind: LatencyKind) -> Option<&LatencySummary> {
        match kind {
            LatencyKind::Connect => self.connect.as_ref(),
            LatencyKind::Handshake => self.handshake.as_ref(),
            LatencyKind::Close => self.close.as_ref(),
        }
    }

    /// The figure's value; latencies from the decoded histograms.
    fn value(&self, metric: &Metric) -> Option<f64> {
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
    for kind in [LatencyKind::Connect, LatencyKind::Handshake, LatencyKind::Close] {
        for pct in [Percentile::P50, Percentile::P90, Percentile::P99, Percentile::P999, Percentile::Max] {
            metrics.push(Metric::Latency(kind, pct));
        }
    }
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
            if baseline.is_none() && current.is_none() {
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
                limit,
                verdict: Verdict::Unlimited,
            };
            figure.verdict = judge(&figure);
            Some(figure)
        })
        .collect()
}

fn judge(f: &Figure) -> Verdict {
    let Some(limit) = f.limit else { return Verdict::Unlimited };
    match (f.baseline, f.current) {
        (None, _) => Verdict::NoBaseline,
        (Some(_), None) => Verdict::NotMeasured,
        (Some(base), Some(_)) => {
            let worse = f.worse_by().expect("both values are present");
            // Rates and means are printed with one decimal; ignore float dust.
            let slack = 1e-9 * base.abs().max(1.0);
            if worse > limit.allowed(base) + slack {
                Verdict::Regressed
            } else {
                Verdict::Within
            }
        }
    }
}

/// The name of a metric, as [`Metric::parse`] reads it.
pub fn metric_name(metric: &Metric) -> String {
    match metric {
        Metric::State(Side::Client, s) => s.key().to_string(),
        Metric::State(Side::Server, s) => format!("server.{}", s.key()),
        Metric::Latency(kind, pct) => {
            let kind = match kind {
                LatencyKind::Connect => "connect",
                LatencyKind::Handshake => "handshake",
                LatencyKind::Close => "close",
            };
            let pct = match pct {
                Percentile::P50 => "p50",
                Percentile::P90 => "p90",
                Percentile::P99 => "p99",
                Percentile::P999 => "p999",
                Percentile::Max => "max",
                Percentile::Min => "min",
            };
            format!("{kind}_{pct}")
        }
        Metric::Errors(None) => "errors".to_string(),
        Metric::Errors(Some(kind)) => format!("errors.{}", kind.key()),
        Metric::Kernel(name) => format!("kernel.{name}"),
        Metric::Connected => "connected".to_string(),
        Metric::Drops => "drops".to_string(),
        Metric::Rate => "rate".to_string(),
    }
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

    #[test]
    fn absolute_floor_and_percent_add_up() {
        let limits: RegressionLimits = "connect_p99=20%+1ms".parse().unwrap();
        let a = limits.get(&Metric::parse("connect_p99").unwrap()).unwrap().allowance;
        assert_eq!(a.allowed(10_000.0), 3_000.0);
        assert_eq!(limits.to_string(), "connect_p99=20%+1ms");
        assert_eq!(RegressionLimits::parse("errors=0").unwrap().to_string(), "errors=0");
    }

    #[test]
    fn bad_limits_say_the_fix() {
        let err = RegressionLimits::parse("conect_p99=10%").unwrap_err();
        assert!(matches!(err, LimitError::Metric { .. }) && err.to_string().contains("unknown metric"), "{err}");
        assert!(RegressionLimits::parse("connect_p99").unwrap_err().to_string().contains("METRIC=LIMIT"));
        assert!(RegressionLimits::parse("connect_p99=10").unwrap_err().to_string().contains("no unit"));
        assert!(RegressionLimits::parse("established=lots").unwrap_err().to_string().contains("not a number"));
        assert!(RegressionLimits::parse("errors=-1").is_err());
        assert!(matches!(RegressionLimits::parse("errors=0,errors=1"), Err(LimitError::Duplicate(_))));
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

    #[test]
    fn names_round_trip_through_the_parser() {
        for name in ["connect_p99", "handshake_p999", "close_min", "server.time_wait", "errors.refused", "rate"] {
            assert_eq!(metric_name(&Metric::parse(name).unwrap()), name);
        }
    }
}
