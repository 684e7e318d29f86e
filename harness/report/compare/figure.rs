//! One figure of one phase in both reports: its values, which direction is worse
//! ([`Better`]), and its [`Verdict`] under its limit; and metric names as written.

use probe::TcpState;

use super::limits::Allowance;
use crate::expect::{MessageFigure, Metric, Percentile, Side, TargetFigure};

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
            Metric::Latency(..)
            | Metric::Errors(_)
            | Metric::ErrorReason(_)
            | Metric::Drops
            | Metric::Target(_)
            | Metric::SockcapCpu => Better::Lower,
            Metric::State(_, TcpState::Established) | Metric::Connected | Metric::Rate => Better::Higher,
            // More reconnects mean more losses, fewer mean fewer came back: neither is better.
            // A higher peak reconnect rate is a faster return and a harder storm on the target.
            Metric::State(..)
            | Metric::Kernel(_)
            | Metric::ReconnectAttempts
            | Metric::Reconnected
            | Metric::PeakReconnectRate => Better::Unchanged,
            Metric::Message(MessageFigure::Lost | MessageFigure::Duplicated | MessageFigure::OutOfOrder) => {
                Better::Lower
            }
            Metric::Message(MessageFigure::SubscribeRefused | MessageFigure::AckTimedOut | MessageFigure::Unsent) => {
                Better::Lower
            }
            Metric::Message(_) => Better::Higher,
        }
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
    /// Why the baseline has no value, when its phase did not observe the figure (a
    /// census that failed, ...): shown as unobserved, not as a zero or a gap.
    pub baseline_unobserved: Option<String>,
    /// Why the current report has no value, when its phase did not observe the figure.
    pub current_unobserved: Option<String>,
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
/// The verdict on a figure under its limit (float dust ignored).
pub(super) fn judge(f: &Figure) -> Verdict {
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
            let kind = kind.key();
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
        Metric::ErrorReason(key) => format!("errors.{key}"),
        Metric::Kernel(name) => format!("kernel.{name}"),
        Metric::Connected => "connected".to_string(),
        Metric::Drops => "drops".to_string(),
        Metric::ReconnectAttempts => "reconnect_attempts".to_string(),
        Metric::Reconnected => "reconnected".to_string(),
        Metric::PeakReconnectRate => "peak_reconnect_rate".to_string(),
        Metric::Rate => "rate".to_string(),
        Metric::Target(TargetFigure::Rss) => "target.rss".to_string(),
        Metric::Target(TargetFigure::RssPerConn) => "target.rss_per_conn".to_string(),
        Metric::Target(TargetFigure::Cpu) => "target.cpu".to_string(),
        Metric::SockcapCpu => "sockcap.cpu".to_string(),
        Metric::Message(MessageFigure::Lost) => "messages.lost".to_string(),
        Metric::Message(figure) => figure.key().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_parser() {
        for name in [
            "connect_p99",
            "handshake_p999",
            "close_min",
            "recovery_p90",
            "peak_reconnect_rate",
            "server.time_wait",
            "errors.refused",
            "rate",
        ] {
            assert_eq!(metric_name(&Metric::parse(name).unwrap()), name);
        }
    }
}
