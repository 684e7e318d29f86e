//! A step's run report judged for the search: holds, breaks (an objective breached by
//! the target), or unknown (sockcap could not judge: the run was invalid, the generator
//! being the bottleneck, or an objective's figure was not observed), and the step's
//! figures as the search reports them.
//!
//! `invalid` (the run's and each phase's, from the generator-validity check) is read
//! from the report's JSON value, so a report without the field reads as valid.

use serde::{Deserialize, Serialize};

use crate::expect::Expectation;
use crate::report::{ExpectationResult, Outcome, PhaseReport, RunReport};

use super::schedule::StepVerdict;
use super::spec::JUDGED_PHASES;

/// One step's figures, summed over its judged phases (the ramp; the climb and hold).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepFigures {
    /// Handshake p99 (MQTT CONNACK, or TCP connect for `tcp`), µs; null when none completed.
    pub handshake_p99_us: Option<u64>,
    /// Connections established (with their handshake) in the connect phase.
    pub connected: u64,
    /// Connects the phase asked for.
    pub planned: u64,
    /// Connects per second achieved in the connect phase.
    pub achieved_rate_per_s: f64,
    /// Failures, all judged phases.
    pub errors: u64,
    /// Failures by kind (non-zero only).
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
    /// Established connections lost, all judged phases.
    pub drops: u64,
}

/// A step's verdict, its objectives' results, its figures and, when it breached, what.
#[derive(Debug)]
pub struct Judged {
    pub verdict: StepVerdict,
    pub objectives: Vec<ExpectationResult>,
    pub figures: StepFigures,
    /// The run's `invalid` reason, when the generator-validity check gave one.
    pub invalid: Option<String>,
}

fn invalid_of(value: &serde_json::Value) -> Option<String> {
    match value.get("invalid") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    }
}

/// Judge a step's report.
pub fn judge(report: &RunReport) -> Judged {
    let value = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
    judge_with(report, invalid_in(&value))
}

/// The run's `invalid` reason in its JSON value, or a judged phase's.
fn invalid_in(value: &serde_json::Value) -> Option<String> {
    invalid_of(value).or_else(|| {
        let phases = value.get("phases").and_then(|p| p.as_array())?;
        phases.iter().find_map(|p| {
            let name = p.get("name").and_then(|n| n.as_str()).unwrap_or("");
            invalid_of(p).filter(|_| JUDGED_PHASES.contains(&name)).map(|why| format!("phase {name}: {why}"))
        })
    })
}

/// Judge a step's report whose run is invalid for `invalid` (None: valid).
fn judge_with(report: &RunReport, invalid: Option<String>) -> Judged {
    let judged: Vec<&PhaseReport> = report.phases.iter().filter(|p| JUDGED_PHASES.contains(&p.name.as_str())).collect();
    let objectives: Vec<ExpectationResult> = judged
        .iter()
        .flat_map(|p| {
            p.expectations
                .iter()
                .map(move |e| ExpectationResult { expr: format!("{}: {}", p.name, e.expr), ..e.clone() })
        })
        .collect();
    let figures = figures(&judged);
    let expected = if judged.iter().any(|p| p.name == "ramp") { 1 } else { 2 };
    let verdict = if report.outcome == Outcome::Interrupted {
        StepVerdict::Interrupted
    } else if let Some(why) = &invalid {
        StepVerdict::Unknown(format!("sockcap's own limit, not the target's: the run is invalid ({why})"))
    } else if let Some(why) = unobserved(&judged) {
        StepVerdict::Unknown(why)
    } else if objectives.iter().any(|e| !e.passed) {
        StepVerdict::Breaks
    } else if judged.len() < expected {
        StepVerdict::Unknown(format!("the step's run ended before its judged phases ({:?})", report.outcome))
    } else {
        StepVerdict::Holds
    };
    Judged { verdict, objectives, figures, invalid }
}

/// The first failed objective whose figure the phase did not observe (not a breach).
fn unobserved(judged: &[&PhaseReport]) -> Option<String> {
    judged.iter().find_map(|p| {
        p.expectations.iter().filter(|e| !e.passed).find_map(|e| {
            let metric = Expectation::from_result(e).ok()?.metric;
            let why = p.unobserved.reason_for(&metric)?;
            Some(format!("phase {}: {} not observed: {why}", p.name, e.expr))
        })
    })
}

fn figures(judged: &[&PhaseReport]) -> StepFigures {
    let mut f = StepFigures::default();
    for p in judged {
        if p.kind == "connect" {
            let lat = if p.latency_us.handshake.count > 0 { &p.latency_us.handshake } else { &p.latency_us.connect };
            f.handshake_p99_us = (lat.count > 0).then_some(lat.p99);
            f.connected = p.succeeded;
            f.planned = p.planned;
            f.achieved_rate_per_s = p.achieved_rate_per_s;
        }
        f.errors += crate::failure::error_total(&p.errors);
        for (kind, n) in p.errors.iter().filter(|(k, n)| **n > 0 && !k.contains('.')) {
            *f.errors_by_kind.entry(kind.clone()).or_default() += n;
        }
        f.drops += p.drops;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::sample_report;

    /// The sample report with its first phase the step's ramp, its objectives as given.
    fn step(passed: bool, reason: Option<&str>) -> RunReport {
        let mut report = sample_report();
        report.phases.truncate(1);
        let ramp = &mut report.phases[0];
        ramp.name = "ramp".into();
        ramp.kind = "connect".into();
        ramp.expectations = vec![ExpectationResult {
            expr: "handshake_p99 < 100ms".into(),
            actual: reason.is_none().then_some(62_000.0),
            reason: reason.map(str::to_string),
            unit: "us".into(),
            passed,
            implicit: false,
            deferred: false,
        }];
        report
    }

    #[test]
    fn a_step_holds_breaks_or_cannot_be_judged() {
        assert_eq!(judge(&step(true, None)).verdict, StepVerdict::Holds);
        let broke = judge(&step(false, None));
        assert_eq!(broke.verdict, StepVerdict::Breaks);
        assert_eq!(broke.objectives[0].expr, "ramp: handshake_p99 < 100ms");
        // An objective breached on a run sockcap itself limited is no breach of the target.
        let invalid = judge_with(&step(false, None), Some("schedule lateness p99 2 s".into()));
        assert!(
            matches!(&invalid.verdict, StepVerdict::Unknown(why) if why.contains("sockcap's own limit")),
            "{invalid:?}"
        );
        // A figure not observed is no breach either.
        let mut unobserved = step(false, Some("not observed"));
        let figure = crate::report::unobserved::latency(crate::expect::LatencyKind::Handshake);
        unobserved.phases[0].unobserved.mark(figure, "undecodable histogram");
        let judged = judge(&unobserved);
        assert!(matches!(&judged.verdict, StepVerdict::Unknown(why) if why.contains("undecodable")), "{judged:?}");
        let mut interrupted = step(false, None);
        interrupted.outcome = Outcome::Interrupted;
        assert_eq!(judge(&interrupted).verdict, StepVerdict::Interrupted);
    }

    #[test]
    fn invalid_is_read_from_the_run_or_a_judged_phase() {
        let run = serde_json::json!({ "invalid": "cpu 98 %", "phases": [] });
        assert_eq!(invalid_in(&run).as_deref(), Some("cpu 98 %"));
        let phase = serde_json::json!({ "invalid": null, "phases": [
            { "name": "close", "invalid": "late" }, { "name": "ramp", "invalid": "lateness" } ] });
        assert_eq!(invalid_in(&phase).as_deref(), Some("phase ramp: lateness"));
        assert_eq!(invalid_in(&serde_json::json!({ "phases": [{ "name": "ramp" }] })), None);
    }
}
