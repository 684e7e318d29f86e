//! `--junit FILE`: the report as JUnit XML, the format CI systems (GitHub Actions
//! test reporters, GitLab, Jenkins) show as test results.
//!
//! The mapping:
//! - `<testsuites>`: the run; its `tests`, `failures`, `errors` are the totals.
//! - `<testsuite>`: one per phase that ran, `name` = the phase name, `time` = its
//!   duration; its properties say what the phase did (kind, planned, succeeded, rate,
//!   errors, drops, census) and its `<system-out>` the phase's summary line.
//! - `<testcase>`: one per expectation, `name` = the expression as written
//!   (`established >= 5000`; expectations sockcap adds itself end in ` (default)` and
//!   carry the property `implicit = true`), `classname` = `sockcap.<scenario>.<phase>`
//!   (dots inside the two names become `_`, so the three levels stay three). Properties
//!   `actual`, `unit`, `implicit`; a failed one has `<failure message="expected …, actual …">`.
//!   An expectation whose figure was not observed fails with `expected …, unobserved:
//!   <reason>` and a `reason` property; the suite's `unobserved.<figure>` properties list
//!   what the phase did not observe.
//! - An interrupted run gets one more test case in the last phase's suite,
//!   `run completed`, with an `<error type="interrupted">`: the phases after it did not run.
//! - A shard's report (`--shard`) marks its expectations `<skipped>`: they are judged
//!   on the merged report. A merged report missing a shard gets a suite `shards` with
//!   an `<error type="partial">` test case.
//!
//! The XML is written by hand: a handful of elements whose text and attributes are all
//! escaped by [`escape`], which also drops characters XML 1.0 cannot carry.

use std::fmt::Write as _;
use std::path::Path;

use probe::StateCounts;

use super::format::micros;
use super::markup::escape;
use super::write::{self, WriteError};
use super::{EventReport, ExpectationResult, Outcome, PhaseReport, RunReport};

/// Write the JUnit XML of `report` to `path` (see [`write::Destination`]).
pub fn write(report: &RunReport, path: &Path) -> Result<(), WriteError> {
    let xml = render(report);
    write::to_path(path, |out| out.write_all(xml.as_bytes()))
}

/// The JUnit XML document for a report.
pub fn render(report: &RunReport) -> String {
    // Cut short by Ctrl-C or by a worker that died: one more failing test case.
    let interrupted = report.outcome != Outcome::Completed;
    let missing = report.merge.as_ref().map_or(&[][..], |m| m.missing.as_slice());
    let all: usize = report.phases.iter().map(|p| p.expectations.len()).sum();
    let events: usize = report.phases.iter().map(|p| p.events.len()).sum();
    let tests = all + events + usize::from(interrupted) + usize::from(!missing.is_empty());
    let failures = report.failures().count() + report.failed_events().count();
    let errors = usize::from(interrupted) + usize::from(!missing.is_empty());
    let skipped = all - report.judged();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" \
         time=\"{}\" timestamp=\"{}\">",
        escape(&format!("sockcap: {}", report.scenario.name)),
        seconds(report.duration_ms),
        escape(&report.started_at),
    );
    let last = report.phases.len().saturating_sub(1);
    for (i, phase) in report.phases.iter().enumerate() {
        testsuite(&mut out, report, phase, i == last, interrupted && i == last);
    }
    if report.phases.is_empty() && interrupted {
        // Nothing ran at all: still say so, in a suite of its own.
        let _ = writeln!(
            out,
            "  <testsuite name=\"run\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0.000\" timestamp=\"{}\">",
            escape(&report.started_at)
        );
        interrupted_case(&mut out, report.outcome, &classname(&report.scenario.name, "run"), "before the first phase");
        out.push_str("  </testsuite>\n");
    }
    if !missing.is_empty() {
        partial_suite(&mut out, report, missing);
    }
    out.push_str("</testsuites>\n");
    out
}

/// A merged report without every shard's: one erroring test case saying which.
fn partial_suite(out: &mut String, report: &RunReport, missing: &[u32]) {
    let _ = writeln!(
        out,
        "  <testsuite name=\"shards\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0.000\" timestamp=\"{}\">",
        escape(&report.started_at)
    );
    let class = classname(&report.scenario.name, "shards");
    let _ = writeln!(out, "    <testcase name=\"every shard reported\" classname=\"{}\" time=\"0\">", escape(&class));
    let missing: Vec<String> = missing.iter().map(u32::to_string).collect();
    let message = format!("no report from shard {}: the merged figures leave it out", missing.join(", "));
    let _ = writeln!(out, "      <error message=\"{}\" type=\"partial\"/>", escape(&message));
    out.push_str("    </testcase>\n  </testsuite>\n");
}

fn testsuite(out: &mut String, report: &RunReport, phase: &PhaseReport, last: bool, interrupted_here: bool) {
    let tests = phase.expectations.len() + phase.events.len() + usize::from(interrupted_here);
    let failures = phase.expectations.iter().filter(|e| !e.passed && !e.deferred).count()
        + phase.events.iter().filter(|e| !e.ok).count();
    let skipped = phase.expectations.iter().filter(|e| e.deferred).count();
    let errors = usize::from(interrupted_here);
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" \
         time=\"{}\" timestamp=\"{}\">",
        escape(&phase.name),
        seconds(phase.duration_ms),
        escape(&phase_timestamp(&report.started_at, phase.started_ms)),
    );
    out.push_str("    <properties>\n");
    let error_total: u64 = crate::failure::error_total(&phase.errors);
    let mut props: Vec<(String, String)> = vec![
        ("sockcap.version".into(), report.sockcap_version.clone()),
        ("scenario".into(), report.scenario.name.clone()),
        ("scenario.file".into(), report.scenario.file.clone()),
        ("target".into(), report.scenario.target.clone()),
        ("protocol".into(), report.scenario.protocol.clone()),
        ("phase.kind".into(), phase.kind.clone()),
        ("planned".into(), phase.planned.to_string()),
        ("succeeded".into(), phase.succeeded.to_string()),
        ("achieved_rate_per_s".into(), phase.achieved_rate_per_s.to_string()),
        ("open_at_end".into(), phase.open_at_end.to_string()),
        ("drops".into(), phase.drops.to_string()),
        ("errors".into(), error_total.to_string()),
    ];
    props.extend(phase.errors.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (format!("errors.{k}"), n.to_string())));
    if let Some(r) = &phase.recovery {
        props.extend(recovery_props(r));
    }
    props.extend(census_props("census.client", &phase.census.client));
    if let Some(server) = &phase.census.server {
        props.extend(census_props("census.server", server));
    }
    props.extend(spend_props(phase));
    props.extend(phase.unobserved.iter().map(|(figure, why)| (format!("unobserved.{figure}"), why.to_string())));
    for (name, value) in &props {
        property(out, "      ", name, value);
    }
    out.push_str("    </properties>\n");
    let class = classname(&report.scenario.name, &phase.name);
    for e in &phase.expectations {
        testcase(out, &class, &phase.name, e);
    }
    for e in &phase.events {
        event_case(out, &class, &phase.name, e);
    }
    if interrupted_here {
        interrupted_case(out, report.outcome, &class, &format!("during phase `{}`", phase.name));
    }
    let _ = writeln!(out, "    <system-out>{}</system-out>", escape(&summary_line(phase)));
    if last && !report.notes.is_empty() {
        // Run-level findings, once, with the last phase.
        let notes: Vec<String> = report.notes.iter().map(|n| format!("note: {n}")).collect();
        let _ = writeln!(out, "    <system-err>{}</system-err>", escape(&notes.join("\n")));
    }
    out.push_str("  </testsuite>\n");
}

fn testcase(out: &mut String, class: &str, phase: &str, e: &ExpectationResult) {
    let name = if e.implicit { format!("{} (default)", e.expr) } else { e.expr.clone() };
    let _ = writeln!(out, "    <testcase name=\"{}\" classname=\"{}\" time=\"0\">", escape(&name), escape(class));
    out.push_str("      <properties>\n");
    property(out, "        ", "actual", &e.actual.map_or_else(|| "null".to_string(), |v| v.to_string()));
    if let Some(why) = &e.reason {
        property(out, "        ", "reason", why);
    }
    property(out, "        ", "unit", &e.unit);
    property(out, "        ", "implicit", if e.implicit { "true" } else { "false" });
    out.push_str("      </properties>\n");
    if e.deferred {
        let message = format!("judged on the merged report; this shard's share: {}", actual_text(e));
        let _ = writeln!(out, "      <skipped message=\"{}\"/>", escape(&message));
    } else if !e.passed {
        let actual = actual_text(e);
        let (said, measured) = match (e.actual, &e.reason) {
            (None, Some(_)) => (actual.clone(), actual),
            _ => (format!("actual {actual}"), format!("measured {actual}")),
        };
        let message = format!("expected {}, {said}", e.expr);
        let _ = writeln!(
            out,
            "      <failure message=\"{}\" type=\"expectation\">phase {phase}: expected {}, {}{}</failure>",
            escape(&message),
            escape(&e.expr),
            escape(&measured),
            if e.implicit { " (an expectation sockcap adds to phases that name no `errors` expectation)" } else { "" }
        );
    }
    out.push_str("    </testcase>\n");
}

/// An event the phase ran (`exec`, `fault`, `netem`): a test case that fails when it did.
fn event_case(out: &mut String, class: &str, phase: &str, e: &EventReport) {
    let name = format!("event {}: {}", e.kind, e.what);
    let _ = writeln!(
        out,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\">",
        escape(&name),
        escape(class),
        seconds(e.duration_ms)
    );
    if let Some(why) = e.error.as_deref().filter(|_| !e.ok) {
        let message = format!("event {} failed: {why}", e.kind);
        let _ = writeln!(
            out,
            "      <failure message=\"{}\" type=\"event\">phase {phase}: {}\n{}</failure>",
            escape(&message),
            escape(&message),
            escape(&e.output_tail)
        );
    }
    if !e.output_tail.is_empty() {
        let _ = writeln!(out, "      <system-out>{}</system-out>", escape(&e.output_tail));
    }
    out.push_str("    </testcase>\n");
}

fn interrupted_case(out: &mut String, outcome: Outcome, class: &str, when: &str) {
    let _ = writeln!(out, "    <testcase name=\"run completed\" classname=\"{}\" time=\"0\">", escape(class));
    let (why, kind) = match outcome {
        Outcome::Failed => ("a worker process died", "worker_failed"),
        Outcome::Interrupted | Outcome::Completed => ("the run was interrupted", "interrupted"),
    };
    let message = format!("{why} {when}; the phases after it did not run");
    let _ = writeln!(out, "      <error message=\"{}\" type=\"{kind}\"/>", escape(&message));
    out.push_str("    </testcase>\n");
}

fn property(out: &mut String, indent: &str, name: &str, value: &str) {
    let _ = writeln!(out, "{indent}<property name=\"{}\" value=\"{}\"/>", escape(name), escape(value));
}

/// `recovery.lost`, `recovery.recovered`, `recovery.down_at_end`, the recovery times (`recovery.p50_us`, ...,
/// when some came back), `recovery.peak_reconnect_rate_per_s`, `recovery.last_back_ms`
/// and `recovery.refusals.<kind>`.
fn recovery_props(r: &crate::report::Recovery) -> Vec<(String, String)> {
    let mut props = vec![("recovery.lost".to_string(), r.lost.to_string())];
    props.push(("recovery.recovered".into(), r.recovered.to_string()));
    props.push(("recovery.down_at_end".into(), r.down_at_end.to_string()));
    let t = &r.recovery_us;
    if t.count > 0 {
        for (name, us) in [("p50", t.p50), ("p90", t.p90), ("p99", t.p99), ("max", t.max)] {
            props.push((format!("recovery.{name}_us"), us.to_string()));
        }
    }
    props.push(("recovery.peak_reconnect_rate_per_s".into(), r.peak_reconnect_rate_per_s.to_string()));
    if let Some(ms) = r.last_back_ms {
        props.push(("recovery.last_back_ms".into(), ms.to_string()));
    }
    props.extend(r.refusals.iter().map(|(k, n)| (format!("recovery.refusals.{k}"), n.to_string())));
    props
}

fn census_props<'a>(prefix: &'a str, counts: &'a StateCounts) -> impl Iterator<Item = (String, String)> + 'a {
    counts.iter().filter(|(_, n)| *n > 0).map(move |(s, n)| (format!("{prefix}.{}", s.key()), n.to_string()))
}

/// `sockcap.<scenario>.<phase>`, with dots inside the names replaced so that
/// reporters that split on dots see exactly three levels.
fn classname(scenario: &str, phase: &str) -> String {
    format!("sockcap.{}.{}", scenario.replace('.', "_"), phase.replace('.', "_"))
}

/// The measured value as a person reads it: `15.15ms`, `2455.0/s`, `5000`.
fn actual_text(e: &ExpectationResult) -> String {
    match e.actual {
        None if e.reason.is_some() => format!("unobserved: {}", e.reason.as_deref().unwrap_or_default()),
        None => "not measured".to_string(),
        Some(v) if e.unit == "us" => micros(v as u64),
        Some(v) if e.unit == "per_s" => format!("{v:.1}/s"),
        Some(v) => format!("{v}"),
    }
}

fn summary_line(p: &PhaseReport) -> String {
    let errors: u64 = crate::failure::error_total(&p.errors);
    let census: Vec<String> =
        p.census.client.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{} {n}", s.key())).collect();
    let census = if census.is_empty() { "no sockets".to_string() } else { census.join(", ") };
    let done = match p.kind.as_str() {
        "connect" => "connected",
        "close" => "closed",
        "churn" => "cycles",
        _ => "",
    };
    let work = if done.is_empty() {
        format!("{} held", p.open_at_end)
    } else {
        format!("{}/{} {done}, {:.1}/s", p.succeeded, p.planned, p.achieved_rate_per_s)
    };
    format!(
        "phase {} ({}) {:.2}s: {work}; errors {errors}; drops {}; client census: {census}",
        p.name,
        p.kind,
        p.duration_ms as f64 / 1000.0,
        p.drops
    )
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The phase's start as RFC 3339: the run's start plus the phase's offset
/// (the run's start as written when it cannot be parsed).
fn phase_timestamp(run_started: &str, offset_ms: u64) -> String {
    match humantime::parse_rfc3339(run_started) {
        Ok(t) => humantime::format_rfc3339_millis(t + std::time::Duration::from_millis(offset_ms)).to_string(),
        Err(_) => run_started.to_string(),
    }
}

/// A phase's spend and validity as `name = value` pairs (JUnit properties): `target.*`,
/// `kernel_memory.<side>_bytes`, `sockcap.*`, `invalid`; figures not read are left out.
fn spend_props(phase: &PhaseReport) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: String| props.push((name.to_string(), value));
    if let Some(t) = &phase.target {
        add("target.processes", t.processes.to_string());
        add("target.rss_bytes", t.rss_bytes.to_string());
        if let Some(per_conn) = t.rss_per_conn_bytes {
            add("target.rss_per_conn_bytes", per_conn.to_string());
        }
        add("target.cpu_seconds", t.cpu_seconds.to_string());
        add("target.cpu_percent", t.cpu_percent.to_string());
    }
    for (side, memory) in [("client", &phase.kernel_memory.client), ("server", &phase.kernel_memory.server)] {
        if let Some(m) = memory {
            add(&format!("kernel_memory.{side}_bytes"), m.bytes.to_string());
        }
    }
    if let Some(g) = &phase.generator {
        add("sockcap.cpu_percent", g.cpu_percent.to_string());
        add("sockcap.ports_in_use", g.ports_in_use.to_string());
    }
    if phase.latency_us.lateness.count > 0 {
        add("lateness_p99_us", phase.latency_us.lateness.p99.to_string());
    }
    if let Some(why) = &phase.invalid {
        add("invalid", why.clone());
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_support::sample_report;

    #[test]
    fn one_suite_per_phase_and_failures_named() {
        let mut report = sample_report();
        report.phases[0].expectations[0].passed = false;
        report.phases[0].expectations[0].actual = Some(4990.0);
        let xml = render(&report);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"sockcap: a.b &lt;test&gt;\" tests=\"3\" failures=\"1\" errors=\"0\""), "{xml}");
        assert_eq!(xml.matches("<testsuite ").count(), 2);
        assert!(xml.contains("<testsuite name=\"ramp\" tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("classname=\"sockcap.a_b &lt;test&gt;.ramp\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"expected established &gt;= 5000, actual 4990\" type=\"expectation\">"),
            "{xml}"
        );
        assert!(xml.contains("name=\"errors == 0 (default)\""), "{xml}");
        assert!(xml.contains("<property name=\"implicit\" value=\"true\"/>"), "{xml}");
        assert!(xml.contains("<property name=\"actual\" value=\"850\"/>"), "{xml}");
        assert!(!xml.contains("<error"), "{xml}");
        assert!(xml.contains("timestamp=\"2026-01-02T03:04:06.500Z\""), "the second phase starts 1.5 s in: {xml}");
        assert!(
            xml.contains("<system-out>phase ramp (connect) 1.50s: 5000/5000 connected, 3333.3/s; errors 0"),
            "{xml}"
        );
        assert!(xml.contains("<system-out>phase hold (hold) 1.50s: 5000 held;"), "{xml}");
    }

    #[test]
    fn spend_and_validity_are_properties() {
        let mut report = sample_report();
        report.phases[0].target = Some(crate::report::TargetSpend {
            processes: 1,
            rss_bytes: 50_000_000,
            connections: 5000,
            rss_per_conn_bytes: Some(10_000),
            cpu_percent: 12.5,
            ..Default::default()
        });
        report.phases[0].invalid = Some("the generator was the bottleneck: its CPU was saturated".into());
        let xml = render(&report);
        assert!(xml.contains("<property name=\"target.rss_per_conn_bytes\" value=\"10000\"/>"), "{xml}");
        assert!(xml.contains("<property name=\"target.cpu_percent\" value=\"12.5\"/>"), "{xml}");
        assert!(xml.contains("<property name=\"invalid\" value=\"the generator was the bottleneck: its CPU"), "{xml}");
    }

    #[test]
    fn an_interrupted_run_has_an_error_case() {
        let mut report = sample_report();
        report.outcome = Outcome::Interrupted;
        report.phases.truncate(1);
        let xml = render(&report);
        assert!(xml.contains("tests=\"3\" failures=\"0\" errors=\"1\""), "{xml}");
        assert!(xml.contains("<testcase name=\"run completed\""), "{xml}");
        assert!(xml.contains("<error message=\"the run was interrupted during phase `ramp`"), "{xml}");
    }
}
