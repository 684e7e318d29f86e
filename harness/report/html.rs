//! `--html FILE`: the report as one self-contained HTML page (inline CSS, an inline
//! script that draws SVG charts; nothing is fetched, so it opens offline and as a CI
//! artifact).
//!
//! The page carries its chart data as a JSON block, `<script type="application/json"
//! id="sockcap-data">` with schema [`DATA_SCHEMA`], built here from the [`RunReport`]:
//! every phase's census samples and end census, the success and failure rates between
//! successive samples, and latency percentile curves computed from the serialized
//! HdrHistograms. `html/report.js` draws the charts from that block; the tables
//! (phases, latency, errors, expectations, limits, kernel counters) are rendered here,
//! so they read without JavaScript. Every string taken from the report is escaped, in
//! the markup and inside the JSON block.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::Path;

use probe::{StateCounts, TcpState};
use serde::Serialize;

use crate::report::text::fmt_us;
use crate::report::{CensusSample, Exhaustion, ExpectationResult, Outcome, PhaseReport, RunReport};
use crate::latency::{Latency, LatencySummary};

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

const CSS: &str = include_str!("html/report.css");
const JS: &str = include_str!("html/report.js");

/// Write the page for `report` to `path` atomically.
pub fn write(report: &RunReport, path: &Path) -> anyhow::Result<()> {
    let page = render(report);
    super::write::atomically(path, |out| out.write_all(page.as_bytes()))?;
    Ok(())
}

/// The whole page.
pub fn render(report: &RunReport) -> String {
    let mut out = String::with_capacity(96 * 1024);
    let verdict = report.verdict_word();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <meta name=\"generator\" content=\"sockcap {}\"/>\n<title>sockcap: {} — {verdict}</title>\n\
         <style>\n{CSS}</style>\n</head>\n<body>\n",
        Esc(&report.sockcap_version),
        Esc(&report.scenario.name),
    );
    header(&mut out, report);
    out.push_str("<main>\n");
    out.push_str(
        "<noscript><p class=\"banner warn\">The charts are drawn by the script in this page; \
         the tables below read without it.</p></noscript>\n",
    );
    notes(&mut out, report);
    phase_table(&mut out, report);
    charts(&mut out, report);
    latency_section(&mut out, report);
    errors_section(&mut out, report);
    expectations_section(&mut out, report);
    limits_section(&mut out, report);
    kernel_section(&mut out, report);
    out.push_str("</main>\n");
    let _ = writeln!(
        out,
        "<footer>Written by sockcap {}. Self-contained: the charts are drawn by the script in this file \
         from the JSON block <code>#{DATA_ELEMENT_ID}</code> (<code>{DATA_SCHEMA}</code>); the full \
         report, with the histograms, is what <code>--json</code> writes.</footer>",
        Esc(&report.sockcap_version)
    );
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"{DATA_ELEMENT_ID}\">{}</script>\n<script>\n{JS}</script>\n</body>\n</html>\n",
        script_json(&page_data(report))
    );
    out
}

// ---------------------------------------------------------------------------------
// The JSON block

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
    /// Successes and failures per second between successive censuses.
    rate: Vec<RateStep>,
    /// Percentile curves of the latencies the phase measured.
    latency: Vec<Curve>,
    /// Failures by kind, non-zero kinds only.
    errors: BTreeMap<&'a str, u64>,
    /// When the ephemeral ports toward the target ran out, as in the report.
    exhaustion: Option<&'a Exhaustion>,
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
    /// `connect`, `handshake` or `close`.
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
        failed: p.errors.values().sum(),
        open: p.open_at_end,
    };
    let rate = rate_steps(p.started_ms, &samples, &end);
    let latency =
        [("connect", &p.latency_us.connect), ("handshake", &p.latency_us.handshake), ("close", &p.latency_us.close)]
            .into_iter()
            .filter(|(_, s)| s.count > 0)
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
        rate,
        latency,
        errors: p.errors.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (k.as_str(), *n)).collect(),
        exhaustion: p.exhaustion.as_ref(),
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

// ---------------------------------------------------------------------------------
// The markup

/// Text escaped for HTML content and quoted attribute values.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

fn header(out: &mut String, r: &RunReport) {
    let s = &r.scenario;
    let class = if r.passed { "pass" } else { "fail" };
    let checked = r.judged();
    let failed = r.failures().count();
    let mut summary = match (&r.shard, failed) {
        (Some(shard), _) => format!(
            "shard {}/{} on {}: {} phases; expectations are judged on the merged report",
            shard.index,
            shard.count,
            shard.host,
            r.phases.len()
        ),
        (None, 0) => format!("{} phases, {checked} expectations held", r.phases.len()),
        (None, _) => format!("{failed} of {checked} expectations failed"),
    };
    if let Some(merge) = &r.merge {
        let _ = write!(summary, " · merged from {} of {} shards", merge.shards.len(), merge.expected_shards);
        if merge.partial {
            let missing: Vec<String> = merge.missing.iter().map(u32::to_string).collect();
            let _ = write!(summary, " (missing: {})", missing.join(", "));
        }
    }
    let embedded = if s.embedded_target { " (embedded target)" } else { "" };
    let sources = if s.sources.is_empty() { "kernel's choice".to_string() } else { s.sources.join(", ") };
    let _ = write!(
        out,
        "<header class=\"top {class}\">\n<div class=\"title\"><h1>{}</h1><span class=\"verdict {class}\">{}</span>\
         <span class=\"summary\">{}</span></div>\n<p class=\"meta\">{} → {}{embedded} · started {} · {} · \
         sources: {} · census: {} · scenario file <code>{}</code> · sockcap {}</p>\n</header>\n",
        Esc(&s.name),
        r.verdict_word(),
        Esc(&summary),
        Esc(&s.protocol),
        Esc(&s.target),
        Esc(&r.started_at),
        fmt_ms(r.duration_ms),
        Esc(&sources),
        Esc(&r.probe_backend),
        Esc(&s.file),
        Esc(&r.sockcap_version),
    );
}

fn notes(out: &mut String, r: &RunReport) {
    let mut notes: Vec<&str> = r.notes.iter().map(String::as_str).collect();
    if let Some(w) = &r.probe_warning {
        if !notes.contains(&w.as_str()) {
            notes.push(w);
        }
    }
    if notes.is_empty() {
        return;
    }
    out.push_str("<section id=\"findings\" class=\"banner warn\"><h2>Findings</h2>\n<ul>\n");
    for n in notes {
        let _ = writeln!(out, "<li>{}</li>", Esc(n));
    }
    out.push_str("</ul>\n</section>\n");
}

fn phase_table(out: &mut String, r: &RunReport) {
    out.push_str(
        "<section id=\"phases\"><h2>Phases</h2>\n<div class=\"scroll\"><table class=\"num\">\n<thead><tr>\
         <th>#</th><th class=\"l\">phase</th><th class=\"l\">kind</th><th>start</th><th>duration</th>\
         <th>planned</th><th>done</th><th>rate</th><th>errors</th><th>drops</th><th>open at end</th>\
         <th class=\"l\">census at end</th><th>expectations</th></tr></thead>\n<tbody>\n",
    );
    for (i, p) in r.phases.iter().enumerate() {
        let errors: u64 = p.errors.values().sum();
        let held = p.expectations.iter().filter(|e| e.passed || e.deferred).count();
        let all = p.expectations.len();
        let class = if held == all { "pass" } else { "fail" };
        let rate = if matches!(p.kind.as_str(), "connect" | "close" | "churn") {
            format!("{}/s", fmt_rate(p.achieved_rate_per_s))
        } else {
            "–".to_string()
        };
        let mut census = format!("client: {}", states(&p.census.client));
        if let Some(server) = &p.census.server {
            let _ = write!(census, "<br/>server: {}", states(server));
        }
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"l\"><b>{}</b></td><td class=\"l\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{rate}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td><td>{}</td>\
             <td class=\"l small\">{census}</td><td><span class=\"badge {class}\">{held}/{all}</span></td></tr>",
            i + 1,
            Esc(&p.name),
            Esc(&p.kind),
            fmt_ms(p.started_ms),
            fmt_ms(p.duration_ms),
            fmt_count(p.planned),
            fmt_count(p.succeeded),
            if errors > 0 { "bad" } else { "" },
            fmt_count(errors),
            if p.drops > 0 { "bad" } else { "" },
            fmt_count(p.drops),
            fmt_count(p.open_at_end),
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

fn states(c: &StateCounts) -> String {
    let listed: Vec<String> =
        c.iter().filter(|(_, n)| *n > 0).map(|(s, n)| format!("{} {}", s.key(), fmt_count(n))).collect();
    if listed.is_empty() {
        "no sockets".to_string()
    } else {
        listed.join(", ")
    }
}

fn charts(out: &mut String, r: &RunReport) {
    let server = r.phases.iter().any(|p| p.census.server.is_some() || p.samples.iter().any(|s| s.server.is_some()));
    out.push_str(
        "<section id=\"census\"><h2>Sockets by state</h2>\n<p class=\"hint\">sock_diag census once per sample \
         interval and at the end of every phase; shaded bands are phases. Client side: sockets whose remote \
         end is the target.</p>\n<div class=\"chart\" id=\"chart-client-states\"></div>\n",
    );
    if server {
        out.push_str("<div class=\"chart\" id=\"chart-server-states\"></div>\n");
    } else {
        out.push_str("<p class=\"hint\">No server-side census: the target does not run on this machine.</p>\n");
    }
    out.push_str(
        "</section>\n<section id=\"rates\"><h2>Rates and open connections</h2>\n<p class=\"hint\">Rates are the \
         changes in the phase's successes and failures between successive censuses.</p>\n\
         <div class=\"grid2\"><div class=\"chart\" id=\"chart-rate\"></div>\
         <div class=\"chart\" id=\"chart-open\"></div></div>\n</section>\n",
    );
}

fn latency_section(out: &mut String, r: &RunReport) {
    let rows: Vec<(&PhaseReport, &str, &LatencySummary)> = r
        .phases
        .iter()
        .flat_map(|p| {
            [("connect", &p.latency_us.connect), ("handshake", &p.latency_us.handshake), ("close", &p.latency_us.close)]
                .into_iter()
                .filter(|(_, l)| l.count > 0)
                .map(move |(name, l)| (p, name, l))
        })
        .collect();
    out.push_str("<section id=\"latency\"><h2>Latency percentiles</h2>\n");
    if rows.is_empty() {
        out.push_str("<p class=\"hint\">No phase measured a latency.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<p class=\"hint\">HdrHistogram percentile plots, from each operation's scheduled instant: \
         <b>connect</b> until the TCP connection is established, <b>handshake</b> until CONNACK, \
         <b>close</b> until the close finished. The x axis is 1/(1−percentile) on a log scale.</p>\n\
         <div class=\"grid2\" id=\"chart-latency\"></div>\n<div class=\"scroll\"><table class=\"num\">\n\
         <thead><tr><th class=\"l\">phase</th><th class=\"l\">latency</th><th>count</th><th>min</th><th>mean</th>\
         <th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr></thead>\n<tbody>\n",
    );
    for (p, name, l) in rows {
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            Esc(&p.name),
            fmt_count(l.count),
            fmt_us(l.min),
            fmt_us(l.mean.round() as u64),
            fmt_us(l.p50),
            fmt_us(l.p90),
            fmt_us(l.p99),
            fmt_us(l.p999),
            fmt_us(l.max),
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

fn errors_section(out: &mut String, r: &RunReport) {
    out.push_str("<section id=\"errors\"><h2>Errors by kind</h2>\n");
    let kinds: BTreeSet<&str> =
        r.phases.iter().flat_map(|p| p.errors.iter().filter(|(_, n)| **n > 0).map(|(k, _)| k.as_str())).collect();
    if kinds.is_empty() {
        out.push_str("<p class=\"ok-text\">No errors in any phase.</p>\n</section>\n");
        return;
    }
    out.push_str("<div class=\"chart\" id=\"chart-errors\"></div>\n<div class=\"scroll\"><table class=\"num\">\n<thead><tr><th class=\"l\">phase</th>");
    for k in &kinds {
        let _ = write!(out, "<th>{}</th>", Esc(k));
    }
    out.push_str("<th>other errnos</th></tr></thead>\n<tbody>\n");
    for p in &r.phases {
        let _ = write!(out, "<tr><td class=\"l\">{}</td>", Esc(&p.name));
        for k in &kinds {
            let n = p.errors.get(*k).copied().unwrap_or(0);
            let _ = write!(out, "<td class=\"{}\">{}</td>", if n > 0 { "bad" } else { "" }, fmt_count(n));
        }
        let errnos: Vec<String> = p.other_errnos.iter().map(|(e, n)| format!("errno {e}: {n}")).collect();
        let _ = writeln!(out, "<td>{}</td></tr>", Esc(&errnos.join(", ")));
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

fn expectations_section(out: &mut String, r: &RunReport) {
    out.push_str("<section id=\"expectations\"><h2>Expectations</h2>\n");
    for (i, p) in r.phases.iter().enumerate() {
        let _ = writeln!(out, "<h3>{}. {} <span class=\"kind\">{}</span></h3>", i + 1, Esc(&p.name), Esc(&p.kind));
        if p.expectations.is_empty() {
            out.push_str("<p class=\"hint\">No expectations.</p>\n");
            continue;
        }
        out.push_str("<table class=\"expect\">\n<tbody>\n");
        for e in &p.expectations {
            let (class, word) = match (e.deferred, e.passed) {
                (true, _) => ("deferred", "SHARD"),
                (false, true) => ("pass", "PASS"),
                (false, false) => ("fail", "FAIL"),
            };
            let implicit = if e.implicit { " <span class=\"hint\">(default)</span>" } else { "" };
            let _ = writeln!(
                out,
                "<tr class=\"{class}\"><td><span class=\"badge {class}\">{word}</span></td><td><code>{}</code>{implicit}</td>\
                 <td>actual {}</td></tr>",
                Esc(&e.expr),
                Esc(&actual(e)),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
}

fn actual(e: &ExpectationResult) -> String {
    match e.actual {
        None => "not measured".to_string(),
        Some(v) if e.unit == "us" => fmt_us(v.max(0.0) as u64),
        Some(v) if e.unit == "per_s" => format!("{}/s", fmt_rate(v)),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => fmt_count_i(v as i64),
        Some(v) => format!("{v}"),
    }
}

fn limits_section(out: &mut String, r: &RunReport) {
    let l = &r.limits;
    let f = &l.in_force;
    let opt = |v: Option<u64>| v.map_or("?".to_string(), fmt_count);
    let range = f
        .ip_local_port_range
        .map_or("?".to_string(), |(a, b)| format!("{a}–{b} ({} ports)", fmt_count(u64::from(b.saturating_sub(a)) + 1)));
    let rows: [(&str, String, &str); 11] = [
        (
            "RLIMIT_NOFILE soft",
            format!("{} → {}", fmt_count(l.nofile_soft_before), fmt_count(l.nofile_soft_after)),
            "before → after sockcap raised it",
        ),
        ("RLIMIT_NOFILE hard", fmt_count(l.nofile_hard), "the ceiling for one process"),
        ("descriptors needed", fmt_count(l.descriptors_needed), "peak connections plus a reserve"),
        ("fs.nr_open", opt(f.nr_open), "the ceiling for any RLIMIT_NOFILE"),
        ("fs.file-max", opt(f.file_max), "open files, machine-wide"),
        ("net.ipv4.ip_local_port_range", range, "ephemeral ports per source address and destination"),
        ("net.ipv4.tcp_tw_reuse", f.tcp_tw_reuse.map_or("?".to_string(), |v| v.to_string()), "2: loopback only"),
        ("net.ipv4.tcp_max_tw_buckets", opt(f.tcp_max_tw_buckets), "TIME_WAIT sockets kept at most"),
        ("net.core.somaxconn", opt(f.somaxconn), "listen backlog ceiling"),
        (
            "net.ipv4.tcp_fin_timeout",
            f.tcp_fin_timeout.map_or("?".to_string(), |v| format!("{v} s")),
            "FIN_WAIT_2 timeout of orphans",
        ),
        ("census backend", r.probe_backend.clone(), ""),
    ];
    out.push_str("<section id=\"limits\"><h2>Limits and sysctls in force</h2>\n<table class=\"kv\">\n<tbody>\n");
    for (k, v, what) in rows {
        let _ = writeln!(out, "<tr><th>{k}</th><td>{}</td><td class=\"hint\">{what}</td></tr>", Esc(&v));
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn kernel_section(out: &mut String, r: &RunReport) {
    let counters: BTreeSet<&str> = r.phases.iter().flat_map(|p| p.kernel.keys().map(String::as_str)).collect();
    if counters.is_empty() {
        return;
    }
    out.push_str(
        "<section id=\"kernel\"><h2>Kernel counters</h2>\n<details><summary>Deltas of /proc/net/snmp and \
         /proc/net/netstat per phase (per network namespace: other programs' traffic included)</summary>\n\
         <div class=\"scroll\"><table class=\"num\">\n<thead><tr><th class=\"l\">counter</th>",
    );
    for p in &r.phases {
        let _ = write!(out, "<th>{}</th>", Esc(&p.name));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for c in counters {
        let _ = write!(out, "<tr><td class=\"l\">{}</td>", Esc(c));
        for p in &r.phases {
            match p.kernel.get(c) {
                Some(v) => {
                    let _ = write!(out, "<td>{}{}</td>", if *v > 0 { "+" } else { "" }, fmt_count_i(*v));
                }
                None => out.push_str("<td></td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table></div>\n</details>\n</section>\n");
}

fn fmt_count(n: u64) -> String {
    super::thousands(n)
}

fn fmt_count_i(n: i64) -> String {
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", fmt_count(n.unsigned_abs()))
}

/// `2.03 s`.
fn fmt_ms(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        fmt_count(r.round() as u64)
    } else {
        format!("{r:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CensusPair, Latencies};

    const EVIL: &str = "</script><script>alert('x')</script> & <!-- \"q\"";

    fn counts(pairs: &[(TcpState, u64)]) -> StateCounts {
        let mut c = StateCounts::default();
        for (s, n) in pairs {
            c.add_n(*s, *n);
        }
        c
    }

    fn sample(t_ms: u64, est: u64, succeeded: u64, open: u64) -> CensusSample {
        CensusSample {
            t_ms,
            client: counts(&[(TcpState::Established, est)]),
            server: Some(counts(&[(TcpState::Established, est), (TcpState::Listen, 1)])),
            succeeded,
            failed: 0,
            open,
        }
    }

    fn expectation(expr: &str, actual: f64, passed: bool) -> ExpectationResult {
        ExpectationResult {
            expr: expr.to_string(),
            actual: Some(actual),
            unit: "count".to_string(),
            passed,
            implicit: false,
            deferred: false,
        }
    }

    /// Three phases: a ramp with samples and latencies, a hold, and a close with a
    /// failed expectation; the scenario name, a phase name and a note try to break out
    /// of the markup.
    fn report() -> RunReport {
        let mut report = crate::report::test_support::sample_report();
        let mut connect = Latency::new();
        let mut handshake = Latency::new();
        for i in 1..=2000u64 {
            connect.record_us(200 + i);
            handshake.record_us(400 + 2 * i);
        }
        let mut ramp = report.phases[0].clone();
        ramp.name = EVIL.to_string();
        ramp.kind = "connect".to_string();
        (ramp.started_ms, ramp.duration_ms) = (0, 2_050);
        (ramp.planned, ramp.attempted, ramp.succeeded, ramp.open_at_end) = (2000, 2000, 2000, 2000);
        ramp.samples = vec![sample(1_000, 1000, 1000, 1000), sample(2_000, 1990, 1990, 1990)];
        ramp.census = CensusPair {
            client: counts(&[(TcpState::Established, 2000)]),
            server: Some(counts(&[(TcpState::Established, 2000), (TcpState::Listen, 1)])),
        };
        ramp.latency_us.connect = connect.summary();
        ramp.latency_us.handshake = handshake.summary();
        ramp.latency_us.close = Latency::new().summary();
        ramp.errors.insert("refused".to_string(), 3);
        ramp.expectations = vec![expectation("established == 2000", 2000.0, true)];
        let mut hold = ramp.clone();
        hold.name = "hold".to_string();
        hold.kind = "hold".to_string();
        (hold.started_ms, hold.duration_ms, hold.succeeded) = (2_060, 1_000, 0);
        hold.samples = vec![sample(3_000, 2000, 0, 2000)];
        hold.latency_us = Latencies::default();
        hold.errors.insert("refused".to_string(), 0);
        hold.expectations = Vec::new();
        let mut close = hold.clone();
        close.name = "close".to_string();
        close.kind = "close".to_string();
        (close.started_ms, close.duration_ms) = (3_070, 500);
        close.samples = Vec::new();
        close.expectations = vec![expectation("time_wait >= 2000", 1999.0, false)];
        report.passed = false;
        report.scenario.name = EVIL.to_string();
        report.duration_ms = 3_570;
        report.limits.nofile_soft_after = 20000;
        report.notes = vec![format!("note {EVIL}")];
        report.phases = vec![ramp, hold, close];
        report
    }

    /// The text of the JSON block.
    fn data_block(page: &str) -> &str {
        let open = format!("<script type=\"application/json\" id=\"{DATA_ELEMENT_ID}\">");
        let start = page.find(&open).expect("data block") + open.len();
        let len = page[start..].find("</script>").expect("data block ends");
        &page[start..start + len]
    }

    #[test]
    fn data_block_has_every_phase_with_its_samples_and_curves() {
        let report = report();
        let page = render(&report);
        let data: serde_json::Value = serde_json::from_str(data_block(&page)).expect("the block is JSON");
        assert_eq!(data["schema"], DATA_SCHEMA);
        let phases = data["phases"].as_array().unwrap();
        assert_eq!(phases.len(), report.phases.len());
        for (p, r) in phases.iter().zip(&report.phases) {
            assert_eq!(p["name"], r.name.as_str());
            assert_eq!(p["samples"].as_array().unwrap().len(), r.samples.len());
            assert_eq!(p["end"]["t_ms"], r.started_ms + r.duration_ms);
        }
        let ramp = &phases[0];
        assert_eq!(ramp["samples"][1]["client"]["established"], 1990);
        assert_eq!(ramp["samples"][1]["server"]["listen"], 1);
        assert_eq!(ramp["end"]["failed"], 3);
        assert_eq!(ramp["errors"]["refused"], 3);
        // 0 → 1000 → (2000 merged into the end at 2050) → 2050: two intervals.
        let rate = ramp["rate"].as_array().unwrap();
        assert_eq!(rate.len(), 2);
        assert_eq!(rate[0]["succeeded_per_s"], 1000.0);
        assert_eq!(rate[1]["from_ms"], 1000);
        assert_eq!(rate[1]["to_ms"], 2050);
        let curves = ramp["latency"].as_array().unwrap();
        let names: Vec<&str> = curves.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["connect", "handshake"]);
        let points = curves[0]["points"].as_array().unwrap();
        assert!(points.len() > 20, "a percentile curve has its ticks: {points:?}");
        let first = &points[0];
        let last = &points[points.len() - 1];
        assert_eq!(first[0], 0.0);
        assert_eq!(first[1], 201);
        assert_eq!(last[0], 1.0 - 1.0 / 2000.0);
        assert_eq!(last[1].as_u64(), Some(report.phases[0].latency_us.connect.max));
        assert!(phases[1]["latency"].as_array().unwrap().is_empty());
        assert_eq!(phases[2]["expectations"][0]["passed"], false);
    }

    #[test]
    fn report_strings_are_escaped_in_markup_and_data() {
        let page = render(&report());
        // Two script elements (data and code), each closed once: nothing broke out.
        assert_eq!(page.matches("<script").count(), 2);
        assert_eq!(page.matches("</script>").count(), 2);
        assert!(!page.contains("<script>alert") && !page.contains("<!--"));
        assert!(
            page.contains("&lt;/script&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;!-- &quot;q&quot;")
        );
        let block = data_block(&page);
        assert!(!block.contains('<') && !block.contains('>') && !block.contains('&'));
        let data: serde_json::Value = serde_json::from_str(block).unwrap();
        assert_eq!(data["scenario"], EVIL);
        assert_eq!(data["phases"][0]["name"], EVIL);
    }

    #[test]
    fn page_is_self_contained_and_shows_verdicts() {
        let page = render(&report());
        for external in ["src=", "href=", "@import", "url(", "<link", "<iframe"] {
            assert!(!page.contains(external), "the page must not load anything ({external})");
        }
        // The one URL is the SVG namespace name, which is never fetched.
        for (i, _) in page.match_indices("http") {
            assert!(page[i..].starts_with("http://www.w3.org/2000/svg"), "a URL in the page: {}", &page[i..i + 40]);
        }
        assert!(page.contains("<span class=\"verdict fail\">FAILED</span>"));
        assert!(page.contains("<span class=\"badge fail\">FAIL</span></td><td><code>time_wait &gt;= 2000</code>"));
        assert!(page.contains("<span class=\"badge pass\">PASS</span></td><td><code>established == 2000</code>"));
        assert!(page.contains("20,000"));
    }

    #[test]
    fn markup_is_well_formed() {
        let page = render(&report());
        // The code script holds `<` and `&&`; everything else is written as well-formed XML.
        let code = page.rfind("<script>").expect("code script") + "<script>".len();
        let end = code + page[code..].find("</script>").expect("code script ends");
        let markup = format!("{}{}", &page[..code], &page[end..]);
        let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
        let doc = roxmltree::Document::parse_with_options(&markup, options)
            .unwrap_or_else(|e| panic!("not well-formed: {e}"));
        let data = doc.descendants().find(|n| n.attribute("id") == Some(DATA_ELEMENT_ID)).expect("data element");
        assert_eq!(data.attribute("type"), Some("application/json"));
        for id in ["chart-client-states", "chart-server-states", "chart-rate", "chart-open", "chart-latency"] {
            assert!(doc.descendants().any(|n| n.attribute("id") == Some(id)), "no #{id}");
        }
    }

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
