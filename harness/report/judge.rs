//! Judging expectations against a phase's figures: the value each metric measured in a
//! [`PhaseReport`], and the [`ExpectationResult`] of each [`Expectation`]. The grammar
//! itself (`crate::expect`) sits below the report; judging needs the report's figures.
//!
//! A pass rests on an observation: each expectation is judged on a value or a reason
//! ([`Metric::reading`]). A figure the phase did not observe (its `unobserved` map) or
//! has no reading of gives no value, and the expectation fails with the reason, whatever
//! zero its field holds.

use crate::expect::{Expectation, LatencyKind, MessageFigure, Metric, Percentile, Side, TargetFigure};
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
                    LatencyKind::Tls => &phase.latency_us.tls,
                    LatencyKind::Ws => &phase.latency_us.ws,
                    LatencyKind::Close => &phase.latency_us.close,
                    LatencyKind::Recovery => &phase.recovery.as_ref()?.recovery_us,
                    LatencyKind::Lateness => &phase.latency_us.lateness,
                    LatencyKind::Suback => &phase.messages.as_ref()?.latency_us.suback,
                    LatencyKind::Puback => &phase.messages.as_ref()?.latency_us.puback,
                    LatencyKind::Pubcomp => &phase.messages.as_ref()?.latency_us.pubcomp,
                    LatencyKind::Delivery => &phase.messages.as_ref()?.latency_us.delivery,
                };
                if *kind == LatencyKind::Recovery && *pct == Percentile::Max && still_down(phase) > 0 {
                    return None;
                }
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
            Metric::Errors(None) => crate::failure::error_total(&phase.errors),
            Metric::Errors(Some(kind)) => phase.errors.get(kind.key()).copied().unwrap_or(0),
            Metric::ErrorReason(key) => phase.errors.get(key).copied().unwrap_or(0),
            Metric::Kernel(name) => return Some(phase.kernel.get(name).copied().unwrap_or(0) as f64),
            Metric::Connected => phase.succeeded,
            Metric::Drops => phase.drops,
            Metric::ReconnectAttempts => phase.reconnect_attempts,
            Metric::Reconnected => phase.reconnected,
            Metric::PeakReconnectRate => phase.recovery.as_ref()?.peak_reconnect_rate_per_s,
            Metric::Rate => return Some(phase.achieved_rate_per_s),
            Metric::Target(TargetFigure::Rss) => phase.target.as_ref()?.rss_bytes,
            Metric::Target(TargetFigure::RssPerConn) => phase.target.as_ref()?.rss_per_conn_bytes?,
            Metric::Target(TargetFigure::Cpu) => return Some(phase.target.as_ref()?.cpu_percent),
            Metric::SockcapCpu => return Some(phase.generator.as_ref()?.cpu_percent),
            Metric::Message(figure) => {
                let m = phase.messages.as_ref()?;
                match figure {
                    MessageFigure::Published => m.published,
                    MessageFigure::Unsent => m.unsent,
                    MessageFigure::Acknowledged => m.acknowledged,
                    MessageFigure::Expected => m.expected,
                    MessageFigure::Delivered => m.delivered,
                    MessageFigure::Lost => m.lost,
                    MessageFigure::Duplicated => m.duplicated,
                    MessageFigure::OutOfOrder => m.out_of_order,
                    MessageFigure::Subscribed => m.subscribed,
                    MessageFigure::SubscribeRefused => m.subscribe_refused.values().sum(),
                    MessageFigure::AckTimedOut => m.ack_timed_out,
                }
            }
        };
        Some(value as f64)
    }
}

impl Metric {
    /// The value observed in a phase, or why there is none: the figure was not observed
    /// (`phase.unobserved`), or the phase has no such reading.
    pub fn reading(&self, phase: &PhaseReport) -> Result<f64, String> {
        if let Some(reason) = phase.unobserved.reason_for(self) {
            return Err(reason.to_string());
        }
        self.actual(phase).ok_or_else(|| match self {
            Metric::State(Side::Server, _) => {
                "no server-side census: the target does not listen on this machine".to_string()
            }
            Metric::Latency(LatencyKind::Recovery, _) | Metric::PeakReconnectRate => no_recovery(phase),
            Metric::Latency(kind, _) => format!("no {} latency was measured in this phase", kind.key()),
            Metric::Target(TargetFigure::RssPerConn) if phase.target.is_some() => {
                "the target held no connection when the phase ended: no RSS per connection".to_string()
            }
            Metric::Target(_) => "the target's processes were not measured in this phase".to_string(),
            Metric::SockcapCpu => "sockcap's CPU was not measured in this phase".to_string(),
            Metric::Message(_) => "no message was published or received in this phase".to_string(),
            _ => "not measured in this phase".to_string(),
        })
    }
}

/// Connections lost (in the phase or before) and still trying to come back when it ended.
fn still_down(phase: &PhaseReport) -> u64 {
    phase.recovery.as_ref().map_or(0, |r| r.down_at_end)
}

/// Why a phase has no recovery reading.
fn no_recovery(phase: &PhaseReport) -> String {
    match &phase.recovery {
        None => "no connection was lost in this phase: no recovery to measure".to_string(),
        Some(r) if r.recovered == 0 => {
            format!("none of the {} connections lost came back in this phase: no recovery time", r.lost)
        }
        Some(_) => format!(
            "{} lost connections were still down when the phase ended: the longest recovery is unknown",
            still_down(phase)
        ),
    }
}

impl Expectation {
    /// Judge this expectation against a phase's measurements: on its value, or failed
    /// with the reason it has none.
    pub fn judge(&self, phase: &PhaseReport) -> ExpectationResult {
        let reading = self.metric.reading(phase);
        // Against another figure: both must have been observed.
        let (reading, value) = match &self.against {
            None => (reading, self.value),
            Some(other) => match (reading, other.reading(phase)) {
                (Ok(a), Ok(b)) => (Ok(a), b),
                (Err(e), _) | (_, Err(e)) => (Err(e), 0.0),
            },
        };
        ExpectationResult {
            expr: self.expr.clone(),
            actual: reading.as_ref().ok().copied(),
            unit: self.metric.unit().to_string(),
            passed: reading.as_ref().is_ok_and(|a| self.op.holds(*a, value)),
            reason: reading.err(),
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

    /// Zeros that are no reading pass nothing: each expectation on an unobserved figure
    /// fails with the reason, and the others are judged as before.
    #[test]
    fn an_expectation_on_an_unobserved_figure_fails_with_the_reason() {
        use crate::report::unobserved::{CENSUS_CLIENT, CENSUS_SERVER, KERNEL, OPERATIONS};
        let mut phase = crate::report::PhaseReport::empty("p", "connect");
        phase.census.server = Some(Default::default());
        let judged = |phase: &crate::report::PhaseReport, name: &str, value: &str| parse(name, value).judge(phase);
        for (name, value) in [("established", "0"), ("server.time_wait", "0"), ("kernel.ListenOverflows", "0")] {
            let e = judged(&phase, name, value);
            assert!(e.passed && e.actual == Some(0.0) && e.reason.is_none(), "observed zeros pass: {e:?}");
        }
        assert!(Expectation::no_errors().judge(&phase).passed);

        phase.unobserved.mark(CENSUS_CLIENT, "census failed: sock_diag: Operation not permitted");
        phase.unobserved.mark(CENSUS_SERVER, "census failed: reading /proc/net/tcp: Permission denied");
        phase.unobserved.mark(KERNEL, "reading /proc/net/netstat: Permission denied");
        phase.unobserved.mark(OPERATIONS, "worker 1 (pid 7) sent no report of this phase");
        for (name, value, why) in [
            ("established", "0", "census failed: sock_diag: Operation not permitted"),
            ("time_wait", "< 10", "census failed: sock_diag: Operation not permitted"),
            ("server.time_wait", "0", "census failed: reading /proc/net/tcp: Permission denied"),
            ("kernel.ListenOverflows", "0", "reading /proc/net/netstat: Permission denied"),
            ("errors", "0", "worker 1 (pid 7) sent no report of this phase"),
            ("connect_p99", "< 1s", "worker 1 (pid 7) sent no report of this phase"),
        ] {
            let e = judged(&phase, name, value);
            assert_eq!((e.passed, e.actual, e.reason.as_deref()), (false, None, Some(why)), "{name}");
        }
        let e = Expectation::no_errors().judge(&phase);
        assert!(!e.passed && e.reason.is_some(), "the default `errors == 0` fails too: {e:?}");
    }

    #[test]
    fn reconnect_figures_are_judged() {
        let mut phase = crate::report::PhaseReport::empty("p", "hold");
        (phase.drops, phase.reconnect_attempts, phase.reconnected) = (300, 420, 300);
        for (name, value, passes) in [
            ("reconnected", "== 300", true),
            ("reconnected", "== 299", false),
            ("lost", "== 300", true),
            ("reconnect_attempts", ">= 300", true),
            ("reconnect_attempts", "< 400", false),
        ] {
            let judged = parse(name, value).judge(&phase);
            assert_eq!(judged.passed, passes, "{name} {value}: {judged:?}");
        }
    }

    /// No loss, none back, or some still down at the end: no recovery figure to pass on.
    #[test]
    fn recovery_expectations_need_a_recovery() {
        use crate::latency::Latency;
        let mut phase = crate::report::PhaseReport::empty("p", "hold");
        for name in ["recovery_p50", "recovery_p99", "recovery_max"] {
            let e = parse(name, "< 3600s").judge(&phase);
            assert!(!e.passed && e.actual.is_none(), "{name}: {e:?}");
            assert_eq!(e.reason.as_deref(), Some("no connection was lost in this phase: no recovery to measure"));
        }
        let e = parse("peak_reconnect_rate", ">= 0").judge(&phase);
        assert!(!e.passed && e.reason.as_deref().unwrap().starts_with("no connection was lost"), "{e:?}");
        let mut histogram = Latency::new();
        [2_000, 40_000, 900_000].into_iter().for_each(|us| histogram.record_us(us));
        phase.recovery =
            Some(crate::report::Recovery { lost: 3, recovered: 0, peak_reconnect_rate_per_s: 0, ..Default::default() });
        let e = parse("recovery_p50", "< 3600s").judge(&phase);
        assert!(e.reason.as_deref().unwrap().starts_with("none of the 3 connections lost came back"), "{e:?}");
        let recovery = phase.recovery.as_mut().unwrap();
        (recovery.recovered, recovery.recovery_us, recovery.peak_reconnect_rate_per_s) = (3, histogram.summary(), 3);
        for (name, value, passes) in [
            ("recovery_max", "< 1s", true),
            ("recovery_max", "< 500ms", false),
            ("recovery_p50", "< 50ms", true),
            ("recovery_p50", "< 1us", false),
            ("peak_reconnect_rate", "== 3", true),
        ] {
            let e = parse(name, value).judge(&phase);
            assert_eq!((e.passed, e.reason.is_none()), (passes, true), "{name} {value}: {e:?}");
        }
        phase.recovery.as_mut().unwrap().down_at_end = 1;
        let e = parse("recovery_max", "< 3600s").judge(&phase);
        assert!(!e.passed && e.reason.as_deref().unwrap().starts_with("1 lost connections were still down"), "{e:?}");
        assert!(parse("recovery_p50", "< 3600s").judge(&phase).passed, "the percentiles of those back");
        phase.unobserved.mark("latency.recovery", "1 of the 2 workers' recovery histogram cannot be decoded (x)");
        let e = parse("recovery_p50", "< 3600s").judge(&phase);
        assert_eq!(e.reason.as_deref(), Some("1 of the 2 workers' recovery histogram cannot be decoded (x)"));
    }

    #[test]
    fn a_figure_the_phase_has_no_reading_of_says_why() {
        let phase = crate::report::PhaseReport::empty("p", "connect");
        let e = parse("server.established", "0").judge(&phase);
        assert_eq!(e.reason.as_deref(), Some("no server-side census: the target does not listen on this machine"));
        let e = parse("close_p99", "< 1ms").judge(&phase);
        assert_eq!((e.passed, e.reason.as_deref()), (false, Some("no close latency was measured in this phase")));
    }

    /// Text, JSON, JUnit and HTML show an unobserved expectation as failed, with why.
    #[test]
    fn every_view_shows_an_unobserved_expectation_failed_with_its_reason() {
        let mut report = crate::report::test_support::sample_report();
        let hold = &mut report.phases[1];
        hold.unobserved.mark("census.client", "the client-side census failed: reading /proc/net/tcp: EACCES");
        hold.expectations = vec![parse("established", "0").judge(hold), Expectation::no_errors().judge(hold)];
        report.passed = false;
        assert!(!report.passed);
        let text = crate::report::text::render(&report);
        let why = "unobserved: the client-side census failed: reading /proc/net/tcp: EACCES";
        assert!(text.contains(&format!("FAIL established == 0: {why}")), "{text}");
        assert!(text.contains(&format!("census   client  {why}")), "{text}");
        assert!(text.contains("FAILED: 1 of 4 expectations failed"), "{text}");
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        let e = &json["phases"][1]["expectations"][0];
        assert_eq!((&e["actual"], &e["passed"]), (&serde_json::Value::Null, &serde_json::Value::Bool(false)));
        assert_eq!(e["reason"], "the client-side census failed: reading /proc/net/tcp: EACCES");
        assert_eq!(json["phases"][1]["unobserved"]["census.client"], e["reason"]);
        assert!(json["phases"][1]["expectations"][1].get("reason").is_none(), "a reading has no reason");
        let xml = crate::report::junit::render(&report);
        assert!(xml.contains("<property name=\"unobserved.census.client\" value=\"the client-side"), "{xml}");
        assert!(xml.contains("failures=\"1\"") && xml.contains(&format!("expected established == 0, {why}")), "{xml}");
        let html = crate::report::html::render(&report);
        assert!(html.contains("FAIL</span>") && html.contains(why), "{html}");
        assert!(html.contains("client: <span class=\"bad\">unobserved: the client-side census failed"), "{html}");
        assert!(html.contains("\"end_census_unobserved\":true"), "the charts leave the failed census out");
    }
}
