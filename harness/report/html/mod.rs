//! `--html FILE`: the report as one self-contained HTML page (inline CSS, an inline
//! script that draws SVG charts; nothing is fetched, so it opens offline and as a CI
//! artifact). This file writes the page's skeleton: head, header, findings, the chart
//! placeholders and the footer.
//!
//! The page carries its chart data as a JSON block, `<script type="application/json"
//! id="sockcap-data">` with schema [`DATA_SCHEMA`], built in `data.rs` from the
//! [`RunReport`]: every phase's census samples and end census, the success and failure
//! rates between successive samples, and latency percentile curves computed from the
//! serialized HdrHistograms. `report.js` draws the charts from that block; the
//! tables (`tables.rs`: phases, latency, errors, limits, kernel counters; and
//! `expectations.rs`) are rendered in Rust, so they read without JavaScript. Every
//! string taken from the report is escaped, in the markup ([`Escaped`]) and inside the
//! JSON block.

mod data;
mod expectations;
mod recovery;
mod spend;
mod tables;

use std::fmt::Write as _;
use std::path::Path;

pub use data::{DATA_ELEMENT_ID, DATA_SCHEMA};

use crate::report::format::seconds;
use crate::report::markup::Escaped;
use crate::report::RunReport;

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");

/// Write the page for `report` to `path` (see [`super::write::Destination`]).
pub fn write(report: &RunReport, path: &Path) -> anyhow::Result<()> {
    let page = render(report);
    super::write::to_path(path, |out| out.write_all(page.as_bytes()))?;
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
        Escaped(&report.sockcap_version),
        Escaped(&report.scenario.name),
    );
    header(&mut out, report);
    out.push_str("<main>\n");
    out.push_str(
        "<noscript><p class=\"banner warn\">The charts are drawn by the script in this page; \
         the tables below read without it.</p></noscript>\n",
    );
    notes(&mut out, report);
    tables::phase_table(&mut out, report);
    tables::events_section(&mut out, report);
    charts(&mut out, report);
    tables::latency_section(&mut out, report);
    recovery::section(&mut out, report);
    spend::section(&mut out, report);
    tables::errors_section(&mut out, report);
    expectations::section(&mut out, report);
    tables::limits_section(&mut out, report);
    tables::kernel_section(&mut out, report);
    out.push_str("</main>\n");
    let _ = writeln!(
        out,
        "<footer>Written by sockcap {}. Self-contained: the charts are drawn by the script in this file \
         from the JSON block <code>#{DATA_ELEMENT_ID}</code> (<code>{DATA_SCHEMA}</code>); the full \
         report, with the histograms, is what <code>--json</code> writes.</footer>",
        Escaped(&report.sockcap_version)
    );
    let _ = write!(
        out,
        "<script type=\"application/json\" id=\"{DATA_ELEMENT_ID}\">{}</script>\n<script>\n{JS}</script>\n</body>\n</html>\n",
        data::json_block(report)
    );
    out
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
    let sources = crate::report::format::sources(&s.sources);
    let _ = write!(
        out,
        "<header class=\"top {class}\">\n<div class=\"title\"><h1>{}</h1><span class=\"verdict {class}\">{}</span>\
         <span class=\"summary\">{}</span></div>\n<p class=\"meta\">{} → {}{embedded} · started {} · {} · \
         sources: {} · census: {} · scenario file <code>{}</code> · sockcap {}</p>\n</header>\n",
        Escaped(&s.name),
        r.verdict_word(),
        Escaped(&summary),
        Escaped(&s.protocol),
        Escaped(&s.target),
        Escaped(&r.started_at),
        seconds(r.duration_ms),
        Escaped(&sources),
        Escaped(&r.probe_backend),
        Escaped(&s.file),
        Escaped(&r.sockcap_version),
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
        let _ = writeln!(out, "<li>{}</li>", Escaped(n));
    }
    out.push_str("</ul>\n</section>\n");
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

#[cfg(test)]
mod tests {
    use probe::{StateCounts, TcpState};

    use super::*;
    use crate::latency::Latency;
    use crate::report::{CensusPair, CensusSample, ExpectationResult, Latencies};

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
            reason: None,
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
}
