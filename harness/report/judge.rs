//! Judging expectations against a phase's figures: the value each metric measured in a
//! [`PhaseReport`], and the [`ExpectationResult`] of each [`Expectation`]. The grammar
//! itself (`crate::expect`) sits below the report; judging needs the report's figures.

use crate::expect::{Expectation, LatencyKind, Metric, Percentile, Side};
use crate::report::{ExpectationResult, PhaseReport};

impl Metric {
    /// The measured value in a phase, if the phase has it.
    pub fn actual(&self, phase: &PhaseReport) -> Option<f64> {
        let value = match self {
            Metric::State(Side::Client, s) => phase.census.client.get(*s),
            Metric::State(Side::Server, s) => phase.census.server.as_ref()?.get(*s),
            Metric::Latency(kind, pct) => {
                let summary = match kind {
                    LatencyKind::Connect => &phase.latency_us.connect,
                    LatencyKind::Handshake => &phase.latency_us.handshake,
                    LatencyKind::Close => &phase.latency_us.close,
                };
                if summary.count == 0 {
                    return None;
                }
                match pct {
                    Percentile::P50 => summary.p50,
                    Percentile::P90 => summary.p90,
                    Percentile::P99 => summary.p99,
                    Percentile::P999 => summary.p999,
                    Percentile::Max => summary.max,
                    Percentile::Min => summary.min,
                }
            }
            Metric::Errors(None) => phase.errors.values().sum(),
            Metric::Errors(Some(kind)) => phase.errors.get(kind.key()).copied().unwrap_or(0),
            Metric::Kernel(name) => return Some(phase.kernel.get(name).copied().unwrap_or(0) as f64),
            Metric::Connected => phase.succeeded,
            Metric::Drops => phase.drops,
            Metric::Rate => return Some(phase.achieved_rate_per_s),
        };
        Some(value as f64)
    }
}

impl Expectation {
    /// Judge this expectation against a phase's measurements.
    pub fn judge(&self, phase: &PhaseReport) -> ExpectationResult {
        let actual = self.metric.actual(phase);
        ExpectationResult {
            expr: self.expr.clone(),
            actual,
            unit: self.metric.unit().to_string(),
            passed: actual.is_some_and(|a| self.op.holds(a, self.value)),
            implicit: self.implicit,
            deferred: false,
        }
    }

    /// The expectation a report's result was judged from, parsed back from its `expr`
    /// (`name OP VALUE`, as [`Expectation::parse`] writes it): to judge it again on
    /// other figures (merged shards).
    pub fn from_result(result: &ExpectationResult) -> Result<Expectation, String> {
        let (name, condition) = result
            .expr
            .split_once(' ')
            .ok_or_else(|| format!("`{}` is not an expectation (NAME OP VALUE)", result.expr))?;
        let mut parsed = Expectation::parse(name, &toml::Value::String(condition.to_string()))?;
        parsed.implicit = result.implicit;
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, value: &str) -> Expectation {
        Expectation::parse(name, &toml::Value::String(value.into())).unwrap()
    }

    #[test]
    fn results_parse_back_into_their_expectations() {
        for (name, value) in [("established", ">= 5_000"), ("connect_p99", "< 1.5ms"), ("errors.refused", "0")] {
            let e = parse(name, value);
            let phase = crate::report::PhaseReport::empty("p", "connect");
            assert_eq!(Expectation::from_result(&e.judge(&phase)).unwrap(), e);
        }
        let implicit = Expectation::no_errors();
        let phase = crate::report::PhaseReport::empty("p", "connect");
        assert_eq!(Expectation::from_result(&implicit.judge(&phase)).unwrap(), implicit);
    }
}
